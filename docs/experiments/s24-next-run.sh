#!/usr/bin/env bash
# Session 24's device calls (written in session 24):
#   bash docs/experiments/s24-next-run.sh build          # CPU machine: into scratch/
#   OUT=$OUT bash docs/experiments/s24-next-run.sh run   # GPU, carry ["scratch"]
#
# With the descriptors advanced by one add (76d5b70), the layout probe no longer moved the kernel's
# cycles (ncu, session 24 call 1), so two changes that lost by 1-2 % when the layout was fragile are
# measured again, rebased on 76d5b70:
#   mc: TMA multicast to a part's 2 or 4 row-tile CTAs (s24-multicast.patch, built with
#       -DFLASH_MLA_MULTICAST=1; session 22: clustered 128-row rows +0.6 ... +1.7 %);
#   qf: the query tile by TMA for full tiles (s24-q-by-tma-full-tiles.patch; session 23: 1024 h128 s1
#       -1.4 %, 16384 h64 s1 +1.6 %, h128 s2 +1.1 %).
# probe (s23-layout-probe.patch on head) is the layout control. run: the GPU suites of mc and qf, then a
# 2-pass A/B of head, probe, mc and qf on the perf and short grids.
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
    build probe s23-layout-probe.patch "-DFLASH_MLA_BUILD_CLI=ON" flash-mla-bench
    build mc s24-multicast.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON \
      -DCMAKE_CUDA_FLAGS=-DFLASH_MLA_MULTICAST=1" flash-mla-bench flash_mla_gpu_tests
    build qf s24-q-by-tma-full-tiles.patch "-DFLASH_MLA_BUILD_CLI=ON -DFLASH_MLA_BUILD_TESTS=ON" flash-mla-bench \
      flash_mla_gpu_tests
    ;;
  run)
    OUT=${OUT:-s24-next-out}
    mkdir -p "$OUT"
    gpu_suite mc
    gpu_suite qf
    OUT=$OUT/a timeout 400 bash scripts/ab.sh -p 2 -a "--grid perf,short --check-rows 8 --quiet --no-ceilings" \
      head=scratch/head-flash-mla-bench probe=scratch/probe-flash-mla-bench mc=scratch/mc-flash-mla-bench \
      qf=scratch/qf-flash-mla-bench >"$OUT/ab.txt" 2>&1 || true
    cat "$OUT/ab.txt"
    ;;
  *)
    sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | grep '^#' >&2
    exit 2
    ;;
esac
