# shellcheck shell=bash
# Shared by run.sh and test.sh (sourced, not run): installs the build tools that are missing, then
# configures and builds the project (Release) in build/.
#
#   FLASH_MLA_BUILD_DIR   build folder (default: build/ in the repository)
#   FLASH_MLA_CMAKE_ARGS  extra configure arguments, e.g. "-DFLASH_MLA_CUDA=OFF"
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${FLASH_MLA_BUILD_DIR:-$ROOT/build}
JOBS=$(nproc)

log() { echo "== $*" >&2; }

# Debian packages, through apt-get, only for what is missing and only as root.
install_missing_tools() {
  local missing=()
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v make >/dev/null 2>&1 || missing+=(make)
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  [ -f /usr/include/gtest/gtest.h ] || [ -f /usr/local/include/gtest/gtest.h ] || missing+=(libgtest-dev)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${missing[*]}; install them (Debian: apt-get install ${missing[*]}) and run again" >&2
    exit 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# nvcc where the CUDA toolkit puts it, so the CUDA backends are built when the toolkit is present.
find_cuda() {
  if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH=/usr/local/cuda/bin:$PATH
  fi
}

# A build folder configured for another checkout (a copied or cloned tree) can't be reused.
drop_stale_build() {
  local cache=$BUILD_DIR/CMakeCache.txt home
  [ -f "$cache" ] || return 0
  home=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$cache")
  if [ "$home" != "$ROOT" ]; then
    log "removing $BUILD_DIR (configured for $home)"
    rm -rf "$BUILD_DIR"
  fi
}

# Configures and builds Release; arguments are the build targets (e.g. all).
configure_and_build() {
  install_missing_tools
  find_cuda
  drop_stale_build
  log "configuring $BUILD_DIR"
  # shellcheck disable=SC2086  # FLASH_MLA_CMAKE_ARGS is a list of arguments
  # The options are given every time: a build folder configured by hand may have them off.
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DFLASH_MLA_BUILD_TESTS=ON \
    -DFLASH_MLA_BUILD_CLI=ON ${FLASH_MLA_CMAKE_ARGS:-} >/dev/null
  log "building ($JOBS jobs)"
  local targets=()
  for t in "$@"; do targets+=(--target "$t"); done
  # stdout stays for the results; the log keeps ptxas's reports for check_ptxas
  cmake --build "$BUILD_DIR" -j "$JOBS" "${targets[@]}" 2>&1 | tee "$BUILD_DIR/build.log" >&2
}

# The CUDA kernels as ptxas reported them in a build's log ($1, default the last configure_and_build's;
# only what that build compiled, a clean build compiles all): fails on register spills, local memory,
# or a "Potential Performance Loss" / injected warpgroup.arrive (C75xx: wgmma serialised), none of
# which the GPU tests would notice.
check_ptxas() {
  local report=${1:-$BUILD_DIR/build.log} bad kernels
  kernels=$(grep -c "ptxas info *: Used" "$report" || true)
  if [ "$kernels" = 0 ]; then
    log "ptxas: no kernel compiled in this build, nothing to check"
    return 0
  fi
  bad=$(grep -E "C75[0-9][0-9]|Local memory used|[1-9][0-9]* bytes spill (stores|loads)" "$report" || true)
  if [ -n "$bad" ]; then
    echo "$bad" >&2
    echo "ptxas: spills, local memory or serialised wgmma in the kernels above (see $report)" >&2
    return 1
  fi
  log "ptxas: $kernels kernels, no spills, no local memory, no serialised wgmma"
}
