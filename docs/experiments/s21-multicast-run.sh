#!/usr/bin/env bash
# TMA multicast to the row tiles of a 128- or 256-row call (session 21; built and checked with ptxas
# here, never run on a GPU). Run it after s21-energy-run.sh if e4 says the L2 -> SM delivery draws
# the copies' power (see docs/PERFORMANCE.md, session 21):
#   bash docs/experiments/s21-multicast-run.sh build        # CPU machine: head and mc into scratch/ (~8 min)
#   OUT=$OUT bash docs/experiments/s21-multicast-run.sh run # GPU, carry ["scratch"]: GPU suite + A/B (~6 min)
# s21-multicast.patch, built with -DFLASH_MLA_MULTICAST=1: a 16-bit call with 2 or 4 row tiles and
# pages of 64+ tokens launches each part's row tiles as one cluster; each CTA's producer copies
# sub-tiles c = rank mod n of every block to every CTA (.multicast::cluster); a stage is refilled once
# every consumer warp of the cluster freed it (one arrival per warp on every CTA's k_free); the
# cluster syncs after the barriers' init and before exit. 168 registers, no spills (ptxas, CPU
# machine); 9 UTMALDG.4D.MULTICAST in the SASS. Predicted: the 128- and 256-row rows faster by what
# their L2 -> SM traffic costs at the power cap (at most the copies' 19 % share at b=128 4096 h128
# s1 less the DRAM reads'), the 16- to 64-row rows unchanged (no cluster). A review (session 21) found
# no bug; its main risk is a second wave when clusters of 4 do not all fit, which the launcher now
# checks with cudaOccupancyMaxActiveClusters (and prints) before it takes the cluster launch.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
case "${1:-}" in
  build)
    export PATH=/usr/local/cuda/bin:$PATH
    mkdir -p scratch
    git worktree prune
    for name in head mc; do
      src=/tmp/s21-mc-src-$name
      rm -rf "$src"
      git worktree add -f --detach "$src" HEAD >/dev/null
      flags=""
      if [ $name = mc ]; then
        git -C "$src" apply "$ROOT/docs/experiments/s21-multicast.patch"
        flags="-DFLASH_MLA_MULTICAST=1"
      fi
      cmake -S "$src" -B "/tmp/s21-mc-build-$name" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASH_MLA_CUDA=ON \
        -DFLASH_MLA_BUILD_TESTS=ON -DFLASH_MLA_BUILD_CLI=ON "-DCMAKE_CUDA_FLAGS=$flags" >/dev/null
      cmake --build "/tmp/s21-mc-build-$name" --target flash-mla-bench flash_mla_gpu_tests
      cp "/tmp/s21-mc-build-$name/cli/flash-mla-bench" "scratch/$name-bench"
      [ $name = mc ] && cp "/tmp/s21-mc-build-$name/tests/flash_mla_gpu_tests" scratch/mc-gpu-tests
    done
    ;;
  run)
    OUT=${OUT:-s21-mc-out}
    mkdir -p "$OUT"
    timeout 200 scratch/mc-gpu-tests >"$OUT/mc-tests.txt" 2>&1 && echo "mc: GPU suite passed" || echo "mc: FAILED"
    grep -E "^\[  FAILED|PASSED|SKIPPED \] [0-9]" "$OUT/mc-tests.txt" | tail -6 || true
    # How many clusters of 2 and of 4 CTAs fit at once (the launcher prints it once; it falls back to the
    # plain launch when a grid's clusters would not all be resident).
    for only in seqlen=4096 seqlen=16384; do
      timeout 60 scratch/mc-bench --grid perf --only $only --no-check --no-ceilings --quiet --iters 10 2>&1 |
        grep "resident clusters" || true
    done
    A="--check-rows 8 --quiet --no-ceilings"
    OUT=$OUT/a timeout 240 bash scripts/ab.sh -p 2 -a "--grid perf,short $A" head=scratch/head-bench \
      mc=scratch/mc-bench >"$OUT/ab1.txt" 2>&1 || true
    OUT=$OUT/b timeout 60 bash scripts/ab.sh -p 2 -a "--grid small --only seqlen=32768 $A" head=scratch/head-bench \
      mc=scratch/mc-bench >"$OUT/ab2.txt" 2>&1 || true
    cat "$OUT/ab1.txt"
    tail -1 "$OUT/ab2.txt"
    ;;
  *)
    sed -n 2,14p "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
