"""The HTTP side of the transports: the one error mapping, JSON responses, and the GET/PUT
routes that BentoML's POST-only `@bentoml.api` cannot express.

Every HTTP error body has one shape::

    {"error": {"kind": "invalid_input", "field": "items[0].response", "message": "items[0].response: ..."}}

`field` is present for invalid input only. BentoML's own request-validation errors (pydantic,
raised before our handler runs) are rewritten into the same shape by `ErrorBodyMiddleware`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.errors import (BackendFailure, DeadlineExceeded, Forbidden, InvalidInput, NotFound, NotReady, Overloaded,
                            PayloadTooLarge, ServiceError, Unauthorized, UnsupportedMediaType)
from service.metrics import count_answered_error

log = logging.getLogger("fgrm.http")

STATUS = {PayloadTooLarge: 413, UnsupportedMediaType: 415, InvalidInput: 400, Unauthorized: 401, Forbidden: 403,
          NotFound: 404, DeadlineExceeded: 408, Overloaded: 503, NotReady: 503, BackendFailure: 500}


def _finite(x):
    """JSON has no NaN/Infinity: non-finite numbers (never produced by the engine) become null."""
    return x if not isinstance(x, float) or math.isfinite(x) else None


WORKER_HEADER = "x-fgrm-worker"
# which worker process answered: with FGRM_WORKERS > 1 it tells an operator (and the tests that
# check every worker serves the same profiles) which of them it was; read per response, since
# this module may be imported before BentoML forks its workers


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False, default=_finite)
    headers = {**(headers or {}), WORKER_HEADER: str(os.getpid())}
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def error_response(exc: BaseException) -> Response:
    """The one place a service error becomes an HTTP response."""
    if not isinstance(exc, ServiceError):
        log.exception("unexpected error", exc_info=exc)
        exc = BackendFailure("unexpected server error; see the server log")
    count_answered_error(exc, "http")
    status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 500)
    headers = {"x-fgrm-error": exc.kind}  # tells ErrorBodyMiddleware this body is already ours
    if isinstance(exc, (Overloaded, NotReady)):
        headers["Retry-After"] = "1"
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return json_response({"error": exc.as_dict()}, status, headers)


def field_path(loc) -> str:
    """pydantic loc ('items', 0, 'response') -> 'items[0].response'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def invalid_from_pydantic_body(body: dict) -> InvalidInput:
    """BentoML's validation body ``{"error": "...", "detail": [{"loc": [...], "msg": ...}]}``."""
    detail = [d for d in body.get("detail") or [] if isinstance(d, dict)]
    if not detail:
        return InvalidInput("body", str(body.get("error", "invalid request body")))
    fields = [field_path([p for p in d.get("loc", []) if p != "body"]) for d in detail]
    message = str(detail[0].get("msg", "invalid value"))
    # the first problem names the field; the others follow in the message
    message += "".join(f"; {f}: {d.get('msg', 'invalid value')}" for f, d in zip(fields[1:], detail[1:]))
    return InvalidInput(fields[0], message)


class ErrorBodyMiddleware:
    """Rewrites BentoML's own 4xx/5xx bodies on our API paths into the one error shape, so a
    client parses one format whether BentoML or the engine refused the request."""

    def __init__(self, app, prefix: str = "/v1/"):
        self.app, self.prefix = app, prefix

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            return await self.app(scope, receive, send)
        state: dict = {}

        async def capture(message):
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                status = message["status"]
                # only BentoML's validation errors (400/422) and its generic 5xx bodies are
                # rewritten; ours carry x-fgrm-error, and 404/405 stay what they are
                if headers.get(b"x-fgrm-error") is not None or not (status in (400, 422) or status >= 500):
                    return await send(message)
                state["start"], state["body"] = message, b""
                return None
            if "start" not in state:
                return await send(message)
            state["body"] += message.get("body", b"")
            if message.get("more_body"):
                return None
            return await send_rewritten(state["start"], state["body"])

        async def send_rewritten(start, raw: bytes):
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"error": raw.decode("utf-8", "replace")[:500]}
            if isinstance(body, list) and body:
                body = body[0]  # BentoML wraps some 4xx bodies in a one-element list
            if start["status"] < 500:
                exc: ServiceError = invalid_from_pydantic_body(body if isinstance(body, dict) else {})
            else:
                exc = BackendFailure("unexpected server error; see the server log")
            await error_response(exc)(scope, receive, send)

        await self.app(scope, receive, capture)


