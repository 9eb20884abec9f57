# shellcheck shell=bash
# Sourced by the session hand-over scripts (sNN-next-run.sh), with ROOT set to the repository root and
# the working directory there.
#
# build NAME PATCHES CMAKE_FLAGS TARGET...: a worktree of HEAD (or of $REV) with PATCHES (files in docs/experiments,
# comma-separated, applied in order; none: "-"), the targets built in Release with CUDA, and the
# binaries copied to scratch/NAME-<binary> (flash-mla-bench, flash-mla-phases, flash_mla_gpu_tests).
build() {
  local name=$1 patch=$2 flags=$3
  shift 3
  local src=/tmp/variant-src-$name out=/tmp/variant-build-$name
  rm -rf "$src"
  git worktree prune
  git worktree add -f --detach "$src" "${REV:-HEAD}" >/dev/null
  if [ "$patch" != - ]; then
    for one in ${patch//,/ }; do git -C "$src" apply "$ROOT/docs/experiments/$one"; done
  fi
  # shellcheck disable=SC2086  # flags is a list of -D options
  cmake -S "$src" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASH_MLA_CUDA=ON $flags >/dev/null
  cmake --build "$out" --target "$@"
  mkdir -p scratch
  for t in "$@"; do
    case $t in
      flash-mla-bench | flash-mla-phases) cp "$out/cli/$t" "scratch/$name-$t" ;;
      flash_mla_gpu_tests) cp "$out/tests/$t" "scratch/$name-$t" ;;
    esac
  done
}

# gpu_suite NAME: scratch/NAME-flash_mla_gpu_tests, its log in $OUT/NAME-tests.txt; prints the verdict.
gpu_suite() {
  local name=$1
  if timeout 220 "scratch/$name-flash_mla_gpu_tests" >"$OUT/$name-tests.txt" 2>&1; then
    echo "$name: GPU suite passed"
  else
    echo "$name: FAILED"
  fi
  grep -E "^\[  FAILED|PASSED|SKIPPED \] [0-9]" "$OUT/$name-tests.txt" | tail -6 || true
}

# ab_grids A B: a 2-pass A/B of scratch/A-flash-mla-bench and scratch/B-flash-mla-bench on the perf and
# short grids (scripts/ab.sh, passes alternated), its table in $OUT/ab-B.txt and on stdout.
ab_grids() {
  OUT=$OUT/a timeout 300 bash scripts/ab.sh -p 2 -a "--grid perf,short --check-rows 8 --quiet --no-ceilings" \
    "$1=scratch/$1-flash-mla-bench" "$2=scratch/$2-flash-mla-bench" >"$OUT/ab-$2.txt" 2>&1 || true
  cat "$OUT/ab-$2.txt"
}
