"""What every trainer adapter shares: settings, cached clients, items, per-type totals, failures.

The adapters own no transport logic: retries, deadlines, the concurrency cap and the typed
errors are the HTTP client's (``fgrm_client.http``, ``fgrm_client._limit``). What is here is
the glue every trainer needs the same way:

* :class:`Settings`: the keyword arguments every adapter accepts (``url``, ``weights``, ...),
  hashable so that equal settings share one client;
* :func:`sync_client` / :func:`async_client`: one client per settings, per process (a client
  must not cross a ``fork``) and, for async clients, per event loop (httpx binds its pool to
  the loop that first used it);
* :func:`loud`: the one place a failed reward call is logged before it propagates. No adapter
  catches a failure and returns a number instead: a reward that is silently 0 trains the policy
  on noise (slime PR #1582, lmm-r1 #30 are that bug).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from .._retry import RetryPolicy
from ..align import offsets_from_decode
from ..errors import FgrmError, ProtocolError
from ..http import DEFAULT_TIMEOUT, DEFAULT_URL, AsyncHttpClient, HttpClient
from .._items import qa_item, reference_of
from ..types import ItemResult

log = logging.getLogger("fgrm_client.trainers")

DEFAULT_MAX_CONCURRENCY = 16
"""Requests one adapter keeps in flight per process: trainers fire one call per sample, and
the service batches across requests anyway, so more in flight only fills its queue."""


@dataclass(frozen=True)
class Settings:
    """How an adapter reaches the service. Every adapter takes these as keyword arguments."""

    url: str = DEFAULT_URL
    """Base URL of the service, e.g. ``http://rm:3000``."""
    weights: tuple[tuple[str, float], ...] | None = None
    """Per-type mixing weights (given as a mapping); ``None``: the service's profile."""
    profile: str | None = None
    """Named weight profile on the service."""
    timeout: float = DEFAULT_TIMEOUT
    """Seconds per attempt."""
    max_attempts: int = 4
    """Tries per call, the first included (bounded retries on connection errors, 429, 503)."""
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    """Calls in flight at once per client."""
    api_key: str | None = None
    """For a service started with ``--api-key-file``."""
    label_as_reference: bool = False
    """Send the trainer's own label of each sample (veRL ``ground_truth``, slime ``label``,
    SkyRL ``reward_spec["ground_truth"]``) as the item's ``reference`` answer. Off by default:
    a label is often a short answer, and a reference changes the rewards (the service scores
    relevance against references of 10 distinct content words or more only; completeness reads any).
    A ``reference`` entry in the sample's own data (``extra_info``, ``metadata``,
    ``env_extras``, AReaL's ``task_data``) is always sent."""

    @classmethod
    def of(cls, **kwargs: Any) -> "Settings":
        """Settings from keyword arguments; unknown names are an error (a typo must not pass)."""
        unknown = set(kwargs) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown fgrm setting(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        weights = kwargs.get("weights")
        if weights is not None and not isinstance(weights, tuple):
            kwargs["weights"] = tuple(sorted((str(k), float(v)) for k, v in dict(weights).items()))
        return cls(**kwargs)

    @property
    def weight_map(self) -> dict[str, float] | None:
        return None if self.weights is None else dict(self.weights)

    def client_kwargs(self) -> dict[str, Any]:
        return dict(timeout=self.timeout, retry=RetryPolicy(max_attempts=self.max_attempts),
                    api_key=self.api_key, max_concurrency=self.max_concurrency)


_lock = threading.Lock()
_sync_clients: dict[tuple[Settings, int], HttpClient] = {}
_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Settings, AsyncHttpClient]]" = (
    weakref.WeakKeyDictionary())


def sync_client(settings: Settings) -> HttpClient:
    """The process's :class:`HttpClient` for ``settings`` (thread-safe; the cap is shared)."""
    key = (settings, os.getpid())
    with _lock:
        client = _sync_clients.get(key)
        if client is None:
            client = _sync_clients[key] = HttpClient(settings.url, **settings.client_kwargs())
        return client


def async_client(settings: Settings) -> AsyncHttpClient:
    """The running loop's :class:`AsyncHttpClient` for ``settings``."""
    loop = asyncio.get_running_loop()
    with _lock:
        per_loop = _async_clients.setdefault(loop, {})
        client = per_loop.get(settings)
        if client is None:
            client = per_loop[settings] = AsyncHttpClient(settings.url, **settings.client_kwargs())
        return client


@contextmanager
def loud(trainer: str, what: str = "reward call") -> Iterator[None]:
    """Log a failed call at ERROR, naming the trainer, then let the typed error propagate."""
    try:
        yield
    except FgrmError as exc:
        log.error("fgrm %s %s failed; raising instead of returning a reward (%s: %s)",
                  trainer, what, type(exc).__name__, exc)
        raise


def sample_reference(data: Mapping[str, Any] | None, label: Any, settings: Settings, data_name: str,
                     label_name: str) -> str | None:
    """One sample's reference answer: the ``reference`` entry of its own data (``data_name``)
    if it has one, else its trainer label (``label_name``) when ``settings.label_as_reference``."""
    if data and data.get("reference") is not None:
        return reference_of(data["reference"], f"{data_name}['reference']")
    return reference_of(label, label_name) if settings.label_as_reference else None


def last_user_text(conversation: Any) -> str:
    """The last user message of a chat (list of ``{"role", "content"}``), or the text itself."""
    if isinstance(conversation, str):
        return conversation
    for message in reversed(list(conversation or ())):
        if isinstance(message, Mapping) and message.get("role") in (None, "user"):
            content = message.get("content", "")
            if isinstance(content, str):
                return content
            # OpenAI-style content parts: [{"type": "input_text", "text": ...}, ...]
            return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def type_totals(result: ItemResult) -> dict[str, float]:
    """Each feedback type's unweighted total, in the service's order."""
    return {name: float(t.total) for name, t in result.types.items()}


def weighted_totals(result: ItemResult) -> dict[str, float]:
    """``w_k * total_k`` per type: the parts that add up to ``mixed.total``."""
    w = result.mixed.weights
    return {name: float(w.get(name, 0.0)) * float(t.total) for name, t in result.types.items()}


def decoded_item(tokenizer: Any, response_ids: Sequence[int], question: Any, passages: Any,
                 reference: Any = None) -> dict[str, Any]:
    """An item whose response is the decoded ``response_ids`` with one offset per token, so
    the service answers one reward per sampled token (``fgrm_client.align`` says why decoding
    prefixes, not re-tokenising)."""
    text, offsets = offsets_from_decode(tokenizer, response_ids)
    return qa_item(question, passages, text, offsets, reference)


def dense(result: ItemResult, n_tokens: int) -> list[float]:
    """The service's per-token rewards, checked to be one per token."""
    tr = result.token_rewards
    if tr is None or len(tr) != n_tokens:
        raise ProtocolError(f"expected {n_tokens} token rewards, got {None if tr is None else len(tr)}")
    return list(tr)
