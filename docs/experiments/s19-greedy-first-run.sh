#!/usr/bin/env bash
# Session 19's greedy-first experiment (s19-greedy-first.patch): b <= kGreedyMaxBatch takes the greedy
# cut even when whole groups fit (only b=64 512 s2 changes in the small and short grids). Two steps:
#   bash docs/experiments/s19-greedy-first-run.sh build    # on the CPU machine: binaries into scratch/
#   OUT=$OUT bash docs/experiments/s19-greedy-first-run.sh device   # on the GPU (device tool, carry scratch)
# `device` runs the schedule's GPU tests and the decode tests that read it, a 3-pass A/B of the rows of
# 512 tokens and a 1-pass A/B of the small and short grids (~4 min, estimated). Nothing here is part
# of the build or the test suite; written in session 19 and not yet run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
case "${1:-}" in
  build)
    export PATH=/usr/local/cuda/bin:$PATH
    mkdir -p scratch
    rm -rf /tmp/greedy-first-src
    git worktree prune
    git worktree add -f --detach /tmp/greedy-first-src HEAD
    git -C /tmp/greedy-first-src apply "$ROOT/docs/experiments/s19-greedy-first.patch"
    for tree in base:"$ROOT" first:/tmp/greedy-first-src; do
      name=${tree%%:*} src=${tree#*:}
      cmake -S "$src" -B "/tmp/greedy-first-build-$name" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASH_MLA_CUDA=ON \
        -DFLASH_MLA_BUILD_TESTS=ON -DFLASH_MLA_BUILD_CLI=ON >/dev/null
      cmake --build "/tmp/greedy-first-build-$name" --target flash-mla-bench flash_mla_gpu_tests flash_mla_tests
      cp "/tmp/greedy-first-build-$name/cli/flash-mla-bench" "scratch/$name-bench"
    done
    cp /tmp/greedy-first-build-first/tests/flash_mla_gpu_tests scratch/first-gpu-tests
    /tmp/greedy-first-build-first/tests/flash_mla_tests --gtest_filter='Schedule.*'
    ;;
  device)
    OUT=${OUT:-greedy-first-out}
    mkdir -p "$OUT"
    timeout 200 scratch/first-gpu-tests --gtest_filter='GpuSchedule.*:GpuGraph.*:GpuFuzz.*:GpuDecode.*' \
      >"$OUT/tests.txt" 2>&1 && echo "tests passed" || echo "tests FAILED (see tests.txt)"
    grep -E "^\[  FAILED|PASSED" "$OUT/tests.txt" | tail -6 || true
    # The bench's new sched us column (untested on a GPU before this) against ncu's schedule-kernel time.
    for bin in base first; do
      echo "== $bin: bench table (sched us) and ncu's schedule kernel, b=64 512 s2 and b=64 256..1024 s4"
      timeout 60 "scratch/$bin-bench" --grid small --only "b=64" --check-rows 1 --quiet --no-ceilings 2>&1 | tail -3
      timeout 60 ncu --kernel-name regex:schedule --launch-count 2 --metrics gpu__time_duration.sum "scratch/$bin-bench" --grid small \
        --only "b=64" --quiet --no-ceilings --check-rows 1 --iters 1 2>&1 | grep -E "duration" | head -2 || true
    done | tee "$OUT/sched.txt"
    OUT=$OUT/rows512 timeout 150 bash scripts/ab.sh -p 3 -a "--grid small,short --only 512 --check-rows 8 --quiet --no-ceilings" \
      base=scratch/base-bench first=scratch/first-bench >"$OUT/ab512.txt" 2>&1 || true
    cat "$OUT/ab512.txt"
    OUT=$OUT/grids timeout 200 bash scripts/ab.sh -p 1 -a "--grid small,short --check-rows 8 --quiet --no-ceilings" \
      base=scratch/base-bench first=scratch/first-bench >"$OUT/ab.txt" 2>&1 || true
    cat "$OUT/ab.txt"
    ;;
  *)
    sed -n 2,8p "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
