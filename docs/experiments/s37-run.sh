#!/usr/bin/env bash
# Session 37's device calls (run from the repository root; binaries and libraries in scratch/, carried with
# `carry: ["scratch"]`; OUT=$OUT there). Usage: s37-run.sh STEP. Results: PERFORMANCE.md's session 37 entry.
# scratch/ as s36-run.sh fetch leaves it, plus the builds named below: s37tr-flash-mla-phases (a -DFLASH_MLA_TRACE=ON
# build of a0de8d3 with ecfa226's flash-mla-phases; from call 2 on, its dump names with '_' for '~'), pad-, rel- and
# box-* (s37-pad-skip, s37-deferred-release and s37-accum-box-rows.patch on a0de8d3, built in /tmp/n), ser- and
# see-flash-mla-bench (two-line wrappers of cur-flash-mla-bench that export FLASH_MLA_SM90_SCHEDULE=serial /
# seesaw). Later builds of flash-mla-phases add a part column to the dumps (s37_dump_fit.py reads both).
set -euo pipefail
# shellcheck source=docs/experiments/variants.sh
source "$(dirname "${BASH_SOURCE[0]}")/variants.sh"  # sets ROOT, cd there
out_dir s37-out

case ${1:-} in
  call1)
    # (1) Where the ragged b=128 rows' time goes: scratch/s37tr-flash-mla-phases (a -DFLASH_MLA_TRACE=ON build of
    # HEAD's flash-mla-phases, with the h32 s1 studies and FLASH_MLA_PHASES_DUMP) dumps each CTA's part (pieces,
    # blocks) and its stamps for 4096 and 16384, uniform and ragged. Predicted: ragged parts end spread over
    # ~5-10 % of the span, the latest ones those with the most pieces.
    mkdir -p "$OUT/dump"
    FLASH_MLA_PHASES_DUMP=$OUT/dump timeout 120 scratch/s37tr-flash-mla-phases "h32 s1" 2>&1 |
      tee "$OUT/phases.txt" || true
    # (2) s36-run.sh next: the interleaved standing (FlashMLA's grid, PERF.md's rows, the small grid).
    OUT=$OUT bash docs/experiments/s36-run.sh next 2>&1 | tail -60
    ;;
  call2)
    # (1) call1's ragged dumps again (their names had a '~', which the device tool does not copy back; the phases build
    # here replaces it, but these files then fell to the tool's 8-file limit: call3 archives them).
    mkdir -p "$OUT/dump"
    FLASH_MLA_PHASES_DUMP=$OUT/dump timeout 120 scratch/s37tr-flash-mla-phases "ragged" >"$OUT/phases.txt" 2>&1 || true
    grep -E "us/call|last block" "$OUT/phases.txt" || true
    # (2) Why the same kernels run ~10 % slower in incumbent_bench.py than in flash-mla-bench (s36 call 3: b=128
    # 16384 h16 s1 536 us against 607 in call 6): the card's clocks, power and limit reasons sampled every 100 ms
    # while flash-mla-bench, the script with ours alone and the script with all three run the same row, in turn.
    # Predicted: the slow runs have a lower SM clock (power cap); if the memory clock or the copy ceiling falls too,
    # no kernel change recovers it.
    unpack_fa3
    install_python || true
    query=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active
    nvidia-smi --query-gpu=$query --format=csv,noheader,nounits -lms 100 >"$OUT/smi.csv" 2>&1 &
    smi=$!
    row="seqlen=16384 h_q=16 s_q=1"
    mark() { echo "$(date +'%Y/%m/%d %H:%M:%S.%N') $1" >>"$OUT/marks.txt"; }
    for pass in 1 2; do
      mark "bench$pass"
      timeout 60 scratch/cur-flash-mla-bench --grid flashmla --only "$row" --check-rows 8 --quiet \
        >"$OUT/bench$pass.txt" 2>&1 || true
      mark "alone$pass"
      timeout 60 "$py" scripts/incumbent_bench.py --workloads scratch/wl-flashmla.jsonl --only "$row" --with-ours \
        --flashmla-fp8 scratch/_flashmla_extension_C.abi3.so >"$OUT/alone$pass.txt" 2>&1 || true
      mark "all$pass"
      timeout 90 "$py" scripts/incumbent_bench.py --workloads scratch/wl-flashmla.jsonl --only "$row" --with-ours \
        --flashmla scratch/_flashmla_C.abi3.so --fa3 /tmp/_vllm_fa3_C.abi3.so >"$OUT/all$pass.txt" 2>&1 || true
    done
    mark end
    kill "$smi" || true
    head -3 "$OUT/smi.csv"
    for pass in 1 2; do
      grep -E "ceilings|seqlen=16384" "$OUT/bench$pass.txt" || true
      grep -E "seqlen=16384" "$OUT/alone$pass.txt" "$OUT/all$pass.txt" || true
    done
    python3 docs/experiments/s37_clocks.py "$OUT/smi.csv" "$OUT/marks.txt"
    ;;
  call3)
    # (1) call1's ragged dumps, as one archive (the device tool returns at most 8 files).
    mkdir -p "$OUT/dump"
    FLASH_MLA_PHASES_DUMP=$OUT/dump timeout 120 scratch/s37tr-flash-mla-phases "ragged" >/dev/null 2>&1 || true
    tar -C "$OUT" -czf "$OUT/dump.tgz" dump && rm -r "$OUT/dump"
    # (2) pad (s37-pad-skip.patch, built here: scratch/pad-*): a warp whose 16 rows are all padding skips the
    # softmax's arithmetic (P = 0, α = 1 as before; the same values, fewer instructions). Its GPU suite, then a
    # 2-pass A/B against cur (a0de8d3's kernels) on FlashMLA's grid, run back to back so that the card is at its
    # power cap. Predicted: 16-row rows -2 ... -5 %, 32-row rows -1 ... -3 %, 64+ rows within noise (no padding
    # warps there).
    gpu_suite pad
    ab_names ab-grid 2 300 "--grid flashmla --check-rows 8 --quiet --no-ceilings" cur pad
    ;;
  call4)
    # The schedules on the 64-row rows: cur with every call on the serial schedule (ser, what <= 64 rows run
    # today) against every call on the seesaw (see; scratch/ser- and see-flash-mla-bench set
    # FLASH_MLA_SM90_SCHEDULE), 2 passes on FlashMLA's h_q=64 rows (h64 s1: 64 rows; h64 s2: 128, on the seesaw by
    # default), 1 pass on PERF.md's and the short rows. Then, the card hot, the copy ceiling again (call 2 measured
    # 4249 GB/s on a cool card). Predicted: see -1 ... -3 % on the uniform 64-row rows, +3 ... +10 % on the short
    # 64-row rows (session 27).
    ab_names ab-h64 2 120 "--grid flashmla --only h_q=64 --check-rows 8 --quiet --no-ceilings" ser see
    ab_names ab-perf 1 120 "--grid perf,short --check-rows 8 --quiet --no-ceilings" ser see
    timeout 60 scratch/cur-flash-mla-bench --grid flashmla --only "seqlen=16384 h_q=16 s_q=1" --check-rows 8 --quiet \
      2>&1 | grep -E "ceilings|seqlen" || true
    ;;
  call5)
    # rel (s37-deferred-release.patch, built here: scratch/rel-*): a split piece's release to the combine deferred
    # from its end (where it held consumer 0's warp 0 at a GPU-scope fence, and with bulk-stored partials both
    # consumers' thread 0 waiting for the writes) to the next piece's kQReady barrier, once the next Q tile is in
    # flight. Its GPU suite, synccheck on the decode tests, then A/Bs against cur: FlashMLA's ragged rows (2 passes;
    # the uniform ones split nothing) and PERF.md's and the short rows (1 pass). Predicted: ragged rows -0.5 ... -2 %
    # (4096 most: a part's extra piece costs ~8 us there, call 3's dumps), the rest within noise.
    gpu_suite rel
    sanitize rel 'GpuDecode.*' synccheck
    ab_names ab-ragged 2 180 "--grid flashmla --only ragged --check-rows 8 --quiet --no-ceilings" cur rel
    ab_names ab-perf 1 90 "--grid perf,short --check-rows 8 --quiet --no-ceilings" cur rel
    ;;
  call6)
    # box (s37-accum-box-rows.patch, built here: scratch/box-*): a call of fewer than 64 query rows per KV head
    # stores its split pieces' partials by TMA as boxes of its rows (the accum map's box is min(64, rows) rows;
    # until now only full tiles did, and a 64-row box mostly past the rows lost 2.7 % at b=1 64k in session 28),
    # so those pieces' partials leave staged (~0.1 us to issue instead of ~1-4 us of direct stores) and the next Q
    # tile comes by TMA. Its GPU suite, then A/Bs against cur: FlashMLA's h_q=16 rows (2 passes; ragged s_q 1/2 are
    # the 16/32-row rows that split, uniform ones split nothing) and the small grid's h_q=16 rows (1 pass; s_q=4 is
    # 64 rows, a control). Predicted: ragged 16/32-row rows -0.5 ... -2 %, small 16-row rows and b=1 64k
    # -1 ... -4 %, b=64 512 s2 -1 ... -3 %, the rest within noise.
    gpu_suite box
    ab_names ab-h16 2 150 "--grid flashmla --only h_q=16 --check-rows 8 --quiet --no-ceilings" cur box
    ab_names ab-small 1 110 "--grid small --only h_q=16 --check-rows 8 --quiet --no-ceilings" cur box
    ;;
  next)
    # (next session, ~4 min; carry ["scratch"], `s36-run.sh fetch` here first if scratch/ is gone) Is the hot card's
    # loss on the memory-bound rows HBM's (shared by every implementation) or the SM clock's (ours more: the
    # consumer chain)? b=128 16384 h16 s1 in flash-mla-bench (its ceilings first, then 1000 graph replays, ~5 s of
    # timing) on a cool card; then the three implementations over FlashMLA's grid (about a minute: the card as late
    # in session 37's call 1, and another same-run standing); then the same flash-mla-bench run (its ceilings ~1 s
    # after the grid; its timing after ~2.4 GB of inputs are made on the CPU, the GPU idle meanwhile) and the script
    # on the row with all three. nvidia-smi (GPU 0) samples every 100 ms throughout; everything in one archive,
    # clk.tgz, made before the analysis. Predicted (session 37: 537 us cool, 609 late in the grid run): hot ~590-610
    # us; the copy ceiling within 2 % of the cool one and the SM clock lower (if so, the chain is the lever).
    unpack_fa3
    clk=$OUT/clk
    mkdir -p "$clk"
    install_python "$clk/pip-install.txt" || true
    query=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active
    nvidia-smi -i 0 --query-gpu=$query --format=csv,noheader,nounits -lms 100 >"$clk/smi.csv" 2>"$clk/smi.err" &
    smi=$!
    row="seqlen=16384 h_q=16 s_q=1"
    mark() { echo "$(date +'%Y/%m/%d %H:%M:%S.%N') $1" >>"$clk/marks.txt"; }
    one_row() {  # flash-mla-bench on the row: ceilings first, then ~5 s of replays
      timeout 60 scratch/cur-flash-mla-bench --grid flashmla --only "$row" --iters 1000 --check-rows 8 --quiet \
        >"$clk/$1.txt" 2>&1 || true
      grep -E "ceilings|seqlen" "$clk/$1.txt" || true
    }
    mark cool
    one_row cool
    mark heat
    timeout 150 "$py" scripts/incumbent_bench.py --workloads scratch/wl-flashmla.jsonl --with-ours --value-sd 0.1 \
      --flashmla scratch/_flashmla_C.abi3.so --fa3 /tmp/_vllm_fa3_C.abi3.so >"$clk/heat.txt" 2>&1 || true
    grep -E "geometric mean.*all" "$clk/heat.txt" || true
    mark hot
    one_row hot
    mark hotall
    timeout 45 "$py" scripts/incumbent_bench.py --workloads scratch/wl-flashmla.jsonl --only "$row" --with-ours \
      --flashmla scratch/_flashmla_C.abi3.so --fa3 /tmp/_vllm_fa3_C.abi3.so >"$clk/hotall.txt" 2>&1 || true
    grep -E "$row" "$clk/hotall.txt" || true
    mark end
    kill "$smi" 2>/dev/null || true
    wait "$smi" 2>/dev/null || true
    head -3 "$clk/smi.csv" || true
    tar -C "$OUT" -czf "$OUT/clk.tgz" clk || echo "tar: exit $?"
    python3 docs/experiments/s37_clocks.py "$clk/smi.csv" "$clk/marks.txt" || echo "s37_clocks.py: exit $?"
    ;;
  *)
    echo "usage: $0 call1|call2|call3|call4|call5|call6|next" >&2
    exit 2
    ;;
esac
