#!/usr/bin/env bash
# Session 20's hand-over to the next session's first device calls (written in session 20, not yet run):
#   bash docs/experiments/s20-next-run.sh build          # CPU machine: three builds into scratch/ (~10 min)
#   OUT=$OUT bash docs/experiments/s20-next-run.sh tests # GPU, carry ["scratch"]: whole suite on the head,
#                                                        # the combine's GPU tests on the two variants (~4 min)
#   OUT=$OUT bash docs/experiments/s20-next-run.sh ab    # GPU, carry ["scratch"]: 2-pass A/B (~6 min)
# Builds:
#   head  the head: the whole GPU suite has not run since 6406000 (the NaN fix of the CTA-wide lse) and
#         15b15e2 (wider split-warp combine test), which landed after session 20's device time ran out.
#   rows  head + s20-rows-lse-once.patch: measured -1.2 ... -1.6 % on the warp-per-row combine's rows.
#   s16   head with sixteen warps per quarter from 16 average pieces per sequence (was 64): b=4 mixed
#         (101 pieces on its long sequence, 64 CTAs merge them today) and b=8. Prediction: b=4 mixed
#         -3 ... -8 %, b=8 rows +-2 %; session 20's comb16 (every split-warp batch, 2 CTAs per SM, before
#         the per-warp lse) lost up to 78 %, so measure before believing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
case "${1:-}" in
  build)
    export PATH=/usr/local/cuda/bin:$PATH
    mkdir -p scratch
    git worktree prune
    for name in head rows s16; do
      src=/tmp/s20-next-$name
      rm -rf "$src"
      git worktree add -f --detach "$src" HEAD >/dev/null
      case $name in
        rows) git -C "$src" apply "$ROOT/docs/experiments/s20-rows-lse-once.patch" ;;
        s16) sed -i 's/pieces_per_sequence(p) >= 64 ? 16 : 4;/pieces_per_sequence(p) >= 16 ? 16 : 4;/' \
               "$src/src/cuda/combine.cu"
             grep -q ">= 16 ? 16 : 4;" "$src/src/cuda/combine.cu" ;;
      esac
      cmake -S "$src" -B "/tmp/s20-next-build-$name" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASH_MLA_CUDA=ON \
        -DFLASH_MLA_BUILD_TESTS=ON -DFLASH_MLA_BUILD_CLI=ON >/dev/null
      cmake --build "/tmp/s20-next-build-$name" --target flash-mla-bench flash_mla_gpu_tests
      cp "/tmp/s20-next-build-$name/cli/flash-mla-bench" "scratch/$name-bench"
      cp "/tmp/s20-next-build-$name/tests/flash_mla_gpu_tests" "scratch/$name-gpu-tests"
    done
    ;;
  tests)
    OUT=${OUT:-s20-next-out}
    mkdir -p "$OUT"
    timeout 200 scratch/head-gpu-tests >"$OUT/head-tests.txt" 2>&1 && echo "head: GPU suite passed" || echo "head: FAILED"
    grep -E "^\[  FAILED|PASSED|SKIPPED \] [0-9]" "$OUT/head-tests.txt" | tail -6 || true
    for name in rows s16; do
      timeout 100 "scratch/$name-gpu-tests" --gtest_filter='GpuDecode.*:GpuGraph.*:GpuFuzz.*' >"$OUT/$name-tests.txt" 2>&1 \
        && echo "$name: GpuDecode/GpuGraph/GpuFuzz passed" || echo "$name: FAILED"
      grep -E "^\[  FAILED|PASSED" "$OUT/$name-tests.txt" | tail -4 || true
    done
    ;;
  ab)
    OUT=${OUT:-s20-next-out}
    mkdir -p "$OUT"
    OUT=$OUT/ab timeout 520 bash scripts/ab.sh -p 2 -a "--grid small,short --check-rows 8 --quiet --no-ceilings" \
      head=scratch/head-bench rows=scratch/rows-bench s16=scratch/s16-bench >"$OUT/ab.txt" 2>&1 || true
    cat "$OUT/ab.txt"
    ;;
  *)
    sed -n 2,16p "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
