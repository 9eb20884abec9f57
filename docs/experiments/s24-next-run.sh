#!/usr/bin/env bash
# Session 24's device calls (written in session 24):
#   bash docs/experiments/s24-next-run.sh build          # CPU machine: into scratch/
#   OUT=$OUT bash docs/experiments/s24-next-run.sh run   # GPU, carry ["scratch"]
#
# With the descriptors advanced by one add (76d5b70), the layout probe no longer moved the kernel's
# cycles (ncu, session 24 call 1), so two changes that lost by 1-2 % when the layout was fragile are
# measured again, rebased on 76d5b70:
#   mc: TMA multicast to a part's 2 or 4 row-tile CTAs (s24-multicast.patch, built with
#       -DFLASH_MLA_MULTICAST=1; session 22: clustered 128-row rows +0.6 ... +1.7 %);
#   qf: the query tile by TMA for full tiles (s24-q-by-tma-full-tiles.patch; session 23: 1024 h128 s1
#       -1.4 %, 16384 h64 s1 +1.6 %, h128 s2 +1.1 %).
# probe (s23-layout-probe.patch on head) is the layout control. run: the GPU suites of mc and qf, then a
# 2-pass A/B of head, probe, mc and qf on the perf and short grids.
# build3 / run3 (call 3): the same for two changes to consumer 0's block:
#   pvo: consumer 1 issues its P·V only once consumer 0 issued its own (s24-pv-order.patch; session 21:
#        -0.6 ... +1.0 % replayed, when the layout was fragile; a trace build had said -4 ... -6 % cycles);
#   exp: one exponential in four on the FMA pipe (s24-exp2-fma.patch): the exponentiate phase is bound by
#        MUFU.EX2 (32 per thread at 8 cycles per warp instruction: 256 of its ~370 cycles); predicted
#        ~60 cycles per block less, -1 ... -2 % on the 64+ row rows, the 16-row rows unchanged.
# build4 / run4 (call 4): ncu of session 5's seesaw (79d2dd5, FLASH_MLA_SM90_SEESAW=1) against its serial
#   schedule (is the seesaw's loss instruction fetch?), head's stalls per SASS line (top_stalls.py), and
#   head's phase timeline (trace build) on the h128 rows.
# build5 / run5 (call 5): kw, consumer 0 waits for the next block's K while its P·V runs
#   (s24-k-wait-under-pv.patch): the timeline puts ~110 cycles between a block's start and its K wait's
#   return, and ~190 from P·V's end to the next block's start; predicted -1 ... -3 % on the 64+ row rows.
# run6 (call 6): fetch and barrier stalls of the narrow FP8 kernel (per-tensor h16 and h32, with-scale h16)
#   beside the dense bf16 kernel on 8192 h16 s1, and the FP8 h16 kernel's stall lines.
# build7 / run7 (call 7): the compact seesaw (s24-seesaw.patch, -DFLASH_MLA_SEESAW=1; DESIGN.md, "A compact
#   seesaw"): both consumers run one function, so the bf16 kernel keeps 44 HGMMA and 101 KiB of SASS (168
#   registers, no spills, no C7514). With ~250 s of device time left: the dense GPU tests and a 1-pass A/B.
#   (Session 24 built call 4's 79d2dd5 bench and trace build and call 7's variant by hand, with the same
#   flags as build4 and build7; the helpers this script uses were merged into variants.sh afterwards.)
# build8 / run8 (not run in session 24; the next session's first call, ~1 min): the seesaw's per-pair
#   phase timeline (the patch stamps each pair: 0 begin, 1 own K landed, 2 S masked, 4 exp, 7 own stats
#   published, 8 P(a)·V done, 9 P(b)·V done, 10 the other's stats in) beside head's per-block one: where
#   the seesaw's 6-18 % goes (predicted: waits for K at the pair's start, events 0 -> 1). Since call 7 the
#   patch also lets the one-tile producer request K(1) without waiting for K(0) (a review's finding):
#   rerun build7/run7's A/B too.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

# shellcheck source=docs/experiments/variants.sh
source "$ROOT/docs/experiments/variants.sh"  # build, gpu_suite, ab_grids, gtest_groups, timelines

export PATH=/usr/local/cuda/bin:$PATH
mkdir -p scratch
OUT=${OUT:-s24-next-out}

# tested NAME PATCH [CMAKE_FLAGS]: a variant's bench and GPU tests (scratch/NAME-*).
tested() {
  build "$1" "$2" "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON ${3:-}" flash-mla-bench flash_mla_gpu_tests
}

