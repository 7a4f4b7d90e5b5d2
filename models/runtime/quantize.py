"""Int8 variants of an exported embedding network, for CPU serving (issue 12).

Three ways to get an int8 MiniLM out of the fp32 export (`models.export.export_fp32`):

- `dynamic`: ONNX Runtime's `quantize_dynamic`, per-channel int8 weights; activations are
  quantised at run time with one scale per tensor, so a row's result depends on the rest of its
  batch (padding included), and the engine must run it one row per forward pass.
- `fused-dynamic`: the same after ONNX Runtime's transformer fusions (`onnxruntime.transformers
  .optimizer`, BERT: one Attention node per layer, SkipLayerNorm, BiasGelu), so the quantiser
  emits QAttention and the int8 kernels cover the attention projections in one op.
- `static`: `quantize_static` in QDQ format: per-channel int8 weights and activation scales fixed
  ahead of time from a calibration set (rows of the training split's texts). Fixed scales make
  every row's result independent of its batch, so the engine can batch it like fp32.

`exclude` keeps named MatMul nodes in fp32 (the sensitive-layer escape hatch); `matmul_nodes`
lists them by layer. Which variant keeps >= 99 % of the decisions at what speed is measured by
`benchmarks/quant_study.py` (figures in BENCHMARKS.md); this module only builds them.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

log = logging.getLogger(__name__)
METHODS = ("dynamic", "fused-dynamic", "static")
INPUT_NAMES = ("input_ids", "attention_mask")


def matmul_nodes(model_path: str | Path) -> list[str]:
    """Names of the MatMul nodes (weights and attention products) of an ONNX graph, in order."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul"]


def fuse(fp32: str | Path, out: str | Path, num_heads: int = 12, hidden: int = 384) -> Path:
    """ONNX Runtime's BERT fusions on an fp32 export, written to `out` (still fp32; same outputs
    within float rounding). MiniLM-L6-v2: 12 heads of 32, hidden 384."""
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(str(fp32), model_type="bert", num_heads=num_heads, hidden_size=hidden,
                           opt_level=1, only_onnxruntime=False)
    model.save_model_to_file(str(out))
    return Path(out)


class _Rows:
    """A CalibrationDataReader over token-id rows, one row per feed. MinMax takes them unpadded
    (padding would add activations served rows never have to the ranges); the histogram
    calibrators stack every feed's outputs into one array, so for them each row is cut or
    padded (masked) to `pad_to` tokens."""

    def __init__(self, rows: Sequence[Sequence[int]], pad_to: int = 0):
        self._it = iter(rows)
        self.pad_to = pad_to

    def get_next(self):
        row = next(self._it, None)
        if row is None:
            return None
        ids = np.asarray([row], dtype=np.int64)
        mask = np.ones_like(ids)
        if self.pad_to:
            ids, mask = ids[:, : self.pad_to], mask[:, : self.pad_to]
            pad = self.pad_to - ids.shape[1]
            ids, mask = np.pad(ids, ((0, 0), (0, pad))), np.pad(mask, ((0, 0), (0, pad)))
        return {INPUT_NAMES[0]: ids, INPUT_NAMES[1]: mask}

    def rewind(self):  # the calibrators call it in some versions
        pass


def smooth(fp32: str | Path, out: str | Path, calibration: Sequence[Sequence[int]], alpha: float = 0.5,
           pattern: str = r"layer\.\d+/output/dense/MatMul$") -> Path:
    """SmoothQuant (Xiao et al. 2023) on the MatMuls named by `pattern` (default: each layer's FFN
    down-projection, whose post-GELU inputs carry a few channels with large ranges): per input
    channel j, x_j / s_j and W_j * s_j with s_j = max|x_j|^alpha / max|W_j|^(1-alpha), measured
    on `calibration`. The fp32 product is unchanged; a per-tensor activation scale then wastes
    fewer of its 256 levels on the outlier channels. Written to `out` (fp32)."""
    import re

    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    model = onnx.load(str(fp32))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    targets = [n for n in graph.node if n.op_type == "MatMul" and re.search(pattern, n.name) and n.input[1] in inits]
    if not targets:
        raise ValueError(f"no MatMul with a constant weight matches {pattern!r}")
    probe = onnx.load(str(fp32))  # the same graph, with the targets' activation inputs as outputs
    probe.graph.output.extend(helper.make_tensor_value_info(n.input[0], onnx.TensorProto.FLOAT, None)
                              for n in targets)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [n.input[0] for n in targets]
    amax: dict[str, Any] = {name: None for name in names}
    reader = _Rows(calibration)
    while (feed := reader.get_next()) is not None:
        for name, x in zip(names, session.run(names, feed)):
            m = np.abs(x.reshape(-1, x.shape[-1])).max(0)
            amax[name] = m if amax[name] is None else np.maximum(amax[name], m)
    nodes = []
    for node in graph.node:
        if node in targets:
            w = numpy_helper.to_array(inits[node.input[1]])  # (in, out)
            s = np.maximum(amax[node.input[0]], 1e-5) ** alpha / np.maximum(np.abs(w).max(1), 1e-5) ** (1 - alpha)
            s = np.clip(s, 1e-2, 1e2).astype(np.float32)
            inv_name, w_name, x_name = (f"{node.name}/smooth_{k}" for k in ("inv_scale", "weight", "input"))
            graph.initializer.extend([numpy_helper.from_array((1.0 / s).astype(np.float32), inv_name),
                                      numpy_helper.from_array((w * s[:, None]).astype(np.float32), w_name)])
            nodes.append(helper.make_node("Mul", [node.input[0], inv_name], [x_name], name=f"{node.name}/smooth"))
            node.input[0], node.input[1] = x_name, w_name
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [i for i in graph.initializer if i.name in used]  # the replaced weights go
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(model, str(out))
    return Path(out)


