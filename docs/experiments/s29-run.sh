#!/usr/bin/env bash
# Session 29's device calls (run from the repository root; binaries in scratch/ from s28-run.sh next-build and
# `build` here, carried with `carry: ["scratch"]`; OUT=$OUT there). Usage: s29-run.sh STEP. Output of the calls
# as run: docs/experiments/s29-device-output.txt.
# build (here, ~3 min): qb = HEAD + s29-q-tail-once.patch (every Q tile by TMA; a partial tile's live rows by a
#   box of their size, q_tail, its padding rows zeroed by the consumers once at the CTA's first piece and, after
#   a staged output overwrote them, written as zeros by the 64-row box past s_q); trace builds (with the
#   b=256 512 h16 s1 row) tr7 = qb, tr6 = qa (s28-q-all-by-tma.patch), trh = HEAD.
# qb (~6 min): qb's GPU suite and its 16-bit tests on the seesaw; a 2-pass A/B of head, qf1, qa and qb; tr7's
#   timelines of the partial-tile rows.
#   Predicted (from session 29's first A/B, where qa lost 1.2 % to qf1 on b=256 512 h16 s1, two staged pieces
#   per CTA, and won 1.8 % on b=64 512 s2, one piece): qb as qa on the one-piece rows, and as qf1 (within
#   0.5 %) on b=256 512 h16 s1 and 1024 h16 s1. Measured: qb as qa everywhere, b=256 512 h16 s1 +1.4 % (the
#   loss is not the re-zeroing); not landed.
# build-qf1 (here) / qf1 (~7 min): qf1 (s28-q-first-by-tma.patch, rebuilt with its GPU tests): its GPU suite,
#   its 16-bit tests on the seesaw, memcheck and synccheck, 1 pass against head on FlashMLA's h_q 64 and 128
#   rows and the small grid's s_q 4 rows. Landed as cfb6605.
# build-pf (here) / pf (~7 min): qfp = cfb6605 + s29-partials-by-tma-full-tiles.patch (s28-partials-by-tma-full-
#   tiles.patch rebased: split pieces' fp32 partials by TMA tensor stores from the Q tile where its 64 rows are
#   live); its GPU suite; a 2-pass A/B of qf1 (= cfb6605), qfp and qb; 16-bit tests on the seesaw; memcheck.
#   Predicted (session 29's first A/B, ptf against 4e20d8b): b=16 1024 s16 -3 %, b=4 mixed -2 %, the rest
#   within +-0.5 %. Measured: as predicted; landed as 0885f89.
# next-build (here, ~12 min) / next (~7 min) / next2 (~7 min) / next3 (~5 min): the next session's calls.
#   head = HEAD; eq = HEAD + s29-early-q.patch (the next piece's Q tile requested by TMA once the piece's
#   last Q·Kᵀ has read the Q tile, the output or partial boxes staged instead in each consumer's V half of
#   the last block's K stage, whose free arrivals wait for the store's read; on the seesaw only when the
#   piece's block count is even);
#   lq = HEAD + s29-q-live-rows.patch (load_q copies only the tile's live rows and zeroes the padding rows
#   with shared stores: a partial tile's first Q tile, by cp.async, issued 4608 copies, three quarters of
#   them zero-fills at 16 rows); el = both patches; trh / tre / trl = trace builds of head / eq / lq.
#   next: eq's GPU suite and its 16-bit tests on the seesaw; a 2-pass A/B of head, eq, lq and el;
#   timelines of three rows with piece changes and of b=1 64k h16 s1, with the start's steps (the
#   consumers' and the producer's first metadata reads, Q and block copies issued: the line session 29's
#   greps left out).
#   next2: lq's GPU suite, memcheck and synccheck of eq, memcheck of lq, eq's memcheck with every call on the
#   seesaw. next3: eq's racecheck on the serial schedule (it reports the seesaw's published-max hand-offs,
#   session 27); 1 pass of head and eq on FlashMLA's h_q 64 and 128 rows and the small grid's s_q 4 rows.
#   The trace builds spill a few bytes (trh and trl: the FP8-with-scale kernel; tre: also the seesaw kernels,
#   2 bytes); the release builds do not.
#   Predicted, eq: the piece change (last block to the next piece's first, ~6.4 us at b=128 1024 h128 s1)
#   ~2 us shorter where early Q applies: b=128 1024 h128 s1 -1 ... -3 % (half its pieces have an even block
#   count), b=256 512 h16 s1 and 1024 h16 s4 -1 ... -2 %, the long rows (one piece change in hundreds of
#   blocks) within +-0.5 %, the one-piece small-batch rows unchanged. Risk: the serial schedule's next block
#   after a piece change waits for the deferred stage (~0.2-0.6 us for the store's read); code size +4 KiB
#   per kernel (120.4 / 111.4 KiB SASS). lq: the Q tile ready at the start of partial-tile rows ~1-2 us
#   earlier (4.3 us after the first entry at b=256 512 h16 s1 and b=1 64k h16 s1 in session 29's trace of
#   HEAD), but the first block stays gated by the first K blocks' traffic (in HEAD's trace it followed Q
#   ready by ~0.7 us; all CTAs' first blocks, 132 x 72 KiB, take >= 2.3 us at the copy rate): b=1 64k,
#   b=64 512 s2, 1024 h16 s1 and b=256 512 h16 s1 0 ... -2 %, full-tile rows (their Q tiles come by TMA)
#   within +-0.5 %; SASS 113.8 / 104.1 KiB (3 KiB smaller). el: the sum of the two.
set -euo pipefail
# shellcheck source=docs/experiments/variants.sh
source "$(dirname "${BASH_SOURCE[0]}")/variants.sh"  # sets ROOT, cd there
OUT=${OUT:-s29-out}
mkdir -p "$OUT"

