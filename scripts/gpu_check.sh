#!/usr/bin/env bash
# Everything the Hopper backend must show, in one command on a GPU machine (no network needed):
# builds (Release, build-gpu/), runs the GPU tests (ctest label gpu: device schedule = host schedule,
# decode vs the float64 reference over the correctness matrix, determinism, validation), optionally
# compute-sanitizer over a reduced matrix, and the benchmark grids with the ceilings measured in the
# same run. Logs go to $OUT (default build-gpu/out).
#
#   bash scripts/gpu_check.sh [tests] [seesaw-tests] [sanitize] [bench=GRIDS] [ab=GRIDS]
#                                                       (default: tests bench=perf)
#   FLASH_MLA_BENCH_KV=dense,fp8,fp8-tensor bash scripts/gpu_check.sh bench=perf   (FP8 next to bf16)
# seesaw-tests reruns the GPU tests on the seesaw consumer schedule (FLASH_MLA_SM90_SEESAW=1); ab=GRIDS
# benchmarks the grids on the serial and then the seesaw schedule, one process each, in this run, and
# prints them side by side (scripts/bench_table.py joins any such outputs).
# FLASH_MLA_SM90_SEESAW=1 in the environment runs every step but ab= on the seesaw;
# FLASH_MLA_SM90_FP8_PREFETCH=1 likewise switches on the FP8 producer's L2 prefetch. A failing step is
# reported and the next steps still run; the exit status is that of the last failure.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/setup.sh
source scripts/setup.sh  # log, check_ptxas
BUILD=${FLASH_MLA_GPU_BUILD:-build-gpu}
OUT=${OUT:-$BUILD/out}
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(tests bench=perf)

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DFLASH_MLA_CUDA=ON \
  -DFLASH_MLA_BUILD_TESTS=ON -DFLASH_MLA_BUILD_CLI=ON >"$OUT/configure.log"
cmake --build "$BUILD" -j "$(nproc)" >"$OUT/build.log" 2>&1 || { tail -n 40 "$OUT/build.log"; exit 1; }
# ptxas reports only for what was compiled: nothing on an up-to-date build, which then keeps the
# ptxas.txt of the build that compiled (grep's status 1 must not end the script under pipefail).
ptxas=$({ grep -E "ptxas info *: Used|spill|C75" "$OUT/build.log" || true; } | sort | uniq -c)
[ -z "$ptxas" ] || echo "$ptxas" | tee "$OUT/ptxas.txt"
failed=0
check_ptxas "$OUT/build.log" || failed=1  # scripts/setup.sh: spills, local memory, serialised wgmma
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"

# flash-mla-bench over GRIDS with FLASH_MLA_SM90_SEESAW=$2; files
# bench_<grids>[_<kv formats>][_seesaw][_prefetch].{txt,json,err} (the formats unless dense only).
bench_name() {
  local kv=${FLASH_MLA_BENCH_KV:-dense} name=bench_${1//,/_}
  [ "$kv" = dense ] || name+=_${kv//,/_}
  echo "$name$(switches "$2")"
}
bench() {
  local grids=$1 seesaw=$2 kv=${FLASH_MLA_BENCH_KV:-dense} name
  name=$(bench_name "$grids" "$seesaw")
  echo "== flash-mla-bench --grid $grids --kv $kv (FLASH_MLA_SM90_SEESAW=$seesaw," \
    "FLASH_MLA_SM90_FP8_PREFETCH=${FLASH_MLA_SM90_FP8_PREFETCH:-0})"
  FLASH_MLA_SM90_SEESAW=$seesaw "$BUILD/cli/flash-mla-bench" --grid "$grids" --kv "$kv" --check-rows 64 \
    --json "$OUT/$name.json" 2>"$OUT/$name.err" | tee "$OUT/$name.txt"
}

# The switches in effect, as a file-name suffix: _seesaw, _prefetch.
switches() {
  local seesaw=${1:-${FLASH_MLA_SM90_SEESAW:-0}} suffix=
  [ "$seesaw" = 0 ] || suffix+=_seesaw
  [ "${FLASH_MLA_SM90_FP8_PREFETCH:-0}" = 0 ] || suffix+=_prefetch
  echo "$suffix"
}

# ctest -L gpu into $OUT/$1.log; a hang (the seesaw's hand-offs deadlocking) ends at the timeout.
gpu_tests() {
  local log=$OUT/$1.log status
  ctest --test-dir "$BUILD" -L gpu --timeout 300 --output-on-failure >"$log" 2>&1 && status=0 || status=$?
  tail -n 5 "$log"
  echo "   exit status $status"
  return "$status"
}

for step in "${steps[@]}"; do
  case $step in
    tests)
      echo "== GPU tests (ctest -L gpu)$(switches)"
      gpu_tests "ctest_gpu$(switches)" || failed=$?
      ;;
    seesaw-tests)
      echo "== GPU tests on the seesaw schedule (FLASH_MLA_SM90_SEESAW=1 ctest -L gpu)"
      FLASH_MLA_SM90_SEESAW=1 gpu_tests "ctest_gpu$(switches 1)" || failed=$?
      ;;
    sanitize)
      # A reduced matrix that still takes every path: split and unsplit, s_q > 1 causal, ragged,
      # zero lengths, h_kv > 1, both dtypes, the three FP8 formats.
      filter='GpuDecode.EmptyAndFullyMaskedRowsAreExact:Heads/GpuDecodeMatrix.MatchesReference/hq16_hkv1:Heads/GpuDecodeMatrix.MatchesReference/hq64_hkv8:GpuGraph.DecodeReplayEqualsEagerBitwise:Formats/Sm90FP8.EmptyAndFullyMaskedRowsAreExact/*'
      for tool in memcheck racecheck synccheck initcheck; do
        echo "== compute-sanitizer --tool $tool"
        log=$OUT/sanitize_$tool$(switches).log
        compute-sanitizer --tool "$tool" --error-exitcode 9 "$BUILD/tests/flash_mla_gpu_tests" \
          --gtest_filter="$filter" >"$log" 2>&1 && status=0 || status=$?
        { grep -E "ERROR SUMMARY|RACECHECK SUMMARY|tests? ran|PASSED|FAILED" "$log" || true; } | tail -n 3
        echo "   exit status $status"
        [ "$status" = 0 ] || failed=$status
      done
      ;;
    bench=*)
      bench "${step#bench=}" "${FLASH_MLA_SM90_SEESAW:-0}"
      ;;
    ab=*)
      grids=${step#ab=}
      bench "$grids" 0
      bench "$grids" 1
      echo "== serial against seesaw (µs)"
      python3 scripts/bench_table.py "serial=$OUT/$(bench_name "$grids" 0).txt" \
        "seesaw=$OUT/$(bench_name "$grids" 1).txt" | tee "$OUT/ab_${grids//,/_}.txt"
      ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
exit "$failed"
