# shellcheck shell=bash
# Sourced by the session hand-over scripts (sNN-next-run.sh, sNN-run.sh): sets ROOT to the repository root
# and makes it the working directory.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || return
#
# out_dir DEFAULT: OUT (made absolute), or $ROOT/DEFAULT when unset, created.
out_dir() {
  OUT=${OUT:-$ROOT/$1}
  mkdir -p "$OUT"
  OUT=$(cd "$OUT" && pwd)
}
#
# unxz SRC DST: the xz file SRC decompressed to DST by Python's lzma (the device may lack xz).
unxz() {
  python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" "$1" "$2"
}

# unpack_fa3: vLLM's FA3 library from scratch/ (xz) to /tmp, where incumbent_bench.py's --fa3 takes it.
unpack_fa3() { unxz scratch/_vllm_fa3_C.abi3.so.xz /tmp/_vllm_fa3_C.abi3.so; }

# verdict LOG [N]: the last N (6) gtest summary lines of LOG (FAILED, PASSED and SKIPPED counts).
verdict() { grep -E "^\[  FAILED|PASSED|SKIPPED \] [0-9]" "$1" | tail -"${2:-6}" || true; }

# The 16-bit (dense kernel) GPU tests, in the groups dense_tests runs (forced_tests runs them as one filter; ctest's
# seesaw. and bypart. passes, tests/CMakeLists.txt, the same list).
DENSE16_GROUPS=('GpuDecode.*:GpuGraph.*:GpuValidation.*' 'Heads/*' 'PageSizes/*' 'GpuFuzz.*')

# install_python [LOG]: the Python package into the device's python3 environment (its torch lives there: a venv over
# the system python would not see it; the machine is discarded after the session), scikit-build-core and pytest from
# the wheels in scratch/wheels (no network there); pip's output in LOG ($OUT/pip-install.txt). Sets py; returns 1
# (after LOG's tail) if the install fails.
# shellcheck disable=SC2120  # LOG is optional
install_python() {
  local log=${1:-$OUT/pip-install.txt}
  py=$(python3 -c "import sys; print(sys.executable)")
  "$py" -m pip install -q --no-index --find-links scratch/wheels "scikit-build-core>=0.10" pytest
  if [ -x /usr/local/cuda/bin/nvcc ]; then export CUDACXX=/usr/local/cuda/bin/nvcc PATH=/usr/local/cuda/bin:$PATH; fi
  local start=$SECONDS
  "$py" -c "import torch, sys; print(torch.__version__, torch.__file__, sys.version.split()[0])"
  if "$py" -m pip install -q --no-build-isolation --no-index --no-deps . >"$log" 2>&1; then
    echo "pip install .: $((SECONDS - start)) s"
  else
    echo "pip install . FAILED"
    tail -30 "$log"
    return 1
  fi
}
#
# build NAME PATCHES CMAKE_FLAGS TARGET...: a worktree of HEAD (or of $REV) with PATCHES (files in docs/experiments,
# comma-separated, applied in order; none: "-"), the targets built in Release with CUDA, and the
# binaries copied to scratch/NAME-<binary> (flash-mla-bench, flash-mla-phases, flash_mla_gpu_tests).
build() {
  local name=$1 patch=$2 flags=$3
  shift 3
  local src=/tmp/variant-src-$name out=/tmp/variant-build-$name one t
  rm -rf "$src"
  git worktree prune
  git worktree add -f --detach "$src" "${REV:-HEAD}" >/dev/null
  if [ "$patch" != - ]; then
    for one in ${patch//,/ }; do git -C "$src" apply "$ROOT/docs/experiments/$one"; done
  fi
  # shellcheck disable=SC2086  # flags is a list of -D options
  cmake -S "$src" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASH_MLA_CUDA=ON $flags >/dev/null
  cmake --build "$out" --target "$@"
  mkdir -p scratch
  for t in "$@"; do
    case $t in
      flash-mla-bench | flash-mla-phases) cp "$out/cli/$t" "scratch/$name-$t" ;;
      flash_mla_gpu_tests) cp "$out/tests/$t" "scratch/$name-$t" ;;
    esac
  done
}

