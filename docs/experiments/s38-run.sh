#!/usr/bin/env bash
# Session 38's device calls (run from the repository root; binaries in scratch/, carried with `carry: ["scratch"]`;
# OUT=$OUT there). Usage: s38-run.sh STEP. Results: PERFORMANCE.md's session 38 entry.
# scratch/ as s36-run.sh fetch and session 37 left it (cur-flash-mla-bench: a0de8d3's kernels, the same SASS as
# 2a24cb9's), plus by-flash-mla-bench and by-flash_mla_gpu_tests (this session's Schedule::kByPart build, /tmp/n;
# by its end pieces), by2-* (by the part's blocks), by3-* (by2 deciding after the first Q tile) and the c1 / b1 /
# b3 wrappers (call4, call5).
# call1 was s37-run.sh next; call2: OUT=$OUT/abser bash scripts/ab.sh -p 2 -t 420 -a "--grid small,perf --only
# h_q=128 --check-rows 8 --quiet --no-ceilings" cur=scratch/cur-flash-mla-bench ser=scratch/ser-flash-mla-bench.
set -euo pipefail
# shellcheck source=docs/experiments/variants.sh
source "$(dirname "${BASH_SOURCE[0]}")/variants.sh"  # sets ROOT, cd there
out_dir s38-out

case ${1:-} in
  call3)
    # (~8 min) The by-part schedule (65-128 rows choose serial or seesaw per CTA from their part's end pieces):
    # the GPU suite as built (its 65-128-row calls by part), then its 16-bit tests with every call by part; then
    # a 2-pass A/B against cur on every h_q=128 row of the small, perf and FlashMLA grids (the 256-row rows of
    # the last are a control: the same seesaw kernel in both). Predicted from call 2 (serial against seesaw):
    # the b=1-16 rows with 4-31-block pieces -1.3 ... -3.5 %, the rest within +-1 %.
    gpu_suite by
    forced_tests by bypart
    ab_names abby 2 330 "--grid small,perf,flashmla --only h_q=128 --check-rows 8 --quiet --no-ceilings" cur by
    ;;
  call4)
    # (~6 min) call 3 ran ragged b=128 h128 s1 4-5 % slower (parts deciding by their end pieces only); by2 counts
    # the part's blocks. Its 16-bit tests with every call by part, then a 3-pass A/B against cur on the rows of
    # 65-128 query rows (c1 / b1: wrappers of cur / by2 with --grid small,perf,flashmla --only "h_q=128 s_q=1").
    # Predicted: the ragged rows within +-1 %, the b=1-16 rows with 4-31-block parts -1.7 ... -2.5 % as in call 3.
    forced_tests by2 bypart
    ab_names abby2 3 300 "--check-rows 8 --quiet --no-ceilings" c1 b1
    ;;
  call5)
    # (~5 min) by3: by2 with the consumers' decision taken once the first Q tile is ready (call 4: the by-part
    # kernel's serial CTAs ran b=4 4096 and b=1 16384 h128 s1 0.8-2.2 % slower than cur where call 2's serial
    # kernel ran them 1.3 % faster: an inference that the decision's loads delay the first Q tile). Its 16-bit
    # tests with every call by part, then a 2-pass A/B of c1, b1 (by2) and b3 (by3). Predicted: b3 at or below b1
    # on every row, b=4 4096 and b=1 16384 h128 s1 about 1 % below c1.
    forced_tests by3 bypart
    ab_names abby3 2 280 "--check-rows 8 --quiet --no-ceilings" c1 b1 b3
    ;;
  next)
    # (next session, ~6 min; carry ["scratch"]; if scratch/ is gone: `s36-run.sh fetch` here, then build
    # by3-flash-mla-bench from d6ba131 and ser-flash-mla-bench as s37-run.sh's header says) (1) the same-run standing
    # on d6ba131 (s36-run.sh next: the Python package built there and timed beside vLLM's FlashMLA and FA3; predicted:
    # the small grid ~+0.3 % from its h128 s1 rows, the rest unchanged); (2) why the by-part kernel's serial CTAs
    # ran 4-block parts 1.9-2.4 % behind the serial kernel (calls 2 and 5): ncu at base clock on both kernels (the
    # release builds; a trace build of the by-part kernel spills 52 bytes), cycles, instructions and the fetch,
    # barrier and long-scoreboard stalls. Predicted: equal instructions per block, more no_instruction stalls in the
    # by-part kernel (its serial code sits past the shared epilogue).
    OUT=$OUT bash docs/experiments/s36-run.sh next 2>&1 | tail -60
    m=sm__cycles_elapsed.max,smsp__inst_executed.sum
    m=$m,smsp__average_warps_issue_stalled_no_instruction_per_issue_active.ratio
    m=$m,smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio
    m=$m,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio
    ncu_each "$m" "ser by3" "--batch 4 --seqlen 4096 --h-q 128 --s-q 1" "--batch 1 --seqlen 16384 --h-q 128 --s-q 1" \
      "--batch 8 --seqlen 4096 --h-q 128 --s-q 1"
    ;;
  *)
    echo "usage: $0 call3|call4|call5|next" >&2
    exit 2
    ;;
esac
