"""One typed settings object for the service process; the environment is read here and only here.

Every field is documented once, below. `fgrm serve` turns its flags into these environment
variables for the `bentoml serve` worker processes, which call `Settings.from_env()`. The model
layer never reads the environment: it gets `Settings.runtime_options()`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from models.runtime.options import RuntimeOptions

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "FGRM_"
# FGRM_* variables of the test suite: not service settings, but not typos either.
NOT_OURS = ("FGRM_TEST_",)


@dataclass(frozen=True)
class Settings:
    feedback_types: Path = REPO_ROOT / "models" / "feedback_types.toml"
    """TOML file listing the feedback types to serve (env FGRM_FEEDBACK_TYPES)."""

    runtime: str = "auto"
    """Model runtime: auto | torch | onnx | onnx-int8 (env FGRM_RUNTIME)."""

    profiles: Path | None = None
    """Optional TOML file of named weight profiles, ``[profiles.NAME] type = weight``, added to
    (and overriding) the ``[profiles.NAME]`` tables of the feedback-types file. The profile
    "default" is the feedback types' configured weights unless a file redefines it; types a
    profile does not name keep their configured weight (env FGRM_PROFILES)."""

    state_dir: Path | None = None
    """Directory for state that every worker and every `fgrm serve` on this host share: the
    profile store ``profiles.sqlite3`` (SQLite, WAL), so a profile written through one worker is
    served by all and survives restarts. `from_env` fills it in when unset:
    ``$XDG_DATA_HOME/fgrm``, else ``~/.local/share/fgrm``. None (Settings built in code, e.g. an
    in-process engine in a test) keeps written profiles in the process's memory (env
    FGRM_STATE_DIR, `fgrm serve --state-dir`)."""

    read_only: bool = False
    """Cluster mode: profiles come only from the configuration files (the feedback-types file's
    ``[profiles.NAME]`` tables and FGRM_PROFILES, e.g. a mounted ConfigMap that every pod reads),
    nothing is written to `state_dir`, and ``PUT /v1/profiles/{name}`` is refused (403
    ``forbidden``, saying so), because a write to one pod would make the pods disagree (env
    FGRM_READ_ONLY = 1/true/yes or 0/false/no, `fgrm serve --read-only`)."""

    admin_token: str = field(default="", repr=False)
    """``PUT /v1/profiles/{name}`` needs ``Authorization: Bearer <token>``; when empty (the
    default) profile writes are refused: closed unless someone chose to open them (env
    FGRM_ADMIN_TOKEN)."""

    admin_token_file: Path | None = None
    """File whose content (stripped) is the admin token, so it stays out of shell history and
    process listings (env FGRM_ADMIN_TOKEN_FILE, `fgrm serve --admin-token-file`)."""

    api_key: str = field(default="", repr=False)
    """When set, every /v1 request except profile writes needs ``Authorization: Bearer <key>``
    over HTTP and the metadata ``authorization: Bearer <key>`` over gRPC (health, metrics and
    the docs stay open); when empty scoring is open to whoever reaches the ports (env FGRM_API_KEY)."""

    api_key_file: Path | None = None
    """File whose content (stripped) is the API key (env FGRM_API_KEY_FILE, `fgrm serve --api-key-file`)."""

    http_host: str = "127.0.0.1"
    """HTTP bind address, used by `fgrm serve` (env FGRM_HTTP_HOST)."""

    http_port: int = 3000
    """HTTP port, used by `fgrm serve` (env FGRM_HTTP_PORT)."""

    grpc_host: str = "127.0.0.1"
    """gRPC bind address (env FGRM_GRPC_HOST)."""

    grpc_port: int = 50051
    """gRPC port; 0 disables the gRPC server (env FGRM_GRPC_PORT). With several workers every
    worker binds it with SO_REUSEPORT and the kernel spreads connections over them."""

    workers: int = 1
    """BentoML worker processes. Each has its own engine and batches; one worker makes the
    largest batches and, on CPU, intra-op threads already use every core (env FGRM_WORKERS)."""

    max_batch_tokens: int = 0
    """Token budget of one forward pass, counted with padding (batch rows x longest row).
    0 = by device (`batch_token_budget`): 8192 when the backend runs on a GPU, 512 on a CPU,
    where a batch of N costs more than N single passes: on 2 cores the service at concurrency
    32 reached 0.82x the raw batch-1 throughput with 8192 and 0.95-1.00x with 512
    (BENCHMARKS.md) (env FGRM_MAX_BATCH_TOKENS)."""

    max_batch_rows: int = 64
    """Most sequences in one forward pass (env FGRM_MAX_BATCH_ROWS)."""

    batch_wait_ms: float = 0.0
    """How long the batcher waits for more requests after the first one arrives while the
    model is idle. 0: start at once; requests that arrive during a forward pass join the next
    batch anyway (env FGRM_BATCH_WAIT_MS)."""

    max_queue_items: int = 512
    """Items admitted (queued or being scored) at once; beyond it requests are refused with
    Overloaded immediately (env FGRM_MAX_QUEUE_ITEMS)."""

    max_wait_s: float = 2.0
    """Admission bounded in time: a request is refused (Overloaded, 503 / RESOURCE_EXHAUSTED)
    when the rows already in flight would take longer than this to run, estimated from the
    measured forward time per row; 0 turns the estimate off and leaves only max_queue_items
    (env FGRM_MAX_WAIT_S)."""

    max_items_per_request: int = 256
    """Items in one request (env FGRM_MAX_ITEMS_PER_REQUEST)."""

    max_response_chars: int = 20_000
    """Characters of one response (env FGRM_MAX_RESPONSE_CHARS)."""

    max_question_chars: int = 4_000
    """Characters of one question (env FGRM_MAX_QUESTION_CHARS)."""

    max_passages: int = 64
    """Passages of one item (env FGRM_MAX_PASSAGES)."""

    max_passage_chars: int = 50_000
    """Characters of all passages of one item together (env FGRM_MAX_PASSAGE_CHARS)."""

    max_reference_chars: int = 20_000
    """Characters of one item's reference answer (env FGRM_MAX_REFERENCE_CHARS); as many as a
    response, since a reference is an answer to the same question."""

    max_body_bytes: int = 32 * 1024 * 1024
    """Bytes of one HTTP request body (larger ones get 413 before they are read whole) and of one
    gRPC request message (RESOURCE_EXHAUSTED from grpc) (env FGRM_MAX_BODY_BYTES). The default
    holds 256 items of 20,000 characters with 50,000
    characters of passages and a 20,000-character reference each, with room to spare."""

    body_timeout_s: float = 30.0
    """Seconds a client has to send its whole request body once its headers are in; slower
    bodies (a slowloris drip) get 408 and the connection is freed (env FGRM_BODY_TIMEOUT_S)."""

    header_timeout_s: float = 10.0
    """Seconds a client has, from opening a connection (or from the first byte of its next
    request on a kept-alive one), to send the request line and headers; slower connections are
    closed (service/slow_clients.py); 0 turns the limit off (env FGRM_HEADER_TIMEOUT_S)."""

    freeze_startup_heap: bool = True
    """After the models load, hide the start-up heap from Python's garbage collector
    (gc.freeze): full collections then walk tens of thousands of objects instead of ~300,000,
    and the event loop no longer stalls 90-220 ms behind them (RELIABILITY.md, "Overload").
    Off only to measure what it does (env FGRM_FREEZE_STARTUP_HEAP)."""

    torch_threads: int = 0
    """torch intra-op threads; 0 leaves torch's default (env FGRM_TORCH_THREADS)."""

    cache_dir: Path | None = None
    """Root of fgrm's caches: ONNX exports (made on first use) and training embeddings; empty:
    ~/.cache/fgrm (env FGRM_CACHE_DIR)."""

    ort_threads: int = 0
    """ONNX Runtime intra-op threads; 0: every core (env FGRM_ORT_THREADS)."""

    torch_dtype: str = "float32"
    """Torch runtime precision: float32 | float16 | bfloat16. Half precision is faster on a GPU
    but not batch-invariant, so the engine then runs one row per pass (env FGRM_TORCH_DTYPE)."""

    extra: dict = field(default_factory=dict, compare=False, repr=False)
    """Unused FGRM_* variables, kept so a typo can be reported at start-up."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Settings from FGRM_* environment variables, then `overrides` (already typed)."""
        env = os.environ if environ is None else environ
        values: dict = {}
        known = {f.name: f for f in dataclasses.fields(cls) if f.name != "extra"}
        extra = {}
        for key, raw in env.items():
            if not key.startswith(ENV_PREFIX) or key.startswith(NOT_OURS):
                continue
            name = key[len(ENV_PREFIX):].lower()
            if name not in known:
                extra[key] = raw
                continue
            values[name] = _parse(name, known[name], raw)
        values.update(overrides)
        if values.get("state_dir") is None:
            values["state_dir"] = default_state_dir(env)
        for secret in ("admin_token", "api_key"):
            path = values.get(f"{secret}_file")
            if path and not values.get(secret):
                values[secret] = _read_secret(Path(path), f"{ENV_PREFIX}{secret.upper()}_FILE")
        settings = cls(**values, extra=extra)
        settings.check()
        return settings

    def to_env(self) -> dict[str, str]:
        """The FGRM_* variables that reproduce these settings in another process."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            out[ENV_PREFIX + f.name.upper()] = "" if value is None else str(value)
        return out

    def runtime_options(self) -> "RuntimeOptions":
        """What `models.runtime.create` needs of these settings."""
        from models.runtime.options import RuntimeOptions

        cache = {"cache_dir": self.cache_dir.expanduser()} if self.cache_dir else {}
        return RuntimeOptions(ort_threads=self.ort_threads, torch_dtype=self.torch_dtype, **cache)

    def check(self) -> None:
        from models.runtime import RUNTIMES
        from models.runtime.options import TORCH_DTYPES

        if self.runtime not in RUNTIMES:
            raise ValueError(f"FGRM_RUNTIME must be one of {RUNTIMES}, got {self.runtime!r}")
        if self.max_batch_tokens < 0:
            raise ValueError(f"FGRM_MAX_BATCH_TOKENS must be >= 0 (0 = by device), got {self.max_batch_tokens}")
        for name in ("max_batch_rows", "max_queue_items", "max_items_per_request",
                     "max_response_chars", "max_body_bytes", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"FGRM_{name.upper()} must be >= 1, got {getattr(self, name)}")
        if self.ort_threads < 0:
            raise ValueError(f"FGRM_ORT_THREADS must be >= 0 (0 = every core), got {self.ort_threads}")
        if self.torch_dtype not in TORCH_DTYPES:
            raise ValueError(f"FGRM_TORCH_DTYPE must be one of {TORCH_DTYPES}, got {self.torch_dtype!r}")
        if not 0 <= self.grpc_port < 65536 or not 0 <= self.http_port < 65536:
            raise ValueError("ports must be in 0..65535")


def default_state_dir(environ) -> Path:
    """Where a served process keeps shared state unless told: the XDG data directory."""
    base = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".local" / "share")
    return Path(base) / "fgrm"


TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _read_secret(path: Path, what: str) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"{what}={path}: cannot read it ({exc.strerror})") from None
    if not value:
        raise ValueError(f"{what}={path}: the file is empty")
    return value


def _parse(name: str, f: dataclasses.Field, raw: str):
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "Path | None":
            return Path(raw) if raw else None
        if kind == "bool":
            if raw.strip().lower() not in TRUE + FALSE:
                raise ValueError(raw)
            return raw.strip().lower() in TRUE
        return raw
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind}") from None


GPU_BATCH_TOKENS = 8192
CPU_BATCH_TOKENS = 512


def batch_token_budget(settings: Settings, provider: str) -> int:
    """The token budget of one forward pass for a backend reporting `provider`."""
    if settings.max_batch_tokens:
        return settings.max_batch_tokens
    return GPU_BATCH_TOKENS if "cuda" in provider.lower() else CPU_BATCH_TOKENS
