"""Runtimes behind one small contract (see docs/ARCHITECTURE.md, "the backend contract").

`create` is the only place that branches on which runtime runs a checkpoint.
"""
from __future__ import annotations

from pathlib import Path

RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")


def create(checkpoint: str | Path, runtime: str = "auto"):
    """A backend for `checkpoint`. "auto" = torch on a GPU host, else ONNX fp32 when exported, else torch."""
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
    try:
        import torch

        if torch.cuda.is_available():
            return "torch"
    except ImportError:
        return "onnx"
    try:
        from models.runtime.onnx_backend import exported_path

        if exported_path(checkpoint, quantized=False).is_file():
            return "onnx"
    except ImportError:
        pass
    return "torch"
