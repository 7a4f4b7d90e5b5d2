"""`fgrm export`: a checkpoint to ONNX (fp32, or dynamic int8 weights), plus a torch parity check.

Exporter: torch's TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`). Checked
with torch 2.13 + transformers 5.24 on this network: the dynamo exporter (`dynamo=True`, which
needs the extra package onnxscript) gives the same outputs (both within ~1e-6 of torch) and the
same int8 model, but takes ~12 s instead of ~2 s and adds two dependencies. The TorchScript
path is deprecated upstream; when torch removes it, switch to `dynamo=True` with
`dynamic_shapes` and pin onnxscript. (optimum's exporter is not used: it forces a transformers
downgrade.)

Int8: `onnxruntime.quantization.quantize_dynamic` with QInt8 weights, one scale per output
channel. On the shipped checkpoint (40 dev records) per-channel weights agree with torch on 97%
of segment decisions, per-tensor ones on 85% (mean |dp_error| 0.047 vs 0.138), at the same size.
Keeping any one group in fp32 (layer 0, layer 5, the FFNs, attention projections, heads,
embeddings) moved agreement only within 0.956-0.973, so everything is quantised: ~1/4 of fp32.
Activations are quantised at run time, one scale per tensor, so int8 results depend on the
rest of the batch (models/runtime/onnx_backend.py). On x86 CPUs without VNNI, u8 x s8 products
can saturate (ONNX Runtime's quantization docs); `--check` would show it as lower agreement.

Parity (`--check`): torch fp32 vs the exported runtime on QA-Feedback dev records (prediction 1,
sub-sentence markers, as `fgrm eval` scores them): the maximum absolute difference of
p_error over every marker and head, the share of segment decisions (`models.outputs.is_error`)
that agree, and the maximum absolute difference of the sequence scores.

Imports run one way: this module reads the ONNX file layout of `models.runtime.onnx_backend`
and builds the backends it compares itself; `models.runtime.create` calls `export` when the
cache has no export, and nothing here imports `models.runtime` itself.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from models.checkpoint import check, load_network, read_meta
from models.outputs import error_probability, is_error
from models.runtime.onnx_backend import INPUT_NAMES, OnnxBackend, exported_path, output_names
from models.runtime.options import RuntimeOptions, defaults

log = logging.getLogger(__name__)
OPSET = 17  # first opset with LayerNormalization as one op


def _write_atomically(target: Path, write) -> None:
    """`write(tmp_path)`, then rename onto `target`: a concurrent reader never sees half a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a model is not a secret
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export_fp32(checkpoint: str | Path, out: Path) -> None:
    import warnings

    import torch

    net = load_network(checkpoint)  # eval mode, fp32 (the encoder is stored in fp16)
    outputs = output_names(read_meta(checkpoint))
    # Example batch with a padded row, so the traced graph carries the attention-mask path.
    ids = torch.full((2, 16), 100, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    dynamic = {"batch": 0, "seq": 1}
    axes = {name: {i: d for d, i in dynamic.items()} for name in INPUT_NAMES}
    if len(outputs) == 2:  # reward network: per-token segment logits, per-sequence scores
        axes[outputs[0]] = {0: "batch", 1: "seq"}
    axes[outputs[-1]] = {0: "batch"}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.inference_mode():
            # The deprecation notice and transformers' TracerWarnings about shape checks are
            # expected: those checks hold for every (batch, seq) the service sends (the tests
            # run other shapes than the example's).
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (ids, mask), str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=list(INPUT_NAMES), output_names=list(outputs),
                              dynamic_axes=axes, do_constant_folding=True)

    _write_atomically(out, write)


class _DropPreprocessHint(logging.Filter):
    # quantize_dynamic logs, on every call, a hint to run its pre-processing (shape inference,
    # graph fusions) first. We quantise the plain graph: its agreement is measured above, and
    # ONNX Runtime still applies its graph optimisations when the session starts.
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


