"""The gRPC transport: a grpc.aio server on the BentoML worker's event loop.

BentoML's `@bentoml.service` API has no gRPC (BentoML issues #4634, #5607), so the service's
async on_startup hook calls `start()`. Handlers decode protobuf, call the same
`ScoringEngine` object as the HTTP handlers (same process, same loop, same queue, so HTTP and
gRPC requests share forward passes), and encode. Errors are mapped to status codes here, once.

Deadlines: grpc.aio cancels a handler whose deadline passes; the cancellation reaches the
engine, which drops the request's queued rows before their forward pass.
"""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.domain import Component, Item, ItemResult, Mixed, MixResult, TypeResult
from service.errors import (BackendFailure, DeadlineExceeded, Forbidden, InvalidInput, NotReady, Overloaded,
                            ServiceError, Unauthorized)
from service.metrics import count_answered_error
from service.proto import stubs

log = logging.getLogger("fgrm.grpc")
pb2, pb2_grpc = stubs()
SERVICE_NAME = pb2.DESCRIPTOR.services_by_name["RewardService"].full_name
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

CODES = {InvalidInput: grpc.StatusCode.INVALID_ARGUMENT, Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
         NotReady: grpc.StatusCode.UNAVAILABLE, Unauthorized: grpc.StatusCode.UNAUTHENTICATED,
         Forbidden: grpc.StatusCode.PERMISSION_DENIED, DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
         BackendFailure: grpc.StatusCode.INTERNAL}


async def abort(context: grpc.aio.ServicerContext, exc: BaseException):
    """The one place a service error becomes a gRPC status."""
    if not isinstance(exc, ServiceError):
        log.exception("unexpected error", exc_info=exc)
        exc = BackendFailure("unexpected server error; see the server log")
    count_answered_error(exc, "grpc")
    code = next((c for cls, c in CODES.items() if isinstance(exc, cls)), grpc.StatusCode.INTERNAL)
    metadata = [("fgrm-error-kind", exc.kind)]
    if isinstance(exc, InvalidInput):
        # metadata values must be printable ASCII: escape whatever the caller put in a field name
        metadata.append(("fgrm-field", exc.field.encode("ascii", "backslashreplace").decode("ascii")))
    await context.abort(code, exc.message, trailing_metadata=tuple(metadata))


# ----------------------------------------------------------------------------- conversions

def _offsets(msg, has: bool):
    return tuple((s.start, s.end) for s in msg.spans) if has else None


def item_from_pb(m) -> Item:
    return Item(m.response, m.question, tuple(m.passages), _offsets(m.token_offsets, m.HasField("token_offsets")),
                m.reference)


def _mixed_pb(m: Mixed):
    return pb2.Mixed(weights=m.weights, total=m.total,
                     events=[pb2.MixEvent(end=e.end, reward=e.reward) for e in m.events])


def _type_pb(t: TypeResult):
    return pb2.TypeResult(granularity=t.granularity, total=t.total, reference=t.reference or "", segments=[
        pb2.Segment(start=s.start, end=s.end, text=s.text, p_error=s.p_error, score=s.score, p_bad=s.p_bad,
                    reward=s.reward) for s in t.segments])


def _tokens_pb(values):
    return None if values is None else pb2.TokenRewards(values=values)


def result_pb(r: ItemResult):
    return pb2.ItemResult(types={k: _type_pb(v) for k, v in r.types.items()}, mixed=_mixed_pb(r.mixed),
                          token_rewards=_tokens_pb(r.token_rewards))


def mix_result_pb(r: MixResult):
    return pb2.MixResult(mixed=_mixed_pb(r.mixed), token_rewards=_tokens_pb(r.token_rewards))


def mix_item_from_pb(m):
    comps = {name: Component(c.granularity, tuple((s.end, s.reward) for s in c.segments))
             for name, c in m.scored.items()}  # a Score result's types, as returned
    comps.update({name: Component(c.granularity, tuple((s.end, s.reward) for s in c.segments))
                  for name, c in m.types.items()})
    return comps, _offsets(m.token_offsets, m.HasField("token_offsets"))


# ----------------------------------------------------------------------------- servicer