def quantize(fp32: str | Path, out: str | Path, method: str = "static", *,
             calibration: Sequence[Sequence[int]] = (), exclude: Iterable[str] = (),
             calibrate: str = "minmax", per_channel: bool = True, smooth_alpha: float = 0.0,
             work: str | Path | None = None) -> Path:
    """Write the int8 model of `fp32` made with `method` to `out`.

    `calibration`: token-id rows (static only). `calibrate`: minmax | percentile | entropy.
    `exclude`: node names left in fp32. `smooth_alpha` > 0: SmoothQuant the FFN down-projections
    first (`smooth`; static only). `work`: scratch folder (the fused or smoothed fp32 graph).
    """
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    exclude = list(exclude)
    src = Path(fp32)
    if method == "fused-dynamic":
        src = fuse(fp32, Path(work or out.parent) / (out.stem + ".fused.onnx"))
    if method in ("dynamic", "fused-dynamic"):
        import onnx

        # the fused graph has com.microsoft ops that onnx shape inference cannot type
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=per_channel,
                         nodes_to_exclude=exclude, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        return out
    if not calibration:
        raise ValueError("static quantisation needs calibration rows")
    if smooth_alpha:
        src = smooth(fp32, Path(work or out.parent) / (out.stem + ".smooth.onnx"), calibration, smooth_alpha)
    cal = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
           "entropy": CalibrationMethod.Entropy}[calibrate]
    # Only the MatMuls (the FLOPs): LayerNorm, Softmax, GELU and the pooling stay fp32, and the
    # residual stream is never stored in int8. Activations asymmetric uint8 (post-GELU ranges are
    # one-sided), weights symmetric int8 per output channel.
    reader = _Rows(calibration, pad_to=0 if calibrate == "minmax" else 64)
    quantize_static(str(src), str(out), reader, quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul"], per_channel=per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude, calibrate_method=cal,
                    extra_options={"CalibPercentile": 99.999} if calibrate == "percentile" else None)
    return out


def calibration_rows(checkpoint: str | Path, n: int = 512, seed: int = 0) -> list[list[int]]:
    """`n` token-id rows drawn from the texts the heads were trained on: the train split's
    questions, passage sentences, segments and responses (`models.signal_model.item_texts`)."""
    from models import checkpoint as ckpt
    from models.data import DATA_DIR, load_records, passages_of, split_records
    from models.embedding import tokenize
    from models.segment import sentences, subsentences
    from models.signal_model import item_texts
    from models.signals import Context

    meta = ckpt.read_meta(checkpoint)
    tok = ckpt.load_tokenizer(checkpoint)
    train, _ = split_records(load_records(DATA_DIR / "dev_feedback.json"))
    texts: list[str] = []
    for r in train:
        ctx = Context.of(r["question"], passages_of(r))
        for k in (1, 2, 3, 4):
            resp = r.get(f"prediction {k}") or ""
            texts += item_texts(ctx, subsentences(resp), sentences(resp), resp)
    distinct = sorted(set(texts))
    pick = np.random.default_rng(seed).choice(len(distinct), size=min(n, len(distinct)), replace=False)
    return tokenize(tok, [distinct[i] for i in sorted(pick)], int(meta.get("max_length", 256)))