def quantize_int8(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def write(tmp: Path) -> None:
        root, hint = logging.getLogger(), _DropPreprocessHint()
        root.addFilter(hint)
        try:
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.removeFilter(hint)

    _write_atomically(out, write)


def export(checkpoint: str | Path, quantized: bool = False, out: str | Path | None = None,
           reuse: bool = False, options: RuntimeOptions | None = None) -> dict:
    """Export `checkpoint` to ONNX fp32 (with `quantized`, then also to int8); return paths, sizes, seconds.

    Without `out` the models go to the cache (`exported_path`), where OnnxBackend finds them;
    with `out` the requested model is written there. The int8 model is quantised from the
    cached fp32 export. `reuse` keeps a cached fp32 export instead of exporting it again.
    """
    checkpoint = Path(checkpoint)
    cache = (options or defaults()).cache_dir
    fp32 = Path(out) if (out is not None and not quantized) else exported_path(checkpoint, False, cache)
    report: dict = {"checkpoint": str(checkpoint)}
    if not (reuse and fp32.is_file()):
        t = time.perf_counter()
        export_fp32(checkpoint, fp32)
        report["export_s"] = round(time.perf_counter() - t, 2)
    report["fp32"] = {"path": str(fp32), "mb": round(fp32.stat().st_size / 1e6, 1)}
    if quantized:
        int8 = Path(out) if out is not None else exported_path(checkpoint, True, cache)
        t = time.perf_counter()
        quantize_int8(fp32, int8)
        report["quantize_s"] = round(time.perf_counter() - t, 2)
        report["int8"] = {"path": str(int8), "mb": round(int8.stat().st_size / 1e6, 1)}
    log.info("exported %s", report)
    return report


def exported_backend(checkpoint: str | Path, runtime: str = "onnx", options: RuntimeOptions | None = None) -> OnnxBackend:
    """The cached ONNX backend of `checkpoint` ("onnx" or "onnx-int8"), exported first when missing."""
    if runtime not in ("onnx", "onnx-int8"):
        raise ValueError(f"parity compares torch with an exported runtime (onnx, onnx-int8), not {runtime!r}")
    quantized = runtime == "onnx-int8"
    if not exported_path(checkpoint, quantized, (options or defaults()).cache_dir).is_file():
        export(checkpoint, quantized=quantized, reuse=True, options=options)
    return OnnxBackend(checkpoint, quantized, options=options)


def _dev_encoded(checkpoint: Path, meta: dict, records: list[dict] | None, limit: int | None):
    """The encoder and the encoded dev records (prediction 1, sub-sentence markers), shortest first."""
    from models.checkpoint import reward_encoder
    from models.data import DATA_DIR, label_response, load_records, split_records
    from models.errors import InputTooLong

    if records is None:
        records = split_records(load_records(DATA_DIR / "dev_feedback.json"))[1]
    records = records[:limit] if limit else records
    encoder = reward_encoder(checkpoint, meta)
    encoded = []
    for r in records:
        ex = label_response(r, r["prediction 1"], None)
        try:
            encoded.append(encoder.encode(ex.question, ex.passages, ex.response, ex.subsentences))
        except InputTooLong:
            continue
    encoded.sort(key=lambda e: len(e.input_ids))  # similar lengths together, as the engine batches
    return encoder, encoded, len(records) - len(encoded)


def parity(checkpoint: str | Path, runtime: str = "onnx", *, records: list[dict] | None = None,
           limit: int | None = None, backend=None, batch_size: int = 8,
           options: RuntimeOptions | None = None) -> dict:
    """Torch fp32 vs `runtime` (or a ready `backend`) on QA-Feedback dev records.

    Returns max/mean_abs_prob_diff (p_error, every marker and segment head), decisions_agree
    (share of (segment, head) error decisions that agree), per-head agreement,
    max/mean_abs_score_diff (sequence heads) and counts. Every item is padded into batches of `batch_size`, as served.
    """
    from models.encoding import pad_batch
    from models.runtime.torch_backend import TorchBackend

    checkpoint = Path(checkpoint)
    meta = read_meta(checkpoint)
    encoder, encoded, skipped = _dev_encoded(checkpoint, meta, records, limit)
    reference = TorchBackend(checkpoint, device="cpu", dtype="float32")  # fp32 even on a GPU host
    backend = backend or exported_backend(checkpoint, runtime, options)
    meta_heads = meta["segment_heads"]
    prob_diffs, score_diffs = [], []
    agree = {h: [0, 0] for h in meta_heads}
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        ids, mask = pad_batch([e.input_ids for e in chunk], encoder.pad_id)
        a, b = reference.forward(ids, mask), backend.forward(ids, mask)
        score_diffs.append(np.abs(a["sequence_scores"] - b["sequence_scores"]).ravel())
        for row, e in enumerate(chunk):
            pa = error_probability(a["segment_logits"][row, e.marker_positions])  # (n_seg, heads)
            pb = error_probability(b["segment_logits"][row, e.marker_positions])
            prob_diffs.append(np.abs(pa - pb).ravel())
            for k, h in enumerate(meta_heads):
                agree[h][0] += int((is_error(pa[:, k]) == is_error(pb[:, k])).sum())
                agree[h][1] += len(e.marker_positions)
    total = sum(n for _, n in agree.values())
    prob_diff = np.concatenate(prob_diffs) if prob_diffs else np.zeros(1)
    score_diff = np.concatenate(score_diffs) if score_diffs else np.zeros(1)
    return {"runtime": backend.name, "provider": backend.provider, "items": len(encoded),
            "skipped_too_long": skipped, "segments": total // max(1, len(meta_heads)),
            "max_abs_prob_diff": float(prob_diff.max()), "mean_abs_prob_diff": float(prob_diff.mean()),
            "decisions_agree": sum(a for a, _ in agree.values()) / total if total else None,
            "decisions_agree_by_head": {h: (a / n if n else None) for h, (a, n) in agree.items()},
            "max_abs_score_diff": float(score_diff.max()), "mean_abs_score_diff": float(score_diff.mean())}


def main(argv: list[str] | None = None) -> int:
    from models.config import REPO_ROOT

    ap = argparse.ArgumentParser(prog="fgrm export", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(REPO_ROOT / "artifacts" / "fgrm-qa-minilm"))
    ap.add_argument("--int8", action="store_true", help="also write the dynamic-int8 model (CPU)")
    ap.add_argument("--out", default=None, help="write the model here instead of the cache "
                    "(the service only finds cached exports)")
    ap.add_argument("--check", action="store_true", help="then compare with torch on QA-Feedback dev records")
    ap.add_argument("--limit", type=int, default=0, help="--check: only the first N dev records")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("models").setLevel(logging.INFO)  # not the quantizer's per-tensor INFO lines
    try:
        check(args.checkpoint)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"fgrm export: {exc}") from None
    report = export(args.checkpoint, quantized=args.int8, out=args.out)
    if args.check:
        checks = {}
        for quantized in ((False, True) if args.int8 else (False,)):
            key = "int8" if quantized else "fp32"
            backend = OnnxBackend(args.checkpoint, quantized, model_path=report[key]["path"])
            checks[backend.name] = parity(args.checkpoint, backend=backend, limit=args.limit or None)
        report["parity"] = checks
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
