"""gRPC clients (sync and async, over grpcio) for the ``fgrm.v1.RewardService``.

Same methods and answers as the HTTP clients. Specific to gRPC:

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

import asyncio
import ipaddress
import socket
import time
from typing import Any, Iterable, Mapping, Sequence

import grpc
from grpc import aio

from . import _proto
from ._limit import ConcurrencyLimit
from ._ready import apoll_ready, poll_ready
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
from .http import mix_items_json
from .types import (
    Event,
    FeedbackTypeInfo,
    ItemResult,
    Mixed,
    Segment,
    TypeResult,
    to_items,
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
        # gRPC's own transparent retries are off: the client's loop below is the one policy.
        ("grpc.enable_retries", 0),
        *extra,
    ]


# ----------------------------------------------------------------------------- messages


def _offsets_msg(pb, offsets):
    return pb.TokenOffsets(spans=[pb.Span(start=int(s), end=int(e)) for s, e in offsets])


def _score_request(items, weights, profile):
    pb = _proto.messages()
    msgs = []
    for it in to_items(items):
        m = pb.Item(question=it.question, passages=list(it.passages), response=it.response)
        if it.token_offsets is not None:
            m.token_offsets.CopyFrom(_offsets_msg(pb, it.token_offsets))
        msgs.append(m)
    return pb.ScoreRequest(
        items=msgs,
        weights={str(k): float(v) for k, v in (weights or {}).items()},
        profile=profile or "",
    )


def _mix_request(components, weights, token_offsets, profile):
    pb = _proto.messages()
    items = []
    for j in mix_items_json(components, token_offsets):
        m = pb.MixItem()
        for name, t in j["types"].items():
            m.types[name].granularity = t["granularity"]
            m.types[name].segments.extend(
                pb.MixSegment(end=s["end"], reward=s["reward"]) for s in t["segments"]
            )
        if "token_offsets" in j:
            m.token_offsets.CopyFrom(_offsets_msg(pb, j["token_offsets"]))
        items.append(m)
    return pb.MixRequest(
        items=items,
        weights={str(k): float(v) for k, v in (weights or {}).items()},
        profile=profile or "",
    )


def _opt(msg, name: str) -> float | None:
    return getattr(msg, name) if msg.HasField(name) else None


def _mixed(m) -> Mixed:
    return Mixed(
        weights=dict(m.weights),
        total=m.total,
        events=tuple(Event(e.end, e.reward) for e in m.events),
    )


def _token_rewards(msg) -> tuple[float, ...] | None:
    return tuple(msg.token_rewards.values) if msg.HasField("token_rewards") else None


def _item_result(r) -> ItemResult:
    types = {
        name: TypeResult(
            granularity=t.granularity,
            total=t.total,
            segments=tuple(
                Segment(
                    start=s.start, end=s.end, text=s.text, reward=s.reward,
                    p_error=_opt(s, "p_error"), score=_opt(s, "score"), p_bad=_opt(s, "p_bad"),
                )
                for s in t.segments
            ),
        )
        for name, t in r.types.items()
    }
    return ItemResult(types=types, mixed=_mixed(r.mixed), token_rewards=_token_rewards(r))


def _feedback_types(resp) -> list[FeedbackTypeInfo]:
    return [
        FeedbackTypeInfo(
            name=t.name, granularity=t.granularity, kind=t.kind, weight=t.default_weight,
            extra={"model_version": t.model_version, "runtime": t.runtime,
                   "provider": t.provider, "batch_invariant": t.batch_invariant},
        )
        for t in resp.types
    ]


def _check_count(results, n: int, method: str):
    if len(results) != n:
        raise ProtocolError(f"sent {n} items, got {len(results)} results", endpoint=method)
    return results


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


def _health_serving(data: bytes) -> bool:
    # grpc.health.v1.HealthCheckResponse is a single enum field 1; SERVING == 1. Decoding
    # the two bytes by hand keeps grpcio-health-checking out of the client's dependencies.
    return data == b"\x08\x01"


# ----------------------------------------------------------------------------- clients


class _Base:
    def __init__(self, addresses, timeout: float, retry: RetryPolicy | None, api_key: str | None = None,
                 max_concurrency: int | None = None) -> None:
        self.target = make_target(addresses)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._limit = ConcurrencyLimit(max_concurrency)  # fgrm_client._limit says why
        # a server started with --api-key-file wants this on every RewardService call
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None
        pb = _proto.messages()
        self._methods = {  # name -> (path, request serializer, response deserializer)
            name: (f"/{_proto.SERVICE}/{name}", req.SerializeToString, resp.FromString)
            for name, req, resp in (
                ("Score", pb.ScoreRequest, pb.ScoreResponse),
                ("Mix", pb.MixRequest, pb.MixResponse),
                ("ListFeedbackTypes", pb.ListFeedbackTypesRequest, pb.ListFeedbackTypesResponse),
            )
        }

    def _delay(self, attempt: int, err: grpc.RpcError) -> float | None:
        if attempt >= self.retry.max_attempts or err.code() not in RETRY_CODES:
            return None
        return self.retry.backoff(attempt)


class GrpcClient(_Base):
    """Synchronous gRPC client; ``addresses`` is one target or a list of ``host:port``."""

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
        super().__init__(addresses, timeout, retry, api_key, max_concurrency)
        opts = channel_options(options)
        self._channel = (
            grpc.secure_channel(self.target, credentials, options=opts)
            if credentials else grpc.insecure_channel(self.target, options=opts)
        )
        self._calls = {
            name: self._channel.unary_unary(path, request_serializer=ser,
                                            response_deserializer=de)
            for name, (path, ser, de) in self._methods.items()
        }
        self._health = self._channel.unary_unary(
            _HEALTH_CHECK, request_serializer=lambda _: b"", response_deserializer=bytes
        )

    def __enter__(self) -> "GrpcClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, name: str, request):
        with self._limit:
            return self._send(name, request)

    def _send(self, name: str, request):
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._calls[name](request, timeout=self.timeout, metadata=self._metadata)
            except grpc.RpcError as err:
                delay = self._delay(attempt, err)
                if delay is None:
                    raise error_from_rpc(err, self._methods[name][0], attempt) from None
                time.sleep(delay)

    def score(self, items, weights: Mapping[str, float] | None = None,
              profile: str | None = None) -> list[ItemResult]:
        """See :meth:`fgrm_client.HttpClient.score`."""
        req = _score_request(items, weights, profile)
        resp = self._call("Score", req)
        return _check_count([_item_result(r) for r in resp.results], len(req.items), "Score")

    def mix(self, components, weights, token_offsets=None, profile=None) -> list[ItemResult]:
        """See :meth:`fgrm_client.HttpClient.mix`."""
        req = _mix_request(components, weights, token_offsets, profile)
        resp = self._call("Mix", req)
        out = [ItemResult(types={}, mixed=_mixed(r.mixed), token_rewards=_token_rewards(r))
               for r in resp.results]
        return _check_count(out, len(req.items), "Mix")

    def feedback_types(self) -> list[FeedbackTypeInfo]:
        """See :meth:`fgrm_client.HttpClient.feedback_types`."""
        return _feedback_types(self._call("ListFeedbackTypes", _proto.messages().ListFeedbackTypesRequest()))

    def wait_until_ready(self, timeout: float = 60.0, poll_interval: float = 0.25) -> None:
        """Block until the standard gRPC health check says SERVING; :class:`Timeout` otherwise."""
        def probe(seconds: float) -> str | None:
            try:
                return None if _health_serving(self._health(None, timeout=seconds)) else "NOT_SERVING"
            except grpc.RpcError as err:
                return err.code().name

        poll_ready(probe, timeout, poll_interval, f"{self.target}{_HEALTH_CHECK}")

class AsyncGrpcClient(_Base):
    """Asynchronous (grpc.aio) client with the same methods as :class:`GrpcClient`.

    Create it inside the event loop that will use it.
    """

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
        super().__init__(addresses, timeout, retry, api_key, max_concurrency)
        opts = channel_options(options)
        self._channel = (
            aio.secure_channel(self.target, credentials, options=opts)
            if credentials else aio.insecure_channel(self.target, options=opts)
        )
        self._calls = {
            name: self._channel.unary_unary(path, request_serializer=ser,
                                            response_deserializer=de)
            for name, (path, ser, de) in self._methods.items()
        }
        self._health = self._channel.unary_unary(
            _HEALTH_CHECK, request_serializer=lambda _: b"", response_deserializer=bytes
        )

    async def __aenter__(self) -> "AsyncGrpcClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, name: str, request):
        async with self._limit:
            return await self._send(name, request)

    async def _send(self, name: str, request):
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._calls[name](request, timeout=self.timeout, metadata=self._metadata)
            except grpc.RpcError as err:
                delay = self._delay(attempt, err)
                if delay is None:
                    raise error_from_rpc(err, self._methods[name][0], attempt) from None
                await asyncio.sleep(delay)

    async def score(self, items, weights=None, profile=None) -> list[ItemResult]:
        """See :meth:`fgrm_client.HttpClient.score`."""
        req = _score_request(items, weights, profile)
        resp = await self._call("Score", req)
        return _check_count([_item_result(r) for r in resp.results], len(req.items), "Score")

    async def mix(self, components, weights, token_offsets=None, profile=None) -> list[ItemResult]:
        """See :meth:`fgrm_client.HttpClient.mix`."""
        req = _mix_request(components, weights, token_offsets, profile)
        resp = await self._call("Mix", req)
        out = [ItemResult(types={}, mixed=_mixed(r.mixed), token_rewards=_token_rewards(r))
               for r in resp.results]
        return _check_count(out, len(req.items), "Mix")

    async def feedback_types(self) -> list[FeedbackTypeInfo]:
        """See :meth:`fgrm_client.HttpClient.feedback_types`."""
        req = _proto.messages().ListFeedbackTypesRequest()
        return _feedback_types(await self._call("ListFeedbackTypes", req))

    async def wait_until_ready(self, timeout: float = 60.0, poll_interval: float = 0.25) -> None:
        """See :meth:`GrpcClient.wait_until_ready`."""
        async def probe(seconds: float) -> str | None:
            try:
                return None if _health_serving(await self._health(None, timeout=seconds)) else "NOT_SERVING"
            except grpc.RpcError as err:
                return err.code().name

        await apoll_ready(probe, timeout, poll_interval, f"{self.target}{_HEALTH_CHECK}")


__all__ = ["AsyncGrpcClient", "GrpcClient", "error_from_rpc", "make_target"]
