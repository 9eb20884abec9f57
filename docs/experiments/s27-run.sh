#!/usr/bin/env bash
# Session 27's device calls (run from the repository root; binaries in scratch/ from s26-next-run.sh next-build,
# carried with `carry: ["scratch"]`; OUT=$OUT there). Usage: s27-run.sh STEP.
# first (~6 min): memcheck / synccheck / initcheck of new (HEAD b15b471) over gpu_check.sh's reduced matrix,
#   1-pass A/Bs of new and pp on FlashMLA's h_q 64 and h_q 32 rows (the 33-64-row calls pp changes), per-CTA
#   timelines of b=128 1024 h128 s1 on both schedules (tr), per-opcode counts of new's two schedules at
#   4096 h128 s1. (s26-next-run.sh next2 without head in the A/Bs and without pp's sanitizer runs: pp was
#   +1.6 ... +1.8 % on the short 64-row rows in session 27's first call.)
# bar (~8 min): scratch/bar-* is HEAD with the named barriers as barrier.sync / barrier.arrive (non-.aligned;
#   src/ptx/barrier.hpp). synccheck over gpu_check.sh's reduced matrix on both schedules, the GPU suite, and a
#   2-pass A/B of new and bar on the perf and short grids.
#   Predicted: synccheck clean (first's synccheck of new failed 6 tests with "Divergent thread(s) in block",
#   and the scratch probe showed bar.sync from two code sites flagged, barrier.sync clean); every row
#   within +-1 % (two instructions per barrier, a few barriers per block).
# tr2 (~2 min): per-CTA timelines (trace build scratch/tr2-flash-mla-phases: the seesaw now stamps its blocks)
#   of b=128 1024 h128 s1 and 4096 h128 s1 on both schedules: where the 128-row rows' fixed time goes.
# seesaw64 (~4 min): 1-pass A/B of bar (default dispatch: the serial schedule up to 64 rows) and bar with every
#   call on the seesaw (scratch/seesaw-flash-mla-bench, a wrapper setting FLASH_MLA_SM90_SCHEDULE) on FlashMLA's
#   h_q 64 and h_q 32 rows; per-CTA timelines of the short 64-row rows on both schedules.
#   Predicted: the seesaw -2 ... -4 % on the uniform 64-row rows (h64 s1, h32 s2), within +-2 % on the ragged
#   ones (all CTAs on one schedule, unlike s26's per-part patch), 32-row rows +0 ... +5 %.
# next-build (here, ~4 min) / next / next2 / next3 (the next session's calls, ~8, ~8 and ~6 min):
#   new = HEAD; ffb33 = HEAD + s27-seesaw-first-block.patch + s27-seesaw-33.patch (the grouped producer
#   requests a one-row-tile CTA's second block once its first has landed, as the serial producer has since
#   session 15, and the seesaw runs from 33 rows per KV head); p16 = HEAD + s27-partials16.patch (split
#   pieces store their normalised O in the output dtype, half the bytes of float32, and the combine reads
#   that); news / ffbs = new / ffb33 with every call on the seesaw (wrappers).
#   next: 2-pass A/B of new, ffb33, p16, ffbs on the perf and short grids; p16's GPU suite.
#   next2: ffb33's GPU suite and its 16-bit tests with every call on the seesaw; 1-pass A/Bs of new, ffb33,
#   p16 on FlashMLA's h_q 64 and 32 rows and the small grid's s_q 4 rows.
#   next3: synccheck and memcheck of ffb33 and p16 over gpu_check.sh's reduced matrix; 1-pass A/B of new,
#   news and ffbs on the short grid (the first block's effect on the seesaw alone); new and p16 on the
#   small grid; ffb33's per-CTA timelines of two short 64-row rows (trf, its trace build).
#   Predicted: ffbs's short 64-row rows (h16 s4 at 256..1024 tokens, b=4 mixed) ~2 us faster than news's
#   (the seesaw's first block at 8.1 us against the serial schedule's 5.8, session 27's timelines), so
#   ffb33 -1 ... -3 % on the uniform 64-row rows of FlashMLA's grid and within +-2 % elsewhere; p16
#   -8 ... -12 % on b=64 256..1024 s4 and b=16 1024 s16 (tails of 4-6 us storing fp32 partials, combines of
#   3-6 us), -5 ... -9 % on b=1 64k and b=4 mixed (the combine 14-28 % of the call), -1 ... -3 % on
#   b=128 1024 h128 s1, and within +-1 % on the b=128 rows of 4096+ tokens.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=docs/experiments/variants.sh
source "$ROOT/docs/experiments/variants.sh"
OUT=${OUT:-s27-out}
mkdir -p "$OUT"

