#!/usr/bin/env bash
# The Python package's tests: creates (or updates) the project-local virtual environment .venv/ with
# torch from PyPI, installs flash_mla into it with `pip install .` (scikit-build-core driving the
# project's CMake), and runs pytest on python/tests. Called by scripts/test.sh; runs alone too.
#
#   FLASH_MLA_VENV    the virtual environment (default: .venv/ in the repository)
#   FLASH_MLA_TORCH   torch requirement (default torch==2.10.0: the oldest torch the stable-ABI
#                     binding targets; any torch >= 2.10 works)
#
# From a clean venv this downloads about 3.9 GB (PyPI's Linux torch wheel and its nvidia-* packages).
set -euo pipefail
# shellcheck source=scripts/setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
start=$SECONDS

VENV=${FLASH_MLA_VENV:-$ROOT/.venv}
find_cuda  # nvcc on PATH: the extension then carries the CUDA backends, as the C++ build does

if ! "$VENV/bin/python" -c "import sys; assert sys.version_info >= (3, 10)" 2>/dev/null; then
  log "creating $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
fi
py=$VENV/bin/python

# A fresh torch needs about 11 GiB while it installs (3.9 GB of wheels in pip's temporary folder, 7 GB
# unpacked into the venv; 10.8 GiB measured). Say so before pip runs out of space half-way through.
# Skipped when the venv's torch already imports (pip then keeps it, unless FLASH_MLA_TORCH asks for
# another version).
free_gib() { df -Pk "$1" 2>/dev/null | awk 'NR == 2 { print int($4 / 1048576) }'; }
if ! "$py" -c "import torch" 2>/dev/null; then
  for dir in "$(dirname "$VENV")" "${TMPDIR:-/tmp}"; do
    free=$(free_gib "$dir")
    if [ -n "$free" ] && [ "$free" -lt 12 ]; then
      echo "test_python.sh: installing torch into $VENV needs about 12 GiB free (pip unpacks into" \
        "${TMPDIR:-/tmp}); $dir has ${free} GiB free" >&2
      exit 1
    fi
  done
fi

log "installing ${FLASH_MLA_TORCH:-torch==2.10.0}, scikit-build-core and pytest into $VENV"
# --no-cache-dir: the wheels are unpacked into the venv once; a second copy in pip's cache would
# only take another 3.9 GB of disk.
"$py" -m pip install -q --disable-pip-version-check --no-cache-dir \
  "${FLASH_MLA_TORCH:-torch==2.10.0}" "scikit-build-core>=0.10" pytest

# No build isolation: build against the venv's torch rather than download another into a temporary
# environment. The build folder (build-python/) is kept, so a second run rebuilds only what changed.
log "pip install . (flash_mla)"
"$py" -m pip install -q --disable-pip-version-check --no-build-isolation "$ROOT"

log "pytest python/tests"
cd "$ROOT"
"$py" -m pytest -q python/tests  # exit status 5 (no tests collected) fails this script too

log "Python tests passed ($((SECONDS - start)) s)"
