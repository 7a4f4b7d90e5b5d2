"""The options a runtime takes, typed and passed down: nothing under `models/` reads the environment.

The service builds them from its settings (`service.config.Settings.runtime_options`, where the
FGRM_* variables are read); library callers pass their own. `fgrm train` / `eval` / `export` run
code that was written before options were passed everywhere, so the `fgrm` command installs
the environment's options as this process's defaults (`set_defaults`) before dispatching.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

TORCH_DTYPES = ("float32", "float16", "bfloat16")


def _home_cache() -> Path:
    return Path.home() / ".cache" / "fgrm"


@dataclass(frozen=True)
class RuntimeOptions:
    """How a backend runs; see `service.config.Settings` for what each field means to a user."""

    cache_dir: Path = field(default_factory=_home_cache)
    """Root of fgrm's caches (ONNX exports under `onnx/`, training embeddings)."""
    ort_threads: int = 0
    """ONNX Runtime intra-op threads; 0: every core."""
    torch_dtype: str = "float32"
    """Torch runtime precision; half precision is not batch-invariant (torch_backend says why)."""

    def __post_init__(self) -> None:
        if self.ort_threads < 0:
            raise ValueError(f"ort_threads must be >= 0 (0 = every core), got {self.ort_threads}")
        if self.torch_dtype not in TORCH_DTYPES:
            raise ValueError(f"torch_dtype must be one of {TORCH_DTYPES}, got {self.torch_dtype!r}")


_defaults = RuntimeOptions()


def defaults() -> RuntimeOptions:
    """The options used where a caller passes none."""
    return _defaults


def set_defaults(options: RuntimeOptions) -> RuntimeOptions:
    """Make `options` this process's defaults; returns the previous ones (to restore them)."""
    global _defaults
    previous, _defaults = _defaults, options
    return previous
