#!/usr/bin/env bash
# Session 25's device calls, in order (run from the repository root; binaries in scratch/, carried to the
# device with `carry: ["scratch"]`; OUT=$OUT there). Usage: s25-next-run.sh STEP.
# run2 (call 2): the grouped-release seesaw (branch seesaw-grouped, built by hand into scratch/gs-*; its
#   trace build scratch/gstr-flash-mla-phases) against 76d5b70's bench (scratch/head-*): the dense GPU tests,
#   the per-pair timeline beside head's per-block one (scratch/trace-*), a 1-pass A/B.
#   Predicted: consumer 0's wait for K(a) at a pair's start (1972 cycles in s24-seesaw) mostly gone, a pair
#   ~5400-6000 cycles (head: 2 x 3750); the 128-row rows -5 ... -15 %.
# run3 (call 3): gs (FlashMLA's order, with group-landing stamps) and gs1 (-DFLASH_MLA_SEESAW_ORDER=1: consumer 1
#   folds a then b, both stages read V_L, RoPE, V_R): gs1's dense tests, both timelines, ncu cycles at base
#   clock and the replayed clock and power of head, gs and gs1 on two 128-row rows, a 1-pass 3-way A/B.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=docs/experiments/variants.sh
source "$ROOT/docs/experiments/variants.sh"  # ab_many, gpu_suite
OUT=${OUT:-s25-next-out}
mkdir -p "$OUT"

dense_tests() {  # NAME: the dense 16-bit GPU tests of scratch/NAME-flash_mla_gpu_tests, each group under a timeout
  for f in 'GpuDecode.*:GpuGraph.*:GpuValidation.*' 'Heads/*' 'PageSizes/*' 'GpuFuzz*'; do
    timeout 100 "scratch/$1-flash_mla_gpu_tests" --gtest_filter="$f" >"$OUT/$1-tests.txt" 2>&1 &&
      echo "$1 $f: passed" || echo "$1 $f: FAILED (rc $?)"
    grep -E "^\[  FAILED|PASSED|SKIPPED \] [0-9]" "$OUT/$1-tests.txt" | tail -4 || true
  done
}

timelines() {  # NAME...: per-block (serial) or per-pair (seesaw) phase timelines
  for name in "$@"; do
    echo "== $name"
    timeout 100 "scratch/$name-flash-mla-phases" "h128" 2>&1 | grep -vE "^   (consumer 0: first|block interval)" || true
    timeout 60 "scratch/$name-flash-mla-phases" "b128 8192 h16" 2>&1 | head -3 || true
  done
}

# clocks NAME ROW...: median SM clock and power while scratch/NAME-flash-mla-bench replays one row (~2 s;
# nvidia-smi every 100 ms, samples above 300 W).
clocks() {
  local name=$1
  shift
  nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader,nounits -lms 100 >"$OUT/pw.txt" 2>/dev/null &
  local pid=$!
  timeout 60 "scratch/$name-flash-mla-bench" "$@" --iters 1500 --no-check --no-ceilings --quiet >"$OUT/pw-bench.txt" 2>&1 || true
  kill $pid
  wait $pid 2>/dev/null || true
  python3 - "$name $*" "$OUT/pw.txt" "$OUT/pw-bench.txt" <<'PY'
import statistics, sys
samples = [tuple(map(float, l.split(','))) for l in open(sys.argv[2]) if l.strip()]
busy = [s for s in samples if s[1] > 300]
us = " ".join(([l for l in open(sys.argv[3]) if l.strip()] or [""])[-1].split()[:9])
if busy:
    print(f"{sys.argv[1]}: {statistics.median(s[0] for s in busy):.0f} MHz, {statistics.median(s[1] for s in busy):.0f} W "
          f"({len(busy)} samples); bench tail: {us}")
else:
    print(f"{sys.argv[1]}: no busy samples")
PY
}

case ${1:-} in
  run2)
    dense_tests gs
    timelines trace gstr
    ab_many ab-gs.txt 1 head gs
    ;;
  run3)
    dense_tests gs1
    timelines gstr gstr1
    stalls=sm__cycles_elapsed.max,smsp__inst_executed.sum
    # (Written for two rows, 16384 h128 s2 and 4096 h128 s1; run with the first only.)
    row=(--batch 128 --seqlen 16384 --h-q 128 --s-q 2)
    for name in head gs gs1; do
      ncu_metrics "$name ${row[*]:2}" "$stalls" "scratch/$name-flash-mla-bench" "${row[@]}"
      clocks "$name" "${row[@]}"
    done
    ab_many ab-gs1.txt 1 head gs gs1
    ;;
  build4)
    flags="-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON"
    build head - "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    build cand s25-seesaw-grouped.patch "$flags" flash-mla-bench flash_mla_gpu_tests
    build candp s25-seesaw-grouped.patch "-DFLASH_MLA_BUILD_CLI=ON -DCMAKE_CUDA_FLAGS=-DFLASH_MLA_SEESAW_PREFETCH=1" \
      flash-mla-bench
    for name in cand candp; do
      # shellcheck disable=SC2016  # the wrapper's own expansions
      printf '#!/bin/sh\nFLASH_MLA_SM90_SCHEDULE=seesaw exec "$(dirname "$0")/%s-flash-mla-bench" "$@"\n' "$name" \
        >"scratch/${name}s-flash-mla-bench"
      chmod +x "scratch/${name}s-flash-mla-bench"
    done
    ;;
  run4)
    gpu_suite cand
    FLASH_MLA_SM90_SCHEDULE=seesaw dense_tests cand
    ;;
  run5)
    ab_many ab-cand.txt 2 head cand candp candps
    for name in head cand candp; do
      ncu_metrics "$name h128 s2" sm__cycles_elapsed.max,smsp__inst_executed.sum \
        "scratch/$name-flash-mla-bench" --batch 128 --seqlen 16384 --h-q 128 --s-q 2
      clocks "$name" --batch 128 --seqlen 16384 --h-q 128 --s-q 2
    done
    ;;
  *)
    sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | grep '^#' >&2
    exit 2
    ;;
esac
