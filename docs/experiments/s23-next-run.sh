#!/usr/bin/env bash
# Session 23's hand-over: the next session's first device call (written in session 23; its build step
# was run on the CPU machine, but scratch/ may not survive):
#   bash docs/experiments/s23-next-run.sh build          # CPU machine: into scratch/ (~3 min)
#   OUT=$OUT bash docs/experiments/s23-next-run.sh run   # GPU, carry ["scratch"]: ~6 min (estimated)
#
# Session 23 found the dense kernel's speed on the 64+ row rows tied to its code layout: every one of
# eleven builds that moved the producer's code (and the out-of-line wait loops after it) by 0x30 to 0x230
# bytes, the consumers' instructions unchanged, ran 6-10 % more cycles on b=128 16384 h128 s2 and 4096
# h128 s1 under ncu, with warps stalled on instruction fetch ("no_instruction") 0.34 -> 0.45 per issued
# instruction and at barriers 4.16 -> 4.61. s23-layout-probe.patch is one such build: a never-taken
# prefetch in the producer's prologue. The kernel's hot code is ~18 KiB (consumers ~14, producer ~4);
# ~7 KiB of it is Q·Kᵀ, whose 36 wgmma each take ~10 uniform instructions of descriptor arithmetic.
#
# s23-desc-advance.patch: the descriptors built once per block and advanced by a 32-bit add (5
# instructions per Q·Kᵀ wgmma instead of ~11; the kernel 3.9 KiB shorter; 168 registers, no spills,
# HGMMA 44, UTMALDG 63; never run on a GPU). Predicted: if the misses come from the hot code's size,
# "no_instruction" falls below head's 0.34 and the probe on top of it costs much less than 6-10 %;
# the rows then within noise or faster. If the probe still costs 6-10 %, the size is not the cause.
#
# run: the GPU suite on the desc build; ncu (cycles at base clock, no_instruction and barrier stalls per
# issue) for head, desc, probe, desc+probe on two rows; icache_bench.cu (cycles per FFMA as a loop body
# grows from 4 to 128 KiB, one or two bodies per scheduler: where the instruction caches end); then a
# 2-pass A/B of head and desc on the perf and short grids. Land desc only if the suite passes and no row
# loses more than noise.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

# shellcheck source=docs/experiments/variants.sh
source "$ROOT/docs/experiments/variants.sh"  # build, gpu_suite, ab_grids

# ncu NAME ROW...: cycles, no_instruction and barrier stalls per issue of one decode kernel of each row.
ncu_rows() {
  local name=$1 m
  shift
  m=sm__cycles_elapsed.max,smsp__average_warps_issue_stalled_no_instruction_per_issue_active.ratio
  m=$m,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio
  # shellcheck disable=SC2086  # row is a list of options
  for row in "$@"; do ncu_metrics "$name $row" "$m" "scratch/$name-flash-mla-bench" $row; done
}

case "${1:-}" in
  build)
    export PATH=/usr/local/cuda/bin:$PATH
    mkdir -p scratch
    build head - "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    build desc s23-desc-advance.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    build probe s23-layout-probe.patch "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    build descprobe s23-desc-advance.patch,s23-layout-probe.patch "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    nvcc -O3 -arch=sm_90a -o scratch/icache_bench docs/experiments/icache_bench.cu
    ;;
  run)
    OUT=${OUT:-s23-next-out}
    mkdir -p "$OUT"
    gpu_suite desc
    rows=("--batch 128 --seqlen 16384 --h-q 128 --s-q 2" "--batch 128 --seqlen 4096 --h-q 128 --s-q 1")
    for name in head desc probe descprobe head; do ncu_rows "$name" "${rows[@]}"; done
    timeout 60 scratch/icache_bench | tee "$OUT/icache.txt"
    ab_grids head desc
    ;;
  *)
    sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | grep '^#' >&2
    exit 2
    ;;
esac
