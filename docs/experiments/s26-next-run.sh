#!/usr/bin/env bash
# Session 26's device calls (run from the repository root; binaries in scratch/, carried to the device with
# `carry: ["scratch"]`; OUT=$OUT there). Usage: s26-next-run.sh STEP.
# build (here, ~4 min): land (HEAD: the grouped seesaw for more than 128 rows per KV head and the F2FP
#   conversions), hint and hint1k (s26-mbarrier-hint.patch, -DFLASH_MLA_MBARRIER_HINT=65536 / 1000: every
#   mbarrier wait passes try_wait a suspend-time hint, which ptxas turns into TRYWAIT, NANOSLEEP.SYNCS,
#   PHASECHK per retry instead of a bare TRYWAIT loop), ab3 and ab4 (s26-narrow-a-buffers.patch,
#   -DFLASH_MLA_NARROW_A_BUFFERS=3 / 4: the narrow FP8 kernel's score warpgroups keep 3 or 4 batches of
#   Q·Kᵀ wgmma in flight instead of 2, one A fragment buffer each; 32 rows at most 3, where 4 spill).
#   scratch/head-* is ee871dd's bench (the serial schedule only, shifted conversions).
# verify (~6 min): land's GPU suite, its 16-bit tests with every call on the seesaw, ab4's FP8 tests, a
#   2-pass A/B of head, land, hint and hint1k on the perf and short grids.
#   Predicted: land = head except 16384 h128 s2 (-3 ... -4 %); hint: fewer instructions issued in the
#   seesaw (session 25: +30 % over the serial schedule, spin loops the guess), 0 ... -3 % on the 256-row row.
# more (~6 min): 1-pass A/B of head, land, ab3, ab4 on FlashMLA's h_q 16 rows in per-tensor FP8, and land,
#   ab3, ab4 on its h_q 32 rows; synccheck and memcheck of four of land's dense tests with every call on
#   the seesaw. (Written with hint in the A/B and ncu/clocks of land and hint; cut after verify showed hint
#   equal to land, for the device time left.)
#   Predicted: ab4 -3 ... -10 % on the h_q 16 rows if the score warpgroups' Q·Kᵀ (~3470 cycles per block,
#   9 batches of ~385) waits on the A buffers' wgmma rather than on the tensor pipe.
# next-build / next / next2 (the next session's first two calls, ~7 and ~5 min): HEAD (new) against ee871dd
#   (head), with pp (s26-per-part-schedule.patch: calls of 33-64 rows choose the schedule per part, the
#   seesaw for parts with a piece of 2048+ tokens) and d64 (s26-desc64.patch: wgmma descriptors advanced by
#   one 64-bit add, 2 uniform instructions per wgmma instead of 4). next: new's and pp's GPU suites, new's
#   16-bit tests on the seesaw, a 2-pass A/B of head, new, pp, d64 on the perf and short grids. next2:
#   sanitizers on new, A/Bs of the 33-64-row rows, per-opcode counts of new's schedules, per-CTA timelines
#   of b=128 1024 h128 s1 on both schedules (tr: HEAD's trace build).
#   Predicted: new = head on the rows of 64 rows or fewer, 128-row rows -1 ... -6 %, 16384 h128 s2 -8 ... -10 %;
#   pp = new except the long 64-row rows (16384 h64 s1, b=132 4096 s4: -2 ... -4 %); d64 = new within 1 %.
# probe (~2 min): ncu pipe utilisation, instructions and issue activity of land's narrow FP8 kernel
#   (16384 h16 s1) and of its dense kernel on both schedules (16384 h128 s2).
set -euo pipefail
# The helpers used: build, gpu_suite, dense_tests, gtest_groups, sanitize, ab_many, ncu_metrics.
# shellcheck source=docs/experiments/variants.sh
source "$(dirname "${BASH_SOURCE[0]}")/variants.sh"  # sets ROOT, cd there
OUT=${OUT:-s26-next-out}
mkdir -p "$OUT"

