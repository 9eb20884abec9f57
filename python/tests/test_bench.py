"""python -m flash_mla.bench: the CPU path on the tiny grid (what CI can run), its JSON and CSV, the
workload definitions, and the clear failure without a CUDA device."""

import csv
import json
import subprocess
import sys

import pytest
import torch

from flash_mla import bench


def test_cpu_tiny_grid_writes_json_and_csv(tmp_path):
    cmd = [sys.executable, "-m", "flash_mla.bench", "--device", "cpu", "--grid", "tiny", "--check",
           "--out", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    specs = bench.grid_specs("tiny", 0)
    assert all(s.label in run.stdout for s in specs)

    info = json.loads((tmp_path / "bench_tiny_bf16.json").read_text())
    assert info["device"].startswith("cpu") and info["dtype"] == "bf16" and info["ceilings"] is None
    assert [r["workload"] for r in info["rows"]] == [s.label for s in specs]
    for row, spec in zip(info["rows"], specs):
        assert row["seqlens"] == list(spec.seqlens) and (row["h_q"], row["s_q"]) == (spec.h_q, spec.s_q)
        assert row["time_us"] > 0 and "error" not in row
        # PERF.md's counting, from the time
        assert row["bytes"] == (sum(spec.seqlens) * 576 + spec.batch * spec.s_q * spec.h_q * (576 + 512)) * 2
        assert row["flops"] == 2 * spec.s_q * spec.h_q * (576 + 512) * sum(spec.seqlens)
        assert row["gbps"] == pytest.approx(row["bytes"] / row["time_us"] / 1e3)
        assert row["tflops"] == pytest.approx(row["flops"] / row["time_us"] / 1e6)
        assert row["check"]["ok"] and row["check"]["max_out_err"] < 8e-4, row["check"]

    with open(tmp_path / "bench_tiny_bf16.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["workload"] for r in table] == [s.label for s in specs]
    assert all(r["check"] == "ok" for r in table)
    png = (tmp_path / "bench_tiny_bf16.png").exists()
    assert png or "matplotlib is not installed" in run.stdout  # the plot is optional

    # --plot draws from the JSON alone (for a machine with matplotlib)
    (tmp_path / "bench_tiny_bf16.png").unlink(missing_ok=True)
    assert bench.main(["--plot", str(tmp_path / "bench_tiny_bf16.json")]) == 0
    assert (tmp_path / "bench_tiny_bf16.png").exists() == png


def test_grids_match_the_cpp_bench():
    """cli/flash_mla_bench.cpp's named grids: row counts, shapes, PERF.md's ragged rule."""
    assert [len(bench.grid_specs(g, 0)) for g in ("perf", "flashmla", "short", "small", "all")] == [11, 48, 5, 6, 70]
    perf = bench.grid_specs("perf", 0)
    assert perf[0].label == "b=128 seqlen=8192 h_q=16 s_q=1" and perf[0].seqlens == (8192,) * 128
    assert perf[8].label == "b=4 lens=4641/45118/1730/1696 h_q=16 s_q=4"
    assert perf[9].label == "b=64 lens=256..1024 h_q=16 s_q=4" and all(256 <= n <= 1024 for n in perf[9].seqlens)
    ragged = [s for s in bench.grid_specs("flashmla", 0) if s.label.endswith("ragged")]
    assert len(ragged) == 24 and all(min(s.seqlens) >= s.s_q and len(set(s.seqlens)) > 1 for s in ragged)
    assert bench.grid_specs("flashmla", 0) == bench.grid_specs("flashmla", 0)  # seeded


def test_inputs_are_scattered_poisoned_and_never_zero():
    spec = bench.ragged(4, 200, 16, 2, seed=0)
    k_cache, block_table, seqlens = bench.make_inputs(spec, torch.bfloat16, torch.device("cpu"), seed=0)
    assert seqlens.tolist() == list(spec.seqlens)
    finite = torch.isfinite(k_cache).all(-1).all(-1)  # [pages, 64]: which tokens hold data
    owned = []
    for i, n in enumerate(spec.seqlens):
        for j in range(-(-n // 64)):
            page = int(block_table[i, j])
            owned.append(page)
            assert finite[page].sum() == min(64, n - 64 * j) and finite[page, : min(64, n - 64 * j)].all()
        assert all(int(x) in bench.GARBAGE_BLOCK_IDS for x in block_table[i, -(-n // 64):])
    assert len(set(owned)) == len(owned) and owned != sorted(owned)
    assert not finite[[p for p in range(k_cache.shape[0]) if p not in owned]].any()
    assert not (k_cache[owned] == 0).any()


def test_without_cuda_it_says_so_and_fails(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main(["--out", str(tmp_path)]) == 1
    assert "no CUDA device" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kv, token_bytes", [("fp8", 656), ("fp8-tensor", 576)])
def test_cpu_tiny_grid_fp8_caches(tmp_path, kv, token_bytes):
    """--kv: the same rows on an FP8 cache, counted with the format's bytes per token, checked against
    the float64 reference on the dequantised cache."""
    assert bench.main(["--device", "cpu", "--grid", "tiny", "--check", "--kv", kv, "--out", str(tmp_path)]) == 0
    info = json.loads((tmp_path / f"bench_tiny_{kv}.json").read_text())
    specs = bench.grid_specs("tiny", 0)
    assert info["kv"] == kv and [r["workload"] for r in info["rows"]] == [s.label for s in specs]
    for row, spec in zip(info["rows"], specs):
        assert row["kv"] == kv and "error" not in row
        assert row["bytes"] == sum(spec.seqlens) * token_bytes + spec.batch * spec.s_q * spec.h_q * (576 + 512) * 2
        assert row["check"]["ok"] and row["check"]["max_out_err"] < 8e-4, row["check"]


def test_fp8_check_sees_a_wrong_output():
    """The FP8 check can fail: an output off by 1 % in one sequence is reported."""
    import flash_mla
    spec = bench.uniform(2, 130, 16, 1)
    k_cache, block_table, seqlens = bench.make_inputs(spec, torch.bfloat16, torch.device("cpu"), 0)
    k_cache, descale_k, _ = bench.quantize_cache(k_cache, "fp8-tensor")
    q = bench.make_queries(spec, torch.bfloat16, torch.device("cpu"), 0, 1)[0]
    meta, splits = flash_mla.get_mla_metadata(seqlens, 16, 1)
    out, lse = flash_mla.flash_mla_with_kvcache(q, k_cache, block_table, seqlens, 512, meta, splits, causal=True,
                                                descale_k=descale_k)
    assert bench.check(q, k_cache, block_table, seqlens, out, lse, 0, descale_k)["ok"]
    out[1] *= 1.01
    result = bench.check(q, k_cache, block_table, seqlens, out, lse, 0, descale_k)
    assert not result["ok"] and "out" in result["failure"]
