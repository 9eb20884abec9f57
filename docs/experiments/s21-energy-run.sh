#!/usr/bin/env bash
# Where a block's energy goes at the power cap (session 21; e1-e3 ran in its call 6, e4 and e5 are new):
#   bash docs/experiments/s21-energy-run.sh build        # CPU machine: head + e1..e5 benches into scratch/ (~20 min)
#   OUT=$OUT bash docs/experiments/s21-energy-run.sh run # GPU, carry ["scratch"]: ~3 min
# Timing-only builds of s21-energy-parts.patch (their results are wrong, so --no-check): e1 no Q·Kᵀ
# wgmma, e2 no P·V wgmma, e3 no copies after a CTA's first two blocks, e4 every block of a piece
# copies the piece's first block (L2 hits: the DRAM reads go, the L2 -> SM and TMA traffic stay), e5
# one contiguous 72 KiB bulk copy per block instead of nine strided 128-byte-wide boxes (same bytes).
# Each row is replayed 4000 times while nvidia-smi samples clock and power every 100 ms. e4 against
# e3 and the head tells whether the DRAM reads or the L2 -> SM traffic draw the power that the copies
# take from the clock (session 21: b=132 4096 s4 ran 180 us at 1425 MHz, e3 124 us at 1935 MHz, both
# at 688-695 W): if L2 -> SM, a TMA multicast to the row tiles of 128+ row calls may pay. e5 against
# the head tells whether the boxes' strided order costs DRAM energy (both move at the same speed alone,
# session 13).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
case "${1:-}" in
  build)
    export PATH=/usr/local/cuda/bin:$PATH
    mkdir -p scratch
    git worktree prune
    src=/tmp/s21-energy-src
    rm -rf "$src"
    git worktree add -f --detach "$src" HEAD >/dev/null
    git -C "$src" apply "$ROOT/docs/experiments/s21-energy-parts.patch"
    for e in 0 1 2 3 4 5; do
      cmake -S "$src" -B "/tmp/s21-energy-$e" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASH_MLA_CUDA=ON \
        -DFLASH_MLA_BUILD_CLI=ON "-DCMAKE_CUDA_FLAGS=-DFLASH_MLA_ENERGY_SKIP=$e" >/dev/null
      cmake --build "/tmp/s21-energy-$e" --target flash-mla-bench
      cp "/tmp/s21-energy-$e/cli/flash-mla-bench" "scratch/e$e-bench"
    done
    ;;
  run)
    OUT=${OUT:-s21-energy-out}
    mkdir -p "$OUT"
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader
    for only in b=132 seqlen=4096 seqlen=8192; do
      grid=perf
      [ "$only" = b=132 ] && grid=small
      for e in 0 1 2 3 4 5; do
        nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader,nounits -lms 100 >"$OUT/pw.txt" 2>/dev/null &
        pid=$!
        timeout 40 "scratch/e$e-bench" --grid $grid --only $only --no-check --no-ceilings --quiet --iters 4000 \
          >"$OUT/pw-bench.txt" 2>&1 || true
        kill $pid
        wait $pid 2>/dev/null || true
        python3 - "e$e" "$OUT/pw.txt" "$OUT/pw-bench.txt" <<'PY'
import statistics, sys
samples = [tuple(map(float, l.split(','))) for l in open(sys.argv[2]) if l.strip()]
busy = [s for s in samples if s[1] > 300]
for line in open(sys.argv[3]):
    t = line.split()
    if 'sm90' in t:
        i = t.index('sm90')
        mhz = statistics.median([s[0] for s in busy]) if busy else -1
        watts = statistics.median([s[1] for s in busy]) if busy else -1
        print(f"{sys.argv[1]} {' '.join(t[:i - 1])[:36]:36} {t[i + 1]:>6} us  {mhz:5.0f} MHz  {watts:4.0f} W  ({len(busy)} samples)")
PY
      done
    done
    ;;
  *)
    sed -n 2,11p "${BASH_SOURCE[0]}" >&2
    exit 2
    ;;
esac