case ${1:-} in
  build)
    build land - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench flash_mla_gpu_tests
    build hint s26-mbarrier-hint.patch "-DFLASH_MLA_BUILD_CLI=ON -DCMAKE_CUDA_FLAGS=-DFLASH_MLA_MBARRIER_HINT=65536" \
      flash-mla-bench
    build hint1k s26-mbarrier-hint.patch "-DFLASH_MLA_BUILD_CLI=ON -DCMAKE_CUDA_FLAGS=-DFLASH_MLA_MBARRIER_HINT=1000" \
      flash-mla-bench
    build ab3 s26-narrow-a-buffers.patch "-DFLASH_MLA_BUILD_CLI=ON -DCMAKE_CUDA_FLAGS=-DFLASH_MLA_NARROW_A_BUFFERS=3" \
      flash-mla-bench
    build ab4 s26-narrow-a-buffers.patch \
      "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON -DCMAKE_CUDA_FLAGS=-DFLASH_MLA_NARROW_A_BUFFERS=4" \
      flash-mla-bench flash_mla_gpu_tests
    ;;
  verify)
    gpu_suite land
    FLASH_MLA_SM90_SCHEDULE=seesaw dense_tests land
    gtest_groups ab4 'Formats/*:GpuFuzz*'
    ab_many ab-land.txt 2 head land hint hint1k
    ;;
  more)
    fp8() {
      local only=$1
      shift
      OUT=$OUT/fp8 timeout 150 bash scripts/ab.sh -p 1 \
        -a "--grid flashmla --kv fp8-tensor --only $only --check-rows 8 --quiet --no-ceilings" "$@" || true
    }
    fp8 h_q=16 head=scratch/head-flash-mla-bench land=scratch/land-flash-mla-bench ab3=scratch/ab3-flash-mla-bench \
      ab4=scratch/ab4-flash-mla-bench
    fp8 h_q=32 land=scratch/land-flash-mla-bench ab3=scratch/ab3-flash-mla-bench ab4=scratch/ab4-flash-mla-bench
    small='GpuDecode.EmptyAndFullyMaskedRowsAreExact:GpuDecode.NaNKeyInsideASplitSequencePropagates'
    small+=':Heads/GpuDecodeMatrix.MatchesReference/hq16_hkv1:Heads/GpuDecodeMatrix.MatchesReference/hq128_hkv1'
    # (Call 5 ran this loop inline, 100 s per tool, logs synccheck.txt and memcheck.txt.)
    FLASH_MLA_SM90_SCHEDULE=seesaw sanitize land "$small" synccheck memcheck
    ;;
  probe)
    # Pipe utilisation (ncu regex metrics, base clock): does a tensor or CUDA-core pipe saturate in the narrow
    # FP8 kernel (16 rows) and in the dense kernel's two schedules (256 rows)?
    pipes='regex:sm__pipe_.*cycles_active.avg.pct_of_peak_sustained_active$'
    pipes+=',sm__cycles_elapsed.max,smsp__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active'
    ncu_metrics "land fp8-tensor 16384 h16 s1" "$pipes" scratch/land-flash-mla-bench --batch 128 --seqlen 16384 \
      --h-q 16 --s-q 1 --kv fp8-tensor
    for schedule in seesaw serial; do
      FLASH_MLA_SM90_SCHEDULE=$schedule ncu_metrics "land $schedule 16384 h128 s2" "$pipes" \
        scratch/land-flash-mla-bench --batch 128 --seqlen 16384 --h-q 128 --s-q 2
    done
    ;;
  next-build)
    # The next session's builds (~4 min here): new = HEAD, head = ee871dd (session 25's serial-only bench),
    # pp = HEAD + s26-per-part-schedule.patch, d64 = HEAD + s26-desc64.patch.
    build new - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench flash_mla_gpu_tests
    REV=ee871dd build head - "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    build pp s26-per-part-schedule.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    build d64 s26-desc64.patch "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    build tr - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
    ;;
  next)
    # The next session's first call (~8 min): a 2-pass A/B of head, new, pp and d64 on the perf and short
    # grids (first, so that a hanging test cannot cost it), new's and pp's GPU suites, new's 16-bit tests
    # on the seesaw.
    ab_many ab-new.txt 2 head new pp d64
    gpu_suite new
    FLASH_MLA_SM90_SCHEDULE=seesaw dense_tests new
    gpu_suite pp
    ;;
  next2)
    # The second call (~7 min): memcheck / synccheck / initcheck of new over gpu_check.sh's reduced matrix
    # (default dispatch: its 128-row calls now on the seesaw), pp's new test under synccheck and memcheck,
    # 1-pass A/Bs of the grids holding the rows pp
    # changes (33-64 rows: FlashMLA's h_q 64 s_q 1 and h_q 32 s_q 2, with their other s_q; PERF.md's b=132
    # 4096 s4), and the per-opcode counts of new's two schedules at 4096 h128 s1.
    filter=$(sed -n "s/^ *filter='\(.*\)'$/\1/p" scripts/gpu_check.sh | head -n 1)
    sanitize new "$filter" memcheck synccheck initcheck
    # pp's mixed-schedule test (both kinds of parts, TMA and gathered pages) under synccheck and memcheck.
    sanitize pp GpuDecode.PerPartScheduleMixesBothSchedules synccheck memcheck
    for sel in "flashmla h_q=64" "flashmla h_q=32" "small b=132"; do
      OUT=$OUT/${sel// /-} timeout 150 bash scripts/ab.sh -p 1 \
        -a "--grid ${sel%% *} --only ${sel#* } --check-rows 8 --quiet --no-ceilings" \
        head=scratch/head-flash-mla-bench new=scratch/new-flash-mla-bench pp=scratch/pp-flash-mla-bench || true
    done
    # Where the 128-row short rows' time goes (4096 h128 s1 0.87x, 1024 h128 s1 0.78x of FlashMLA's
    # PERF.md numbers): HEAD's per-CTA timelines on both schedules (trace build).
    schedule_timelines tr "b128 1024 h128"
    opcode_counts new --batch 128 --seqlen 4096 --h-q 128 --s-q 1
    ;;
  *)
    sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | grep '^#' >&2
    exit 2
    ;;
esac
