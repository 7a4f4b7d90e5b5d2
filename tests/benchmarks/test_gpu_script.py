"""benchmarks/gpu/issue12.py on CPU: the pieces a GPU run depends on, without the servers (the
full `--device cpu --dry-run`, servers included, is recorded in BENCHMARKS.md: ~3-8 min here)."""
from __future__ import annotations

import json
from types import SimpleNamespace

from benchmarks.gpu import issue12


def test_flops_count_the_padded_batches_by_hand():
    cfg = SimpleNamespace(hidden_size=4, intermediate_size=8, num_hidden_layers=2)
    rows = [[1] * 3, [1] * 5]  # batch 2: both padded to 5 tokens; batch 1: 3 and 5 tokens
    per_token = lambda t: 2 * (4 * 16 + 2 * 4 * 8) + 2 * 2 * t * 4  # noqa: E731
    assert issue12.flops_per_pass(rows, 2, cfg) == 2 * 2 * 5 * per_token(5)
    assert issue12.flops_per_pass(rows, 1, cfg) == 2 * (3 * per_token(3) + 5 * per_token(5))


def test_peak_comes_from_the_card_name_or_the_override():
    assert issue12.peak_tflops("NVIDIA H200", None) == 989.4
    assert issue12.peak_tflops("NVIDIA H100 PCIe", None) == 756.0
    assert issue12.peak_tflops("Some Future GPU", None) is None
    assert issue12.peak_tflops(None, 123.0) == 123.0


def test_dry_run_raw_step_on_cpu_writes_its_rows(tmp_path):
    assert issue12.main(["--device", "cpu", "--dry-run", "--items", "2", "--steps", "raw", "--out", str(tmp_path)]) == 0
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["device"] == "cpu" and env["dry_run"] is True
    rows = [json.loads(line) for line in (tmp_path / "raw_forward.jsonl").read_text().splitlines()]
    assert [(r["dtype"], r["batch_size"]) for r in rows] == [("float32", 1), ("float32", 2), ("bfloat16", 1),
                                                             ("bfloat16", 2)]
    assert all(r["rows_per_s"] > 0 and r["items_per_s"] > 0 and r["achieved_tflops"] > 0 for r in rows)
    assert all(r["share_of_bf16_peak"] is None for r in rows)  # no peak known for a CPU
