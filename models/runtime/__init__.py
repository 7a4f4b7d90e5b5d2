"""Runtimes behind one small contract (see docs/ARCHITECTURE.md, "the backend contract").

`create` is the only place that branches on which runtime runs a checkpoint.
"""
from __future__ import annotations

from pathlib import Path

RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")


def create(checkpoint: str | Path, runtime: str = "auto"):
    """A backend for `checkpoint`. "auto" = torch on a GPU host, else ONNX fp32 (exported on first
    use when the cache has no export yet), else torch when onnxruntime is missing."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if runtime == "auto":
        runtime = _auto(Path(checkpoint))
    if runtime == "torch":
        from models.runtime.torch_backend import TorchBackend

        return TorchBackend(checkpoint)
    from models.runtime.onnx_backend import OnnxBackend

    return OnnxBackend(checkpoint, quantized=(runtime == "onnx-int8"))


def _auto(checkpoint: Path) -> str:
    # On a CPU host ONNX Runtime fp32 gives the same decisions as torch (max |dp| 7.6e-6) and ran
    # a 256-token item ~6x faster here, so it is worth exporting on first use (a few seconds).
    try:
        import torch

        if torch.cuda.is_available():
            return "torch"
    except ImportError:
        return "onnx"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnx"
