#!/usr/bin/env bash
# Session 33's device calls (run from the repository root; binaries in scratch/, carried with
# `carry: ["scratch"]`; OUT=$OUT there). Usage: s33-run.sh STEP. Calls 1 and 2 were s32-run.sh's next and next2
# (p16 landed as 5b1096e; PERFORMANCE.md's session 33 entry). Calls 3-6 below; trim landed as 006d602.
# next2's trim2 (s33-trim2.patch) landed in session 34 as b98b20e and the patch was removed: next-build no longer
# applies (REV=b98b20e builds tr2's kernel).
# build3 (here, ~5 min) / call3: tri = branch three (the narrow kernel's per-tensor 16-row form with three score
#   warpgroups instead of two, five stages, Qᵀ in 16-row tiles and each block's Pᵀ in its own stage's box 4 after
#   a named barrier; 640 threads, setmaxnreg 144 / 3 x 104 / 24 from 96 at launch; ptxas: 8 bytes spilled in the
#   score warpgroups' piece prologue, none in the block loop). head = scratch/p16-* (main's kernel). tri's FP8
#   tests, memcheck and racecheck on them, then a 2-pass A/B on the per-tensor h_q=16 rows of FlashMLA's grid (its
#   s_q=2 rows, the 32-row form, are the control) and a 1-pass one on the small grid's.
#   Predicted: the 16-row score side (two warpgroups, ~4500 cycles per block of their own, session 11) sets the
#   pace now; a third warpgroup at the same per-block cost would leave the value warpgroup (~2100 busy per
#   block) or the copy as the limit: per tensor h16 s1 b=128 rows -3 ... -10 %; small batches within +-3 %.
#   Measured: b=128 h16 s1 1.009-1.045x (slower), small grid h16 s1 1.012-1.112x; the 32-row control 0.995-1.010x.
#   Dropped (docs/experiments/s33-three-score.patch). call4: ncu of p16 and tri; call5: issue 7's standing on main.
set -euo pipefail
# shellcheck source=docs/experiments/variants.sh
source "$(dirname "${BASH_SOURCE[0]}")/variants.sh"  # sets ROOT, cd there
OUT=${OUT:-s33-out}
mkdir -p "$OUT"

