#!/usr/bin/env bash
# Same-call A/B of prebuilt flash-mla-bench binaries on a GPU machine. GPU timings drift between calls
# and between cards, so two versions are compared only within one run, their passes alternated. A
# binary built with nvcc on a machine without a GPU runs on the GPU machine unchanged.
#
#   bash scripts/ab.sh [-p PASSES] [-a "BENCH ARGS"] [-t SECONDS] NAME=BINARY [NAME=BINARY ...]
#   bash scripts/ab.sh old=scratch/bench-old new=build/cli/flash-mla-bench
#   bash scripts/ab.sh -p 3 -a "--grid flashmla --only h_q=128 --check-rows 8 --quiet --no-ceilings" a=x b=y
#
# Defaults: 2 passes of "--grid perf,short --check-rows 8 --quiet --no-ceilings". Each pass runs every
# binary once, in the order given. Each run's table goes to $OUT/ab/NAME_PASS.txt (OUT defaults to
# ab-out), the summary (per row every binary's times, and each later binary's median over the first
# one's) to stdout and $OUT/ab/summary.txt, and all of it into $OUT/ab.tgz (one file: the device tool
# returns at most 8). A failed result check shows as "!fail" in the tables. -t: a budget for the runs; a run
# is not started when the time so far plus the longest run yet would pass it, and the summary then covers
# the runs done (it says which were left out). Use it instead of an outer `timeout`, which loses the summary.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
passes=2
bench_args="--grid perf,short --check-rows 8 --quiet --no-ceilings"
budget=""
while getopts "p:a:t:" opt; do
  case $opt in
    p) passes=$OPTARG ;;
    a) bench_args=$OPTARG ;;
    t) budget=$OPTARG ;;
    *) sed -n 2,17p "${BASH_SOURCE[0]}" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n 2,17p "${BASH_SOURCE[0]}" >&2; exit 2; }
for pair in "$@"; do
  [ -x "${pair#*=}" ] || { echo "ab.sh: ${pair#*=} is not an executable" >&2; exit 2; }
done
OUT=${OUT:-ab-out}
dir=$OUT/ab
mkdir -p "$dir"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv,noheader >"$dir/gpu.txt" 2>/dev/null || true
table_args=()
status=0
started=$SECONDS longest=0 left_out=""
for pass in $(seq 1 "$passes"); do
  for pair in "$@"; do
    name=${pair%%=*} bin=${pair#*=}
    if [ -n "$budget" ] && [ $((SECONDS - started + longest)) -gt "$budget" ]; then
      left_out+=" ${name}_$pass"
      continue
    fi
    t0=$SECONDS
    # shellcheck disable=SC2086  # bench_args is a word list
    "$bin" $bench_args >"$dir/${name}_$pass.txt" 2>&1 || status=$?
    longest=$((SECONDS - t0 > longest ? SECONDS - t0 : longest))
    table_args+=("$name=$dir/${name}_$pass.txt")
  done
done
{
  cat "$dir/gpu.txt"
  echo "flash-mla-bench $bench_args; $passes passes${left_out:+ (left out by -t $budget:$left_out)}"
  python3 "$ROOT/scripts/bench_table.py" "${table_args[@]}"
} | tee "$dir/summary.txt"
tar czf "$OUT/ab.tgz" -C "$OUT" ab
exit "$status"
