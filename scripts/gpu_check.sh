#!/usr/bin/env bash
# Everything the Hopper backend must show, in one command on a GPU machine (no network needed):
# builds (Release, build-gpu/), runs the GPU tests (ctest label gpu: device schedule = host schedule,
# decode vs the float64 reference over the correctness matrix, determinism, validation), optionally
# compute-sanitizer over a reduced matrix, and the benchmark grids with the ceilings measured in the
# same run. Logs go to $OUT (default build-gpu/out).
#
#   bash scripts/gpu_check.sh [tests] [sanitize] [bench=GRIDS] [ab=GRIDS]   (default: tests bench=perf)
#   FLASH_MLA_BENCH_KV=dense,fp8,fp8-tensor bash scripts/gpu_check.sh bench=perf   (FP8 next to bf16)
#   FLASH_MLA_AB_BASELINE=path/to/flash-mla-bench bash scripts/gpu_check.sh ab=perf
# ab=GRIDS times the grids with the baseline binary and this build in two alternated passes, one process
# each (scripts/ab.sh; the passes show the run-to-run noise), and prints them side by side: compare a
# change only against a baseline measured in the same run. A failing step is reported and the next steps
# still run; the exit status is that of the last failure.
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

# flash-mla-bench ($3, default this build's) over GRIDS into $OUT/$2.{txt,json,err}.
bench() {
  local grids=$1 name=$2 bin=${3:-$BUILD/cli/flash-mla-bench} kv=${FLASH_MLA_BENCH_KV:-dense}
  echo "== $bin --grid $grids --kv $kv"
  "$bin" --grid "$grids" --kv "$kv" --check-rows 64 --json "$OUT/$name.json" 2>"$OUT/$name.err" | tee "$OUT/$name.txt"
}
# bench_<grids>[_<kv formats>] (the formats unless dense only).
bench_name() {
  local kv=${FLASH_MLA_BENCH_KV:-dense} name=bench_${1//,/_}
  [ "$kv" = dense ] || name+=_${kv//,/_}
  echo "$name"
}

# ctest -L gpu into $OUT/$1.log; a hang (a deadlocked hand-off) ends at the per-test timeout.
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
      echo "== GPU tests (ctest -L gpu)"
      gpu_tests ctest_gpu || failed=$?
      ;;
    sanitize)
      # A reduced matrix that still takes every path: split and unsplit, s_q > 1 causal, ragged,
      # zero lengths, h_kv > 1, both dtypes, the three FP8 formats.
      filter='GpuDecode.EmptyAndFullyMaskedRowsAreExact:Heads/GpuDecodeMatrix.MatchesReference/hq16_hkv1:Heads/GpuDecodeMatrix.MatchesReference/hq64_hkv8:GpuGraph.DecodeReplayEqualsEagerBitwise:Formats/Sm90FP8.EmptyAndFullyMaskedRowsAreExact/*'
      for tool in memcheck racecheck synccheck initcheck; do
        echo "== compute-sanitizer --tool $tool"
        log=$OUT/sanitize_$tool.log
        # racecheck cannot follow the seesaw's barrier.arrive -> barrier.sync hand-offs (it reports them as races;
        # a minimal ping-pong kernel does the same), so it checks the serial schedule.
        schedule=
        [ "$tool" = racecheck ] && schedule=serial
        FLASH_MLA_SM90_SCHEDULE=$schedule compute-sanitizer --tool "$tool" --error-exitcode 9 \
          "$BUILD/tests/flash_mla_gpu_tests" --gtest_filter="$filter" >"$log" 2>&1 && status=0 || status=$?
        { grep -E "ERROR SUMMARY|RACECHECK SUMMARY|tests? ran|PASSED|FAILED" "$log" || true; } | tail -n 3
        echo "   exit status $status"
        [ "$status" = 0 ] || failed=$status
      done
      ;;
    bench=*)
      bench "${step#bench=}" "$(bench_name "${step#bench=}")"
      ;;
    ab=*)
      grids=${step#ab=}
      [ -x "${FLASH_MLA_AB_BASELINE:-}" ] || { echo "ab= needs FLASH_MLA_AB_BASELINE=<a flash-mla-bench>" >&2; exit 2; }
      echo "== baseline against this build (µs), passes alternated"
      OUT=$OUT bash scripts/ab.sh -p 2 -a "--grid $grids --kv ${FLASH_MLA_BENCH_KV:-dense} --check-rows 64 --quiet" \
        baseline="$FLASH_MLA_AB_BASELINE" this="$BUILD/cli/flash-mla-bench" | tee "$OUT/ab_${grids//,/_}.txt" || failed=1
      ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
exit "$failed"