# The seven calls' ncu metrics: cycles, fetch and barrier stalls per issue, instructions.
stalls=sm__cycles_elapsed.max,smsp__average_warps_issue_stalled_no_instruction_per_issue_active.ratio
stalls=$stalls,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__inst_executed.sum

case "${1:-}" in
  build)
    build head - "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    build probe s23-layout-probe.patch "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    tested mc s24-multicast.patch -DCMAKE_CUDA_FLAGS=-DFLASH_MLA_MULTICAST=1
    tested qf s24-q-by-tma-full-tiles.patch
    ;;
  run)
    mkdir -p "$OUT"
    gpu_suite mc
    gpu_suite qf
    ab_many ab.txt 2 head probe mc qf
    ;;
  build3)
    tested pvo s24-pv-order.patch
    tested exp s24-exp2-fma.patch
    ;;
  run3)
    mkdir -p "$OUT"
    gpu_suite pvo
    gpu_suite exp
    ab_many ab3.txt 2 head pvo exp
    ;;
  build4)
    REV=79d2dd5 build ss - "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench  # the last seesaw (session 5)
    build trace - "-DFLASH_MLA_TRACE=ON" flash-mla-phases
    ;;
  run4)
    mkdir -p "$OUT"
    rows=("--batch 128 --seqlen 16384 --h-q 128 --s-q 2" "--batch 128 --seqlen 4096 --h-q 128 --s-q 1")
    for schedule in 0 1; do
      for row in "${rows[@]}"; do
        # shellcheck disable=SC2086  # row is a list of options
        ncu_metrics "79d2dd5 seesaw=$schedule $row" \
          "$stalls,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active" \
          env FLASH_MLA_SM90_SEESAW=$schedule scratch/ss-flash-mla-bench $row
      done
    done
    # Where head's stalls sit: the SASS lines with the most samples of a reason.
    ncu_source "$OUT/head-source.csv" scratch/head-flash-mla-bench --batch 128 --seqlen 16384 --h-q 128 --s-q 2
    for r in stall_no_inst stall_barrier; do
      python3 docs/experiments/top_stalls.py "$OUT/head-source.csv" $r 15 || true
    done
    timeout 100 scratch/trace-flash-mla-phases "h128" 2>&1 | tail -60
    ;;
  build5)
    tested kw s24-k-wait-under-pv.patch
    ;;
  run5)
    mkdir -p "$OUT"
    gpu_suite kw
    ab_grids head kw
    ;;
  run6)
    mkdir -p "$OUT"
    for row in "--kv fp8-tensor --seqlen 16384 --h-q 16 --s-q 1" "--kv fp8-tensor --seqlen 8192 --h-q 32 --s-q 1" \
      "--kv fp8 --seqlen 8192 --h-q 16 --s-q 1" "--kv dense --seqlen 8192 --h-q 16 --s-q 1"; do
      # shellcheck disable=SC2086  # row is a list of options
      ncu_metrics "head b=128 $row" "$stalls" scratch/head-flash-mla-bench --batch 128 $row
    done
    ncu_source "$OUT/fp8-source.csv" scratch/head-flash-mla-bench --batch 128 --kv fp8-tensor --seqlen 16384 --h-q 16 \
      --s-q 1
    for r in stall_no_inst stall_barrier; do
      python3 docs/experiments/top_stalls.py "$OUT/fp8-source.csv" $r 8 || true
    done
    ;;
  build7)
    tested see s24-seesaw.patch -DCMAKE_CUDA_FLAGS=-DFLASH_MLA_SEESAW=1
    ;;
  run7)
    mkdir -p "$OUT"
    # The dense 16-bit tests only (the FP8 formats keep consumer_piece), each group under its own timeout.
    gtest_groups see 'GpuDecode.*:GpuGraph.*:GpuValidation.*-GpuDecode.LargeBatchShortSequences' 'PageSizes/*'
    ab_many ab-see.txt 1 head see
    ;;
  build8)
    build seetrace s24-seesaw.patch "-DFLASH_MLA_TRACE=ON -DCMAKE_CUDA_FLAGS=-DFLASH_MLA_SEESAW=1" flash-mla-phases
    build trace - "-DFLASH_MLA_TRACE=ON" flash-mla-phases
    ;;
  run8)
    timelines trace seetrace
    ;;
  *)
    sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | grep '^#' >&2
    exit 2
    ;;
esac