case ${1:-} in
  first)
    # (Ran with 150-s A/B timeouts and the timelines' output cut to its last 40 lines.)
    ab_select "flashmla h_q=64" new pp
    ab_select "flashmla h_q=32" new pp
    schedule_timelines tr "b128 1024 h128"
    opcode_counts new --batch 128 --seqlen 4096 --h-q 128 --s-q 1
    sanitize new "$(gpu_check_filter)" memcheck synccheck initcheck
    ;;
  bar)
    sanitize bar "$(gpu_check_filter)" synccheck
    FLASH_MLA_SM90_SCHEDULE=serial sanitize bar "$(gpu_check_filter)" synccheck
    gpu_suite bar
    ab_many ab-bar.txt 2 new bar
    ;;
  tr2)
    schedule_timelines tr2 "b128 1024 h128" "b128 4096 h128"
    ;;
  seesaw64)
    # (scratch/seesaw-flash-mla-bench: bar's binary with FLASH_MLA_SM90_SCHEDULE=seesaw, a wrapper.)
    ab_select "flashmla h_q=64" bar seesaw
    ab_select "flashmla h_q=32" bar seesaw
    schedule_timelines tr2 "b64 256..1024 h16 s4" "b4 mixed h16 s4"
    ;;
  next-build)
    build new - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench flash_mla_gpu_tests
    build ffb33 s27-seesaw-first-block.patch,s27-seesaw-33.patch \
      "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench flash_mla_gpu_tests
    build p16 s27-partials16.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    build trf s27-seesaw-first-block.patch,s27-seesaw-33.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" \
      flash-mla-phases
    for name in new ffb33; do
      # shellcheck disable=SC2016  # the wrapper's own expansions
      printf '#!/usr/bin/env bash\nFLASH_MLA_SM90_SCHEDULE=seesaw exec "$(dirname "$0")/%s-flash-mla-bench" "$@"\n' \
        "$name" >"scratch/${name:0:3}s-flash-mla-bench"
      chmod +x "scratch/${name:0:3}s-flash-mla-bench"
    done
    ;;
  next)
    ab_many ab-next.txt 2 new ffb33 p16 ffbs
    gpu_suite p16
    ;;
  next2)
    gpu_suite ffb33
    FLASH_MLA_SM90_SCHEDULE=seesaw dense_tests ffb33
    for sel in "flashmla h_q=64" "flashmla h_q=32" "small s_q=4"; do ab_select "$sel" new ffb33 p16; done
    ;;
  next3)
    sanitize ffb33 "$(gpu_check_filter)" synccheck memcheck
    sanitize p16 "$(gpu_check_filter)" synccheck memcheck
    ab_select short new news ffbs
    ab_select small new p16
    # ffb33's first block on the short 64-row rows (trace build trf; session 27: seesaw 8.10 / 7.81 us,
    # serial 5.79 / 5.50).
    for row in "b64 256..1024 h16 s4" "b4 mixed h16 s4"; do
      timeout 60 scratch/trf-flash-mla-phases "$row" 2>&1 | grep -E "us/call|CTAs|block interval" || true
    done
    ;;
  *)
    sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | grep '^#' >&2
    exit 2
    ;;
esac
