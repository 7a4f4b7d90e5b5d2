"""Issue 12's GPU run in one call: raw forward, the service vs naive vs seed-style, batch invariance, % of peak.

    python -m benchmarks.gpu.issue12 --out $OUT                  # on the GPU host (benchmarks/gpu/run12.sh)
    python -m benchmarks.gpu.issue12 --device cpu --dry-run --out /tmp/dry   # every step, tiny, on CPU

Steps, each writing its JSON into --out as soon as it is done (a timeout keeps what finished):

1. `env.json`: card, torch / transformers / python versions.
2. `raw_forward.jsonl`: the shipped model's encoder (`TorchBackend`, the MiniLM embedding
   network) on the rows of QA-Feedback dev items, length-sorted, batches of 1/8/32/128 rows, in
   fp32 and bf16; rows/s, items/s (rows per item: ~26) and the FLOP rate it reaches, as a share
   of the card's dense bf16 peak (`PEAK_BF16_TFLOPS`, or --peak-tflops).
3. `service.json` (+ .png): `benchmarks.run` with the GPU token budget (the default, 8192 on a
   CUDA backend): raw forward, engine in-process, the service over HTTP and gRPC, the naive and
   the seed-style servers at c=1/8/32/128, one round.
4. `invariance.json`: one item's rewards alone vs inside a request of 64 items, through a
   service in fp32 and one in bf16 (max |Δ| of P(error), of the completeness score, of the
   mixed total), and the encoder's embeddings of 64 rows alone vs in one batch (the raw effect
   the engine's one-row-per-pass rule hides for half precision).
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("fgrm.gpu12")
REPO = Path(__file__).resolve().parents[2]
DEFAULT_CHECKPOINT = REPO / "artifacts" / "fgrm-qa-signals"
# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s; first match wins.
PEAK_BF16_TFLOPS = (("H200", 989.4), ("H100 PCIe", 756.0), ("H100", 989.4), ("A100", 312.0), ("L40S", 362.1),
                    ("L4", 121.0), ("A10", 125.0))


def write(out: Path, name: str, data) -> None:
    (out / name).write_text(json.dumps(data, indent=1) + "\n")
    log.info("wrote %s", out / name)


def environment(device: str) -> dict:
    import torch
    import transformers

    env = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "device": device, "cuda_available": torch.cuda.is_available()}
    if device == "cuda":
        env["card"] = torch.cuda.get_device_name(0)
    return env


def peak_tflops(card: str | None, override: float | None) -> float | None:
    if override:
        return override
    for name, peak in PEAK_BF16_TFLOPS:
        if card and name in card:
            return peak
    return None


def dev_rows(checkpoint: Path, n_items: int) -> tuple[list[list[int]], int, int]:
    """Token-id rows of the first `n_items` dev items (what the service embeds), pad id, items."""
    from models import checkpoint as ckpt
    from models.data import DATA_DIR, load_records, split_records
    from models.signal_model import SignalModel
    from benchmarks.quant_study import plans_of

    meta = ckpt.read_meta(checkpoint)
    model = SignalModel(ckpt.load_tokenizer(checkpoint), meta)
    _, dev = split_records(load_records(DATA_DIR / "dev_feedback.json"))
    plans = plans_of(model, dev)[:n_items]
    return [r for _, _, p in plans for r in p.rows], model.pad_id, len(plans)


def flops_per_pass(rows: list[list[int]], batch_size: int, cfg) -> float:
    """Forward FLOPs of one pass over `rows` as `benchmarks.forward.bench` batches them (sorted,
    padded to each batch's longest): 2 per multiply-add in the six layers' projections and FFN,
    plus the two attention products; embeddings, norms and softmax are left out (< 1 %)."""
    h, ffn, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    lengths = sorted(len(r) for r in rows)
    total = 0.0
    for b in range(0, len(lengths), batch_size):
        chunk = lengths[b:b + batch_size]
        t, n = max(chunk), len(chunk)
        per_token = 2 * (4 * h * h + 2 * h * ffn) + 2 * 2 * t * h
        total += layers * n * t * per_token
    return total


def raw_forward(checkpoint: Path, device: str, dtypes: list[str], batch_sizes: list[int], rows, pad_id: int,
                n_items: int, repeats: int, peak: float | None, out: Path) -> list[dict]:
    from benchmarks.forward import bench
    from models.runtime.torch_backend import TorchBackend

    results = []
    for dtype in dtypes:
        backend = TorchBackend(checkpoint, device=device, dtype=dtype)
        cfg = backend.net.encoder.config
        for bs in batch_sizes:
            row = bench(backend, rows, pad_id, bs, repeats)
            rows_per_s = row.pop("items_per_s")  # bench counts rows
            tflops = flops_per_pass(rows, bs, cfg) * rows_per_s / len(rows) / 1e12
            row = {"dtype": dtype, "provider": backend.provider, **row, "rows_per_s": rows_per_s,
                   "items_per_s": round(rows_per_s * n_items / len(rows), 2),
                   "rows_per_item": round(len(rows) / n_items, 1), "achieved_tflops": round(tflops, 3),
                   "share_of_bf16_peak": round(tflops / peak, 5) if peak else None}
            results.append(row)
            log.info("raw %s batch %d: %.0f rows/s, %.1f items/s, %.2f TFLOP/s", dtype, bs, row["rows_per_s"],
                     row["items_per_s"], tflops)
            with open(out / "raw_forward.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")
        del backend
    return results


def raw_invariance(checkpoint: Path, device: str, dtype: str, rows, pad_id: int, n: int) -> dict:
    """Max |Δ| of the embeddings of `n` rows computed alone vs in one padded batch."""
    from models.encoding import pad_batch
    from models.runtime.torch_backend import TorchBackend

    backend = TorchBackend(checkpoint, device=device, dtype=dtype)
    pick = rows[:: max(1, len(rows) // n)][:n]
    alone = np.concatenate([backend.forward(*pad_batch([r], pad_id))["embeddings"] for r in pick])
    together = backend.forward(*pad_batch(pick, pad_id))["embeddings"]
    return {"dtype": dtype, "rows": len(pick), "max_abs_embedding_diff": float(np.abs(alone - together).max())}


def service_invariance(items: list[dict], batch: int, dtype: str, workdir: Path) -> dict:
    """One item alone vs the same item first in a request of `batch` items, through the service."""
    from benchmarks.run import server_settings
    from service.config import Settings
    from fgrm_client import NO_RETRY, HttpClient
    from benchmarks import launch

    settings = {**server_settings(Settings(), "torch"), "torch_dtype": dtype}  # FGRM_TORCH_DTYPE for the server's backend
    with launch.start_service(workdir / dtype, **settings) as svc, \
            HttpClient(svc.base_url, timeout=600, retry=NO_RETRY) as client:
        [alone] = client.score(items[:1])
        together = client.score(items[:batch])[0]
        info = client.feedback_types()[0].extra  # runtime, provider, batch_invariant of the served backend
    diffs = {"p_error": 0.0, "score": 0.0}
    for name, a in alone.types.items():
        b = together.types[name]
        for sa, sb in zip(a.segments, b.segments):
            for key in diffs:
                va, vb = getattr(sa, key, None), getattr(sb, key, None)
                if va is not None and vb is not None:
                    diffs[key] = max(diffs[key], abs(va - vb))
    return {"dtype": dtype, "batch_items": min(batch, len(items)), "runtime": info.get("runtime"),
            "provider": info.get("provider"), "batch_invariant_declared": info.get("batch_invariant"),
            "max_abs_p_error_diff": diffs["p_error"], "max_abs_completeness_score_diff": diffs["score"],
            "abs_mixed_total_diff": abs(alone.mixed.total - together.mixed.total)}


def service_benchmark(items: int, concurrency: str, batch_sizes: str, out: Path) -> dict:
    from benchmarks import run as bench

    args = bench.parse_args(["--runtime", "torch", "--items", str(items), "--concurrency", concurrency,
                             "--batch-sizes", batch_sizes, "--rounds", "1", "--name", "service", "--out", str(out)])
    results = bench.run(args)
    try:
        bench.write_outputs(results, out)
    except ImportError:  # no matplotlib on the host: the JSON is what matters
        write(out, "service.json", results)
    print(bench.markdown_table(results), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--dry-run", action="store_true", help="every step on a few items (the CPU check)")
    ap.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                    help="the signal checkpoint (run12.sh points this at the staged encoder)")
    ap.add_argument("--items", type=int, default=256, help="dev items for the service and raw forward")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak, if not in the table")
    ap.add_argument("--steps", default="raw,service,invariance")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    small = args.dry_run
    batch_sizes = [1, 2] if small else [1, 8, 32, 128]
    concurrency = "1,2" if small else "1,8,32,128"
    n_items = min(args.items, 4) if small else args.items
    steps = args.steps.split(",")
    started = time.perf_counter()
    env = environment(args.device)
    peak = peak_tflops(env.get("card"), args.peak_tflops)
    write(args.out, "env.json", {**env, "peak_bf16_tflops": peak, "dry_run": small})
    rows, pad_id, n = dev_rows(args.checkpoint, n_items)
    if "raw" in steps:
        raw_forward(args.checkpoint, args.device, ["float32", "bfloat16"], batch_sizes, rows, pad_id, n,
                    1 if small else 3, peak, args.out)
    if "service" in steps:
        service_benchmark(n_items, concurrency, ",".join(map(str, batch_sizes)), args.out)
    if "invariance" in steps:
        from benchmarks.run import load_items, build_engine
        from models.data import DATA_DIR

        batch = 4 if small else 64
        wire, _ = load_items(build_engine("torch"), DATA_DIR / "dev_feedback.json", batch)
        work = Path(tempfile.mkdtemp(prefix="fgrm-gpu12-"))
        inv = {"raw": [raw_invariance(args.checkpoint, args.device, d, rows, pad_id, batch)
                       for d in ("float32", "bfloat16")],
               "service": [service_invariance(wire, batch, d, work) for d in ("float32", "bfloat16")]}
        write(args.out, "invariance.json", inv)
    log.info("done in %.0f s", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
