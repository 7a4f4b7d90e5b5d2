"""Runtimes behind one small contract, `Backend`, and the one factory that picks them.

`create` is the only place that branches on which runtime runs a checkpoint, and the place
that exports a checkpoint to ONNX when the cache has no export yet; `load` adds the
checkpoint's tokenisation (an `Encoder` or a `SignalModel`) to make a `LoadedCheckpoint`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from models.runtime.options import RuntimeOptions, defaults

if TYPE_CHECKING:
    from models.encoding import Encoder
    from models.signal_model import SignalModel

log = logging.getLogger(__name__)
RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")


class Backend(Protocol):
    """What the engine needs of a runtime (docs/ARCHITECTURE.md, "the backend contract")."""

    @property
    def name(self) -> str:
        """"torch" | "onnx" | "onnx-int8"."""
        ...

    @property
    def provider(self) -> str:
        """Where it runs, e.g. "CPUExecutionProvider", "cuda:0:float16"; picks the token budget."""
        ...

    @property
    def batch_invariant(self) -> bool:
        """False when a row's outputs depend on the rest of its batch: the engine then runs one row per pass."""
        ...

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        """Padded int64 (B, T) arrays in, float32 arrays with batch axis 0 out."""
        ...


@dataclass
class LoadedCheckpoint:
    """A checkpoint ready to score: its metadata, its tokenisation and a backend for its network."""

    path: Path
    meta: dict
    encoder: Encoder | SignalModel
    backend: Backend


def create(checkpoint: str | Path, runtime: str = "auto", options: RuntimeOptions | None = None) -> Backend:
    """A backend for `checkpoint`. "auto" = torch on a GPU host, else ONNX fp32 (exported on first
    use when the cache has no export yet), else torch when onnxruntime is missing."""
    options = options or defaults()
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if runtime == "auto":
        runtime = _auto()
    if runtime == "torch":
        from models.runtime.torch_backend import TorchBackend

        return TorchBackend(checkpoint, dtype=options.torch_dtype)
    from models.runtime.onnx_backend import OnnxBackend, exported_path

    quantized = runtime == "onnx-int8"
    target = exported_path(checkpoint, quantized, options.cache_dir)
    if not target.is_file():
        from models.export import export

        log.warning("no %s export of %s in the cache; exporting it now to %s", runtime, checkpoint, target)
        export(checkpoint, quantized=quantized, reuse=True, options=options)
    return OnnxBackend(checkpoint, quantized, options=options)


def load(path: str | Path, runtime: str = "auto", use_passages: bool | None = None,
         options: RuntimeOptions | None = None) -> LoadedCheckpoint:
    """Load a checkpoint for scoring: encoder (tokenisation) + backend (forward pass)."""
    from models.checkpoint import load_tokenizer, network_kind, read_meta, reward_encoder

    path = Path(path)
    meta = read_meta(path)
    backend = create(path, runtime, options)
    if network_kind(meta) == "embedding":
        from models.signal_model import SignalModel

        return LoadedCheckpoint(path, meta, SignalModel(load_tokenizer(path), meta), backend)
    return LoadedCheckpoint(path, meta, reward_encoder(path, meta, use_passages), backend)


def _auto() -> str:
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