case ${1:-} in
  build3)
    REV=three build tri - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench flash_mla_gpu_tests
    git worktree remove --force /tmp/variant-src-tri
    ;;
  call3)
    gtest_groups tri 'Formats/Sm90FP8.*'
    sanitize tri "Formats/Sm90FP8.*/fp8_tensor:-*LargeBatch*:*MatchesReference*" memcheck racecheck
    grep -c "narrow" "$OUT/tri-racecheck.txt" || true  # hazards in the narrow kernel (the dense kernel's are known)
    # h_q=16: the s_q=2 rows (32 rows, the other form) are the control.
    OUT=$OUT/a timeout 260 bash scripts/ab.sh -p 2 -t 200 \
      -a "--grid flashmla --only h_q=16 --kv fp8-tensor --check-rows 8 --quiet --no-ceilings" \
      head=scratch/p16-flash-mla-bench tri=scratch/tri-flash-mla-bench || true
    OUT=$OUT/b timeout 100 bash scripts/ab.sh -p 1 -t 60 \
      -a "--grid small --only h_q=16 --kv fp8-tensor --check-rows 8 --quiet --no-ceilings" \
      head=scratch/p16-flash-mla-bench tri=scratch/tri-flash-mla-bench || true
    rm -rf "$OUT/a/ab" "$OUT/b/ab"
    ;;
  call4)
    # Why the third score warpgroup lost: pipes, issue, stall reasons and DRAM throughput of p16 (main) and tri at
    # b=128 8192 h16 s1 per tensor (ncu, base clock; one line each).
    m='regex:sm__pipe_.*cycles_active.avg.pct_of_peak_sustained_active$'
    m+=',sm__cycles_elapsed.max,smsp__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active'
    m+=',dram__throughput.avg.pct_of_peak_sustained_elapsed,smsp__warps_active.avg.per_cycle_active'
    stalls='regex:smsp__average_warps_issue_stalled_.*_per_issue_active.ratio$'
    for name in p16 tri; do
      ncu_metrics "$name pipes" "$m" "scratch/$name-flash-mla-bench" --batch 128 --seqlen 8192 --h-q 16 --s-q 1 \
        --kv fp8-tensor
      ncu_metrics "$name stalls" "$stalls" "scratch/$name-flash-mla-bench" --batch 128 --seqlen 8192 --h-q 16 \
        --s-q 1 --kv fp8-tensor
    done
    ;;
  call5)
    # Issue 7's standing on main (5b1096e = scratch/p16-*): bf16 and both FP8 layouts on FlashMLA's h_q=16 and 32
    # rows, one call (the tables on stdout).
    for h in 16 32; do
      timeout 250 scratch/p16-flash-mla-bench --grid flashmla --only "h_q=$h" --kv dense,fp8,fp8-tensor --check-rows 8 \
        --quiet >"$OUT/standing-h$h.txt" 2>&1 || true
      grep -E "ceilings|sm90|rror" "$OUT/standing-h$h.txt"
    done
    ;;
  build6)
    REV=trim build trim - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench flash_mla_gpu_tests
    git worktree remove --force /tmp/variant-src-trim
    ;;
  call6)
    # trim = branch trim (main + the score warpgroups keep the running column max in registers, and the column
    # scales and limits too but with scale at 32 rows; the vote is one barrier.red.and; the mask is skipped when
    # both of a thread's tokens are below all its columns' limits; setmaxnreg score 128 / producer 24 instead of
    # 120 / 40). head = scratch/p16-* (main's kernel). FP8 tests, three sanitizers, 2-pass A/B at h_q=16.
    # Predicted: per tensor 16 rows -1 ... -3 %, with scale 16 rows -1 ... -2 %, 32 rows 0 ... -1 %.
    # Measured: per tensor s_q=1 0.980-0.994x, with scale s_q=1 0.978-0.993x, s_q=2 0.971-0.985x. Landed (006d602).
    gtest_groups trim 'Formats/Sm90FP8.*'
    sanitize trim "Formats/Sm90FP8.*:-*LargeBatch*:*MatchesReference*" memcheck synccheck racecheck
    grep -c "narrow" "$OUT/trim-racecheck.txt" || true  # hazards in the narrow kernel (the dense kernel's are known)
    OUT=$OUT/a timeout 260 bash scripts/ab.sh -p 2 -t 200 \
      -a "--grid flashmla --only h_q=16 --kv fp8-tensor,fp8 --check-rows 8 --quiet --no-ceilings" \
      head=scratch/p16-flash-mla-bench trim=scratch/trim-flash-mla-bench || true
    rm -rf "$OUT/a/ab"
    ;;
  next-build)
    # The next session's binaries (here, ~8 min): main = HEAD (scratch/trim-* of session 33 hold the same kernel
    # code, without 006d602's comment edits); tr2 = HEAD + s33-trim2.patch (built, reviewed by a helper, no
    # spills, unmeasured).
    build main - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench flash_mla_gpu_tests
    build tr2 s33-trim2.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench flash_mla_gpu_tests
    for name in main tr2; do git worktree remove --force "/tmp/variant-src-$name"; done
    ;;
  next2)
    # (~7 min) tr2 (s33-trim2.patch: P·kPScale straight from exp2 against the reference less log2(kPScale), the
    # column sums set instead of added to zeros, P's reference kept per piece in registers, Qᵀ's descriptor made
    # once and held with 16 rows): FP8 tests, memcheck, synccheck, then 2-pass A/Bs against main at h_q 16 and 32.
    # SASS (here): per tensor 16 rows 480 -> 459 instructions from the k_full wait to the vote, with scale 16 rows
    # 761 -> 735. Predicted: 16-row rows -1 ... -2 %, 32-row rows 0 ... -1 %.
    gtest_groups tr2 'Formats/Sm90FP8.*'
    sanitize tr2 "Formats/Sm90FP8.*:-*LargeBatch*:*MatchesReference*" memcheck synccheck
    ab_names a 2 200 "--grid flashmla --only h_q=16 --kv fp8-tensor,fp8 --check-rows 8 --quiet --no-ceilings" main tr2
    ab_names b 1 100 "--grid flashmla --only h_q=32 --kv fp8-tensor,fp8 --check-rows 8 --quiet --no-ceilings" main tr2
    rm -rf "$OUT/a/ab" "$OUT/b/ab"
    ;;
  next)
    # (~6 min) 1. racecheck on FP8 tests whose every case runs the narrow kernel (16 and 32 rows, pages of 16+),
    # so that no dense-kernel report fills the 100-report display; the option that raises that limit, if any.
    # 2. Issue 7's standing on main beside bf16 (h_q 16 and 32). 3. ncu source counters of main per tensor at h16
    # (b=128 8192 s1) for the score side's next trims (ncu_lines.py against s32-source-counters.txt's per-tensor
    # figures). Predicted: no racecheck hazard in the narrow kernel; per tensor h16 s1 1.70-1.80x bf16.
    compute-sanitizer --help 2>&1 | grep -iE "print-limit|max-err" || true
    narrow='Formats/Sm90FP8.PaddedPagesEqualContiguous*:Formats/Sm90FP8.OutOfPoolPageReadsAsZeros*'
    narrow+=':Formats/Sm90FP8.NaNCodeInsideASequencePropagates*:Formats/Sm90FP8.WideScoreSpreadKeepsSmallProbabilities*'
    narrow+=':Formats/Sm90FP8.QueriesOutsideHalfRangeKeepTheirPrecision*'
    sanitize main "$narrow" racecheck
    echo "racecheck reports naming the narrow kernel: $(grep -c "narrow" "$OUT/main-racecheck.txt" || true)"
    for h in 16 32; do
      timeout 250 scratch/main-flash-mla-bench --grid flashmla --only "h_q=$h" --kv dense,fp8,fp8-tensor \
        --check-rows 8 --quiet >"$OUT/standing-h$h.txt" 2>&1 || true
      grep -E "ceilings|sm90|rror" "$OUT/standing-h$h.txt"
    done
    ncu_source "$OUT/src-main-h16-tensor.csv" scratch/main-flash-mla-bench --batch 128 --seqlen 8192 --h-q 16 --s-q 1 \
      --kv fp8-tensor
    ;;
  *)
    echo "usage: $0 build3|call3|call4|call5|build6|call6|next-build|next|next2" >&2
    exit 2
    ;;
esac
