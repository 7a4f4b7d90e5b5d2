"""The BentoML service: HTTP APIs over the scoring engine, plus the gRPC server it starts.

Run with `fgrm serve` (which sets the FGRM_* environment and calls `bentoml serve
service.bento_service:RewardService`). Handlers are thin: decode (pydantic, by BentoML),
call the engine, encode; `json_api` maps every error once (service.http).

Why the APIs are plain async (not `batchable=True`): batching happens in the engine, by
tokens, for HTTP and gRPC alike (see service/batching.py); BentoML's request-count batching
would put a second queue in front of it and pad short responses to the longest.
"""

from __future__ import annotations

import functools
import gc
import logging
import typing as t

import bentoml
from pydantic import Field, Strict, StrictFloat

from service.config import Settings
from service.http import (ErrorBodyMiddleware, admin_routes, error_response, json_response, request_timeout,
                          run_watched)
from service.inspector import MOUNT as INSPECT_MOUNT
from service.inspector import inspector_app
from service.middleware import ApiKeyMiddleware, RequestGateMiddleware, RouteLabelMiddleware, bound_metric_labels
from service.slow_clients import time_out_slow_headers
from service.openapi import OpenApiMiddleware, feedback_type_names, request_limits
from service.schemas import ItemIn, MixItemIn, MixOut, OpenRLHFOut, ScoreOut

log = logging.getLogger("fgrm.service")
SETTINGS = Settings.from_env()


def exposure(settings: Settings) -> str:
    """The start-up line that says what is open, to whom."""
    grpc = f", gRPC {settings.grpc_host}:{settings.grpc_port}" if settings.grpc_port else ""
    where = f"HTTP {settings.http_host}:{settings.http_port}{grpc}"
    scoring = ("scoring needs the API key" if settings.api_key
               else f"scoring is OPEN to anyone who can reach {where} (set --api-key-file to require a key)")
    if settings.read_only:
        profiles = "profiles are READ-ONLY (from the configuration files; --read-only)"
    elif settings.admin_token:
        profiles = f"profile writes need the admin token (kept in {settings.state_dir or 'memory'})"
    else:
        profiles = "profile writes are DISABLED (set --admin-token-file to allow them)"
    return f"fgrm: {scoring}; {profiles}"


class QuietValidation(logging.Filter):
    """BentoML logs every request that fails validation as an ERROR with a ~2 KB traceback; those
    are the caller's mistakes, answered with a 400 that names the field. One INFO line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and type(exc).__name__ == "ValidationError":
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "rejected by validation: " + str(record.msg)
            record.exc_info, record.exc_text = None, None
        return True


logging.getLogger("bentoml._internal.server.http_app").addFilter(QuietValidation())


def json_api(func):
    """Encode the handler's dict as JSON; turn any error into the one error body; cancel the
    work when the client disconnects or its X-Request-Timeout passes (service.http.run_watched)."""

    @functools.wraps(func)
    async def wrapper(*args, **kwargs):
        ctx = kwargs.get("ctx")
        request = ctx.request if ctx is not None else None
        try:
            return json_response(await run_watched(func(*args, **kwargs), request, request_timeout(request)))
        except Exception as exc:  # noqa: BLE001 - error_response logs and hides non-service errors
            response = error_response(exc)
            if ctx is not None:  # BentoML sets the status from the context when a handler takes one
                ctx.response.status_code = response.status_code
            return response

    return wrapper


def freeze_startup_heap() -> int:
    """Move everything allocated so far (torch, transformers, BentoML, the models) out of the
    garbage collector's sight. A full collection walks every tracked object while holding the
    GIL: with the start-up heap in view that took 90-220 ms in this worker at 3x saturation,
    and every request on the event loop (a 503 that should take 5 ms) waited that long.
    Frozen objects are never collected, which is what start-up objects need anyway."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("start-up heap frozen: %d objects no longer scanned by the garbage collector", frozen)
    return frozen


def _engine():
    return bentoml.get_current_service().engine


def _engine_refusal():
    """What a new scoring request would be refused with now; None before the engine exists."""
    try:
        engine = _engine()
    except Exception:  # noqa: BLE001 - not initialised yet: let the request through to the handler
        return None
    return engine.admission_refusal()


