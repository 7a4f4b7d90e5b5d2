"""models.runtime.quantize on the shipped encoder: each int8 method builds a model that loads,
keeps the contract, and embeds close to fp32; static int8 (fixed scales) is batch-invariant.
Mechanics only: the agreement over all 400 records and the speed are benchmarks
(benchmarks/quant_study.py, BENCHMARKS.md)."""
from __future__ import annotations

import numpy as np
import pytest

from models.encoding import pad_batch

TEXTS = ["Who wrote Hamlet?", "Hamlet is a tragedy written by William Shakespeare between 1599 and 1601.",
         "It is set in Denmark.", "The play was first performed at the Globe Theatre in London, probably in 1600, "
         "and it is Shakespeare's longest play.", "Yes."]


@pytest.fixture(scope="module")
def fp32_export(shipped_checkpoint, onnx_cache):
    from models.runtime import create

    return create(shipped_checkpoint, "onnx")  # exports into the test cache on first use


@pytest.fixture(scope="module")
def rows(shipped_checkpoint):
    from models import checkpoint as ckpt
    from models.embedding import tokenize

    return tokenize(ckpt.load_tokenizer(shipped_checkpoint), TEXTS)


@pytest.mark.parametrize("method", ["dynamic", "static"])
def test_int8_model_loads_and_embeds_close_to_fp32(method, shipped_checkpoint, fp32_export, rows, tmp_path):
    from models.runtime import quantize
    from models.runtime.onnx_backend import OnnxBackend

    cal = quantize.calibration_rows(shipped_checkpoint, n=32)
    assert len(cal) == 32 and all(isinstance(i, int) for i in cal[0])
    out = quantize.quantize(fp32_export.path, tmp_path / f"{method}.onnx", method, calibration=cal,
                            exclude=[n for n in quantize.matmul_nodes(fp32_export.path) if "output/dense" in n])
    backend = OnnxBackend(shipped_checkpoint, quantized=True, model_path=out)
    assert backend.health()
    ref = np.concatenate([fp32_export.forward(*pad_batch([r], 0))["embeddings"] for r in rows])
    got = np.concatenate([backend.forward(*pad_batch([r], 0))["embeddings"] for r in rows])
    cosine = (ref * got).sum(1)  # both L2-normalised
    assert cosine.min() > 0.95, cosine  # 32 calibration rows only; quality is benchmarked, not tested


def test_static_int8_is_batch_invariant(shipped_checkpoint, fp32_export, rows, tmp_path):
    from models.runtime import quantize
    from models.runtime.onnx_backend import OnnxBackend

    out = quantize.quantize(fp32_export.path, tmp_path / "static.onnx", "static",
                            calibration=quantize.calibration_rows(shipped_checkpoint, n=32))
    backend = OnnxBackend(shipped_checkpoint, quantized=True, model_path=out)
    alone = np.concatenate([backend.forward(*pad_batch([r], 0))["embeddings"] for r in rows])
    together = backend.forward(*pad_batch(rows, 0))["embeddings"]  # padded beside the longest row
    assert np.abs(alone - together).max() < 1e-5


def test_unknown_method_and_static_without_calibration_are_errors(fp32_export, tmp_path):
    from models.runtime import quantize

    with pytest.raises(ValueError, match="method must be one of"):
        quantize.quantize(fp32_export.path, tmp_path / "x.onnx", "int4")
    with pytest.raises(ValueError, match="calibration"):
        quantize.quantize(fp32_export.path, tmp_path / "x.onnx", "static")
