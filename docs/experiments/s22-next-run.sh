#!/usr/bin/env bash
# Session 22's hand-over: the next session's first device calls (written in session 22; both ran in
# session 23, call 1: docs/PERFORMANCE.md; the full-tiles form was not landed):
#   bash docs/experiments/s22-next-run.sh build            # CPU machine: into scratch/ (~6 min)
#   OUT=$OUT bash docs/experiments/s22-next-run.sh trace   # GPU, carry ["scratch"]: ~1 min
#   OUT=$OUT bash docs/experiments/s22-next-run.sh qf      # GPU, carry ["scratch"]: ~5 min
#
# trace: why the query tile by TMA (s22-q-by-tma.patch) made b=1 64k 14 % slower. flash-mla-phases of
# the head and of the patch (trace builds, -DFLASH_MLA_TRACE=ON) on b=1 65536 h16 s1 (one piece per
# CTA, 48 of the tile's 64 rows past s_q) and b=128 1024 h128 s1 (full tiles, piece changes): when each
# CTA's first Q tile is ready and its first block starts, and the piece change. If the TMA tile lands
# late only where the box is mostly out of bounds, qf below is the form to land.
#
# qf: s22-q-by-tma.patch with s22-q-by-tma-full-tiles.patch on top (the TMA tile only for tiles whose 64
# rows are all live). GPU suite, then a 2-pass A/B against the head on the perf and short grids.
# Expected: b=128 1024 h128 s1 -2 ... -4 %, b=16 1024 s16 -1 ... -2.5 %, 16- and 32-row rows unchanged;
# land it unless a row loses more than noise (the full patch ran the long b=128 rows -0.3 ... +1.4 %,
# which may be code placement).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

# shellcheck source=docs/experiments/variants.sh
source "$ROOT/docs/experiments/variants.sh"  # build, gpu_suite, ab_grids

case "${1:-}" in
  build)
    export PATH=/usr/local/cuda/bin:$PATH
    mkdir -p scratch
    build head - "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    build phhead - "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
    build phq s22-q-by-tma.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_TRACE=ON" flash-mla-phases
    build qf s22-q-by-tma.patch,s22-q-by-tma-full-tiles.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" \
      flash-mla-bench flash_mla_gpu_tests
    ;;
  trace)
    OUT=${OUT:-s22-next-out}
    mkdir -p "$OUT"
    for b in phhead phq; do
      for study in "b1 65536" "b128 1024 h128"; do
        echo "== $b: $study"
        timeout 120 "scratch/$b-flash-mla-phases" "$study" 2>&1 | tee -a "$OUT/trace-$b.txt" | tail -25
      done
    done
    ;;
  qf)
    OUT=${OUT:-s22-next-out}
    mkdir -p "$OUT"
    gpu_suite qf
    ab_grids head qf
    ;;
  *)
    sed -n 2,18p "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
