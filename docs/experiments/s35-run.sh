#!/usr/bin/env bash
# Session 35's device calls (run from the repository root; binaries in scratch/, carried with
# `carry: ["scratch"]`; OUT=$OUT there). Usage: s35-run.sh STEP. Results: PERFORMANCE.md's session 35 entry;
# raw output: docs/experiments/s35-device-output.txt.
# Call 1 was s34-run.sh's next and next2: the narrow per-block stamps (free -> issued ~1000 cycles: the producer
# read the block table after the stage's wait) and s34-early-free.patch (within noise, 16384 h16 s1 per tensor
# 1.026-1.036x slower: dropped).
# pf: every TMA producer (narrow, dense serial, dense FP8) reads the block's table entries before its stage's wait
# (the seesaw's producer already did); measured as s35-table-early.patch on 3859344, landed as 154aa95 (the patch
# file removed; REV=154aa95 with no patch builds the same kernels). pftrace: the same in a
# -DFLASH_MLA_TRACE build. Call 2: free -> issued 1013 -> 395 cycles; h_q=16 FP8 rows 0.981-1.005x (2 passes).
# Call 3: suite passed; bf16 16-64-row rows 0.966-0.987x (1 pass), seesaw rows 0.988-1.000x, perf grid 0.958-1.000x.
# Calls 4-6: standing, clocks and ncu (L2 sectors); call 7: np (no L2 promotion) dropped; call 8: rb (23e589c).
# Calls 5-8 ran their ncu lines as inline copies of ncu_metrics (variants.sh), which now prints the same.
set -euo pipefail
# shellcheck source=docs/experiments/variants.sh
source "$(dirname "${BASH_SOURCE[0]}")/variants.sh"  # sets ROOT, cd there
OUT=${OUT:-s35-out}
mkdir -p "$OUT"

