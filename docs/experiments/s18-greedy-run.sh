#!/usr/bin/env bash
# Session 18's greedy schedule (s18-greedy-schedule.patch), ready for its first GPU run of the
# closed-form walk. Two steps:
#   bash docs/experiments/s18-greedy-run.sh build    # on the CPU machine: binaries into scratch/
#   OUT=$OUT bash docs/experiments/s18-greedy-run.sh device   # on the GPU (device tool, carry scratch)
# `device` runs the schedule's GPU tests and the decode tests that read it, times the schedule kernel
# under ncu (cost line against greedy on four batches), and a 2-pass A/B of the small, short and perf
# grids (~6 min in all, estimated). Nothing here is part of the build or the test suite. `build` ran on
# the CPU machine in session 18; `device` ran there only as a dry run (no GPU: tests skipped, no ncu).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
case "${1:-}" in
  build)
    export PATH=/usr/local/cuda/bin:$PATH
    mkdir -p scratch
    rm -rf /tmp/greedy-src
    git worktree prune
    git worktree add -f --detach /tmp/greedy-src HEAD
    git -C /tmp/greedy-src apply "$ROOT/docs/experiments/s18-greedy-schedule.patch"
    for tree in base:"$ROOT" greedy:/tmp/greedy-src; do
      name=${tree%%:*} src=${tree#*:}
      cmake -S "$src" -B "/tmp/greedy-build-$name" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASH_MLA_CUDA=ON \
        -DFLASH_MLA_BUILD_TESTS=ON -DFLASH_MLA_BUILD_CLI=ON >/dev/null
      cmake --build "/tmp/greedy-build-$name" --target flash-mla-bench flash_mla_gpu_tests flash_mla_tests
      cp "/tmp/greedy-build-$name/cli/flash-mla-bench" "scratch/$name-bench"
    done
    cp /tmp/greedy-build-greedy/tests/flash_mla_gpu_tests scratch/greedy-gpu-tests
    /tmp/greedy-build-greedy/tests/flash_mla_tests --gtest_filter='Schedule.*'
    ;;
  device)
    OUT=${OUT:-greedy-out}
    mkdir -p "$OUT"
    timeout 200 scratch/greedy-gpu-tests --gtest_filter='GpuSchedule.*:GpuGraph.*:GpuFuzz.*:GpuDecode.*' \
      >"$OUT/tests.txt" 2>&1 && echo "tests passed" || echo "tests FAILED (see tests.txt)"
    grep -E "^\[  FAILED|PASSED|SKIPPED \] [0-9]" "$OUT/tests.txt" | tail -6 || true
    ncu_row() {
      local bin=$1
      shift
      echo "$bin $*"
      timeout 60 ncu --kernel-name regex:schedule --metrics gpu__time_duration.sum "scratch/$bin-bench" "$@" \
        --quiet --no-ceilings --check-rows 1 --iters 1 2>&1 | grep -E "duration" | head -1 || true
    }
    for bin in base greedy; do
      ncu_row "$bin" --grid small --only "256..1024"
      ncu_row "$bin" --grid small --only "b=1 seqlen=65536 h_q=16 s_q=1"
      ncu_row "$bin" --grid flashmla --only "seqlen~8192 h_q=16 s_q=1"
      ncu_row "$bin" --batch 1024 --seqlen 2048 --ragged --h-q 16 --s-q 1
    done | tee "$OUT/ncu.txt"
    OUT=$OUT timeout 330 bash scripts/ab.sh -p 2 -a "--grid small,short,perf --check-rows 8 --quiet --no-ceilings" \
      base=scratch/base-bench greedy=scratch/greedy-bench >"$OUT/ab.txt" 2>&1 || true
    cat "$OUT/ab.txt"
    ;;
  *)
    sed -n 2,8p "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
