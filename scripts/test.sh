#!/usr/bin/env bash
# Every test: installs what is missing, builds (Release, in build/), checks ptxas's reports on the
# CUDA kernels (check_ptxas: no spills, no serialised wgmma), runs the GoogleTest suite through
# ctest (the CPU tests; GPU-labelled tests skip themselves without a GPU), a short flash-mla-bench run,
# and a program built against the installed CMake package.
#   bash scripts/test.sh
set -euo pipefail
# shellcheck source=scripts/setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
start=$SECONDS

configure_and_build all
check_ptxas

log "ctest"
ctest --test-dir "$BUILD_DIR" --output-on-failure --no-tests=error -j "$JOBS"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

log "flash-mla-bench (small workload, checked against the float64 reference)"
"$BUILD_DIR/cli/flash-mla-bench" --quiet --batch 3 --seqlen 300 --ragged --s-q 3 --h-q 24 --h-kv 2 \
  --iters 2 --json "$scratch/bench.json"
grep -q '"ok": true' "$scratch/bench.json"
log "flash-mla-bench on the FP8 cache formats (cpu backend)"
"$BUILD_DIR/cli/flash-mla-bench" --quiet --batch 3 --seqlen 300 --ragged --s-q 3 --h-q 24 --h-kv 2 \
  --iters 2 --kv fp8,fp8-tensor,fp8-tensor-fp8q --backend cpu >/dev/null

log "installed package: find_package(flash_mla) from examples/consumer"
cmake --install "$BUILD_DIR" --prefix "$scratch/prefix" >/dev/null
cmake -S "$ROOT/examples/consumer" -B "$scratch/consumer" -DCMAKE_PREFIX_PATH="$scratch/prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$scratch/consumer" -j "$JOBS" >/dev/null
"$scratch/consumer/flash_mla_consumer"

log "Python package: .venv with torch, pip install ., pytest (scripts/test_python.sh)"
bash "$ROOT/scripts/test_python.sh"

log "all tests passed ($((SECONDS - start)) s)"
