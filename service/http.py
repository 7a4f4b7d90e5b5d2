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
import re

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.errors import (BackendFailure, DeadlineExceeded, Forbidden, InvalidInput, NotFound, NotReady, Overloaded,
                            PayloadTooLarge, ServiceError, Unauthorized, UnsupportedMediaType)

log = logging.getLogger("fgrm.http")

STATUS = {PayloadTooLarge: 413, UnsupportedMediaType: 415, InvalidInput: 400, Unauthorized: 401, Forbidden: 403, NotFound: 404, DeadlineExceeded: 408, Overloaded: 503, NotReady: 503, BackendFailure: 500}


def _finite(x):
    """JSON has no NaN/Infinity: non-finite numbers (never produced by the engine) become null."""
    return x if not isinstance(x, float) or math.isfinite(x) else None


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False, default=_finite)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def error_response(exc: BaseException) -> Response:
    """The one place a service error becomes an HTTP response."""
    if not isinstance(exc, ServiceError):
        log.exception("unexpected error", exc_info=exc)
        exc = BackendFailure("unexpected server error; see the server log")
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


MAX_JSON_DEPTH = 32  # our deepest request (items[].types.<t>.segments[]) is 5 levels
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


ITEM_DEPTH = 3  # {"items": [ {item}, ... ]}: items are the objects that open the third level


def json_shape(body: bytes) -> tuple[int, int]:
    """(deepest nesting of [ and {, objects opened at ITEM_DEPTH) of a JSON text, strings
    ignored, counted with numpy (~1 s for 30 MB of tiny items, so large bodies go to a thread).
    Python's json parser recurses per level: 1,000 nested lists raised RecursionError (a 500
    and a dropped keep-alive connection). And BentoML parses the whole body on its event loop:
    1,000,000 empty items (18 MB) blocked it for 6 s, so too many items are refused before."""
    import numpy as np

    skeleton = np.frombuffer(_JSON_STRING.sub(b"", body), dtype=np.uint8)
    if not skeleton.size:
        return 0, 0
    opens = np.isin(skeleton, (0x5B, 0x7B))
    step = opens.astype(np.int32) - np.isin(skeleton, (0x5D, 0x7D)).astype(np.int32)
    depth = np.cumsum(step)
    items = int(((skeleton == 0x7B) & (depth == ITEM_DEPTH)).sum())
    return int(depth.max(initial=0)), items


def json_depth(body: bytes) -> int:
    return json_shape(body)[0]


