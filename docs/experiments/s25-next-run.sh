#!/usr/bin/env bash
# Session 25's device calls, in order (run from the repository root; binaries in scratch/, carried to the
# device with `carry: ["scratch"]`; OUT=$OUT there). Usage: s25-next-run.sh STEP.
# run2 (call 2): the grouped-release seesaw (branch seesaw-grouped, built by hand into scratch/gs-*; its
#   trace build scratch/gstr-flash-mla-phases) against 76d5b70's bench (scratch/head-*): the dense GPU tests,
#   the per-pair timeline beside head's per-block one (scratch/trace-*), a 1-pass A/B.
#   Predicted: consumer 0's wait for K(a) at a pair's start (1972 cycles in s24-seesaw) mostly gone, a pair
#   ~5400-6000 cycles (head: 2 x 3750); the 128-row rows -5 ... -15 %.
# run3 (call 3): gs (FlashMLA's order, with group-landing stamps) and gs1 (-DFLASH_MLA_SEESAW_ORDER=1: consumer 1
#   folds a then b, both stages read V_L, RoPE, V_R): gs1's dense tests, both timelines, ncu cycles at base
#   clock and the replayed clock and power of head, gs and gs1 on b=128 16384 h128 s2 (256 rows) and 4096
#   h128 s1, a 1-pass 3-way A/B.
#   (Run with the h128 s2 row only for ncu and clocks: a review helper had used ~1000 s of the budget.)
# build4 (the next session, here, ~10 min): s25-seesaw-grouped.patch on HEAD, the landing form (the seesaw a
#   kernel template parameter chosen for more than 128 query rows per KV head; FLASH_MLA_SM90_SCHEDULE=
#   serial|seesaw forces one): cand (bench, GPU tests); candp (-DFLASH_MLA_SEESAW_PREFETCH=1: each block's
#   boxes prefetched into L2 when its producer warp reaches it); head; wrappers candps / cands that run
#   candp / cand with every call on the seesaw. And nc (issue 7): the narrow FP8 kernel's Sᵀ = K·Qᵀ as two
#   accumulator chains of 18 wgmma instead of one of 36 (s25-narrow-two-chains.patch,
#   -DFLASH_MLA_NARROW_QK_CHAINS=2): the 16-row Sᵀ's m64n16k16 wgmma are tiny, and a score warpgroup's
#   Q·Kᵀ took ~3470 cycles per block (~96 per wgmma; PERFORMANCE.md item 1 (a)), a dependent chain's latency.
#   And hh (s25-f2fp-high-half.patch): F2FP converts each word's upper e4m3 pair from the register's upper
#   half (R.H1) instead of after a shift: 72 SHF fewer per block in a score warpgroup (16-row form 136 -> 28
#   SHF in all), the same 226 F2FP; the per-tensor dense FP8 kernel 114.1 -> 111.9 KiB. Bit-identical results.
# run4 (~4 min): l2_bench (docs/experiments/l2_bench.cu: the L2 -> SM delivery ceiling, and the 2- and
#   4-CTA sharing of the 128- and 256-row calls; predicted: share 4 near the ~4.8 TB/s that h128 s2
#   delivers, which would make the 256-row rows L2-bound and multicast their lever), cand's GPU suite
#   (default dispatch), its 16-bit tests with every call on the seesaw, nc's and hh's FP8 tests and fuzzer.
# run5 (~8 min, near the 600 s per-call limit): 2-pass A/B of head, cand, candp, candps; ncu cycles and
#   replayed clocks at h128 s2; a 2-pass A/B of head, nc and hh on FlashMLA's h_q 16 and 32 rows in
#   per-tensor FP8.
#   Predicted: candp's pairs lose most of their ~1750-2650-cycle refill waits, h128 s2 -5 ... -10 % against
#   head, and candps's 128-row rows no slower than head; nc's h16 FP8 rows -3 ... -8 %; hh's -1 ... -3 %.
# Landing the seesaw: s25-seesaw-grouped.patch keeps only the a-first order (s25-seesaw-grouped-orders.patch
#   has both, FLASH_MLA_SEESAW_ORDER=0|1, and with FLASH_MLA_SM90_SCHEDULE=seesaw stands for call 3's
#   builds); drop whichever prefetch form lost.
set -euo pipefail
# The helpers used: build, ab_many, gpu_suite, dense_tests, timelines, ncu_metrics, replay_clocks.
# shellcheck source=docs/experiments/variants.sh
source "$(dirname "${BASH_SOURCE[0]}")/variants.sh"  # sets ROOT, cd there
OUT=${OUT:-s25-next-out}
mkdir -p "$OUT"


