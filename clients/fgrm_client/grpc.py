"""gRPC clients (sync and async, over grpcio) for the ``fgrm.v1.RewardService``.

Same methods and answers as the HTTP clients, through the same drivers (``fgrm_client._drivers``):
this module is a codec (:class:`GrpcCodec`: neutral types <-> ``fgrm.v1`` messages, status codes
-> typed errors) and two thin classes that hold a channel and send. Specific to gRPC:

* Deadlines: every call carries ``timeout`` seconds as its gRPC deadline; the server drops
  queued work whose deadline has passed.
* Retries: UNAVAILABLE (no replica reachable, or models still loading) and RESOURCE_EXHAUSTED
  (queue full, refused before any work) are retried with capped exponential backoff and full
  jitter; scoring is idempotent, so a retry can never double-count. Nothing else is retried.
* Load balancing: pass several addresses (``["10.0.0.1:50051", "10.0.0.2:50051"]``) and the
  channel spreads calls over them with gRPC's ``round_robin`` policy through one
  ``ipv4:a:p,b:p`` target; a replica that goes down is skipped after its connection fails.
  A single string target is used as is (``dns:///rm.internal:50051`` also load-balances when
  the name resolves to several addresses).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable, Iterable, Mapping, Sequence

import grpc
from grpc import aio

from . import _proto
from ._core import Call, Failure, check_count, weight_map
from ._drivers import AsyncClient, SyncClient, _Driver
from ._retry import RetryPolicy
from .errors import (
    FgrmError,
    InvalidInput,
    NotReady,
    Overloaded,
    ProtocolError,
    ServerError,
    Timeout,
    Unauthorized,
    Unavailable,
)
from .types import (
    Event,
    FeedbackTypeInfo,
    Item,
    ItemResult,
    MixItem,
    Mixed,
    Segment,
    TypeResult,
)

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 30.0
RETRY_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_MAX_MESSAGE = 64 * 1024 * 1024  # a batch of long passages can exceed gRPC's 4 MiB default


# ----------------------------------------------------------------------------- targets


def _resolve_ipv4(address: str) -> str:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address must be host:port, got {address!r}")
    try:
        ipaddress.IPv4Address(host)
        return address
    except ValueError:
        info = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_STREAM)
        return f"{info[0][4][0]}:{port}"


def make_target(addresses: str | Sequence[str]) -> str:
    """A gRPC target for one address (as is) or several (``ipv4:`` list, names resolved now)."""
    if isinstance(addresses, str):
        return addresses
    addresses = list(addresses)
    if not addresses:
        raise ValueError("no addresses given")
    return "ipv4:" + ",".join(_resolve_ipv4(a) for a in addresses)


def channel_options(extra: Iterable[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
    return [
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.max_receive_message_length", _MAX_MESSAGE),
        ("grpc.max_send_message_length", _MAX_MESSAGE),
        # gRPC's own transparent retries are off: the drivers' loop is the one policy.
        ("grpc.enable_retries", 0),
        *extra,
    ]


# ----------------------------------------------------------------------------- codec


def _offsets_msg(pb: Any, offsets: Sequence[tuple[int, int]]) -> Any:
    return pb.TokenOffsets(spans=[pb.Span(start=int(s), end=int(e)) for s, e in offsets])


def _item_msg(pb: Any, it: Item) -> Any:
    # proto3 leaves an empty reference off the wire, as the HTTP codec does
    m = pb.Item(question=it.question, passages=list(it.passages), response=it.response, reference=it.reference)
    if it.token_offsets is not None:
        m.token_offsets.CopyFrom(_offsets_msg(pb, it.token_offsets))
    return m


def _mix_item_msg(pb: Any, it: MixItem) -> Any:
    m = pb.MixItem()
    for name, c in it.types.items():
        m.types[name].granularity = c.granularity
        m.types[name].segments.extend(pb.MixSegment(end=e.end, reward=e.reward) for e in c.segments)
    if it.token_offsets is not None:
        m.token_offsets.CopyFrom(_offsets_msg(pb, it.token_offsets))
    return m


def _opt(msg: Any, name: str) -> float | None:
    return getattr(msg, name) if msg.HasField(name) else None


def _mixed(m: Any) -> Mixed:
    return Mixed(weights=dict(m.weights), total=m.total, events=tuple(Event(e.end, e.reward) for e in m.events))


def _token_rewards(msg: Any) -> tuple[float, ...] | None:
    return tuple(msg.token_rewards.values) if msg.HasField("token_rewards") else None


def _segment(s: Any) -> Segment:
    return Segment(start=s.start, end=s.end, text=s.text, reward=s.reward,
                   p_error=_opt(s, "p_error"), score=_opt(s, "score"), p_bad=_opt(s, "p_bad"))


def _item_result(r: Any) -> ItemResult:
    types = {name: TypeResult(granularity=t.granularity, total=t.total, segments=tuple(_segment(s) for s in t.segments),
                              reference=t.reference or None)
             for name, t in r.types.items()}
    return ItemResult(types=types, mixed=_mixed(r.mixed), token_rewards=_token_rewards(r))


def _mix_result(r: Any) -> ItemResult:
    return ItemResult(types={}, mixed=_mixed(r.mixed), token_rewards=_token_rewards(r))


def _feedback_types(resp: Any) -> list[FeedbackTypeInfo]:
    return [
        FeedbackTypeInfo(
            name=t.name, granularity=t.granularity, kind=t.kind, weight=t.default_weight,
            extra={"model_version": t.model_version, "runtime": t.runtime,
                   "provider": t.provider, "batch_invariant": t.batch_invariant,
                   "reads_reference": t.reads_reference, "reference_min_words": t.reference_min_words,
                   "reference_min_context_share": t.reference_min_context_share, "quality": dict(t.quality)},
        )
        for t in resp.types
    ]


def _health_serving(data: bytes) -> bool:
    # grpc.health.v1.HealthCheckResponse is a single enum field 1; SERVING == 1. Decoding
    # the two bytes by hand keeps grpcio-health-checking out of the client's dependencies.
    return data == b"\x08\x01"


def _method(name: str) -> str:
    return _HEALTH_CHECK if name == "Health" else f"/{_proto.SERVICE}/{name}"


class GrpcCodec:
    """``fgrm.v1`` messages: requests as ``(method name, message)``, answers as response messages."""

    def __init__(self) -> None:
        self.pb = _proto.messages()

    def _call(self, name: str, message: Any, parse: Callable[[Any], Any], timeout: float | None = None) -> Call[Any]:
        return Call(_method(name), (name, message), parse, timeout)

    def _batch(self, name: str, request_type: Any, messages: list[Any], read: Callable[[Any], ItemResult],
               weights: Mapping[str, float] | None, profile: str | None,
               references: Sequence[bool] = ()) -> Call[list[ItemResult]]:
        """Score and Mix: items in, one result per item out (the count is checked)."""
        req = request_type(items=messages, weights=weight_map(weights), profile=profile or "")
        return self._call(name, req, lambda resp: check_count(map(read, resp.results), len(messages), _method(name),
                                                              references))

    def score(self, items: list[Item], weights: Mapping[str, float] | None,
              profile: str | None) -> Call[list[ItemResult]]:
        return self._batch("Score", self.pb.ScoreRequest, [_item_msg(self.pb, it) for it in items], _item_result,
                           weights, profile, [it.has_reference for it in items])

    def mix(self, items: list[MixItem], weights: Mapping[str, float] | None,
            profile: str | None) -> Call[list[ItemResult]]:
        return self._batch("Mix", self.pb.MixRequest, [_mix_item_msg(self.pb, it) for it in items], _mix_result,
                           weights, profile)

    def feedback_types(self) -> Call[list[FeedbackTypeInfo]]:
        return self._call("ListFeedbackTypes", self.pb.ListFeedbackTypesRequest(), _feedback_types)

    def ready(self, seconds: float) -> Call[str | None]:
        return self._call("Health", None, lambda data: None if _health_serving(data) else "NOT_SERVING", seconds)

    def classify(self, exc: Exception, endpoint: str) -> Failure | None:
        if not isinstance(exc, grpc.RpcError):
            return None
        error = error_from_rpc(exc, endpoint)
        # grpc's own message-size refusal shares RESOURCE_EXHAUSTED with the service's overload;
        # sending the same message again cannot succeed
        retryable = exc.code() in RETRY_CODES and not isinstance(error, InvalidInput)
        return Failure(error, retryable, exc.code().name)


# ----------------------------------------------------------------------------- errors


def _metadata(err: grpc.RpcError) -> dict[str, str]:
    try:
        md = err.trailing_metadata() or ()
    except Exception:  # some RpcErrors (e.g. local channel failures) carry none
        md = ()
    return {k: v if isinstance(v, str) else v.decode("utf-8", "replace") for k, v in md}


def error_from_rpc(err: grpc.RpcError, method: str, attempts: int = 1) -> FgrmError:
    """The typed error for a failed call (the one place gRPC codes are interpreted)."""
    code = err.code()
    message = err.details() or code.name
    md = _metadata(err)
    kind = md.get("fgrm-error-kind", "")
    kw = dict(endpoint=method, status=code.name, attempts=attempts)
    S = grpc.StatusCode
    if code == S.INVALID_ARGUMENT:
        return InvalidInput(message, field=md.get("fgrm-field"), **kw)
    if code == S.RESOURCE_EXHAUSTED:
        if kind != "overloaded" and "larger than max" in message:
            # grpc itself refused a message over the size limit (the server's max_body_bytes, or
            # this client's): not an overload, and no retry can fix it
            return InvalidInput(f"{message} (the request message is over the gRPC size limit)", field="request", **kw)
        return Overloaded(message, **kw)
    if code == S.UNAVAILABLE:
        return (NotReady if kind == "not_ready" else Unavailable)(message, **kw)
    if code == S.DEADLINE_EXCEEDED:
        return Timeout(message, **kw)
    if code in (S.UNAUTHENTICATED, S.PERMISSION_DENIED):
        return Unauthorized(message, **kw)
    if code in (S.INTERNAL, S.UNKNOWN, S.DATA_LOSS):
        return ServerError(message, **kw)
    return ProtocolError(f"unexpected gRPC status {code.name}: {message}", **kw)


# ----------------------------------------------------------------------------- clients


class _GrpcBase(_Driver):
    """The constructor both gRPC clients share; the subclass names its channel module."""

    _channels: Any = grpc

    def __init__(
        self,
        addresses: str | Sequence[str] = DEFAULT_TARGET,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        options: Iterable[tuple[str, Any]] = (),
        credentials: grpc.ChannelCredentials | None = None,
        api_key: str | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        super().__init__(retry, max_concurrency)
        self.target = make_target(addresses)
        self.timeout = timeout
        self._codec = GrpcCodec()
        self._ready_endpoint = f"{self.target}{_HEALTH_CHECK}"
        # a server started with --api-key-file wants this on every RewardService call
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None
        opts = channel_options(options)
        self._channel = (self._channels.secure_channel(self.target, credentials, options=opts) if credentials
                         else self._channels.insecure_channel(self.target, options=opts))
        pb = self._codec.pb
        self._stubs = {name: self._channel.unary_unary(_method(name), request_serializer=ser,
                                                       response_deserializer=de)
                       for name, ser, de in (
                           ("Score", pb.ScoreRequest.SerializeToString, pb.ScoreResponse.FromString),
                           ("Mix", pb.MixRequest.SerializeToString, pb.MixResponse.FromString),
                           ("ListFeedbackTypes", pb.ListFeedbackTypesRequest.SerializeToString,
                            pb.ListFeedbackTypesResponse.FromString),
                           ("Health", lambda _: b"", bytes))}

    def _invoke(self, call: Call[Any]) -> Any:
        """The stub's answer: a message (sync) or an awaitable of one (grpc.aio)."""
        name, message = call.request
        metadata = None if name == "Health" else self._metadata
        return self._stubs[name](message, timeout=call.timeout or self.timeout, metadata=metadata)


class GrpcClient(_GrpcBase, SyncClient):
    """Synchronous gRPC client; ``addresses`` is one target or a list of ``host:port``."""

    _channels = grpc

    def _send(self, call: Call[Any]) -> Any:
        return self._invoke(call)

    def close(self) -> None:
        self._channel.close()


class AsyncGrpcClient(_GrpcBase, AsyncClient):
    """Asynchronous (grpc.aio) client with the same methods as :class:`GrpcClient`.

    Create it inside the event loop that will use it.
    """

    _channels = aio

    async def _send(self, call: Call[Any]) -> Any:
        return await self._invoke(call)

    async def close(self) -> None:
        await self._channel.close()


__all__ = ["AsyncGrpcClient", "GrpcClient", "error_from_rpc", "make_target"]
