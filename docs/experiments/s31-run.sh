#!/usr/bin/env bash
# Session 31's device calls (run from the repository root; binaries in scratch/, carried with
# `carry: ["scratch"]`; OUT=$OUT there). Usage: s31-run.sh STEP. Output of the calls as run:
# docs/experiments/s31-device-output.txt. head, eq, eq2, trh, treq2: s30-run.sh next-build.
# call 2: fp8 = issue 7's standing on head (the memory-bound rows, bf16 next to both FP8 layouts, with the copy
#   ceilings and the eager/host columns of 50bd2c6, their first GPU run); then session 30's next2 without fb
#   (call 1 dropped fb): eq2's GPU suite, its 16-bit tests on the seesaw, a 2-pass A/B of head, eq and eq2, the
#   piece change in trh and treq2.
#   Predicted (session 30): if eq's per-block loss was the pair loop's code, eq2's blocks run as head's (trace
#   median within 1 %), the piece change as eq's (~5.3 us): 1024 h128 s1 -1 ... -2 %, b=256 512 h16 s1 -1.5
#   ... -2 %, the long rows within +-0.5 %. FP8 (sessions 11-14, other calls): per-tensor h16 s1 1.68-1.76x
#   bf16, h16 s2 and h32 s1 ~1.4x, 33-64 rows ~1.0x (dense kernel); with-scale ~0.85x of per-tensor.
#   Measured (call 2): eq2 lost (0 ... +1.9 %, b=256 512 h16 s1 -1.6 %), its blocks +1 %; with-scale FP8 ran
#   SLOWER than bf16 (16384 h16 s1 715 against 565 us; per-tensor 330).
# call3: ws = the narrow kernel for FP8 with scale up to 16 rows (branch narrow-with-scale, 708fb23; built in
#   /tmp/n here): its GPU suite, head against ws on FP8 rows (bf16, with-scale, per-tensor), memcheck and
#   synccheck of the with-scale FP8 tests. Predicted: with-scale h16 s1 at 1.05-1.15x per-tensor's time (the
#   score side: four Pᵀ per block, the scale fold; 656 bytes a token against 576), so 16384 h16 s1 ~350-380 us
#   (715 on the dense kernel), 1.5-1.6x bf16; per-tensor unchanged (+-1 %); 32+ rows unchanged.
#   Measured (calls 3-4): call 3 trapped (memcheck: misaligned shared address in the producer's TMA; the
#   scales' destination was 16-byte aligned, 128 fixed it); call 4: GPU suite 95 passed, 1 failed (the new
#   test's 32/64-row shapes, on the dense kernel; by its comment that kernel rounds dequantised values to bf16
#   and the spread put them at 64x SPEC's input scale: inferred), memcheck and synccheck 0 errors; with scale
#   16384 h16 s1 716 -> 410 us (per tensor 316: 1.30x per tensor, not 1.05-1.15x; bf16 548 in call 3), 8192
#   h16 s1 361 -> 206, 1024 h16 s1 51.9 -> 32.8, b=1 64k 35.1 -> 26.5, b=64 512 h16 s1 28.7 -> 20.1; per-tensor
#   and 32-row rows unchanged.
# call4: ws (main, 0a4f1dc: the test's dense shapes at u in [-1, 1)), wsA (16-row Qᵀ tiles, four Pᵀ slots
#   instead of two), wsB (wsA + each group's Pᵀ from one f16 product): FP8 tests of each, a 2-pass A/B on
#   the with-scale h_q=16 rows. Predicted: wsA -2 ... -5 % if the two slots stall the score warpgroups, else
#   +-1 %; wsB a further -2 ... -4 % (~40 fewer instructions of the score warpgroups' ~1100 per block).
#   Measured (calls 5-8): FP8 tests of all three passed; wsA 0.992-1.010x of ws, wsB 0.974-0.989x on the 16-row
#   rows (b=256 512 h16 s1 0.998x), 0.993-1.003x elsewhere; wsB's memcheck, synccheck and GPU suite passed; ncu:
#   with scale 87.9 M instructions against per tensor's 61.6 M (cycles 324 k against 242 k). Landed (0812b73).
# next-build (here, ~4 min) / next (~8 min): the next session's call. The two with-scale patches landed in
#   session 32 (all pages: 503b0fe; 32 rows: 862255d, with the test's 32-row spread at 2^±2) and were removed
#   from docs/experiments, so next-build reproduces them only at REV=48868e0 with `git show 862255d` /
#   `git show 503b0fe` as the patches. head = HEAD (84d8750 or later: the review's
#   fixes, unrun on a GPU: the divisor clamp, the shared helpers, and the tests that now also run 16 rows (the
#   with-scale narrow kernel) and ZeroAndNaNScales); wsP = HEAD + s31-with-scale-all-pages.patch (the narrow
#   kernel with scale for every page size of 16+ row copies, not only multiples of 64). head's GPU suite, wsP's
#   FP8 tests, memcheck and synccheck; with scale at pages 64/16/32/48 on both; issue 7's standing on FlashMLA's
#   h_q=16 rows (bf16, both FP8 layouts). Predicted: everything passes; wsP's page-16/32/48 rows at page 64's
#   time +-3 % (head runs them on the dense kernel, ~1.75x slower). Land the patch if so.
#   w32 = HEAD + s31-with-scale-32-rows.patch (built on branch ws32 in session 31, reviewed, unmeasured): with
#   scale on the narrow kernel's 32-row form (17-32 rows: h16 s2, h32 s1): one Sᵀ chain (registers), Pᵀ of
#   scale groups 0 and 1 in the block's stage's RoPE box once Q·Kᵀ has read it, groups 2 and 3 in two slots;
#   its FP8 tests (h16 s2 and h32 s1 cases now run it), sanitizers, a 2-pass A/B on FlashMLA's h_q=16 rows
#   with scale. Predicted: the 32-row rows (s_q 2) at 1.15-1.35x per tensor's time (16384 h16 s2 ~480-560 us
#   against the dense kernel's ~718: 1.3-1.5x faster); the 16-row rows unchanged (+-1 %). The patches stack
#   (all-pages on top of 32-rows applies).
# next2 (~6 min): s5 = HEAD + s31-five-stages.patch (built and reviewed in session 31, unmeasured): per tensor
#   with 16 rows, five stages instead of four (two in flight), room made by 16-row Qᵀ tiles and each block's Pᵀ
#   written into its own stage's RoPE box once every warp's Q·Kᵀ has read it (a named barrier); its FP8 tests,
#   sanitizers, a 2-pass A/B on the per-tensor h_q=16 rows; then issue 7's standing on FlashMLA's h_q=16 rows
#   (bf16 and both FP8 layouts, head). Session 11's timelines had a 32-row score warpgroup ~1500 cycles per own
#   block waiting for its stage. Predicted: the 16-row per-tensor rows -2 ... -5 % (16384 h16 s1 at ~1.8x
#   bf16, issue 7's target), the 32-row rows unchanged. Conflicts with the 32-rows patch (both reshape
#   SharedStorage): land one, rebase the other.
set -euo pipefail
# shellcheck source=docs/experiments/variants.sh
source "$(dirname "${BASH_SOURCE[0]}")/variants.sh"  # sets ROOT, cd there
OUT=${OUT:-s31-out}
mkdir -p "$OUT"