# pack_binaries: each build binary in scratch/ (NAME-flash-mla-bench, -flash-mla-phases, -flash_mla_gpu_tests; not
# the wrappers, which are scripts) xz-compressed to FILE.xz, the original removed: about 10x smaller, so that
# several builds fit in the device tool's 64 MiB carry.
pack_binaries() {
  local f
  for f in scratch/*-flash-mla-bench scratch/*-flash-mla-phases scratch/*-flash_mla_gpu_tests; do
    if [ -f "$f" ] && [ "$(head -c 4 "$f" | tail -c 3)" = ELF ]; then xz -T2 -f "$f"; fi
  done
}

# unpack_binaries: pack_binaries undone, executable again; names them, and returns 1 when there is none (scratch/ not
# carried, or never built).
unpack_binaries() {
  local f unpacked=()
  for f in scratch/*-flash*.xz; do
    [ -f "$f" ] || continue
    unxz "$f" "${f%.xz}"
    chmod +x "${f%.xz}"
    unpacked+=("${f#scratch/}")
  done
  if [ ${#unpacked[@]} -eq 0 ]; then
    echo "unpack_binaries: no scratch/*-flash*.xz" >&2
    return 1
  fi
  echo "unpacked: ${unpacked[*]%.xz}"
}

# gpu_suite NAME: scratch/NAME-flash_mla_gpu_tests, its log in $OUT/NAME-tests.txt; prints the verdict.
gpu_suite() {
  local name=$1
  if timeout 220 "scratch/$name-flash_mla_gpu_tests" >"$OUT/$name-tests.txt" 2>&1; then
    echo "$name: GPU suite passed"
  else
    echo "$name: FAILED"
  fi
  verdict "$OUT/$name-tests.txt"
}

# python_tests: pytest on python/tests with the package install_python put in $py, from /tmp (so that the installed
# package, not the source tree, is imported), its output in $OUT/pytest.txt; prints the tail.
python_tests() {
  (cd /tmp && timeout 300 "$py" -m pytest -q -p no:cacheprovider "$ROOT/python/tests" \
    -o "testpaths=$ROOT/python/tests" >"$OUT/pytest.txt" 2>&1) || echo "pytest: exit $?"
  tail -15 "$OUT/pytest.txt"
}

# forced_tests NAME SCHEDULE: scratch/NAME-flash_mla_gpu_tests' 16-bit tests with every call on SCHEDULE (serial,
# seesaw or bypart: FLASH_MLA_SM90_SCHEDULE), into $OUT/NAME-SCHEDULE-tests.txt; prints the verdict.
forced_tests() {
  local filter
  filter=$(IFS=:; echo "${DENSE16_GROUPS[*]}")
  FLASH_MLA_SM90_SCHEDULE=$2 timeout 200 "scratch/$1-flash_mla_gpu_tests" --gtest_filter="$filter" \
    >"$OUT/$1-$2-tests.txt" 2>&1 && echo "$1 (every call $2): GPU suite passed" || echo "$1 forced $2: FAILED"
  verdict "$OUT/$1-$2-tests.txt"
}

# ab_many FILE PASSES NAME...: a PASSES-pass A/B of scratch/NAME-flash-mla-bench on the perf and short grids
# (scripts/ab.sh, passes alternated, every run's rows checked), its table in $OUT/FILE and on stdout.
ab_many() {
  local file=$1 passes=$2 pairs=()
  shift 2
  for name in "$@"; do pairs+=("$name=scratch/$name-flash-mla-bench"); done
  OUT=$OUT/a timeout 400 bash scripts/ab.sh -p "$passes" -a "--grid perf,short --check-rows 8 --quiet --no-ceilings" \
    "${pairs[@]}" >"$OUT/$file" 2>&1 || true
  cat "$OUT/$file"
}

# ab_names SUB PASSES BUDGET "BENCH ARGS" NAME...: scripts/ab.sh over scratch/NAME-flash-mla-bench (passes
# alternated), no run started past BUDGET seconds so that the summary survives; output under $OUT/SUB.
ab_names() {
  local sub=$1 passes=$2 budget=$3 args=$4 pairs=() name
  shift 4
  for name in "$@"; do pairs+=("$name=scratch/$name-flash-mla-bench"); done
  OUT=$OUT/$sub timeout $((budget + 60)) bash scripts/ab.sh -p "$passes" -t "$budget" -a "$args" "${pairs[@]}" || true
}

# ab_grids A B: ab_many's 2-pass A/B of two builds, into $OUT/ab-B.txt.
ab_grids() { ab_many "ab-$2.txt" 2 "$1" "$2"; }

# ncu_metrics LABEL METRICS CMD...: one line "LABEL: metric unit value ..." for the second decode kernel of CMD
# (a flash-mla-bench command line; --iters 3 and no checks are added), at ncu's base clock (the SM, DRAM, L2 and
# duration metrics; until session 35 without the unit, and SM metrics only).
ncu_metrics() {
  local label=$1 metrics=$2
  shift 2
  echo "$label: $(timeout 120 ncu --kernel-name regex:decode_kernel --launch-skip 1 --launch-count 1 \
    --metrics "$metrics" "$@" --iters 3 --no-ceilings --no-check --quiet 2>&1 |
    grep -E '^\s+(smsp|sm__|dram__|gpu__|lts__)' | awk '{print $1 " " $(NF-1) " " $NF}' |
    sed -E 's/smsp__average_warps_issue_stalled_//' | tr '\n' ' ')"
}

# ncu_each METRICS NAMES ROW...: ncu_metrics of scratch/NAME-flash-mla-bench for each ROW (a flash-mla-bench
# option list, e.g. "--batch 4 --seqlen 4096 --h-q 128 --s-q 1") and each of the space-separated NAMES.
ncu_each() {
  local metrics=$1 names=$2 row name
  shift 2
  for row in "$@"; do
    for name in $names; do
      # shellcheck disable=SC2086  # row is a list of options
      ncu_metrics "$name $row" "$metrics" "scratch/$name-flash-mla-bench" $row
    done
  done
}

# sched_times NAMES ROW...: for each ROW (flash-mla-bench options) and each of the space-separated NAMES, the call's
# time and the schedule kernel's (`sched us`) of scratch/NAME-flash-mla-bench, one line each.
sched_times() {
  local names=$1 row name
  shift
  for row in "$@"; do
    for name in $names; do
      # shellcheck disable=SC2086  # row is a list of options
      echo "$name $row: $(timeout 120 "scratch/$name-flash-mla-bench" $row --no-check --no-ceilings --quiet 2>&1 |
        grep -E "^b=" | awk '{print "time", $7, "us, sched", $10, "us"}')"
    done
  done
}

# ncu_source CSV CMD...: ncu's per-SASS-line counters and warp-state samples of CMD's second decode kernel
# (--page source --csv, for top_stalls.py) into CSV.
ncu_source() {
  local csv=$1
  shift
  timeout 200 ncu --kernel-name regex:decode_kernel --launch-skip 1 --launch-count 1 --section SourceCounters \
    --section WarpStateStats --page source --print-source sass --csv "$@" --iters 3 --no-ceilings --no-check \
    --quiet >"$csv" 2>&1 || true
}

# replay_clocks LABEL CMD...: CMD (a flash-mla-bench command line; no checks or ceilings are added) replayed
# while nvidia-smi samples the SM clock and power every 100 ms; per timed row one line: LABEL, the row, µs,
# and the median clock and power of the samples above 300 W (the card at work).
replay_clocks() {
  local label=$1 pid
  shift
  nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader,nounits -lms 100 >"$OUT/pw.txt" 2>/dev/null &
  pid=$!
  timeout 60 "$@" --no-check --no-ceilings --quiet >"$OUT/pw-bench.txt" 2>&1 || true
  kill $pid
  wait $pid 2>/dev/null || true
  python3 - "$label" "$OUT/pw.txt" "$OUT/pw-bench.txt" <<'PY'
import statistics, sys
samples = [tuple(map(float, l.split(','))) for l in open(sys.argv[2]) if l.strip()]
busy = [s for s in samples if s[1] > 300]
for line in open(sys.argv[3]):
    t = line.split()
    if 'sm90' in t and t[0].startswith('b='):
        i = t.index('sm90')
        mhz = statistics.median([s[0] for s in busy]) if busy else -1
        watts = statistics.median([s[1] for s in busy]) if busy else -1
        label = ' '.join(t[:i - 1])[:36]
        print(f"{sys.argv[1]} {label:36} {t[i + 1]:>6} us  {mhz:5.0f} MHz  {watts:4.0f} W  ({len(busy)} samples)")
PY
}

# gtest_groups NAME FILTER...: scratch/NAME-flash_mla_gpu_tests once per gtest filter, each under its own
# timeout (a hang ends there), the logs in $OUT/NAME-group1.txt, -group2.txt, ... (gpu_suite's
# NAME-tests.txt stays); prints a verdict and the summary per filter.
gtest_groups() {
  local name=$1 f i=0 log
  shift
  for f in "$@"; do
    i=$((i + 1))
    log=$OUT/$name-group$i.txt
    timeout 150 "scratch/$name-flash_mla_gpu_tests" --gtest_filter="$f" >"$log" 2>&1 &&
      echo "$name $f: passed" || echo "$name $f: FAILED (rc $?)"
    verdict "$log" 4
  done
}

# sanitize NAME FILTER TOOL...: scratch/NAME-flash_mla_gpu_tests under compute-sanitizer, each TOOL over the
# gtest FILTER (150 s each), logs in $OUT/NAME-TOOL.txt; prints a verdict and the summary per tool. The
# caller's environment (e.g. FLASH_MLA_SM90_SCHEDULE) passes through.
sanitize() {
  local name=$1 filter=$2 tool
  shift 2
  for tool in "$@"; do
    timeout 150 compute-sanitizer --tool "$tool" --error-exitcode 9 "scratch/$name-flash_mla_gpu_tests" \
      --gtest_filter="$filter" >"$OUT/$name-$tool.txt" 2>&1 && echo "$name $tool: clean" ||
      echo "$name $tool: rc $?"
    grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/$name-$tool.txt" | tail -3 || true
  done
}

# FP8 tests whose every case runs the narrow kernel (16 or 32 rows, pages of 16+): racecheck's display then holds
# no dense-kernel report (sessions 34-35).
NARROW_TESTS='Formats/Sm90FP8.PaddedPagesEqualContiguous*:Formats/Sm90FP8.OutOfPoolPageReadsAsZeros*'
NARROW_TESTS+=':Formats/Sm90FP8.NaNCodeInsideASequencePropagates*'
NARROW_TESTS+=':Formats/Sm90FP8.WideScoreSpreadKeepsSmallProbabilities*'

# narrow_racecheck NAME: racecheck on NARROW_TESTS, then how many of its reports name the narrow kernel.
narrow_racecheck() {
  sanitize "$1" "$NARROW_TESTS" racecheck
  echo "racecheck reports naming the narrow kernel: $(grep -c "narrow" "$OUT/$1-racecheck.txt" || true)"
}

# dense_tests NAME: the 16-bit (dense kernel) GPU tests of scratch/NAME-flash_mla_gpu_tests, in four groups.
dense_tests() { gtest_groups "$1" "${DENSE16_GROUPS[@]}"; }

# timelines NAME...: scratch/NAME-flash-mla-phases (a trace build) on the 128-row rows and b=128 8192 h16:
# the per-block (serial) or per-pair (seesaw) phase timeline of each.
timelines() {
  local name
  for name in "$@"; do
    echo "== $name"
    timeout 100 "scratch/$name-flash-mla-phases" "h128" 2>&1 |
      grep -vE "^   (consumer 0: first|block interval)" || true
    timeout 60 "scratch/$name-flash-mla-phases" "b128 8192 h16" 2>&1 | head -3 || true
  done
}

# ab_select SELECTION NAME...: a 1-pass A/B of scratch/NAME-flash-mla-bench on the rows of one grid,
# SELECTION "GRID" or "GRID FILTER" (flash-mla-bench --only FILTER, no spaces: "flashmla h_q=64"), every
# run's rows checked; files in $OUT/GRID-FILTER/, the table on stdout.
ab_select() {
  local sel=$1 pairs=() name only=
  shift
  for name in "$@"; do pairs+=("$name=scratch/$name-flash-mla-bench"); done
  [ "$sel" = "${sel#* }" ] || only=" --only ${sel#* }"
  OUT=$OUT/${sel// /-} timeout 170 bash scripts/ab.sh -p 1 \
    -a "--grid ${sel%% *}$only --check-rows 8 --quiet --no-ceilings" "${pairs[@]}" || true
}

# phase_rows "NAME..." ROW...: each ROW (flash-mla-phases' label) with each trace build scratch/NAME-flash-mla-phases,
# one after another: the call, the per-CTA start (entry, Q ready, first block; the first metadata reads and
# copies issued) and the piece change lines.
phase_rows() {
  local names=$1 row name
  shift
  for row in "$@"; do
    for name in $names; do
      echo "== $name"
      timeout 60 "scratch/$name-flash-mla-phases" "$row" 2>&1 |
        grep -E "us/call|CTAs|consumer 0: first|piece change" || true
    done
  done
}

# schedule_timelines NAME ROW...: scratch/NAME-flash-mla-phases (a trace build) on each ROW (its label, or
# part of it) with every call on the seesaw, then on the serial schedule.
schedule_timelines() {
  local name=$1 schedule row
  shift
  for schedule in seesaw serial; do
    for row in "$@"; do
      echo "== $row, $schedule"
      FLASH_MLA_SM90_SCHEDULE=$schedule timeout 100 "scratch/$name-flash-mla-phases" "$row" 2>&1 || true
    done
  done
}

# gpu_check_filter: scripts/gpu_check.sh's reduced matrix for compute-sanitizer (a gtest filter).
gpu_check_filter() { sed -n "s/^ *filter='\(.*\)'$/\1/p" scripts/gpu_check.sh | head -n 1; }

# opcode_counts NAME ARGS...: ncu's executed instructions per SASS opcode of scratch/NAME-flash-mla-bench's
# second decode kernel (ARGS: the workload, e.g. --batch 128 --seqlen 4096 --h-q 128 --s-q 1) with every
# call on the seesaw, then on the serial schedule, into $OUT/op-seesaw.txt and $OUT/op-serial.txt.
opcode_counts() {
  local name=$1 schedule
  shift
  for schedule in seesaw serial; do
    FLASH_MLA_SM90_SCHEDULE=$schedule timeout 100 ncu --kernel-name regex:decode_kernel --launch-skip 1 \
      --launch-count 1 --metrics sass__inst_executed_per_opcode --print-metric-instances details \
      "scratch/$name-flash-mla-bench" "$@" --iters 3 --no-ceilings --no-check --quiet >"$OUT/op-$schedule.txt" 2>&1 ||
      true
  done
}
