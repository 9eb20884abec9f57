#!/usr/bin/env bash
# Session 34's device calls (run from the repository root; binaries in scratch/, carried with
# `carry: ["scratch"]`; OUT=$OUT there). Usage: s34-run.sh STEP. Results: PERFORMANCE.md's session 34 entry;
# raw output: docs/experiments/s34-device-output.txt.
# Calls 1 and 2 were s33-run.sh's next and next2 (trim2 landed as b98b20e, its patch removed).
# build3 (here) / call3: off = b98b20e + s34-score-tiles.patch (its first form): per tensor with 16 rows the
#   score warpgroups run P·V's last channel tile (of 8) for their own blocks, into their own part of that tile's
#   Oᵀ on their running max (like their sums), merged by the value warpgroup at the piece's end through 8 KiB of
#   shared memory. Why: call 1's source counters (main, b=128 8192 h16 s1 per tensor) put the score warps'
#   long-scoreboard samples on the k_full wait (~29 % of their samples) and the value warps busy: the value
#   warpgroup sets the pace. head = scratch/tr2-* (b98b20e's kernel code).
#   Predicted: per tensor h16 s1 b=128 rows -5 ... -10 %; s_q=2 and with scale unchanged (the control).
#   Measured: 0.981-0.995x (controls 0.990-1.002x); racecheck reported the partials' writes (fixed in offr).
# build4 / call4: offr, the landed form (ea0a986; the patch file was removed on landing, so build3 and build4
#   no longer run: REV=ea0a986 with no patch builds the same kernel). Measured 0.982-1.001x on the h16 s1 rows,
#   racecheck clean. build7 / call7: own32 (s34-own32.patch, rebased onto 27f4369), dropped. next-build / next:
#   the narrow per-block stamps for the next session.
set -euo pipefail
# shellcheck source=docs/experiments/variants.sh
source "$(dirname "${BASH_SOURCE[0]}")/variants.sh"  # sets ROOT, cd there
OUT=${OUT:-s34-out}
mkdir -p "$OUT"