class RewardServicer(pb2_grpc.RewardServiceServicer):  # type: ignore[name-defined]  # generated at start-up
    def __init__(self, engine):
        self.engine = engine

    async def Score(self, request, context):
        try:
            results = await self.engine.score([item_from_pb(m) for m in request.items], dict(request.weights),
                                              request.profile or None, transport="grpc")
        except Exception as exc:  # noqa: BLE001 - mapped by abort(); CancelledError is not an Exception
            await abort(context, exc)
        return pb2.ScoreResponse(results=[result_pb(r) for r in results])

    async def Mix(self, request, context):
        try:
            results = self.engine.mix([mix_item_from_pb(m) for m in request.items], dict(request.weights),
                                      request.profile or None, transport="grpc")
        except Exception as exc:  # noqa: BLE001
            await abort(context, exc)
        return pb2.MixResponse(results=[mix_result_pb(r) for r in results])

    async def ListFeedbackTypes(self, request, context):
        return pb2.ListFeedbackTypesResponse(types=[pb2.FeedbackTypeInfo(**t.as_dict())
                                                    for t in self.engine.feedback_types()])

    async def ListProfiles(self, request, context):
        return pb2.ListProfilesResponse(profiles=[pb2.Profile(name=k, weights=v)
                                                  for k, v in self.engine.profiles.all().items()])


class Malformed:
    """What the lenient deserializer returns for bytes that are not the expected message."""

    def __init__(self, message_name: str):
        self.message_name = message_name


def _lenient(message_cls):
    """grpc's generated handlers deserialize with `FromString`, and a DecodeError there (bad
    bytes, invalid UTF-8 in a string field) reaches the caller as UNKNOWN with an internal class
    name. Here it becomes a `Malformed` request, which the method refuses as INVALID_ARGUMENT."""

    def parse(data: bytes):
        try:
            return message_cls.FromString(data)
        except Exception:  # noqa: BLE001 - DecodeError, or invalid UTF-8, by protobuf backend
            return Malformed(message_cls.DESCRIPTOR.full_name)

    return parse


def _refusing_malformed(method):
    async def handler(request, context):
        if isinstance(request, Malformed):
            await abort(context, InvalidInput("request", f"is not a valid {request.message_name} message "
                                                         "(malformed protobuf, or invalid UTF-8 in a string field)"))
        return await method(request, context)

    return handler


def rpc_handlers(servicer: RewardServicer) -> grpc.GenericRpcHandler:
    """The RewardService methods, registered like the generated code does, but with lenient
    request parsing (see `_lenient`)."""
    methods = {"Score": (pb2.ScoreRequest, pb2.ScoreResponse), "Mix": (pb2.MixRequest, pb2.MixResponse),
               "ListFeedbackTypes": (pb2.ListFeedbackTypesRequest, pb2.ListFeedbackTypesResponse),
               "ListProfiles": (pb2.ListProfilesRequest, pb2.ListProfilesResponse)}
    return grpc.method_handlers_generic_handler(SERVICE_NAME, {
        name: grpc.unary_unary_rpc_method_handler(_refusing_malformed(getattr(servicer, name)),
                                                  request_deserializer=_lenient(req),
                                                  response_serializer=resp.SerializeToString)
        for name, (req, resp) in methods.items()})


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """With an API key configured, RewardService calls need the metadata `authorization: Bearer
    <key>` (UNAUTHENTICATED otherwise); health and reflection stay open, as /livez does."""

    def __init__(self, api_key: str):
        self.api_key = api_key

    async def intercept_service(self, continuation, details):
        if details.method.startswith(f"/{SERVICE_NAME}/"):
            from service.http import bearer_matches

            header = dict(details.invocation_metadata or ()).get("authorization")
            if not bearer_matches(header, self.api_key):
                return grpc.unary_unary_rpc_method_handler(self._deny)
        return await continuation(details)

    @staticmethod
    async def _deny(request, context):
        await abort(context, Unauthorized("this server needs the metadata 'authorization: Bearer <API key>'"))


async def start(engine, host: str, port: int, reuse_port: bool,
                api_key: str = "", max_message_bytes: int = MAX_MESSAGE_BYTES) -> tuple[grpc.aio.Server, int]:
    """Start serving on host:port (port 0: any free port); returns (server, bound port).

    `reuse_port` (several workers) lets every worker bind the same port; the kernel spreads
    connections over them. With one worker it is off, so a taken port fails loudly.
    """
    interceptors = [ApiKeyInterceptor(api_key)] if api_key else None
    server = grpc.aio.server(interceptors=interceptors, options=[("grpc.so_reuseport", 1 if reuse_port else 0),
                                      ("grpc.max_receive_message_length", max_message_bytes),
                                      ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    server.add_generic_rpc_handlers((rpc_handlers(RewardServicer(engine)),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise RuntimeError(f"gRPC could not bind {host}:{port}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gRPC serving %s on %s:%d", SERVICE_NAME, host, bound)
    return server, bound
