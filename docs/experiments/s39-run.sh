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

# wrap NAME BASE ENV ARG...: scratch/NAME-flash-mla-bench runs scratch/BASE-flash-mla-bench with ENV (a
# VAR=VALUE or "-") and ARGs before the caller's.
wrap() {
  local name=$1 base=$2 env=${3#-}
  shift 3
  {
    echo '#!/usr/bin/env bash'
    echo "# $base-flash-mla-bench${*:+ $*}${env:+ with $env} (s39-run.sh wrap)."
    echo "${env:+$env }exec \"\$(dirname \"\$0\")/$base-flash-mla-bench\"${*:+ ${*@Q}} \"\$@\""
  } >"scratch/$name-flash-mla-bench"
  chmod +x "scratch/$name-flash-mla-bench"
}

case ${1:-} in
  build)
    # (here, ~35 min on 2 cores) every binary and wrapper calls 1-7 ran, each from the commit it was built at; by3
    # comes from `s38-run.sh build`.
    h128_rows=(--grid "small,perf,flashmla" --only "h_q=128 s_q=1")
    REV=b5ef0a9 build w7 - "" flash-mla-bench flash_mla_gpu_tests
    REV=b5ef0a9 build nw s39-no-whole-groups.patch "" flash-mla-bench
    REV=ead7e4d build tr - -DFLASH_MLA_TRACE=ON flash-mla-phases
    REV=0188815 build tp s39-fp8-two-part.patch "" flash-mla-bench flash_mla_gpu_tests
    REV=0188815 build trtp s39-fp8-two-part.patch -DFLASH_MLA_TRACE=ON flash-mla-phases
    REV=b60016a build sv s39-seesaw-one-group.patch "" flash-mla-bench flash_mla_gpu_tests
    wrap h3 by3 - "${h128_rows[@]}"
    wrap h7 w7 - "${h128_rows[@]}"
    wrap hs w7 FLASH_MLA_SM90_SCHEDULE=serial "${h128_rows[@]}"
    wrap sw w7 FLASH_MLA_SM90_SCHEDULE=serial
    wrap f2w7 w7 - --grid flashmla --kv fp8,fp8-tensor --only s_q=2
    wrap f2tp tp - --grid flashmla --kv fp8,fp8-tensor --only s_q=2
    wrap g8w7 w7 - --grid flashmla --only h_q=128
    wrap g8sv sv - --grid flashmla --only h_q=128
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
    forced_tests w7 bypart
    ab_names abw7 2 300 "--check-rows 8 --quiet --no-ceilings" h3 h7 hs
    ;;
  call2)
    # (~5 min) nw against w7 on the uniform rows of FlashMLA's and PERF.md's grids (whole sequences on 128 SMs
    # against the cost line over 132). Predicted: 16384 rows -1 ... -2 %, 8192 within +-1 %, 4096 +2 ... +5 %
    # (session 12 measured whole groups 1-8 % faster at 4096 and 1.5 % at 16384 h32 s2 / h64 s1, on that day's
    # kernel); b=64 512 s2 slower.
    ab_names abnw 2 280 "--grid flashmla,perf --only seqlen= --check-rows 8 --quiet --no-ceilings" w7 nw
    # Then ncu at base clock of w7 (by part) and sw (w7 with every call serial: `build` writes that wrapper too) on
    # two 4-block-part rows: call 1 left the by-part kernel's serial CTAs ~2 % behind the serial kernel with the
    # decision's loads gone. Predicted: the cycle gap smaller than session 38's 12-21 %, the instructions' +7 % still.
    m=sm__cycles_elapsed.max,smsp__inst_executed.sum
    m=$m,smsp__average_warps_issue_stalled_no_instruction_per_issue_active.ratio
    m=$m,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio
    ncu_each "$m" "sw w7" "--batch 4 --seqlen 4096 --h-q 128 --s-q 1" "--batch 1 --seqlen 16384 --h-q 128 --s-q 1"
    ;;
  call3)
    # (~3 min) Issue 7's 64-row rows run FP8 on the dense kernel at bf16's speed (per tensor 1.01-1.04x) or slower
    # (with scale 0.84-0.86x; session 34). The model to test (an inference): a stage is held from its raw copy's
    # start through the producer's dequantisation (D) to the consumers' release (C), so with two stages a block
    # takes max(C, (L + D + C) / 2), L the copy's latency; bf16 has no D but twice the bytes. Replayed times of
    # the three formats on two 64-row rows, then ncu at base clock on b=128 4096 h32 s2: predicted, FP8's tensor
    # pipe no busier than bf16's, with scale the least busy and the most instructions (D), the consumers' waits
    # (long scoreboard at the mbarrier tries) highest with scale.
    for row in "--h-q 32 --s-q 2" "--h-q 16 --s-q 4"; do
      # shellcheck disable=SC2086  # row is a list of options
      scratch/w7-flash-mla-bench --batch 128 --seqlen 4096 $row --kv dense,fp8-tensor,fp8 --check-rows 8 --quiet \
        --no-ceilings 2>&1 | grep -E "^(workload|b=)"
    done
    m=gpu__time_duration.sum,sm__cycles_elapsed.max,smsp__inst_executed.sum,dram__bytes_read.sum
    m=$m,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active
    m=$m,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio
    m=$m,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio
    m=$m,smsp__average_warps_issue_stalled_sleeping_per_issue_active.ratio
    for kv in dense fp8-tensor fp8; do
      ncu_metrics "$kv b=128 4096 h32 s2" "$m" scratch/w7-flash-mla-bench --batch 128 --seqlen 4096 --h-q 32 --s-q 2 \
        --kv "$kv"
    done
    ;;
  call4)
    # (~1 min) The per-block stamps of the dense kernel's consumers on b=128 4096 h32 s2 in bf16, FP8 per tensor
    # and FP8 with scale (scratch/tr-flash-mla-phases: a -DFLASH_MLA_TRACE build of the landing commit with the
    # d64 studies; `cmake --build <trace dir> --target flash-mla-phases`; its per-tensor dense kernel spills 16
    # bytes there). Predicted from call 3's model: consumer 0 waits for K ("K landed" after "begin") a few hundred
    # cycles a block per tensor and ~1000+ with scale, ~0 in bf16; the other phases alike.
    timeout 120 scratch/tr-flash-mla-phases d64 2>&1 | tail -60
    ;;
  call5)
    # (~6 min) The landing commit's whole GPU suite (call 1 ran its schedule tests and the 16-bit tests forced by
    # part), then the Python package built here and its tests (get_mla_metadata now writes word 7).
    gpu_suite w7
    install_python
    python_tests
    ;;
  call6)
    # (~5 min) tp: 0188815 with s39-fp8-two-part.patch, FP8's two-part stages (the producers signal a stage's first
    # 16-bit tiles on k_full and the rest on k_rest; consumer 0 issues Q·Kᵀ's first sub-tiles before waiting for
    # the rest; bf16/fp16 kernels' SASS unchanged), built here: scratch/tp-flash-mla-bench and -flash_mla_gpu_tests
    # from the release build, scratch/trtp-flash-mla-phases from the trace build; f2w7 / f2tp wrap w7 / tp with
    # `--grid flashmla --kv fp8,fp8-tensor --only s_q=2`. The whole GPU suite on tp (its device schedule words
    # now take the warp-per-part pass too), a 2-pass A/B of w7 and tp on FlashMLA's s_q=2 rows in both FP8
    # formats (h16 s2, 32 rows, runs the narrow kernel: the control), then tp's d64 stamps. Predicted: with scale
    # the 64- to 256-row rows 5-11 % faster (consumer 0's ~630-cycle wait mostly gone: "K landed" after "begin"
    # ~130-200 in the stamps), per tensor within +-1 %, the 32-row rows unchanged.
    gpu_suite tp
    ab_names abtp 2 240 "--check-rows 8 --quiet --no-ceilings" f2w7 f2tp
    timeout 60 scratch/trtp-flash-mla-phases d64 2>&1 | grep -E "us/call|consumer [01]:"
    ;;
  call7)
    # (~4 min) sv: b60016a with s39-seesaw-one-group.patch: the seesaw's Q·Kᵀ issues its 36 wgmma as one group when
    # every group of the stage has landed (the warpgroup agrees by barrier.red), else as today, a group per
    # landed group with a wait between (each wait ends a hardware wgmma group: gsb0 in SASS; call 6's two-part
    # FP8 stage lost ~150 cycles a block to one such split). The 16-bit GPU tests with every call on the
    # seesaw, then a 2-pass A/B of w7 and sv on FlashMLA's h_q=128 rows (g8w7 / g8sv wrappers: --grid flashmla
    # --only h_q=128). Predicted: the 256-row rows 1-4 % faster, the 128-row rows 0-3 %.
    forced_tests sv seesaw
    ab_names absv 2 200 "--check-rows 8 --quiet --no-ceilings" g8w7 g8sv
    ;;
  *)
    echo "usage: $0 build|call1|call2|call3|call4|call5|call6|call7 (its next: s40-run.sh call1)" >&2
    exit 2
    ;;
esac
