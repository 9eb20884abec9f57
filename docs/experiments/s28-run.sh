#!/usr/bin/env bash
# Session 28's device calls after s27-run.sh next and next3 (run from the repository root; binaries in scratch/
# from `build`, carried with `carry: ["scratch"]`; OUT=$OUT there). Usage: s28-run.sh STEP. Output of the
# calls as run: docs/experiments/s28-device-output.txt.
# build (here, ~8 min): new = eec3623 (release bench and GPU tests), tmao = b8ef943 (final output tiles by TMA
#   tensor stores), qc = d28bea5 (and the next Q tile by TMA after a staged output); tr4 / tr5 = trace builds
#   of b8ef943 / d28bea5. (Calls 3-4 ran tr3, eec3623 with b8ef943's trace stamps and no other change: not a
#   commit.)
# timelines (~10 s): per-CTA timelines with the piece change's and the first epilogue's steps, b=128 1024 h128
#   s1 on both schedules, and three rows of one piece per CTA.
# tmao (~5 min): tmao's GPU suite, its 16-bit tests with every call on the seesaw, a 2-pass A/B of new and tmao.
# qc (~6 min): qc's GPU suite, a 2-pass A/B of new, tmao and qc, 1 pass on FlashMLA's h_q 64 and 128 rows.
# sanitize (~2 min): memcheck and synccheck of qc over gpu_check.sh's reduced matrix; its 16-bit tests on the
#   seesaw.
# pt (~3.5 min): pt = HEAD + s28-partials-by-tma.patch (split pieces' fp32 partials by TMA tensor stores; built
#   by build-pt), its GPU suite and a 1-pass A/B of new, qc and pt. Ran once (call 9): suite passed, b=16 1024
#   s16 -2.5 % and b=4 mixed -1.7 % against qc, but b=1 64k +2.7 %: not landed.
# next-build (here, ~8 min) / next (~3.5 min) / next2 (~4.5 min) / next3 (~5 min): the next session's calls. head = HEAD; qf1 =
#   HEAD + s28-q-first-by-tma.patch (a tile whose 64 rows are all live loads every Q tile by TMA, the first at
#   the CTA's start too; the q map's descriptor prefetched); qa = HEAD + s28-q-all-by-tma.patch (qf1, and a
#   partial last tile loads its live rows by TMA with a box of their size, q_tail, zeroing the rest with
#   shared stores); ptf = HEAD + s28-partials-by-tma-full-tiles.patch (split pieces' partials by TMA for full
#   tiles); tr6 = qa's trace build. (s28-q-first-and-partials-full-tiles.patch = qf1 + ptf, for a later
#   combination.)
#   next: the GPU suites of qa and ptf, qa's per-CTA timelines of four rows.
#   next2: a 2-pass A/B of head, qf1, qa and ptf on the perf and short grids.
#   next3: qa's memcheck and synccheck, its 16-bit tests on the seesaw, 1 pass on FlashMLA's h_q 64 and 128
#   rows and the small grid's s_q 4 rows.
#   Predicted: qf1 moves the first block ~1.5-2 us earlier where tiles are full (the first Q tile took
#   ~4.2 us to issue as cp.async): b=64 256..1024 s4, b=4 mixed and b=16 1024 s16 -3 ... -6 %, 1024 h16 s4
#   and 1024 h128 s1 -2 ... -3 %, long rows within +-1 %, 16- and 32-row rows unchanged; qa as qf1, and the
#   16- and 32-row rows' start ~0.5-1 us earlier (b=1 64k, b=64 512 s2, 1024 h16 s1 -1 ... -3 %); ptf as pt
#   where tiles are full (b=4 mixed -1.7 %, b=16 1024 s16 -2.5 %), b=1 64k at head's time. Sessions 22-24
#   lost 1-6 % on long rows with a TMA first Q tile (code, as far as they could tell): land only what loses
#   on no row beyond noise.
set -euo pipefail
# shellcheck source=docs/experiments/variants.sh
source "$(dirname "${BASH_SOURCE[0]}")/variants.sh"  # sets ROOT, cd there
OUT=${OUT:-s28-out}
mkdir -p "$OUT"

case ${1:-} in
  build)
    REV=eec3623 build new - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench flash_mla_gpu_tests
    REV=b8ef943 build tmao - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench flash_mla_gpu_tests
    REV=d28bea5 build qc - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench flash_mla_gpu_tests
    REV=b8ef943 build tr4 - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
    REV=d28bea5 build tr5 - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
    ;;
  build-pt)
    REV=d28bea5 build pt s28-partials-by-tma.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" \
      flash-mla-bench flash_mla_gpu_tests
    ;;
  next-build)
    build head - "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    build qf1 s28-q-first-by-tma.patch "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    build qa s28-q-all-by-tma.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    build ptf s28-partials-by-tma-full-tiles.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" \
      flash-mla-bench flash_mla_gpu_tests
    build tr6 s28-q-all-by-tma.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
    for name in head qf1 qa ptf tr6; do git worktree remove --force "/tmp/variant-src-$name"; done
    ;;
  next)
    gpu_suite qa
    gpu_suite ptf
    for row in "b1 65536 h16 s1" "b64 512 h16 s2" "b64 256..1024 h16 s4" "b128 1024 h128 s1"; do
      timeout 60 scratch/tr6-flash-mla-phases "$row" 2>&1 | grep -E "us/call|CTAs|epilogue|piece change" || true
    done
    ;;
  next2)
    ab_many ab-next.txt 2 head qf1 qa ptf
    ;;
  next3)
    sanitize qa "$(gpu_check_filter)" memcheck synccheck
    FLASH_MLA_SM90_SCHEDULE=seesaw dense_tests qa
    ab_select "flashmla h_q=64" head qa
    ab_select "flashmla h_q=128" head qa
    ab_select "small s_q=4" head qa
    ;;
  timelines)
    for name in tr4 tr5; do
      schedule_timelines "$name" "b128 1024 h128 s1" 2>&1 | grep -E "^==|us/call|piece change|epilogue" || true
    done
    for row in "b64 256..1024 h16 s4" "b64 512 h16 s2" "b128 1024 h16 s1"; do
      timeout 60 scratch/tr5-flash-mla-phases "$row" 2>&1 | grep -E "us/call|epilogue|block interval" || true
    done
    ;;
  tmao)
    gpu_suite tmao
    FLASH_MLA_SM90_SCHEDULE=seesaw dense_tests tmao
    ab_many ab-tmao.txt 2 new tmao
    ;;
  qc)
    gpu_suite qc
    ab_many ab-qc.txt 2 new tmao qc
    ab_select "flashmla h_q=64" new tmao qc
    ab_select "flashmla h_q=128" new qc
    ;;
  pt)
    gpu_suite pt
    OUT=$OUT/a timeout 120 bash scripts/ab.sh -p 1 -a "--grid perf,short --check-rows 8 --quiet --no-ceilings" \
      new=scratch/new-flash-mla-bench qc=scratch/qc-flash-mla-bench pt=scratch/pt-flash-mla-bench
    ;;
  sanitize)
    sanitize qc "$(gpu_check_filter)" memcheck synccheck
    FLASH_MLA_SM90_SCHEDULE=seesaw dense_tests qc
    ;;
  *)
    sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | grep '^#' >&2
    exit 2
    ;;
esac
