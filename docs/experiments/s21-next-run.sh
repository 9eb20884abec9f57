#!/usr/bin/env bash
# Session 21's hand-over, run in session 22 (results: docs/PERFORMANCE.md, session 22, calls 1-2); kept
# to reproduce the energy split and the multicast A/B:
#   bash docs/experiments/s21-next-run.sh build               # CPU machine: 9 benches into scratch/ (~30 min)
#   OUT=$OUT bash docs/experiments/s21-next-run.sh energy     # GPU, carry ["scratch"]: ~3 min
#   OUT=$OUT bash docs/experiments/s21-next-run.sh multicast  # GPU, carry ["scratch"]: ~6 min
#   (build-mc rebuilds only that variant, ~4 min; the sync step landed as the kQKRead barrier, its patch
#   is gone)
#
# energy: where a block's energy goes at the 700 W cap. Timing-only builds of s21-energy-parts.patch
# (their results are wrong, so --no-check): e0 the head, e1 no Q·Kᵀ wgmma, e2 no P·V wgmma, e3 no copies
# after a CTA's first two blocks, e4 every block of a piece copies the piece's first block (L2 hits: the
# DRAM reads go, the L2 -> SM and TMA traffic stay), e5 one contiguous 72 KiB bulk copy per block
# instead of nine strided 128-byte-wide boxes (same bytes). Each row is replayed 4000 times while
# nvidia-smi samples clock and power every 100 ms. Session 21 ran e0-e3 (b=132 4096 s4: 180 us at
# 1425 MHz, e3 124 us at 1935 MHz, all at 688-695 W). e4 against e3 and e0 tells whether the DRAM reads
# or the L2 -> SM delivery draw the copies' power; e5 against e0 whether the boxes' order costs DRAM energy.
#
# multicast: s21-multicast.patch built with -DFLASH_MLA_MULTICAST=1 (ptxas clean, never run on a GPU):
# a 16-bit call with 2 or 4 row tiles and pages of 64+ tokens runs each part's row tiles as one cluster
# when every cluster of the grid is resident (cudaOccupancyMaxActiveClusters, printed); each CTA copies
# sub-tiles c = rank mod n of every block to every CTA (.multicast::cluster); a stage is refilled once
# every consumer warp of the cluster freed it; without the macro the patch leaves the head's code. A
# review found no bug. Predicted: the 128- and 256-row
# rows faster by what their L2 -> SM traffic costs at the cap (at most the copies' 19 % share at b=128
# 4096 h128 s1 less the DRAM reads'), 16- to 64-row rows unchanged. Runs the GPU suite, then a 2-pass A/B.
#
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=docs/experiments/variants.sh
source "$ROOT/docs/experiments/variants.sh"  # replay_clocks
A="--check-rows 8 --quiet --no-ceilings"

# build_bench NAME PATCH FLAGS [TESTS]: a worktree of HEAD with PATCH applied (none: "-"), built with
# CMAKE_CUDA_FLAGS=FLAGS, its bench (and with TESTS its GPU tests) copied to scratch/NAME-*.
build_bench() {
  local name=$1 patch=$2 flags=$3 tests=${4:-}
  local src=/tmp/s21-next-src-$name build=/tmp/s21-next-build-$name
  rm -rf "$src"
  git worktree prune
  git worktree add -f --detach "$src" HEAD >/dev/null
  [ "$patch" = - ] || git -C "$src" apply "$ROOT/docs/experiments/$patch"
  cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASH_MLA_CUDA=ON -DFLASH_MLA_BUILD_CLI=ON \
    ${tests:+-DFLASH_MLA_BUILD_TESTS=ON} "-DCMAKE_CUDA_FLAGS=$flags" >/dev/null
  cmake --build "$build" --target flash-mla-bench ${tests:+flash_mla_gpu_tests}
  cp "$build/cli/flash-mla-bench" "scratch/$name-bench"
  [ -z "$tests" ] || cp "$build/tests/flash_mla_gpu_tests" "scratch/$name-gpu-tests"
}

case "${1:-}" in
  build)
    export PATH=/usr/local/cuda/bin:$PATH
    mkdir -p scratch
    for e in 0 1 2 3 4 5; do build_bench "e$e" s21-energy-parts.patch "-DFLASH_MLA_ENERGY_SKIP=$e"; done
    build_bench mc s21-multicast.patch "-DFLASH_MLA_MULTICAST=1" tests
    ;;
  build-mc)
    export PATH=/usr/local/cuda/bin:$PATH
    mkdir -p scratch
    build_bench mc s21-multicast.patch "-DFLASH_MLA_MULTICAST=1" tests
    ;;
  energy)
    OUT=${OUT:-s21-next-out}
    mkdir -p "$OUT"
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader
    for only in b=132 seqlen=4096 seqlen=8192; do
      grid=perf
      [ "$only" = b=132 ] && grid=small
      for e in 0 1 2 3 4 5; do
        replay_clocks "e$e" "scratch/e$e-bench" --grid $grid --only $only --iters 4000
      done
    done
    ;;
  multicast)
    OUT=${OUT:-s21-next-out}
    mkdir -p "$OUT"
    timeout 200 scratch/mc-gpu-tests >"$OUT/mc-tests.txt" 2>&1 && echo "mc: GPU suite passed" || echo "mc: FAILED"
    grep -E "^\[  FAILED|PASSED|SKIPPED \] [0-9]" "$OUT/mc-tests.txt" | tail -6 || true
    # How many clusters of 2 and of 4 CTAs fit at once (the launcher prints it once per size).
    for only in seqlen=4096 seqlen=16384; do
      timeout 60 scratch/mc-bench --grid perf --only $only --no-check --no-ceilings --quiet --iters 10 2>&1 |
        grep "resident clusters" || true
    done
    # e0 is the head (the energy patch with every part kept).
    OUT=$OUT/a timeout 240 bash scripts/ab.sh -p 2 -a "--grid perf,short $A" head=scratch/e0-bench \
      mc=scratch/mc-bench >"$OUT/ab1.txt" 2>&1 || true
    OUT=$OUT/b timeout 60 bash scripts/ab.sh -p 2 -a "--grid small --only seqlen=32768 $A" head=scratch/e0-bench \
      mc=scratch/mc-bench >"$OUT/ab2.txt" 2>&1 || true
    cat "$OUT/ab1.txt"
    tail -1 "$OUT/ab2.txt"
    ;;
  *)
    sed -n 2,26p "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
