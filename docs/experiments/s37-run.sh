#!/usr/bin/env bash
# Session 37's device calls (run from the repository root; binaries and libraries in scratch/, carried with
# `carry: ["scratch"]`; OUT=$OUT there). Usage: s37-run.sh STEP. Results: PERFORMANCE.md's session 37 entry.
# scratch/ as s36-run.sh fetch leaves it, plus the builds named below.
set -euo pipefail
# shellcheck source=docs/experiments/variants.sh
source "$(dirname "${BASH_SOURCE[0]}")/variants.sh"  # sets ROOT, cd there
OUT=${OUT:-$ROOT/s37-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

unpack_fa3_here() {
  python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('scratch/_vllm_fa3_C.abi3.so.xz'), \
open('/tmp/_vllm_fa3_C.abi3.so', 'wb'))"
}

case ${1:-} in
  call1)
    # (1) Where the ragged b=128 rows' time goes: scratch/s37tr-flash-mla-phases (a -DFLASH_MLA_TRACE=ON build of
    # HEAD's flash-mla-phases, with the h32 s1 studies and FLASH_MLA_PHASES_DUMP) dumps each CTA's part (pieces,
    # blocks) and its stamps for 4096 and 16384, uniform and ragged. Predicted: ragged parts end spread over
    # ~5-10 % of the span, the latest ones those with the most pieces.
    mkdir -p "$OUT/dump"
    FLASH_MLA_PHASES_DUMP=$OUT/dump timeout 120 scratch/s37tr-flash-mla-phases "h32 s1" 2>&1 | tee "$OUT/phases.txt" || true
    # (2) s36-run.sh next: the interleaved standing (FlashMLA's grid, PERF.md's rows, the small grid).
    OUT=$OUT bash docs/experiments/s36-run.sh next 2>&1 | tail -60
    ;;
  call2)
    # (1) call1's ragged dumps again (their names had a '~', which the device tool does not copy back).
    mkdir -p "$OUT/dump"
    FLASH_MLA_PHASES_DUMP=$OUT/dump timeout 120 scratch/s37tr-flash-mla-phases "ragged" >"$OUT/phases.txt" 2>&1 || true
    grep -E "us/call|last block" "$OUT/phases.txt" || true
    # (2) Why the same kernels run ~10 % slower in incumbent_bench.py than in flash-mla-bench (s36 call 3: b=128
    # 16384 h16 s1 536 us against 607 in call 6): the card's clocks, power and limit reasons sampled every 100 ms
    # while flash-mla-bench, the script with ours alone and the script with all three run the same row, in turn.
    # Predicted: the slow runs have a lower SM clock (power cap); if the memory clock or the copy ceiling falls too,
    # no kernel change recovers it.
    unpack_fa3_here
    py=$(python3 -c "import sys; print(sys.executable)")
    "$py" -m pip install -q --no-index --find-links scratch/wheels "scikit-build-core>=0.10" pytest
    export CUDACXX=/usr/local/cuda/bin/nvcc PATH=/usr/local/cuda/bin:$PATH
    "$py" -m pip install -q --no-build-isolation --no-index --no-deps . >"$OUT/pip-install.txt" 2>&1 || tail "$OUT/pip-install.txt"
    query=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active
    nvidia-smi --query-gpu=$query --format=csv,noheader,nounits -lms 100 >"$OUT/smi.csv" 2>&1 &
    smi=$!
    row="seqlen=16384 h_q=16 s_q=1"
    mark() { echo "$(date +'%Y/%m/%d %H:%M:%S.%N') $1" >>"$OUT/marks.txt"; }
    for pass in 1 2; do
      mark "bench$pass"
      timeout 60 scratch/cur-flash-mla-bench --grid flashmla --only "$row" --check-rows 8 --quiet >"$OUT/bench$pass.txt" 2>&1 || true
      mark "alone$pass"
      timeout 60 "$py" scripts/incumbent_bench.py --workloads scratch/wl-flashmla.jsonl --only "$row" --with-ours \
        --flashmla-fp8 scratch/_flashmla_extension_C.abi3.so >"$OUT/alone$pass.txt" 2>&1 || true
      mark "all$pass"
      timeout 90 "$py" scripts/incumbent_bench.py --workloads scratch/wl-flashmla.jsonl --only "$row" --with-ours \
        --flashmla scratch/_flashmla_C.abi3.so --fa3 /tmp/_vllm_fa3_C.abi3.so >"$OUT/all$pass.txt" 2>&1 || true
    done
    mark end
    kill "$smi" || true
    head -3 "$OUT/smi.csv"
    for pass in 1 2; do
      grep -E "ceilings|seqlen=16384" "$OUT/bench$pass.txt" || true
      grep -E "seqlen=16384" "$OUT/alone$pass.txt" "$OUT/all$pass.txt" || true
    done
    python3 docs/experiments/s37_clocks.py "$OUT/smi.csv" "$OUT/marks.txt"
    ;;
  *)
    echo "usage: $0 call1|call2" >&2
    exit 2
    ;;
esac