class BodyLimitMiddleware:
    """What a request body may be, checked before anything parses it. Over `max_bytes`: 413
    with the error body, at once when Content-Length says so, else as soon as the streamed body
    passes the limit (a body within the limit is buffered here and replayed to the app, so no
    more than `max_bytes` of any request is ever held). Form-encoded or multipart: 415, because
    BentoML would try to parse it as a form (a multipart body without a boundary was a 500)."""

    def __init__(self, app, max_bytes: int, max_items: int = 256):
        self.app, self.max_bytes, self.max_items = app, max_bytes, max_items

    async def _refuse(self, size: str, scope, receive, send) -> None:
        exc = PayloadTooLarge("body", f"{size} bytes; the limit is {self.max_bytes} bytes (max_body_bytes)")
        log.info("refused: %s", exc.message)
        await error_response(exc)(scope, receive, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media.startswith(b"multipart/") or media == b"application/x-www-form-urlencoded":
            exc = UnsupportedMediaType("body", f"content-type {media.decode('latin-1')[:60]!r}; send JSON "
                                               "(content-type: application/json)")
            return await error_response(exc)(scope, receive, send)
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(length.decode(), scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(f"more than {self.max_bytes}", scope, receive, send)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        # a large body is measured off the event loop (~1 s for 30 MB), so gRPC and other
        # requests of this worker keep going meanwhile
        depth, items = json_shape(body) if len(body) < 1 << 20 else \
            await asyncio.get_running_loop().run_in_executor(None, json_shape, body)
        exc = None
        if depth > MAX_JSON_DEPTH:
            exc = InvalidInput("body", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        elif items > self.max_items:
            exc = InvalidInput("items", f"about {items} items; the limit is {self.max_items} per request "
                                        "(max_items_per_request), refused before parsing")
        if exc is not None:
            log.info("refused: %s", exc.message)
            return await error_response(exc)(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: disconnect notices pass through

        return await self.app(scope, replay, send)


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
    import time

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


def bearer_matches(header: str | None, secret: str) -> bool:
    """`Authorization: Bearer <secret>`, compared in constant time."""
    import hmac

    return bool(header) and hmac.compare_digest(header.encode(), f"Bearer {secret}".encode())


class ApiKeyMiddleware:
    """With an API key configured, /v1 requests need `Authorization: Bearer <key>` (401 with the
    error body otherwise). Profile writes are exempt: they need the admin token instead."""

    def __init__(self, app, api_key: str):
        self.app, self.api_key = app, api_key

    async def __call__(self, scope, receive, send):
        if (not self.api_key or scope["type"] != "http" or not scope["path"].startswith("/v1/")
                or (scope.get("method") == "PUT" and scope["path"].startswith("/v1/profiles/"))):
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        if not bearer_matches(header, self.api_key):
            exc = Unauthorized("this server needs 'Authorization: Bearer <API key>' (fgrm serve --api-key-file)")
            return await error_response(exc)(scope, receive, send)
        return await self.app(scope, receive, send)


KNOWN_PATHS = frozenset({"/", "/docs.json", "/metrics", "/livez", "/readyz", "/healthz", "/v1/score", "/v1/mix",
                         "/v1/openrlhf", "/v1/feedback-types", "/v1/profiles"})
PROFILE_PREFIX = "/v1/profiles/"
PROFILE_ROUTE = "/v1/profiles/{name}"
PROFILE_NAME_KEY = "fgrm.profile_name"


ORIGINAL_PATH_KEY = "fgrm.original_path"
UNKNOWN_PATH = "/__unknown__"


def canonical_scope(scope: dict) -> dict:
    """The scope with a path from a fixed set: known paths as they are, a profile write as its
    route template (the name kept in the scope for the handler), anything else as one path."""
    path = scope["path"]
    if path in KNOWN_PATHS or path.startswith("/static_content/") or PROFILE_NAME_KEY in scope \
            or ORIGINAL_PATH_KEY in scope:  # known, or made canonical already (by the metrics layer)
        return scope
    if path.startswith(PROFILE_PREFIX) and len(path) > len(PROFILE_PREFIX):
        return {**scope, "path": PROFILE_ROUTE, "raw_path": PROFILE_ROUTE.encode(),
                PROFILE_NAME_KEY: path[len(PROFILE_PREFIX):]}
    return {**scope, "path": UNKNOWN_PATH, "raw_path": UNKNOWN_PATH.encode(), ORIGINAL_PATH_KEY: path}


def bound_metric_labels() -> None:
    """BentoML labels its HTTP metrics with the raw request path, so every distinct path made new
    series (1,000 random GETs added 3.5 MB to /metrics; 10,000 profile names 131 MB), and its
    metrics middleware runs outside ours. BentoML has no setting for this, so its middleware
    (pinned bentoml 1.4.40) gets the canonical scope: a fixed label set. Idempotent;
    tests/service/test_hardening.py checks that random paths add no series."""
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware as Metrics

    if getattr(Metrics, "_fgrm_bounded", False):
        return
    original = Metrics.__call__

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "http":
            scope = canonical_scope(scope)
        return await original(self, scope, receive, send)

    Metrics.__call__ = __call__
    Metrics._fgrm_bounded = True


class RouteLabelMiddleware:
    """Answers unknown paths with our 404 error body (after `canonical_scope`, they all arrive
    as one path)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            scope = canonical_scope(scope)
            if scope["path"] == UNKNOWN_PATH:
                shown = scope.get(ORIGINAL_PATH_KEY, UNKNOWN_PATH)[:80]
                return await error_response(NotFound(f"no such path: {shown!r}"))(scope, receive, send)
        return await self.app(scope, receive, send)


def admin_routes(get_engine, admin_token: str) -> Starlette:
    """GET /v1/feedback-types, GET /v1/profiles, PUT /v1/profiles/{name} (mounted under /v1)."""

    async def feedback_types(request: Request) -> Response:
        return json_response({"types": [t.as_dict() for t in get_engine().feedback_types()]})

    async def profiles(request: Request) -> Response:
        return json_response({"profiles": get_engine().profiles.all()})

    async def put_profile(request: Request) -> Response:
        try:
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
