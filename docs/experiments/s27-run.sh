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
# next-build (here, ~4 min) / next / next2 / next3 (the next session's calls, ~8, ~7 and ~4 min):
#   new = HEAD; ffb33 = HEAD + s27-seesaw-first-block.patch + s27-seesaw-33.patch (the grouped producer
#   requests a one-row-tile CTA's second block once its first has landed, as the serial producer has since
#   session 15, and the seesaw runs from 33 rows per KV head); news / ffbs = new / ffb33 with every call on
#   the seesaw (wrappers); nowg = HEAD + s27-no-whole-groups.patch (bench only); tr2 / trf = trace builds of
#   HEAD / ffb33.
#   next: a 2-pass A/B of new, ffb33, news, ffbs on the perf and short grids; ffb33's GPU suite.
#   next2: ffb33's 16-bit tests with every call on the seesaw, synccheck and memcheck of ffb33 over
#   gpu_check.sh's reduced matrix; 1-pass A/Bs of new and ffb33 on FlashMLA's h_q 64 and 32 rows and the
#   small grid's s_q 4 rows.
#   next3: per-CTA timelines: b=128 1024 h128 s1 on both schedules (tr2: the piece change's parts) and two
#   short 64-row rows on ffb33 (trf); a 1-pass A/B of new and nowg on the perf and short grids and
#   FlashMLA's h_q 128 rows.
#   Predicted: ffbs's short 64-row rows (h16 s4 at 256..1024 tokens, b=4 mixed) ~2 us faster than news's
#   (the seesaw's first block at 8.1 us against the serial schedule's 5.8, session 27's timelines), so
#   ffb33 -1 ... -3 % on the uniform 64-row rows of FlashMLA's grid and within +-2 % elsewhere. nowg: the
#   piece change at 1024 h128 s1 (~11 us more than a block) is a start-up-like burst because every CTA
#   changes pieces at once; staggered cuts with partials and a combine: -3 ... +3 % on the b=128 h128 s1
#   rows (a guess either way), other rows within +-1 % where whole groups did not apply.
set -euo pipefail
# shellcheck source=docs/experiments/variants.sh
source "$(dirname "${BASH_SOURCE[0]}")/variants.sh"  # sets ROOT, cd there
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
    build nowg s27-no-whole-groups.patch "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    build tr2 - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
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
    ab_many ab-next.txt 2 new ffb33 news ffbs
    gpu_suite ffb33
    ;;
  next2)
    FLASH_MLA_SM90_SCHEDULE=seesaw dense_tests ffb33
    sanitize ffb33 "$(gpu_check_filter)" synccheck memcheck
    for sel in "flashmla h_q=64" "flashmla h_q=32" "small s_q=4"; do ab_select "$sel" new ffb33; done
    ;;
  next3)
    schedule_timelines tr2 "b128 1024 h128"
    # ffb33's first block on the short 64-row rows (session 27: seesaw 8.10 / 7.81 us, serial 5.79 / 5.50).
    for row in "b64 256..1024 h16 s4" "b4 mixed h16 s4"; do
      timeout 60 scratch/trf-flash-mla-phases "$row" 2>&1 | grep -E "us/call|CTAs|block interval" || true
    done
    ab_select perf new nowg
    ab_select short new nowg
    ab_select "flashmla h_q=128" new nowg
    ;;
  *)
    sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | grep '^#' >&2
    exit 2
    ;;
esac