fp8_rows() {
  local bin=$1 row
  for row in "16384 16 1" "16384 16 2" "16384 32 1" "16384 16 4" "16384 64 1" "8192 16 1" "4096 128 1"; do
    # shellcheck disable=SC2086  # row is three words
    set -- $row
    timeout 120 "$bin" --batch 128 --seqlen "$1" --h-q "$2" --s-q "$3" --kv dense,fp8,fp8-tensor --check-rows 8 \
      --quiet 2>&1 | tail -n +1
  done
}

case ${1:-} in
  call2)
    fp8_rows scratch/head-flash-mla-bench >"$OUT/fp8.txt" 2>&1 || true
    grep -v "^ *$" "$OUT/fp8.txt" | head -80
    gpu_suite eq2
    FLASH_MLA_SM90_SCHEDULE=seesaw dense_tests eq2
    ab_many ab-eq2.txt 2 head eq eq2
    phase_rows "trh treq2" "b128 1024 h128 s1" "b256 512 h16 s1"
    ;;
  call3)
    gpu_suite ws
    for row in "128 16384 16 1" "128 8192 16 1" "128 8192 8 2" "128 1024 16 1" "1 65536 16 1" "4 4096 16 1" \
      "64 512 16 1" "128 8192 16 2"; do
      # shellcheck disable=SC2086  # row is four words
      set -- $row
      for name in head ws; do
        echo "== $name b=$1 $2 h$3 s$4"
        timeout 60 "scratch/$name-flash-mla-bench" --batch "$1" --seqlen "$2" --h-q "$3" --s-q "$4" \
          --kv dense,fp8,fp8-tensor --check-rows 8 --quiet --no-ceilings 2>&1 | grep -E "sm90|rror" || true
      done
    done
    sanitize ws "Formats/Sm90FP8.*/fp8:-*LargeBatch*:*MatchesReference*:*EveryPageSize*" memcheck synccheck
    ;;
  call4)
    # As run, a loop of its own wrote these logs as $OUT/NAME-fp8.txt (s31-device-output.txt's names).
    for name in ws wsA wsB; do gtest_groups "$name" 'Formats/Sm90FP8.*'; done
    OUT=$OUT/a timeout 300 bash scripts/ab.sh -p 2 \
      -a "--grid flashmla,short,perf --only h_q=16 --kv fp8 --check-rows 8 --quiet --no-ceilings" \
      ws=scratch/ws-flash-mla-bench wsA=scratch/wsA-flash-mla-bench wsB=scratch/wsB-flash-mla-bench || true
    ;;
  next-build)
    build head - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench flash_mla_gpu_tests
    build wsP s31-with-scale-all-pages.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    build w32 s31-with-scale-32-rows.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    build s5 s31-five-stages.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    for name in head wsP w32 s5; do git worktree remove --force "/tmp/variant-src-$name"; done
    ;;
  next)
    gpu_suite head
    for name in wsP w32; do
      gtest_groups "$name" 'Formats/Sm90FP8.*'
      sanitize "$name" "Formats/Sm90FP8.*/fp8:-*LargeBatch*:*MatchesReference*" memcheck synccheck
    done
    OUT=$OUT/a timeout 200 bash scripts/ab.sh -p 2 \
      -a "--grid flashmla --only h_q=16 --kv fp8 --check-rows 8 --quiet --no-ceilings" \
      head=scratch/head-flash-mla-bench w32=scratch/w32-flash-mla-bench || true
    for name in head wsP; do
      echo "== $name"
      timeout 120 "scratch/$name-flash-mla-bench" --batch 128 --seqlen 8192 --h-q 16 --s-q 1 --kv fp8 \
        --page-size 64,16,32,48 --check-rows 8 --quiet --no-ceilings 2>&1 | grep -E "sm90|rror" || true
    done
    ;;
  next2)
    gtest_groups s5 'Formats/Sm90FP8.*'
    sanitize s5 "Formats/Sm90FP8.*/fp8tensor:-*LargeBatch*:*MatchesReference*" memcheck synccheck racecheck
    OUT=$OUT/a timeout 200 bash scripts/ab.sh -p 2 \
      -a "--grid flashmla,perf --only h_q=16 --kv fp8-tensor --check-rows 8 --quiet --no-ceilings" \
      head=scratch/head-flash-mla-bench s5=scratch/s5-flash-mla-bench || true
    timeout 300 scratch/head-flash-mla-bench --grid flashmla --only h_q=16 --kv dense,fp8,fp8-tensor --check-rows 8 \
      --quiet >"$OUT/fp8-flashmla.txt" 2>&1 || true
    grep -E "ceilings|sm90" "$OUT/fp8-flashmla.txt"
    ;;
  *)
    echo "usage: $0 call2|call3|call4|next-build|next|next2" >&2
    exit 2
    ;;
esac