case ${1:-} in
  build3)
    build off s34-score-tiles.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    git worktree remove --force /tmp/variant-src-off
    ;;
  call3)
    gtest_groups off 'Formats/Sm90FP8.*' 'GpuFuzz*'
    ab_names a 2 250 "--grid flashmla --only h_q=16 --kv fp8-tensor,fp8 --check-rows 8 --quiet --no-ceilings" tr2 off
    rm -rf "$OUT/a/ab"
    sanitize off "Formats/Sm90FP8.*:-*LargeBatch*:*MatchesReference*" memcheck synccheck
    narrow_racecheck off
    ;;
  build4)
    build offr s34-score-tiles.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    git worktree remove --force /tmp/variant-src-offr
    ;;
  call4)
    # offr = off with every score thread arriving on stats_full after its own score_o writes (call 3's
    # racecheck reported the writes, ordered only through reduce_columns' barrier and warp 0's arrive, against
    # the value warpgroup's reads). Tests, sanitizers, a 2-pass A/B against tr2 on the per-tensor h_q=16 rows
    # (its s_q=2 rows, the 32-row form, are the control), then issue 7's standing (bf16 beside both FP8 layouts,
    # h_q=16). Predicted: racecheck clean; the A/B as call 3's (s_q=1 -0.5 ... -2 %).
    gtest_groups offr 'Formats/Sm90FP8.*' 'GpuFuzz*'
    narrow_racecheck offr
    sanitize offr "Formats/Sm90FP8.*:-*LargeBatch*:*MatchesReference*" memcheck synccheck
    ab_names a 2 150 "--grid flashmla --only h_q=16 --kv fp8-tensor --check-rows 8 --quiet --no-ceilings" tr2 offr
    ab_names b 1 50 "--grid short --only h_q=16 --kv fp8-tensor --check-rows 8 --quiet --no-ceilings" tr2 offr
    rm -rf "$OUT/a/ab" "$OUT/b/ab"
    timeout 150 scratch/offr-flash-mla-bench --grid flashmla --only "h_q=16" --kv dense,fp8,fp8-tensor \
      --check-rows 8 --quiet >"$OUT/standing-h16.txt" 2>&1 || true
    grep -E "ceilings|sm90|rror" "$OUT/standing-h16.txt"
    ;;
  call5)
    # offr (= ea0a986's kernel, SASS identical): the small grid's per-tensor h_q=16 rows against tr2 (1 pass; the
    # s_q=4 rows run the dense kernel: the control), then its source counters at b=128 8192 h16 s1 per tensor
    # (the new balance between the score and value warpgroups, against call 1's). Predicted: small batches
    # within +-2 % (their pieces are long; the piece-end merge is once per piece).
    ab_names b 1 150 "--grid small --only h_q=16 --kv fp8-tensor --check-rows 8 --quiet --no-ceilings" tr2 offr
    rm -rf "$OUT/b/ab"
    ncu_source "$OUT/src-offr-h16-tensor.csv" scratch/offr-flash-mla-bench --batch 128 --seqlen 8192 --h-q 16 \
      --s-q 1 --kv fp8-tensor
    ;;
  call6)
    # Call 5's ncu time column (201 us in call 1 for main, 172 for offr, different calls) against the replayed
    # A/B's -1 %: the same-call ncu figures at base clock (cycles, instructions, issue, DRAM) of tr2 and offr at
    # b=128 8192 h16 s1 per tensor, and the SM clock and power while each replays 16384 h16 s1 (nvidia-smi every
    # 50 ms). Predicted: offr 5-15 % fewer cycles at base clock, both at the 700 W cap replayed, offr at a lower
    # clock (energy per block unchanged: the same work moved between warpgroups).
    m='sm__cycles_elapsed.max,smsp__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active'
    m+=',dram__throughput.avg.pct_of_peak_sustained_elapsed'
    m+=',sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active'
    for name in tr2 offr; do
      ncu_metrics "$name" "$m" "scratch/$name-flash-mla-bench" --batch 128 --seqlen 8192 --h-q 16 --s-q 1 \
        --kv fp8-tensor
    done
    for name in tr2 offr tr2 offr; do
      nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader,nounits -lms 50 >"$OUT/smi-$name.txt" &
      smi=$!
      "scratch/$name-flash-mla-bench" --batch 128 --seqlen 16384 --h-q 16 --s-q 1 --kv fp8-tensor --iters 800 \
        --no-ceilings --quiet | grep fp8-tensor
      kill "$smi"
      # the samples at the cap (above 680 W): mean clock and power
      awk -F', ' -v n="$name" '$2 > 680 {k++; c += $1; w += $2}
        END {if (k) printf "%s: %d samples above 680 W, mean clock %.0f MHz, power %.0f W\n", n, k, c / k, w / k}' \
        "$OUT/smi-$name.txt"
    done
    ;;
  build7)
    build own32 s34-own32.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    git worktree remove --force /tmp/variant-src-own32
    ;;
  call7)
    # own32 = ea0a986 + s34-own32.patch: the own channel tile per tensor with 32 rows too. Its partials (8 KiB per
    # warpgroup) do not both fit, so warpgroup 0 stores its partial and maxima and arrives on a named barrier
    # (kOwnMerge), warpgroup 1 syncs there and merges both into the one buffer on the larger max; the column
    # scales and limits go back to shared memory at 32 rows (kColumnRegs; without that 76 bytes spilled). ptxas:
    # 128 registers, no spills, 32 QGMMA (4 in the score code), 16 DEPBAR as before; the 16-row and with-scale
    # forms' SASS unchanged. FP8 tests, fuzz, narrow-only racecheck, then a 2-pass A/B against offr on the
    # per-tensor h_q=32 rows (s_q=1: 32 rows; s_q=2: 64 rows on the dense kernel, the control).
    # Predicted: h32 s1 -3 ... -8 % (the value warpgroup's 32 wgmma per block set the pace at 32 rows, session 11).
    # Measured: h32 s1 0.999-1.034x (slower), s_q=2 control 0.998-1.003x; racecheck reported the stats_m hand-off
    # across barrier.arrive -> barrier.sync (160 lines). Dropped; the patch stays.
    gtest_groups own32 'Formats/Sm90FP8.*' 'GpuFuzz*'
    narrow_racecheck own32
    ab_names a 2 130 "--grid flashmla --only h_q=32 --kv fp8-tensor --check-rows 8 --quiet --no-ceilings" offr own32
    rm -rf "$OUT/a/ab"
    ;;
  next-build)
    # The next session's binary (here, ~3 min): flash-mla-phases of a -DFLASH_MLA_TRACE=ON build of a worktree of
    # HEAD (its narrow kernel stamps every role per block: decode_narrow/kernel.cuh, PhaseEvent;
    # cli/phase_timeline.cpp's study_narrow). The release build's narrow SASS is unchanged by the stamps (checked).
    # In the trace build the per-tensor 16-row form does not spill; the 32-row one spills 16 bytes (with scale
    # ~100: not studied).
    build trace - "-DFLASH_MLA_TRACE=ON -DFLASH_MLA_BUILD_CLI=ON" flash-mla-phases
    git worktree remove --force /tmp/variant-src-trace
    ;;
  next)
    # (~1 min) Why both sides still wait at 16 rows per tensor (call 5: the score warps ~20 % of their samples on
    # the stage wait, the value warps more on Pᵀ than before): per-block stamps of every role, per-tensor FP8 at
    # b=128 8192 and 4096 h16 s1 (16 rows) and 8192 h16 s2 (32 rows; its trace build spills 16 bytes). Predicted:
    # at 16 rows a block period of ~2300-2600 cycles, the stage's turnaround (freed -> landed) close to two periods, so
    # that a score warpgroup's stage lands just after it asks for it; at 32 rows the value warpgroup's P·V close
    # to the period.
    timeout 120 scratch/trace-flash-mla-phases fp8
    ;;
  next-build2)
    # (here, ~3 min) ef = HEAD + s34-early-free.patch: with 16 rows (both layouts) the value warpgroup loads every
    # tile's V (7 or 8 tiles x 2 ldmatrix.x4, 56 or 64 registers) right after its p_full and k_full waits and frees
    # the stage at once, before its rescale and P·V (Pᵀ stays in its slot), so the stage's next copies start about
    # a P·V earlier. The A fragments are regrouped at load time (regrouped per tile, ptxas split every tile's
    # wgmma: C7519), and a fence.proxy.async precedes the arrive (generic reads before the refill's TMA writes).
    # A helper reviewed it (no bug). ptxas 128 registers, no spills; the 32-row forms' SASS unchanged; one
    # WARPGROUP.ARRIVE per tile as before.
    build ef s34-early-free.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    build head - "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    for name in ef head; do git worktree remove --force "/tmp/variant-src-$name"; done
    ;;
  next2)
    # (~6 min) ef's FP8 tests, fuzz, racecheck on narrow-only tests, memcheck, synccheck, then a 2-pass A/B against
    # head on FlashMLA's h_q=16 FP8 rows (s_q=2: 32 rows, unchanged, the control). Predicted: if the stage's
    # turnaround limits (call 5: both sides wait), 16-row rows -2 ... -6 %; if not, within noise.
    gtest_groups ef 'Formats/Sm90FP8.*' 'GpuFuzz*'
    narrow_racecheck ef
    sanitize ef "Formats/Sm90FP8.*:-*LargeBatch*:*MatchesReference*" memcheck synccheck
    ab_names a 2 200 "--grid flashmla --only h_q=16 --kv fp8-tensor,fp8 --check-rows 8 --quiet --no-ceilings" head ef
    rm -rf "$OUT/a/ab"
    ;;
  *)
    echo "usage: $0 build3|call3|build4|call4|build7|call5|call6|call7|next-build|next|next-build2|next2" >&2
    exit 2
    ;;
esac