@bentoml.asgi_app(admin_routes(_engine, SETTINGS.admin_token), path="/v1")
@bentoml.asgi_app(inspector_app(), path=INSPECT_MOUNT)  # the reward inspector page (service.inspector)
@bentoml.service(
    name="fgrm",
    workers=SETTINGS.workers,
    traffic={"timeout": 600},
    logging={"access": {"enabled": False}},
)
class RewardService:
    """Fine-grained rewards (Wu et al. 2023): per-segment rewards per feedback type, mixed by weights."""

    def __init__(self) -> None:
        from service.engine import ScoringEngine

        if SETTINGS.extra:
            log.warning("unknown FGRM_* settings ignored: %s", ", ".join(sorted(SETTINGS.extra)))
        self.settings = SETTINGS
        self.engine = ScoringEngine(SETTINGS)
        if SETTINGS.freeze_startup_heap:
            self.engine.metrics.gc_frozen.set(freeze_startup_heap())
        log.warning("%s", exposure(SETTINGS))
        self.grpc_server = None
        self.grpc_port: int | None = None

    @bentoml.on_startup
    async def start_grpc(self) -> None:
        if not self.settings.grpc_port:
            return
        from service import grpc_server

        self.grpc_server, self.grpc_port = await grpc_server.start(
            self.engine, self.settings.grpc_host, self.settings.grpc_port, reuse_port=self.settings.workers > 1,
            api_key=self.settings.api_key, max_message_bytes=self.settings.max_body_bytes)

    @bentoml.on_shutdown
    async def stop(self) -> None:
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=2.0)
        await self.engine.close()

    async def __is_ready__(self) -> bool:
        return self.engine.ready and (not self.settings.grpc_port or self.grpc_server is not None)

    @bentoml.api(route="/v1/score")
    @json_api
    async def score(
        self,
        items: t.Annotated[list[ItemIn], Field(description="Responses to score, one result each, in order.")],
        weights: t.Annotated[dict[str, StrictFloat] | None, Strict(),
                             Field(description="Per-type weights; override the profile's.")] = None,
        profile: t.Annotated[str | None, Strict(),
                             Field(description="Named weight profile (default: 'default').")] = None,
        ctx: bentoml.Context = None,
    ) -> ScoreOut:
        """Per-segment rewards of every feedback type, their mix, and per-token rewards."""
        results = await self.engine.score([i.to_domain() for i in items], weights, profile, transport="http")
        return {"results": [r.as_dict() for r in results]}

    @bentoml.api(route="/v1/mix")
    @json_api
    async def mix(
        self,
        items: list[MixItemIn],
        weights: t.Annotated[dict[str, StrictFloat] | None, Strict()] = None,
        profile: t.Annotated[str | None, Strict()] = None,
        ctx: bentoml.Context = None,
    ) -> MixOut:
        """Stateless re-weighting of component rewards as /v1/score returned them."""
        results = self.engine.mix([i.to_domain() for i in items], weights, profile, transport="http")
        return {"results": [r.as_dict() for r in results]}

    @bentoml.api(route="/v1/openrlhf")
    @json_api
    async def openrlhf(
        self,
        query: t.Annotated[list[str], Strict()],
        prompts: t.Annotated[list[str] | None, Strict()] = None,
        labels: list[t.Any] | None = None,
        profile: t.Annotated[str | None, Strict()] = None,
        ctx: bentoml.Context = None,
    ) -> OpenRLHFOut:
        """OpenRLHF remote reward model: mixed total reward per query (= prompt + response), and
        each feedback type's total in `extra_logs`. With `?labels=reference` in the URL, each
        label is its query's reference answer."""
        from service.errors import InvalidInput
        from service.openrlhf import as_openrlhf_error, extra_logs, reference_labels, to_items

        try:
            asked = ctx.request.query_params.get("labels") if ctx is not None else None
            if asked not in (None, "reference"):
                raise InvalidInput("labels", f"the URL's labels={asked!r} is not known; labels=reference uses each "
                                             "label as its query's reference answer")
            references = reference_labels(labels, len(query)) if asked == "reference" else None
            results = await self.engine.score(to_items(query, prompts, references), None, profile,
                                              transport="openrlhf")
        except InvalidInput as exc:
            raise as_openrlhf_error(exc) from None
        rewards = [r.mixed.total for r in results]
        return {"rewards": rewards, "scores": rewards,
                "extra_logs": extra_logs(results, self.engine.type_names, references is not None)}


RewardService.add_asgi_middleware(ErrorBodyMiddleware)
RewardService.add_asgi_middleware(OpenApiMiddleware, type_names=feedback_type_names(SETTINGS),
                                  limits=request_limits(SETTINGS))
bound_metric_labels()
time_out_slow_headers(SETTINGS.header_timeout_s)
RewardService.add_asgi_middleware(RouteLabelMiddleware)
RewardService.add_asgi_middleware(ApiKeyMiddleware, api_key=SETTINGS.api_key)
RewardService.add_asgi_middleware(
    RequestGateMiddleware, max_bytes=SETTINGS.max_body_bytes, max_items=SETTINGS.max_items_per_request,
    body_timeout_s=SETTINGS.body_timeout_s, refusal=_engine_refusal,
    fields={api.route: set(api.input_spec.model_fields) - {"ctx"} for api in RewardService.apis.values()})
