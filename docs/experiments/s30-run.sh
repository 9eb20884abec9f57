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
#   round). At the producer's 40 registers it spilled 56 bytes, so the patch sets kProducerRegs = 48: IT
#   NEVER FINISHED its first row (call 4 timed out at 480 s). By the arithmetic, 2 * 128 * 232 + 128 * 48 =
#   65,536 > the 64,512 the CTA holds from its launch, so the consumers' setmaxnreg.inc never returns
#   (inferred, not traced). config.hpp now asserts the budget. Unmeasured.
# build-os / os: lqos = lq + s29-one-staging-loop.patch (SASS 113.8 -> 110.4 KiB serial, 104.1 -> 100.5
#   seesaw); its GPU suite; a 2-pass A/B of head, lq and lqos. Measured (call 5): lqos/head 1024 h128 s1
#   +2.2 %, 1024 h16 s4 +1.1 %, 1024 h16 s1 +0.7 %, b=256 512 h16 s1 -0.7 %: dropped.
# Also kept, unbuilt here: s30-release-once.patch (the partial's release written once after both store paths of
#   the piece loop; same behaviour, SASS -0.3 KiB): A/B it against head before landing (code layout).
# next-build (here, ~5 min with the compiler cache warm) / next (~8 min) / next2 (~8 min): the next session's calls.
#   head = HEAD; fb = HEAD + s30-first-block-first.patch (the serial schedule's TMA producer issues the CTA's
#   first block before walking the blocks, from first_piece: the schedule row in one round of loads, then
#   both candidate first pieces' lengths, split counts and first-block table entries in one more, a word per
#   lane, gathered by shuffles; the walk skips that block; no spills; SASS 116.9 -> 121.2 KiB serial, the
#   seesaw's unchanged); eq (s29-early-q.patch) for ncu; trh / trfb trace builds.
#   next: fb's GPU suite and memcheck (with GpuDecode.GarbageScheduleRowReadsNothing, 78bec05's test, first run
#   on a GPU there); a 2-pass A/B of head and fb; the start of four serial rows in trh and
#   trfb; ncu (base clock) of head and eq: cycles, instructions, no_instruction and barrier stalls per issue
#   at b=128 4096 h128 s1 and b=16 1024 s16 (seesaw) and b=4 mixed (serial): is eq's per-block loss (+3.6 %
#   cycles per block in session 30's trace build) instruction fetch?
#   next2: 1 pass of head and fb on the small grid's s_q 1 and 4 rows (fb is for small batches); eq2's GPU
#   suite, its 16-bit tests on the seesaw, a 2-pass A/B of head, eq and eq2, and the trace builds' piece change
#   at b=128 1024 h128 s1 and b=256 512 h16 s1. eq2 = HEAD + s30-early-q-by-producer.patch (eq included, the Q
#   copies issued by producer warp 3 on a message from consumer 1's thread 0 (the sequence in shared memory
#   and one arrival on s.q_free), so that the consumers' pair loop holds only the message: the seesaw's pair
#   loop 1732 instructions in head, 1803 in eq, 1753 in eq2). An experiment on eq's per-block loss: it
#   SPILLS 18-42 bytes in the producer's walk set-up (once per CTA; the producer region at 40 registers
#   spilled whenever a third producer branch was added, as fb's warp-1 form did), so it cannot land as it
#   is. Predicted, if the loss was the pair loop's code: eq2's blocks as head's (trace median within 1 %),
#   the piece change as eq's (~5.3 us), so 1024 h128 s1 -1 ... -2 %, b=256 512 h16 s1 -1.5 ... -2 %, the long
#   rows within +-0.5 %.
#   Predicted, fb: the producer's first copies ~0.8 us earlier (2.27 us after the first entry at b=1 64k in
#   session 30's trl); the first block then follows Q ready (4.38 in trh) or the copies, so: b=1 64k -1.5 ...
#   -2.5 %, b=64 512 s2 -2 ... -3 %, b=256 512 h16 s1 and 1024 h16 s1 -1 ... -2 %, the 64-row full-tile
#   serial rows (1024 h16 s4, b=64 256..1024 s4, b=4 mixed; the start there is the Q tiles' and first
#   blocks' bytes) 0 ... -1 %, the seesaw rows and the long rows within +-0.5 %.
#   eq under ncu: if fetch, no_instruction per issue up ~0.05-0.1 with instructions within 1 %.
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
  next-build)
    build head - "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    build fb s30-first-block-first.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    build eq s29-early-q.patch "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    build eq2 s30-early-q-by-producer.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" \
      flash-mla-bench flash_mla_gpu_tests
    build treq2 s30-early-q-by-producer.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" \
      flash-mla-phases
    build trh - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
    build trfb s30-first-block-first.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
    for name in head fb eq eq2 trh trfb treq2; do git worktree remove --force "/tmp/variant-src-$name"; done
    ;;
  next)
    gpu_suite fb
    ab_many ab-fb.txt 2 head fb
    phase_rows "trh trfb" "b1 65536 h16 s1" "b64 512 h16 s2" "b256 512 h16 s1" "b128 1024 h16 s4"
    m=sm__cycles_elapsed.max,smsp__inst_executed.sum
    m=$m,smsp__average_warps_issue_stalled_no_instruction_per_issue_active.ratio
    m=$m,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio
    for row in "--batch 128 --seqlen 4096 --h-q 128 --s-q 1" "--batch 16 --seqlen 1024 --h-q 16 --s-q 16" \
      "--batch 4 --seqlens 4641,45118,1730,1696 --h-q 16 --s-q 4"; do
      for name in head eq; do
        # shellcheck disable=SC2086  # row is a list of options
        ncu_metrics "$name $row" "$m" "scratch/$name-flash-mla-bench" $row
      done
    done
    sanitize fb "$(gpu_check_filter):GpuDecode.GarbageScheduleRowReadsNothing" memcheck
    ;;
  next2)
    ab_select "small s_q=1" head fb
    ab_select "small s_q=4" head fb
    gpu_suite eq2
    FLASH_MLA_SM90_SCHEDULE=seesaw dense_tests eq2
    ab_many ab-eq2.txt 2 head eq eq2
    phase_rows "trh treq2" "b128 1024 h128 s1" "b256 512 h16 s1"
    ;;
  *)
    echo "usage: $0 build|sc|build-sc2|sc2|build-os|os|next-build|next|next2" >&2
    exit 2
    ;;
esac