case ${1:-} in
  run2)
    dense_tests gs
    timelines trace gstr
    ab_many ab-gs.txt 1 head gs
    ;;
  run3)
    dense_tests gs1
    timelines gstr gstr1
    stalls=sm__cycles_elapsed.max,smsp__inst_executed.sum
    # (Written for two rows, 16384 h128 s2 and 4096 h128 s1; run with the first only.)
    row=(--batch 128 --seqlen 16384 --h-q 128 --s-q 2)
    for name in head gs gs1; do
      ncu_metrics "$name ${row[*]:2}" "$stalls" "scratch/$name-flash-mla-bench" "${row[@]}"
      replay_clocks "$name" "scratch/$name-flash-mla-bench" "${row[@]}" --iters 1500
    done
    ab_many ab-gs1.txt 1 head gs gs1
    ;;
  build4)
    flags="-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON"
    build head - "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    build cand s25-seesaw-grouped.patch "$flags" flash-mla-bench flash_mla_gpu_tests
    build candp s25-seesaw-grouped.patch "-DFLASH_MLA_BUILD_CLI=ON -DCMAKE_CUDA_FLAGS=-DFLASH_MLA_SEESAW_PREFETCH=1" \
      flash-mla-bench
    nvcc -O3 -std=c++17 -arch=sm_90a -I src -o scratch/l2_bench docs/experiments/l2_bench.cu
    build hh s25-f2fp-high-half.patch "$flags" flash-mla-bench flash_mla_gpu_tests
    build nc s25-narrow-two-chains.patch "$flags -DCMAKE_CUDA_FLAGS=-DFLASH_MLA_NARROW_QK_CHAINS=2" \
      flash-mla-bench flash_mla_gpu_tests
    for name in cand candp; do
      # shellcheck disable=SC2016  # the wrapper's own expansions
      printf '#!/bin/sh\nFLASH_MLA_SM90_SCHEDULE=seesaw exec "$(dirname "$0")/%s-flash-mla-bench" "$@"\n' "$name" \
        >"scratch/${name}s-flash-mla-bench"
      chmod +x "scratch/${name}s-flash-mla-bench"
    done
    ;;
  run4)
    timeout 60 scratch/l2_bench || true
    gpu_suite cand
    FLASH_MLA_SM90_SCHEDULE=seesaw dense_tests cand
    gtest_groups nc 'Formats/*:GpuFuzz*'
    gtest_groups hh 'Formats/*:GpuFuzz*'
    ;;
  run5)
    ab_many ab-cand.txt 2 head cand candp candps
    # FlashMLA's grid's 16- and 32-row-head rows (s_q 1 and 2, uniform and ragged) in per-tensor FP8.
    for only in h_q=16 h_q=32; do
      OUT=$OUT/$only timeout 300 bash scripts/ab.sh -p 2 \
        -a "--grid flashmla --kv fp8-tensor --only $only --check-rows 8 --quiet --no-ceilings" \
        head=scratch/head-flash-mla-bench nc=scratch/nc-flash-mla-bench hh=scratch/hh-flash-mla-bench || true
    done
    for name in head cand candp; do
      ncu_metrics "$name h128 s2" sm__cycles_elapsed.max,smsp__inst_executed.sum \
        "scratch/$name-flash-mla-bench" --batch 128 --seqlen 16384 --h-q 128 --s-q 2
      replay_clocks "$name" "scratch/$name-flash-mla-bench" --batch 128 --seqlen 16384 --h-q 128 --s-q 2 --iters 1500
    done
    ;;
  *)
    sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | grep '^#' >&2
    exit 2
    ;;
esac
