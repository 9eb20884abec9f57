#!/usr/bin/env bash
# Session 35's device calls (run from the repository root; binaries in scratch/, carried with
# `carry: ["scratch"]`; OUT=$OUT there). Usage: s35-run.sh STEP. Results: PERFORMANCE.md's session 35 entry;
# raw output: docs/experiments/s35-device-output.txt.
# Call 1 was s34-run.sh's next and next2: the narrow per-block stamps (free -> issued ~1000 cycles: the producer
# read the block table after the stage's wait) and s34-early-free.patch (within noise, 16384 h16 s1 per tensor
# 1.026-1.036x slower: dropped).
# pf: every TMA producer (narrow, dense serial, dense FP8) reads the block's table entries before its stage's wait
# (the seesaw's producer already did); measured as s35-table-early.patch on 3859344, landed as the commit after it
# (the patch file removed; REV=that commit with no patch builds the same kernels). pftrace: the same in a
# -DFLASH_MLA_TRACE build. Call 2: free -> issued 1013 -> 395 cycles; h_q=16 FP8 rows 0.981-1.005x (2 passes).
# Call 3: suite passed; bf16 16-64-row rows 0.966-0.987x (1 pass), seesaw rows 0.988-1.000x, perf grid 0.958-1.000x.
set -euo pipefail
# shellcheck source=docs/experiments/variants.sh
source "$(dirname "${BASH_SOURCE[0]}")/variants.sh"  # sets ROOT, cd there
OUT=${OUT:-s35-out}
mkdir -p "$OUT"

case ${1:-} in
  build)
    # (here; PF_REV=the landing commit) pf's bench, tests and trace flash-mla-phases, head's bench (3859344).
    REV=${PF_REV:?the landed commit} build pf - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" \
      flash-mla-bench flash_mla_gpu_tests
    REV=$PF_REV build pftrace - "-DFLASH_MLA_TRACE=ON -DFLASH_MLA_BUILD_CLI=ON" flash-mla-phases
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
  *)
    echo "usage: $0 build|call2|call3" >&2
    exit 2
    ;;
esac
