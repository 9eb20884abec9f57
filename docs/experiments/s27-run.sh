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
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=docs/experiments/variants.sh
source "$ROOT/docs/experiments/variants.sh"
OUT=${OUT:-s27-out}
mkdir -p "$OUT"

case ${1:-} in
  first)
    for sel in "flashmla h_q=64" "flashmla h_q=32"; do
      OUT=$OUT/${sel// /-} timeout 150 bash scripts/ab.sh -p 1 \
        -a "--grid ${sel%% *} --only ${sel#* } --check-rows 8 --quiet --no-ceilings" \
        new=scratch/new-flash-mla-bench pp=scratch/pp-flash-mla-bench || true
    done
    for schedule in seesaw serial; do
      echo "== timelines, $schedule"
      FLASH_MLA_SM90_SCHEDULE=$schedule timeout 100 scratch/tr-flash-mla-phases "b128 1024 h128" 2>&1 | tail -40 ||
        true
    done
    for schedule in seesaw serial; do
      FLASH_MLA_SM90_SCHEDULE=$schedule timeout 100 ncu --kernel-name regex:decode_kernel --launch-skip 1 \
        --launch-count 1 --metrics sass__inst_executed_per_opcode --print-metric-instances details \
        scratch/new-flash-mla-bench --batch 128 --seqlen 4096 --h-q 128 --s-q 1 --iters 3 --no-ceilings \
        --no-check --quiet >"$OUT/op-$schedule.txt" 2>&1 || true
    done
    filter=$(sed -n "s/^ *filter='\(.*\)'$/\1/p" scripts/gpu_check.sh | head -n 1)
    sanitize new "$filter" memcheck synccheck initcheck
    ;;
  bar)
    filter=$(sed -n "s/^ *filter='\(.*\)'$/\1/p" scripts/gpu_check.sh | head -n 1)
    sanitize bar "$filter" synccheck
    FLASH_MLA_SM90_SCHEDULE=serial sanitize bar "$filter" synccheck
    gpu_suite bar
    ab_many ab-bar.txt 2 new bar
    ;;
  tr2)
    for schedule in seesaw serial; do
      for row in "b128 1024 h128" "b128 4096 h128"; do
        echo "== $row, $schedule"
        FLASH_MLA_SM90_SCHEDULE=$schedule timeout 100 scratch/tr2-flash-mla-phases "$row" 2>&1 || true
      done
    done
    ;;
  seesaw64)
    for sel in "flashmla h_q=64" "flashmla h_q=32"; do
      OUT=$OUT/${sel// /-} timeout 170 bash scripts/ab.sh -p 1 \
        -a "--grid ${sel%% *} --only ${sel#* } --check-rows 8 --quiet --no-ceilings" \
        bar=scratch/bar-flash-mla-bench seesaw=scratch/seesaw-flash-mla-bench || true
    done
    for schedule in seesaw serial; do
      for row in "b64 256..1024 h16 s4" "b4 mixed h16 s4"; do
        echo "== $row, $schedule"
        FLASH_MLA_SM90_SCHEDULE=$schedule timeout 60 scratch/tr2-flash-mla-phases "$row" 2>&1 || true
      done
    done
    ;;
  *)
    sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | grep '^#' >&2
    exit 2
    ;;
esac