TIMEOUT_HEADER = "x-request-timeout"  # seconds; the HTTP counterpart of a gRPC deadline
POLL_S = 0.05


def request_timeout(request) -> float | None:
    raw = request.headers.get(TIMEOUT_HEADER) if request is not None else None
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 3600:
        raise InvalidInput(f"header {TIMEOUT_HEADER}", f"must be seconds in (0, 3600], got {raw[:20]!r}")
    return value


async def run_watched(coro, request, timeout: float | None):
    """Await `coro` while watching the caller: when the client disconnects or its deadline
    (`X-Request-Timeout`) passes, the work is cancelled, which drops its queued rows before
    they reach a forward pass (as a gRPC deadline or cancel does)."""
    task = asyncio.ensure_future(coro)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL_S)
            if done:
                return task.result()
            if deadline is not None and time.monotonic() > deadline:
                raise DeadlineExceeded(f"not done within the request's {TIMEOUT_HEADER} of {timeout:g} s; "
                                       "its queued work was dropped")
            if request is not None and await request.is_disconnected():
                log.info("client disconnected: dropping its queued work")
                raise DeadlineExceeded("the client disconnected")
    finally:
        if not task.done():
            task.cancel()


PROFILE_NAME_KEY = "fgrm.profile_name"  # the profile name, when the path was relabelled for metrics


def bearer_matches(header: str | None, secret: str) -> bool:
    """`Authorization: Bearer <secret>`, compared in constant time."""
    import hmac

    return header is not None and bool(header) and hmac.compare_digest(header.encode(), f"Bearer {secret}".encode())


def admin_routes(get_engine, admin_token: str) -> Starlette:
    """GET /v1/feedback-types, GET /v1/profiles, PUT /v1/profiles/{name} (mounted under /v1)."""

    async def feedback_types(request: Request) -> Response:
        return json_response({"types": [t.as_dict() for t in get_engine().feedback_types()]})

    async def profiles(request: Request) -> Response:
        return json_response({"profiles": get_engine().profiles.all()})

    async def put_profile(request: Request) -> Response:
        try:
            get_engine().profiles.check_writable()  # read-only first: no token can make it writable
            if not admin_token:
                raise Forbidden("profile writes are disabled on this server: start it with an admin token "
                                "(fgrm serve --admin-token-file PATH, or FGRM_ADMIN_TOKEN)")
            if not bearer_matches(request.headers.get("authorization"), admin_token):
                raise Unauthorized("PUT /v1/profiles needs 'Authorization: Bearer <admin token>' (FGRM_ADMIN_TOKEN)")
            try:
                body = json.loads(await request.body() or b"null")
            except ValueError:
                raise InvalidInput("body", "is not valid JSON") from None
            if not isinstance(body, dict) or not isinstance(body.get("weights"), dict):
                raise InvalidInput("weights", 'the body must be {"weights": {"<type>": <weight>, ...}}')
            name = request.scope.get(PROFILE_NAME_KEY, request.path_params["name"])
            weights = get_engine().profiles.put(name, body["weights"])
            return json_response({"name": name, "weights": weights})
        except ServiceError as exc:
            return error_response(exc)

    return Starlette(routes=[
        Route("/feedback-types", feedback_types, methods=["GET"]),
        Route("/profiles", profiles, methods=["GET"]),
        Route("/profiles/{name}", put_profile, methods=["PUT"]),
    ])
