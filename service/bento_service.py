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
import logging
import typing as t

import bentoml
from pydantic import Field, Strict, StrictFloat

from service.config import Settings
from service.http import BodyLimitMiddleware, ErrorBodyMiddleware, admin_routes, error_response, json_response
from service.openapi import OpenApiMiddleware, feedback_type_names, request_limits
from service.schemas import ItemIn, MixItemIn, MixOut, OpenRLHFOut, ScoreOut

log = logging.getLogger("fgrm.service")
SETTINGS = Settings.from_env()


def json_api(func):
    """Encode the handler's dict as JSON; turn any error into the one error body."""

    @functools.wraps(func)
    async def wrapper(*args, **kwargs):
        try:
            return json_response(await func(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - error_response logs and hides non-service errors
            return error_response(exc)

    return wrapper


def _engine():
    return bentoml.get_current_service().engine


@bentoml.asgi_app(admin_routes(_engine, SETTINGS.admin_token), path="/v1")
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
        self.grpc_server = None
        self.grpc_port: int | None = None

    @bentoml.on_startup
    async def start_grpc(self) -> None:
        if not self.settings.grpc_port:
            return
        from service import grpc_server

        self.grpc_server, self.grpc_port = await grpc_server.start(
            self.engine, self.settings.grpc_host, self.settings.grpc_port, reuse_port=self.settings.workers > 1)

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
        profile: t.Annotated[str | None, Strict(), Field(description="Named weight profile (default: 'default').")] = None,
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
    ) -> OpenRLHFOut:
        """OpenRLHF remote reward model: mixed total reward per query (= prompt + response), and
        each feedback type's total in `extra_logs`."""
        from service.openrlhf import extra_logs, to_items

        results = await self.engine.score(to_items(query, prompts), None, profile, transport="openrlhf")
        rewards = [r.mixed.total for r in results]
        return {"rewards": rewards, "scores": rewards, "extra_logs": extra_logs(results, self.engine.type_names)}


RewardService.add_asgi_middleware(ErrorBodyMiddleware)
RewardService.add_asgi_middleware(OpenApiMiddleware, type_names=feedback_type_names(SETTINGS),
                                  limits=request_limits(SETTINGS))
RewardService.add_asgi_middleware(BodyLimitMiddleware, max_bytes=SETTINGS.max_body_bytes)
