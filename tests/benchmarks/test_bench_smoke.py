"""Smoke test of the serving benchmark (benchmarks/run.py): every piece on a handful of items
against the real service and the naive server; the output's structure and that every number is
positive. No timing assertions: this machine is shared."""

from __future__ import annotations

import json

from benchmarks import run as bench


def test_benchmark_pieces_and_outputs(fgrm_service, tmp_path):
    args = bench.parse_args(["--quick", "--items", "2", "--concurrency", "1,2", "--batch-sizes", "1,2",
                             "--name", "smoke", "--out", str(tmp_path)])
    results = bench.run(args, service_handle=fgrm_service)

    assert results["items"] == 2 and results["runtime"] in ("torch", "onnx", "onnx-int8")
    assert [r["batch_size"] for r in results["raw_forward"]] == [1, 2]
    for r in results["raw_forward"]:
        assert r["items_per_s"] > 0 and r["batch_p99_ms"] >= r["batch_p50_ms"] > 0
    engine = results["engine"]
    assert engine["batched"]["items_per_s"] > 0 and engine["batched"]["prepare_ms_per_item"] > 0
    assert engine["single"]["items_per_s"] > 0 and engine["single"]["p50_ms"] > 0

    assert [(r["round"], r["concurrency"]) for r in results["raw_rounds"]] == [(1, 1), (1, 2)]
    assert len(results["engine_rounds"]) == 1 and len(results["server_rounds"]) == 8
    settings = {(r["server"], r["transport"], r["concurrency"]) for r in results["servers"]}
    assert settings == {(s, t, c) for s, t in (("service", "http"), ("service", "grpc"), ("naive", "http"),
                                               ("seed", "http")) for c in (1, 2)}
    assert results["seed_style"]["forwards_per_item"] == 3 and results["seed_style"]["p50_ms"] > 0
    for r in results["servers"]:
        assert r["errors"] == {} and r["requests"] == 2, r
        assert r["items_per_s"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0, r

    summary = results["summary"]
    assert summary["concurrency"] == 2 and summary["raw_items_per_s"] > 0
    for transport in ("http", "grpc"):
        t = summary["transports"][transport]
        assert t["vs_raw"] > 0 and t["vs_naive"] > 0 and "p50_overhead_ms" in t
        assert set(t["met"]) == {"vs_raw", "vs_naive", "p50_overhead_ms"}
    # every setting scored every item; the rewards are the in-process engine's (the seed-style
    # server's: its own models' in-process)
    assert len(summary["parity_max_abs_diff"]) == 8
    assert all(d is not None and d >= 0 for d in summary["parity_max_abs_diff"].values())
    # batch 1 on both sides: the seed-style server's rewards are its in-process models' exactly
    assert all(d < 1e-9 for k, d in summary["parity_max_abs_diff"].items() if k.startswith("seed")), summary
    ratios = summary["ratio_service_vs_seed_style"]
    assert set(ratios) == {"c=1", "c=2"} and all(v > 0 for r in ratios.values() for v in r.values())

    json_path, png_path = bench.write_outputs(results, tmp_path)
    assert json.loads(json_path.read_text())["name"] == "smoke"
    assert png_path.stat().st_size > 10_000
    table = bench.markdown_table(results)
    assert "| (b) service gRPC | 2 |" in table and "| (c) naive server HTTP | 1 |" in table
    assert "(d) seed-style server" in table and "÷ seed-style at c=2" in table
    assert "≥ 0.9" in table and "≤ 3" in table