case ${1:-} in
  build)
    # (here) pf's bench, tests and trace flash-mla-phases (154aa95), head's bench (3859344).
    REV=154aa95 build pf - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench flash_mla_gpu_tests
    REV=154aa95 build pftrace - "-DFLASH_MLA_TRACE=ON -DFLASH_MLA_BUILD_CLI=ON" flash-mla-phases
    REV=3859344 build head - "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    for name in pf pftrace head; do git worktree remove --force "/tmp/variant-src-$name"; done
    ;;
  call2)
    # The stamps of both (the narrow kernel's free -> issued should drop from ~1000 cycles to ~100), then a 2-pass
    # A/B against head on FlashMLA's h_q=16 rows in both FP8 layouts (the narrow kernel, 16 and 32 rows).
    # Predicted: the narrow stage turnaround ~900 cycles shorter, the score warps' stage wait down from ~1200
    # cycles a block; FP8 rows -3 ... -8 % (the card's copy ceiling bounds it: at 166 us b=128 8192 h16 s1 per
    # tensor reads 3.6 TB/s against 4.27).
    for name in trace pftrace; do
      echo "== $name"
      timeout 60 "scratch/$name-flash-mla-phases" fp8 2>&1 | grep -E "^fp8|free -> issued|stage wait|stage freed"
    done
    ab_names a 2 250 "--grid flashmla --only h_q=16 --kv fp8-tensor,fp8 --check-rows 8 --quiet --no-ceilings" head pf
    rm -rf "$OUT/a/ab"
    ;;
  call3)
    # pf's whole GPU suite (every producer changed), then 1-pass A/Bs against head: FlashMLA's 8192-token rows in
    # bf16 (16..64 rows: the dense serial producer; 128 and 256: the seesaw's, unchanged, the control) and per
    # tensor (64 rows and up: the dense FP8 producer), and PERF.md's rows (bf16, small batches). Predicted:
    # within +-1 % but for the narrow rows (-0.5 ... -2 %, call 2).
    gpu_suite pf
    ab_names b 1 200 "--grid flashmla --only seqlen=8192 --kv dense,fp8-tensor --check-rows 8 --quiet --no-ceilings" \
      head pf
    ab_names c 1 100 "--grid perf --check-rows 8 --quiet --no-ceilings" head pf
    rm -rf "$OUT/b/ab" "$OUT/c/ab"
    ;;
  call4)
    # Standing on pf (154aa95's kernels): FlashMLA's grid in bf16 (against PERF.md's H200 FlashMLA column) and its
    # h_q=16 rows in both FP8 layouts (issue 7: FP8 over bf16 in the same run), then the dense kernel's per-CTA
    # phase studies at 16 and 64 rows (b=128 8192 h16 s1, b=132 4096 h16 s4) for trace (3859344) and pftrace: where
    # the serial dense path still waits.
    timeout 200 scratch/pf-flash-mla-bench --grid flashmla --check-rows 8 --quiet >"$OUT/standing-bf16.txt" 2>&1 || true
    cat "$OUT/standing-bf16.txt"
    timeout 120 scratch/pf-flash-mla-bench --grid flashmla --only h_q=16 --kv fp8-tensor,fp8 --check-rows 8 --quiet \
      --no-ceilings >"$OUT/standing-fp8.txt" 2>&1 || true
    grep -E "sm90|rror" "$OUT/standing-fp8.txt"
    for name in trace pftrace; do
      echo "== $name"
      timeout 60 "scratch/$name-flash-mla-phases" "b128 8192 h16 s1" 2>&1 | head -60 || true
      timeout 60 "scratch/$name-flash-mla-phases" "b132 4096 h16 s4" 2>&1 | head -40 || true
    done
    ;;
  call5)
    # Is the FP8 16-row form held by the card's power cap or by its memory path? The SM clock and power while
    # single rows replay (bf16 and per tensor at 16384, 16/32/64 rows), then ncu at base clock (fixed clocks:
    # no cap) for DRAM throughput and duration of bf16 and per tensor at 8192 h16 s1 and bf16 8192 h64 s1.
    # Predicted: per tensor at 16 rows replays at the cap below bf16's clock; under ncu per tensor reaches a
    # lower DRAM share than bf16 (its stage waits say the copies are late, not the consumers slow).
    for row in "--h-q 16 --s-q 1 --kv dense" "--h-q 16 --s-q 1 --kv fp8-tensor" "--h-q 16 --s-q 2 --kv fp8-tensor" \
      "--h-q 32 --s-q 1 --kv dense" "--h-q 64 --s-q 1 --kv dense"; do
      # shellcheck disable=SC2086  # row is a list of options
      replay_clocks pf scratch/pf-flash-mla-bench --batch 128 --seqlen 16384 $row --iters 5000
    done
    m='gpu__time_duration.sum,sm__cycles_elapsed.max,dram__throughput.avg.pct_of_peak_sustained_elapsed'
    m+=',dram__bytes_read.sum,lts__t_sectors_srcunit_tex_op_read.sum'
    for row in "--h-q 16 --s-q 1 --kv dense" "--h-q 16 --s-q 1 --kv fp8-tensor" "--h-q 64 --s-q 1 --kv dense"; do
      # shellcheck disable=SC2086  # row is a list of options
      ncu_metrics "ncu $row" "$m" scratch/pf-flash-mla-bench --batch 128 --seqlen 8192 $row
    done
    ;;
  call6)
    # Call 5's ncu put 24.1 M L2 read sectors (773 MB) on the narrow kernel's 604 MB of per-tensor cache at 8192
    # h16 s1 (23.0 sectors a token, 18 needed) while bf16 read exactly its bytes: which layouts and copies read
    # more from L2 than they use. Per 8192 h16 s1 (8192 h64 s1 for the dense kernel's FP8 producer): sectors and
    # requests read, DRAM bytes, duration. Predicted: only the 576-byte rows (per tensor) over-read, from the
    # fifth box (channels 512..639, 64 of them past the row) or the rows' 64-byte misalignment.
    m='gpu__time_duration.sum,dram__bytes_read.sum,lts__t_sectors_srcunit_tex_op_read.sum'
    m+=',lts__t_requests_srcunit_tex_op_read.sum'
    for row in "--h-q 16 --kv dense" "--h-q 16 --kv fp8-tensor" "--h-q 16 --kv fp8-tensor --page-size 16" \
      "--h-q 16 --kv fp8" "--h-q 64 --kv fp8-tensor"; do
      # shellcheck disable=SC2086  # row is a list of options
      ncu_metrics "ncu $row" "$m" scratch/pf-flash-mla-bench --batch 128 --seqlen 8192 --s-q 1 $row
    done
    ;;
  build7)
    # (here) np = 154aa95 + s35-fp8-no-promotion.patch (host code only: the FP8 maps without L2 promotion).
    REV=154aa95 build np s35-fp8-no-promotion.patch "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    git worktree remove --force /tmp/variant-src-np
    ;;
  call7)
    # Call 6: every FP8 map reads more L2 sectors than its bytes (per tensor narrow 23.0 a token for 18, with scale
    # 26.7 for 20.5, the dense FP8 producer 21.3 for 18) and bf16, whose maps have no L2 promotion, reads exactly
    # its bytes. The FP8 maps promote to 256 bytes (session 13: 0.7-1.9 % faster than none then). np drops it: its
    # sectors, then a 2-pass A/B against pf on FlashMLA's h_q=16 FP8 rows. Predicted: np's sectors at the bytes
    # (the over-read is the promotion's), and np 0 ... +2 % slower (session 13's sign), or faster now that the
    # narrow kernel's stage turnaround is shorter.
    m='gpu__time_duration.sum,dram__bytes_read.sum,lts__t_sectors_srcunit_tex_op_read.sum'
    m+=',lts__t_requests_srcunit_tex_op_read.sum'
    for name in pf np; do
      for row in "--h-q 16 --kv fp8-tensor" "--h-q 16 --kv fp8" "--h-q 64 --kv fp8-tensor"; do
        # shellcheck disable=SC2086  # row is a list of options
        ncu_metrics "ncu $name $row" "$m" "scratch/$name-flash-mla-bench" --batch 128 --seqlen 8192 --s-q 1 $row
      done
    done
    ab_names a 2 220 "--grid flashmla --only h_q=16 --kv fp8-tensor,fp8 --check-rows 8 --quiet --no-ceilings" pf np
    rm -rf "$OUT/a/ab"
    ;;
  build8)
    # (here) rb = 154aa95 + s35-rope-box.patch (landed as 23e589c, the file removed; REV=23e589c builds it): per
    # tensor the narrow kernel copies the 64 RoPE bytes with a map of their own (a 64-byte box, unswizzled, in
    # the fifth box's first 4 KiB) instead of a fifth 128-channel box whose upper half lay past the row; the
    # NoPE map is 512 channels wide. ptxas: no spills; the with-scale forms' SASS unchanged.
    REV=23e589c build rb - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench flash_mla_gpu_tests
    git worktree remove --force /tmp/variant-src-rb
    ;;
  call8)
    # (~3 min) rb's FP8 tests, its L2 sectors beside pf's, a 1-pass A/B against pf on FlashMLA's per-tensor
    # h_q=16 rows. Predicted: 18 + promotion's sectors a token (call 7: 23.0 with promotion, 20.0 without, so
    # ~21), and 0 ... -2 % on the 16-row rows (fewer bytes through L2 and into shared memory).
    gtest_groups rb 'Formats/Sm90FP8.*' 'GpuFuzz*'
    m='gpu__time_duration.sum,dram__bytes_read.sum,lts__t_sectors_srcunit_tex_op_read.sum'
    for name in pf rb; do
      ncu_metrics "ncu $name" "$m" "scratch/$name-flash-mla-bench" --batch 128 --seqlen 8192 --s-q 1 --h-q 16 \
        --kv fp8-tensor
    done
    ab_names a 1 70 "--grid flashmla --only h_q=16 --kv fp8-tensor --check-rows 8 --quiet --no-ceilings" pf rb
    rm -rf "$OUT/a/ab"
    ;;
  next-build)
    # (here, ~4 min) For the next session: pf = 154aa95 (the parent of the RoPE box), rb = 23e589c (it landed on
    # call 8's single pass).
    REV=154aa95 build pf - "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    REV=23e589c build rb - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench flash_mla_gpu_tests
    for name in pf rb; do git worktree remove --force "/tmp/variant-src-$name"; done
    ;;
  next)
    # (~8 min) What 23e589c landed on one pass for: racecheck on narrow-only tests, memcheck and synccheck on the
    # FP8 tests, then a 2-pass A/B against pf on FlashMLA's h_q=16 FP8 rows (with scale: unchanged SASS, the
    # control). Predicted: sanitizers clean; per tensor -0.5 ... -2 % (call 8: 0.968-1.017x), with scale within
    # noise.
    narrow_racecheck rb
    sanitize rb "Formats/Sm90FP8.*:-*LargeBatch*:*MatchesReference*" memcheck synccheck
    ab_names a 2 220 "--grid flashmla --only h_q=16 --kv fp8-tensor,fp8 --check-rows 8 --quiet --no-ceilings" pf rb
    rm -rf "$OUT/a/ab"
    ;;
  next2)
    # (~3 min) The small grid's per-tensor h_q=16 rows, pf against rb, 1 pass. Predicted within +-1 % (short
    # pieces: the fifth box is a small part of a call's time there).
    ab_names b 1 120 "--grid small --only h_q=16 --kv fp8-tensor --check-rows 8 --quiet --no-ceilings" pf rb
    rm -rf "$OUT/b/ab"
    ;;
  *)
    echo "usage: $0 build|call2|call3|call4|call5|call6|build7|call7|build8|call8|next-build|next|next2" >&2
    exit 2
    ;;
esac
