"""Raw forward-pass throughput of a checkpoint on QA-Feedback responses, by runtime and batch size.

The physical limit the service is measured against: items are encoded once up front (not
timed), sorted by length, cut into batches of `--batch-sizes`, and only `backend.forward` is
timed. Prints one JSON line per (runtime, batch size) with items/s and per-batch p50/p99.

    python -m benchmarks.forward --checkpoint artifacts/fgrm-qa-minilm --runtimes torch,onnx --items 64
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def encoded_items(checkpoint: str, data: str, n: int):
    from models import checkpoint as ckpt
    from models.data import load_records, passages_of, split_records
    from models.encoding import Encoder
    from models.errors import InputTooLong
    from models.segment import subsentences

    meta = ckpt.read_meta(checkpoint)
    enc = Encoder(ckpt.load_tokenizer(checkpoint), int(meta["max_length"]), meta.get("use_passages", True),
                  meta.get("marker_token", "[SEG]"))
    _, dev = split_records(load_records(data))
    out = []
    for r in dev:
        for k in (1, 2, 3, 4):
            resp = r.get(f"prediction {k}") or ""
            try:
                out.append(enc.encode(r["question"], passages_of(r), resp, subsentences(resp)).input_ids)
            except InputTooLong:
                continue  # the service answers these with an error; nothing to time
            if len(out) >= n:
                return out, enc.pad_id
    return out, enc.pad_id


def bench(backend, seqs: list[list[int]], pad_id: int, batch_size: int, repeats: int) -> dict:
    from models.encoding import pad_batch

    seqs = sorted(seqs, key=len)
    batches = [pad_batch(seqs[i:i + batch_size], pad_id) for i in range(0, len(seqs), batch_size)]
    backend.forward(*batches[0])  # warm-up (CUDA context, ORT graph)
    times = []
    t0 = time.perf_counter()
    for _ in range(repeats):
        for ids, mask in batches:
            t = time.perf_counter()
            backend.forward(ids, mask)
            times.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    return {"batch_size": batch_size, "items_per_s": round(repeats * len(seqs) / total, 2),
            "batch_p50_ms": round(1000 * statistics.median(times), 2),
            "batch_p99_ms": round(1000 * float(np.percentile(times, 99)), 2),
            "mean_tokens": round(float(np.mean([len(s) for s in seqs])), 1)}


def main(argv: list[str] | None = None) -> int:
    import dataclasses

    from models import runtime as runtimes
    from models.data import DATA_DIR
    from service.config import Settings

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="artifacts/fgrm-qa-minilm")
    ap.add_argument("--data", default=str(DATA_DIR / "dev_feedback.json"))
    ap.add_argument("--runtimes", default="torch,onnx,onnx-int8",
                    help="comma list; a torch dtype after a colon, e.g. torch:float16")
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)
    seqs, pad_id = encoded_items(args.checkpoint, args.data, args.items)
    options = Settings.from_env().runtime_options()  # FGRM_CACHE_DIR, FGRM_ORT_THREADS, FGRM_TORCH_DTYPE
    for spec in args.runtimes.split(","):
        name, _, dtype = spec.partition(":")
        try:
            backend = runtimes.create(args.checkpoint, name,
                                      dataclasses.replace(options, torch_dtype=dtype) if dtype else options)
        except Exception as exc:  # a runtime missing on this host is a row, not a crash
            print(json.dumps({"runtime": spec, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
            continue
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            row = bench(backend, seqs, pad_id, bs, args.repeats)
            print(json.dumps({"runtime": spec, "provider": backend.provider, **row}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
