#!/usr/bin/env bash
# Session 30's device calls (run from the repository root; binaries in scratch/, carried with
# `carry: ["scratch"]`; OUT=$OUT there). Usage: s30-run.sh STEP. Output of the calls as run:
# docs/experiments/s30-device-output.txt.
# build (here, ~2 min with the compiler cache warm): sc = HEAD + s30-lq-start-prefetch.patch (s29-q-live-rows.patch,
#   lq, plus the first piece's words prefetched into L1: the part's row of the schedule by one producer thread
#   before the barriers' set-up, then, once the row is read, the first and last sequences' lengths and split
#   counts and either candidate first block's block-table entry, so that the producer's three dependent rounds
#   of loads before its first copies become one); trsc = its trace build. head, lq and trl from s29-run.sh
#   next-build.
# sc (~7 min): sc's GPU suite and memcheck; a 2-pass A/B of head, lq and sc; the start of three rows in trl and
#   trsc.
#   Predicted: the producer's first copies issued ~0.5-0.7 us earlier (2.24 us after the first entry at b=1
#   64k h16 s1 in trl, session 30 call 1); the start is bandwidth-bound (all CTAs' first K blocks and Q rows,
#   ~12 MB in ~2.8 us at b=1 64k), so the first block moves by about as much where K, not Q, gates it: b=1 64k
#   and b=64 512 s2 -1.5 ... -2.5 %, b=256 512 h16 s1 and 1024 h128 s1 -0.5 ... -1.5 %, the long rows within
#   +-0.3 %. Risk: the dense kernels' SASS grows 113.8 -> 116.5 KiB (code layout, sessions 23-24).
#   Measured (call 3): wrong. The producer's first copies left later (b=1 64k: 2.27 -> 2.46 us), its start
#   waiting for the row, and the table entry prefetched ~1 us ahead read no faster (1.86 -> 2.08 us after
#   entry for the read): the L1 prefetches (CCTL.E.PF1) bought nothing. sc/head: b=4 mixed -1.5 %, 1024
#   h128 s1 +1.2 %, the rest within +-0.7 %. GPU suite and memcheck passed. Not landed.
# build-sc2 / sc2: sc2 = HEAD + s30-lq-first-piece-one-round.patch (lq, plus the producers' for_each_piece
#   reading the first piece's words for both candidates, and the first block's block-table entry, in one
#   round). At the producer's 40 registers it spilled 56 bytes, so the patch sets kProducerRegs = 48: THAT
#   HANGS (2 * 128 * 232 + 128 * 48 = 65,536 > the 64,512 the CTA holds from its launch, so the consumers'
#   setmaxnreg.inc never returns; call 4 timed out at 480 s). config.hpp now asserts the budget. Unmeasured.
# build-os / os: lqos = lq + s29-one-staging-loop.patch (SASS 113.8 -> 110.4 KiB serial, 104.1 -> 100.5
#   seesaw); its GPU suite; a 2-pass A/B of head, lq and lqos. Measured (call 5): lqos/head 1024 h128 s1
#   +2.2 %, 1024 h16 s4 +1.1 %, 1024 h16 s1 +0.7 %, b=256 512 h16 s1 -0.7 %: dropped.
set -euo pipefail
# shellcheck source=docs/experiments/variants.sh
source "$(dirname "${BASH_SOURCE[0]}")/variants.sh"  # sets ROOT, cd there
OUT=${OUT:-s30-out}
mkdir -p "$OUT"

case ${1:-} in
  build)
    build sc s30-lq-start-prefetch.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    build trsc s30-lq-start-prefetch.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
    for name in sc trsc; do git worktree remove --force "/tmp/variant-src-$name"; done
    ;;
  sc)
    gpu_suite sc
    ab_many ab-sc.txt 2 head lq sc
    phase_rows "trl trsc" "b1 65536 h16 s1" "b256 512 h16 s1" "b128 1024 h128 s1" "b64 512 h16 s2"
    sanitize sc "$(gpu_check_filter)" memcheck
    ;;
  build-sc2)
    build sc2 s30-lq-first-piece-one-round.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" \
      flash-mla-bench flash_mla_gpu_tests
    build trsc2 s30-lq-first-piece-one-round.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
    for name in sc2 trsc2; do git worktree remove --force "/tmp/variant-src-$name"; done
    ;;
  sc2)
    gpu_suite lq
    ab_many ab-sc2.txt 2 head lq sc2
    phase_rows "trl trsc2" "b1 65536 h16 s1" "b64 512 h16 s2" "b128 1024 h128 s1"
    ;;
  build-os)
    build lqos s29-q-live-rows.patch,s29-one-staging-loop.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" \
      flash-mla-bench flash_mla_gpu_tests
    git worktree remove --force /tmp/variant-src-lqos
    ;;
  os)
    gpu_suite lqos
    ab_many ab-os.txt 2 head lq lqos
    ;;
  *)
    echo "usage: $0 build|sc|build-sc2|sc2|build-os|os" >&2
    exit 2
    ;;
esac
