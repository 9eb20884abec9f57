#!/usr/bin/env bash
# Session 40's device calls, for session 41 (session 40 had no device time: the session's budget had been spent
# by session 39, which it continues). Binaries built on the CPU machine into scratch/ by `bash
# docs/experiments/s40-run.sh build` (~5 min on 2 cores), xz-compressed there (pack_binaries) and unpacked on the
# device by each call (carry ["scratch"]; ~6.7 MiB). Each call prints the commit `build` ran at
# (scratch/s40-build-rev.txt): rebuild if it is not the checkout's HEAD.
#   hd   HEAD at build time (flash-mla-bench, flash_mla_gpu_tests)
#   w7   b5ef0a9, word 7 counted by a thread per part (flash-mla-bench; the schedule timing of call1)
#   fa   HEAD + s40-fp8-scale-f16-tiles.patch: FP8 with scale on the dense kernel (33+ query rows) with f16
#        tiles of code x scale (one HMUL2 a pair after the e4m3 -> f16 conversion, against bf16 tiles' six
#        instructions a pair today) and the bf16 RoPE channels converted to f16 in place. A measurement only: a
#        scale over ~146 overflows f16 and one under 2^-24 flushes (Sm90FP8.PowerOfTwoRescaleIsExact fails).
#   fb   HEAD + s40-fp8-scale-block-exp.patch: fa without overflow for any scale: each block's tiles hold its
#        values times 2^-e (e from the block's largest RoPE value and scale, over its tokens inside the sequence,
#        so that the largest lands in [2^14, 2^15); held within a piece while the block's own is at most 8 below,
#        never more than 64 below the piece's largest); the RoPE copy moves to the first raw barrier, the
#        producer warpgroup meets once more a block (kBlockExp), the consumers multiply the block's scores by 2^e
#        and fold the change of e into alpha. 16-bit and per-tensor kernels' SASS identical to HEAD's.
set -euo pipefail
# shellcheck source=docs/experiments/variants.sh
source "$(dirname "${BASH_SOURCE[0]}")/variants.sh"  # sets ROOT, cd there
out_dir s40-out

# The binaries' commit, and the device's unpacked copies of them.
start_call() {
  echo "built at $(cat scratch/s40-build-rev.txt 2>/dev/null || echo '?'); HEAD $(git rev-parse --short HEAD)"
  unpack_binaries
}

case ${1:-} in
  build)
    rm -f scratch/{hd,w7,fa,fb}-flash*  # no binary of an earlier build survives a failed one
    mkdir -p scratch
    git rev-parse --short HEAD >scratch/s40-build-rev.txt
    build hd - "" flash-mla-bench flash_mla_gpu_tests
    REV=b5ef0a9 build w7 - "" flash-mla-bench
    build fa s40-fp8-scale-f16-tiles.patch "" flash-mla-bench flash_mla_gpu_tests
    build fb s40-fp8-scale-block-exp.patch "" flash-mla-bench flash_mla_gpu_tests
    pack_binaries
    du -sh scratch
    ;;
  call1)
    # (~8 min) (1) hd's whole GPU suite: Sm90FP8.PowerOfTwoRescaleIsExact, GpuSchedule.NegativeLengthsMatchHost-
    # Words and the 64-row cases of Sm90FP8.OutOfPoolPageReadsAsZeros and EveryPageSize have not run on a GPU.
    # Predicted: passes. (2) fb's whole GPU suite (what landing it needs). Predicted: passes. (3) The schedule
    # timing session 39 left: `sched us` of w7 (a thread per part) and hd (a warp per part of more than 256
    # sequences) on b=5000 x 64 tokens h128 s4 (16 parts: hd's warp path) and b=4096 x 64 h16 s1 (132 parts of
    # ~31: threads in both). Predicted: hd several us below w7 on the first, equal on the second.
    start_call
    gpu_suite hd
    gpu_suite fb
    sched_times "w7 hd" "--batch 5000 --seqlen 64 --h-q 128 --s-q 4" "--batch 4096 --seqlen 64 --h-q 16 --s-q 1"
    ;;
  call2)
    # (~7 min) (1) A 2-pass A/B of hd, fa and fb on FlashMLA's s_q=2 rows with FP8 with scale (32 query rows: the
    # narrow kernel, unchanged, the control; 64, 128 and 256 rows: the dense kernel). Predicted: fa 10-15 % faster
    # than hd on the 64-256-row rows (the producer's dequantisation from ~900 to ~390 instructions a thread a block
    # by the SASS; per tensor, with ~1 instruction a pair, runs at 0.97-0.98x bf16 against with scale's
    # 0.82-0.83x, session 39), fb within 3 % of fa (~275 more producer instructions a block, ~90 of them not
    # taken, and one barrier), the 32-row rows within +-1 %. (2) hd's and fb's three formats on two 64-row rows
    # (session 39 call 3 measured bf16 / per tensor / with scale there; a failed check prints its FAIL line).
    # Predicted: fb's with scale within ~5 % of its per tensor. (3) fa's FP8 tests. Predicted:
    # PowerOfTwoRescaleIsExact fails at 64 rows (k = +20 overflows f16, k = -20 flushes), the rest pass.
    start_call
    ab_names abf 2 240 "--grid flashmla --kv fp8 --only s_q=2 --check-rows 8 --quiet --no-ceilings" hd fa fb
    for name in hd fb; do
      for row in "--h-q 32 --s-q 2" "--h-q 16 --s-q 4"; do
        # shellcheck disable=SC2086  # row is a list of options
        timeout 60 "scratch/$name-flash-mla-bench" --batch 128 --seqlen 4096 $row --kv dense,fp8-tensor,fp8 \
          --check-rows 8 --quiet --no-ceilings 2>&1 | grep -E "^b=|FAIL" | sed "s/^/$name /" || true
      done
    done
    gtest_groups fa "*Sm90FP8*"
    ;;
  call3)
    # (~5 min) memcheck and synccheck of fb on two FP8-with-scale tests whose 64-row cases run the dense kernel's TMA
    # and gather producers (its new named barrier and shared maxima). Predicted: clean.
    start_call
    sanitize fb "Formats/Sm90FP8.OutOfPoolPageReadsAsZeros/fp8:Formats/Sm90FP8.EveryPageSize/fp8" memcheck synccheck
    ;;
  *)
    echo "usage: $0 build|call1|call2|call3" >&2
    exit 2
    ;;
esac
