#!/usr/bin/env bash
# Session 39's device calls (H200). Binaries built on the CPU machine into scratch/ (carried) by `bash
# docs/experiments/s39-run.sh build` at the landing commit of the part-blocks word: w7 (that commit), nw (w7 with
# s39-no-whole-groups.patch: b=128 uniform rows cut by the cost line over every SM instead of whole sequences on
# 128 of them); by3 is session 38's by-part build (the CTAs count their parts' blocks themselves). The h3 / h7 / hs
# wrappers run by3 / w7 / w7 with every call serial on the h_q=128 s_q=1 rows of the small, perf and FlashMLA grids.
set -euo pipefail
# shellcheck source=docs/experiments/variants.sh
source "$(dirname "${BASH_SOURCE[0]}")/variants.sh"  # sets ROOT, cd there
out_dir s39-out

# wrap NAME BASE ENV: scratch/NAME-flash-mla-bench runs scratch/BASE-flash-mla-bench with ENV (a VAR=VALUE or
# "-") on the h_q=128 s_q=1 rows of the small, perf and FlashMLA grids.
wrap() {
  local env=${3#-}
  {
    echo '#!/usr/bin/env bash'
    echo "# $2-flash-mla-bench on the h_q=128 s_q=1 rows (s39-run.sh wrap)."
    echo "${env:+$env }exec \"\$(dirname \"\$0\")/$2-flash-mla-bench\" --grid small,perf,flashmla \\"
    echo '  --only "h_q=128 s_q=1" "$@"'
  } >"scratch/$1-flash-mla-bench"
  chmod +x "scratch/$1-flash-mla-bench"
}

case ${1:-} in
  build)
    # (here, ~25 min on 2 cores)
    build w7 - "" flash-mla-bench flash_mla_gpu_tests
    build nw s39-no-whole-groups.patch "" flash-mla-bench
    wrap h3 by3 -
    wrap h7 w7 -
    wrap hs w7 FLASH_MLA_SM90_SCHEDULE=serial
    ;;
  call1)
    # (~7 min) w7: the by-part kernel reads its part's blocks from metadata word 7 (the schedule writes them)
    # instead of counting them. Its schedule tests (device words = host words) and 16-bit tests with every call by
    # part, then a 2-pass A/B of by3, w7 and w7 forced serial (hs; also the first GPU run of the override in its
    # Schedule-enum form) on the 23 h_q=128 s_q=1 rows. Predicted: w7 at or below by3 on every row, the 4-31-block
    # rows (b=1-16 at 4k-16k) 1-2 % faster, within ~1 % of hs there; the b=128 rows unchanged.
    timeout 60 scratch/w7-flash_mla_gpu_tests --gtest_filter="GpuSchedule.*" >"$OUT/w7-schedule-tests.txt" 2>&1 &&
      echo "w7 GpuSchedule passed" || echo "w7 GpuSchedule FAILED"
    tail -3 "$OUT/w7-schedule-tests.txt"
    bypart_tests w7
    ab_names abw7 2 300 "--check-rows 8 --quiet --no-ceilings" h3 h7 hs
    ;;
  call2)
    # (~5 min) nw against w7 on the uniform rows of FlashMLA's and PERF.md's grids (whole sequences on 128 SMs
    # against the cost line over 132). Predicted: 16384 rows -1 ... -2 %, 8192 within +-1 %, 4096 +2 ... +5 %
    # (session 12 measured whole groups 1-8 % faster at 4096 and 1.5 % at 16384 h32 s2 / h64 s1, on that day's
    # kernel); b=64 512 s2 slower.
    ab_names abnw 2 280 "--grid flashmla,perf --only seqlen= --check-rows 8 --quiet --no-ceilings" w7 nw
    ;;
  *)
    echo "usage: $0 build|call1|call2" >&2
    exit 2
    ;;
esac
