#!/usr/bin/env bash
# Session 33's device calls (run from the repository root; binaries in scratch/, carried with
# `carry: ["scratch"]`; OUT=$OUT there). Usage: s33-run.sh STEP. Calls 1 and 2 were s32-run.sh's next and next2
# (p16 landed as 5b1096e; PERFORMANCE.md's session 33 entry).
# build3 (here, ~5 min) / call3: tri = branch three (the narrow kernel's per-tensor 16-row form with three score
#   warpgroups instead of two, five stages, Qᵀ in 16-row tiles and each block's Pᵀ in its own stage's box 4 after
#   a named barrier; 640 threads, setmaxnreg 144 / 3 x 104 / 24 from 96 at launch; ptxas: 8 bytes spilled in the
#   score warpgroups' piece prologue, none in the block loop). head = scratch/p16-* (main's kernel). tri's FP8
#   tests, memcheck and racecheck on them, then a 2-pass A/B on the per-tensor h_q=16 rows of FlashMLA's grid (its
#   s_q=2 rows, the 32-row form, are the control) and a 1-pass one on the small grid's.
#   Predicted: the 16-row score side (two warpgroups, ~4500 cycles per block of their own, session 11) sets the
#   pace now; a third warpgroup at the same per-block cost would leave the value warpgroup (~2100 busy per
#   block) or the copy as the limit: per tensor h16 s1 b=128 rows -3 ... -10 %; small batches within +-3 %.
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
  *)
    echo "usage: $0 build3|call3" >&2
    exit 2
    ;;
esac