case ${1:-} in
  build)
    build qb s29-q-tail-once.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    build tr7 s29-q-tail-once.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
    build tr6 s28-q-all-by-tma.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
    build trh - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
    for name in qb tr7 tr6 trh; do git worktree remove --force "/tmp/variant-src-$name"; done
    ;;
  qb)
    gpu_suite qb
    FLASH_MLA_SM90_SCHEDULE=seesaw dense_tests qb
    ab_many ab-qb.txt 2 head qf1 qa qb
    for row in "b256 512 h16 s1" "b64 512 h16 s2" "b1 65536 h16 s1"; do
      for name in trh tr6 tr7; do
        echo "== $name"
        timeout 60 "scratch/$name-flash-mla-phases" "$row" 2>&1 | grep -E "us/call|CTAs|piece change" || true
      done
    done
    ;;
  build-qf1)
    build qf1 s28-q-first-by-tma.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    git worktree remove --force /tmp/variant-src-qf1
    ;;
  qf1)
    gpu_suite qf1
    FLASH_MLA_SM90_SCHEDULE=seesaw dense_tests qf1
    sanitize qf1 "$(gpu_check_filter)" memcheck synccheck
    ab_select "flashmla h_q=64" head qf1
    ab_select "flashmla h_q=128" head qf1
    ab_select "small s_q=4" head qf1
    ;;
  build-pf)
    build qfp s29-partials-by-tma-full-tiles.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" \
      flash-mla-bench flash_mla_gpu_tests
    git worktree remove --force /tmp/variant-src-qfp
    ;;
  pf)
    gpu_suite qfp
    ab_many ab-pf.txt 2 qf1 qfp qb
    FLASH_MLA_SM90_SCHEDULE=seesaw dense_tests qfp
    sanitize qfp "$(gpu_check_filter)" memcheck
    ;;
  next-build)
    build head - "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    build trh - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
    build eq s29-early-q.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    build tre s29-early-q.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
    build lq s29-q-live-rows.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    build trl s29-q-live-rows.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
    build el s29-early-q.patch,s29-q-live-rows.patch "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    for name in head trh eq tre lq trl el; do git worktree remove --force "/tmp/variant-src-$name"; done
    ;;
  next)
    gpu_suite eq
    FLASH_MLA_SM90_SCHEDULE=seesaw dense_tests eq
    ab_many ab-eq.txt 2 head eq lq el
    phase_rows "trh tre trl" "b128 1024 h128 s1" "b256 512 h16 s1" "b128 1024 h16 s4" "b1 65536 h16 s1"
    ;;
  next2)
    gpu_suite lq
    sanitize eq "$(gpu_check_filter)" memcheck synccheck
    sanitize lq "$(gpu_check_filter)" memcheck
    FLASH_MLA_SM90_SCHEDULE=seesaw sanitize eq "$(gpu_check_filter)" memcheck
    ;;
  next3)
    FLASH_MLA_SM90_SCHEDULE=serial sanitize eq "$(gpu_check_filter)" racecheck
    ab_select "flashmla h_q=64" head eq
    ab_select "flashmla h_q=128" head eq
    ab_select "small s_q=4" head eq
    ;;
  *)
    echo "usage: $0 build|qb|build-qf1|qf1|build-pf|pf|next-build|next|next2|next3" >&2
    exit 2
    ;;
esac
