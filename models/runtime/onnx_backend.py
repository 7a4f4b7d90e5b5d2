"""ONNX Runtime backend: a checkpoint exported to ONNX, in fp32 or with dynamic int8 weights (CPU).

Exports are build outputs, not repository files: they live in a cache keyed by a hash of the
checkpoint's weights, `<cache_dir>/onnx/<checkpoint-name>-<hash>/model{,.int8}.onnx`
(`RuntimeOptions.cache_dir`: FGRM_CACHE_DIR, else ~/.cache/fgrm), so a retrained checkpoint never
runs a stale export. A missing export is made on first use by `models.runtime.create` (with
`models.export`; this needs torch), so an ONNX-only host should run `fgrm export` once, ahead of
time. This module never exports: `models.export` reads its file layout (names, paths), so the
dependency runs one way.

Batch invariance: fp32 results of one item do not depend on the rest of its batch (< 1e-5
between alone and padded beside longer items; tests/models/test_onnx_runtime.py). Dynamic int8
is not batch-invariant: DynamicQuantizeLinear picks one scale and zero point per activation
tensor, i.e. over the whole (batch, seq, hidden) block, padding included, so the other items of
a batch move an item's quantisation grid. Measured on the shipped checkpoint, the shortest of 8
QA-Feedback dev items alone vs padded in a batch of 4: p_error moved by up to 0.004 and the
completeness score by 0.53 (its training std is 5.3, so ~0.03 of reward at scale 0.3).
"""
from __future__ import annotations

import hashlib
import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from models.checkpoint import encoder_dir, network_kind, read_meta
from models.runtime.options import RuntimeOptions, defaults

log = logging.getLogger(__name__)

# Bump when the exported graph changes (exporter, opset, input/output names), so caches rebuild.
EXPORT_FORMAT = 1
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAMES = ("segment_logits", "sequence_scores")  # a "reward" network
EMBEDDING_OUTPUTS = ("embeddings",)  # an "embedding" network


def output_names(meta: dict) -> tuple[str, ...]:
    return EMBEDDING_OUTPUTS if network_kind(meta) == "embedding" else OUTPUT_NAMES


def cache_dir(options: RuntimeOptions | None = None) -> Path:
    """Root of fgrm's caches (`RuntimeOptions.cache_dir`)."""
    return (options or defaults()).cache_dir


@lru_cache(maxsize=32)
def _weights_hash(files: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256(f"fgrm-onnx-{EXPORT_FORMAT}".encode())
    for name, _size, _mtime in files:
        with open(name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:12]


def weights_hash(checkpoint: str | Path) -> str:
    """Short hash of what the exported graph is made of: the encoder weights, the head weights of
    a reward network, and the export format. (An embedding checkpoint's heads live in fgrm.json and
    run outside the graph, so retraining them needs no new export.)"""
    checkpoint = Path(checkpoint)
    meta = read_meta(checkpoint)
    paths = [encoder_dir(checkpoint, meta) / "model.safetensors"]
    if network_kind(meta) == "reward":
        paths.append(checkpoint / "heads.safetensors")
    files = []
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{checkpoint} is not an fgrm checkpoint (no {p})")
        st = p.stat()
        files.append((str(p.resolve()), st.st_size, st.st_mtime_ns))  # size/mtime: re-hash a rewritten file
    return _weights_hash(tuple(files))


def exported_path(checkpoint: str | Path, quantized: bool = False, cache: Path | None = None) -> Path:
    """Where the ONNX export of `checkpoint` lives under `cache` (default: `cache_dir()`); it may not exist yet."""
    checkpoint = Path(checkpoint).resolve()
    folder = (cache or cache_dir()) / "onnx" / f"{checkpoint.name}-{weights_hash(checkpoint)}"
    return folder / ("model.int8.onnx" if quantized else "model.onnx")


def _providers() -> list[str]:
    import onnxruntime as ort

    # With onnxruntime-gpu the CUDA provider is listed even on a host without a usable GPU;
    # the session then falls back to CPU, and `provider` reports what it actually got.
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available] or available


class OnnxBackend:
    """The backend contract (docs/ARCHITECTURE.md) on an ONNX Runtime session."""

    def __init__(self, checkpoint: str | Path, quantized: bool = False, *, model_path: str | Path | None = None,
                 options: RuntimeOptions | None = None):
        import onnxruntime as ort

        options = options or defaults()
        self.name = "onnx-int8" if quantized else "onnx"
        self.batch_invariant = not quantized  # see the module docstring
        self.checkpoint = Path(checkpoint)
        self.path = Path(model_path) if model_path else exported_path(self.checkpoint, quantized, options.cache_dir)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX model at {self.path} (`fgrm export`, or models.runtime.create, makes it)")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = options.ort_threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1  # one sequential graph; parallelism is inside the MatMuls
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle intra-op threads sleep instead of spinning: the service's event loop, prepare thread
        # and gRPC threads share the cores, and spinning threads starved them (2 shared cores:
        # 1.4-2x the items/s, benchmarks/results/cpu-configs-spinning.json). The price: many tiny
        # kernels split over threads (int8, one row per pass) slow down, so serve int8 with one
        # thread per session (BENCHMARKS.md, "Issue 12")
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=_providers())
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        self.provider = self.session.get_providers()[0]
        log.info("%s backend: %s on %s, %d intra-op threads", self.name, self.path, self.provider,
                 opts.intra_op_num_threads)

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        feed = {INPUT_NAMES[0]: np.ascontiguousarray(input_ids, dtype=np.int64),
                INPUT_NAMES[1]: np.ascontiguousarray(attention_mask, dtype=np.int64)}
        outs = self.session.run(list(self.output_names), feed)
        return {name: out.astype(np.float32, copy=False) for name, out in zip(self.output_names, outs)}

    def health(self) -> bool:
        """True when the session runs a two-token input and returns finite outputs."""
        try:
            out = self.forward(np.zeros((1, 2), dtype=np.int64), np.ones((1, 2), dtype=np.int64))
        except Exception:  # noqa: BLE001 - any runtime failure means "not healthy"
            log.exception("%s health check failed", self.name)
            return False
        return all(np.isfinite(v).all() for v in out.values())
