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
A="--check-rows 8 --quiet --no-ceilings"

# build NAME PATCHES CMAKE_FLAGS TARGET...: a worktree of HEAD with PATCHES applied in order (comma-separated;
# none: "-"), the targets built, the binaries copied to scratch/NAME-<binary>.
build() {
  local name=$1 patch=$2 flags=$3
  shift 3
  local src=/tmp/s22-next-src-$name out=/tmp/s22-next-build-$name
  rm -rf "$src"
  git worktree prune
  git worktree add -f --detach "$src" HEAD >/dev/null
  if [ "$patch" != - ]; then
    for one in ${patch//,/ }; do git -C "$src" apply "$ROOT/docs/experiments/$one"; done
  fi
  # shellcheck disable=SC2086  # flags is a list of -D options
  cmake -S "$src" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASH_MLA_CUDA=ON $flags >/dev/null
  cmake --build "$out" --target "$@"
  for t in "$@"; do
    case $t in
      flash-mla-bench | flash-mla-phases) cp "$out/cli/$t" "scratch/$name-$t" ;;
      flash_mla_gpu_tests) cp "$out/tests/$t" "scratch/$name-$t" ;;
    esac
  done
}

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
    timeout 220 scratch/qf-flash_mla_gpu_tests >"$OUT/qf-tests.txt" 2>&1 && echo "qf: GPU suite passed" ||
      echo "qf: FAILED"
    grep -E "^\[  FAILED|PASSED|SKIPPED \] [0-9]" "$OUT/qf-tests.txt" | tail -6 || true
    OUT=$OUT/a timeout 300 bash scripts/ab.sh -p 2 -a "--grid perf,short $A" head=scratch/head-flash-mla-bench \
      qf=scratch/qf-flash-mla-bench >"$OUT/ab-qf.txt" 2>&1 || true
    cat "$OUT/ab-qf.txt"
    ;;
  *)
    sed -n 2,18p "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
