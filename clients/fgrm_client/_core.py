"""The transport-neutral core of every client: what one call is, and how its failures are judged.

A call (:class:`Call`) is built by a codec (``fgrm_client.http.HttpCodec``,
``fgrm_client.grpc.GrpcCodec``) from neutral inputs (``fgrm_client.types``); a driver
(``fgrm_client._drivers``) sends it with its transport, and on failure asks :class:`Attempts`
whether to wait and try again or to raise. So each of these lives once:

    build request  -> codec (score / mix / feedback_types / ready)
    send           -> the client class (its httpx client or gRPC channel), sync or async
    parse          -> Call.parse (the codec's; raises ProtocolError on a malformed answer)
    classify error -> codec.classify: the typed FgrmError, and whether it is safe to retry
    retry          -> RetryPolicy.delays(), drawn by Attempts
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Iterator, Mapping, Protocol, Sequence, TypeVar

from ._retry import RetryPolicy
from .errors import FgrmError, ProtocolError
from .types import FeedbackTypeInfo, Item, ItemResult, MixItem

T = TypeVar("T")
log = logging.getLogger("fgrm_client")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One logical call, whatever the transport."""

    endpoint: str
    """Where it goes (URL or gRPC method path), as errors report it."""
    request: Any
    """The transport's own request: ``(method, path, json)`` for HTTP, ``(method, message)`` for gRPC."""
    parse: Callable[[Any], T]
    """The transport's answer -> the neutral result; raises ProtocolError when it does not fit."""
    timeout: float | None = None
    """Seconds for this call's attempts; None: the client's own timeout."""
    replicas: Iterator[str] | None = None
    """Where each attempt goes when the client knows several replicas (HTTP: base URLs in turn)."""


@dataclass(frozen=True)
class Failure:
    """A failed attempt, as a codec judged it."""

    error: FgrmError
    """What the caller gets when this failure is the last one."""
    retryable: bool
    """Safe to send again: the service did no work (refused, unreachable) and scoring is idempotent."""
    reason: str
    """A short label (``HTTP 503``, ``UNAVAILABLE``, ``ConnectError``) for readiness messages."""
    retry_after: float | None = None
    """The server's own wait hint, seconds."""
    cause: BaseException | None = None
    """Chained as ``__cause__`` of the raised error (None hides transport internals)."""
    immediate: bool = False
    """Another replica can take the retry now: no backoff (the attempt still counts)."""


class Codec(Protocol):
    """Builds the calls of one transport and judges its failures."""

    def score(self, items: list[Item], weights: Mapping[str, float] | None,
              profile: str | None) -> Call[list[ItemResult]]: ...

    def mix(self, items: list[MixItem], weights: Mapping[str, float] | None,
            profile: str | None) -> Call[list[ItemResult]]: ...

    def feedback_types(self) -> Call[list[FeedbackTypeInfo]]: ...

    def ready(self, seconds: float) -> Call[str | None]:
        """A readiness probe: its answer parses to None when ready, else the reason why not."""
        ...

    def classify(self, exc: Exception, endpoint: str) -> Failure | None:
        """The failure `exc` means, or None when it is not a transport failure (never retried)."""
        ...


class Attempts:
    """The retry bookkeeping of one call: counts the tries, draws the waits from the policy."""

    def __init__(self, policy: RetryPolicy, codec: Codec, call: Call[Any]) -> None:
        self._policy, self._codec, self._endpoint = policy, codec, call.endpoint
        self._delays = policy.delays()
        self.count = 0

    def failed(self, exc: Exception) -> float:
        """Seconds to wait before the next try; raises the typed error when `exc` is final."""
        self.count += 1
        failure = self._codec.classify(exc, self._endpoint)
        if failure is None:
            raise exc
        delay = next(self._delays, None) if failure.retryable else None
        if delay is None:
            failure.error.attempts = self.count
            raise failure.error from failure.cause
        return 0.0 if failure.immediate else self._policy.honour(delay, failure.retry_after)


def weight_map(weights: Mapping[str, float] | None) -> dict[str, float]:
    """Mixing weights as both wire formats carry them: names to floats (None: no overrides)."""
    return {str(k): float(v) for k, v in (weights or {}).items()}


def check_count(results: Iterable[T], n: int, endpoint: str, references: Sequence[bool] = ()) -> list[T]:
    """One answer per item sent, or a ProtocolError. Every score and mix answer of both transports
    passes here, so this is also where the answers' unread references are noted, once;
    `references[i]`: item i was sent with a (non-blank) reference."""
    out = list(results)
    if len(out) != n:
        raise ProtocolError(f"sent {n} items, got {len(out)} results", endpoint=endpoint)
    note_unread_references(out, references)
    return out


# Why a type's head scored an item as if it had no reference (TypeResult.reference)
_UNREAD = {"too_short": "it has fewer distinct content words than the checkpoint's reference_relevance_min_words",
           "unrelated": "it shares too little of its content words with the question and passages, as another "
                        "question's answer would (checkpoint reference_min_context_share)"}
_warned: set[tuple[str, str]] = set()
_NONE_READ = ("*", "no type reads references")


def note_unread_references(results: Iterable[Any], references: Sequence[bool] = ()) -> None:
    """One WARNING per process for each (type, reason) the service gives for not reading an item's
    reference: a trainer that sends short labels, or another question's answers, as references
    would otherwise not see that they change nothing (the service counts every such item in
    fgrm_references_total). And one when an item sent with a reference (`references[i]`) comes
    back with no type saying anything of it: no model of that server reads references at all."""
    for i, result in enumerate(results):
        types = getattr(result, "types", None) or {}
        if i < len(references) and references[i] and types and _NONE_READ not in _warned \
                and all(getattr(t, "reference", None) is None for t in types.values()):
            _warned.add(_NONE_READ)
            log.warning("fgrm: no feedback type of this server read an item's reference, so it changes nothing: "
                        "its models read none (GET /v1/feedback-types, reads_reference), or the server predates "
                        "references. Logged once per process.")
        for name, t in types.items():
            reason = getattr(t, "reference", None)
            if reason in _UNREAD and (name, reason) not in _warned:
                _warned.add((name, reason))
                log.warning("fgrm: %s scored an item as without its reference (%s): %s. Logged once per "
                            "process; the service counts them all in fgrm_references_total{read=%r}.",
                            name, reason, _UNREAD[reason], reason)
