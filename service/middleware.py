"""ASGI middlewares in front of BentoML's app: what reaches a handler at all.

- `RequestGateMiddleware`: a scoring request the engine would refuse now, and the body's size,
  media type, arrival time, JSON depth, item count and top-level fields, all before parsing;
- `ApiKeyMiddleware`: the optional API key of /v1;
- `RouteLabelMiddleware` + `bound_metric_labels`: a fixed set of paths for metrics, our 404 for
  the rest.

Each answers with the one error body of service.http.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re

from service.errors import (DeadlineExceeded, InvalidInput, NotFound, PayloadTooLarge, ServiceError, Unauthorized,
                            UnsupportedMediaType, quote)
from service.http import PROFILE_NAME_KEY, bearer_matches, error_response
from service.inspector import PATHS as INSPECTOR_PATHS

log = logging.getLogger("fgrm.http")

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


def inspect_body(body: bytes, known: set[str] | None) -> tuple[int, int, list[str]]:
    """(depth, items, unknown top-level fields); the body is parsed only when its depth is safe
    and the route's fields are known (a JSON error is left for BentoML to report)."""
    depth, items = json_shape(body)
    unknown: list[str] = []
    if known is not None and depth <= MAX_JSON_DEPTH:
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            unknown = [k for k in doc if k not in known]
    return depth, items, unknown


async def reject(exc, scope, receive, send) -> None:
    """Answer with the error body before the app runs; one INFO line, never a traceback."""
    log.info("refused: %s", exc.message)
    await error_response(exc)(scope, receive, send)


SCORING_PATHS = frozenset({"/v1/score", "/v1/openrlhf"})  # the routes that queue model work


class RequestGateMiddleware:
    """What may reach a handler, checked before anything parses the body. A scoring request the
    engine would refuse now (queue full, wait too long): 503 at once. Over `max_bytes`: 413
    with the error body, at once when Content-Length says so, else as soon as the streamed body
    passes the limit (a body within the limit is buffered here and replayed to the app, so no
    more than `max_bytes` of any request is ever held). Form-encoded or multipart: 415, because
    BentoML would try to parse it as a form (a multipart body without a boundary was a 500).
    Then, per body: `body_timeout_s` to arrive (408), JSON depth, item count and top-level fields
    (400 naming the field)."""

    def __init__(self, app, max_bytes: int, max_items: int = 256, fields: dict[str, set[str]] | None = None,
                 body_timeout_s: float = 30.0, refusal=None):
        """`fields`: the top-level fields each POST route takes (BentoML drops unknown ones silently,
        while an item's unknown fields are refused: now both are)."""
        self.app, self.max_bytes, self.max_items, self.fields = app, max_bytes, max_items, fields or {}
        self.body_timeout_s = body_timeout_s
        # `refusal()`: the Overloaded a scoring request would get now (or None). Asked before the
        # body is read, so under overload a refusal costs no parsing at all.
        self.refusal = refusal

    def _too_large(self, size: str) -> PayloadTooLarge:
        return PayloadTooLarge("body", f"{size} bytes; the limit is {self.max_bytes} bytes (max_body_bytes)")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        exc = self._refuse_before_body(scope)
        if exc is not None:
            return await reject(exc, scope, receive, send)
        try:
            body = await self._read_body(receive)
        except (DeadlineExceeded, PayloadTooLarge) as cut_off:
            return await reject(cut_off, scope, receive, send)
        if body is None:  # the client went away
            return None
        exc = await self._refuse_body(scope["path"], body)
        if exc is not None:
            return await reject(exc, scope, receive, send)
        return await self.app(scope, replaying(body, receive), send)

    def _refuse_before_body(self, scope: dict) -> ServiceError | None:
        """The error for a request refused on its path and headers alone (overload, media type,
        Content-Length over the limit), or None."""
        if self.refusal is not None and scope["path"] in SCORING_PATHS:
            refused = self.refusal()
            if refused is not None:
                return refused
        headers = dict(scope.get("headers") or [])
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media.startswith(b"multipart/") or media == b"application/x-www-form-urlencoded":
            return UnsupportedMediaType("body", f"content-type {media.decode('latin-1')[:60]!r}; send JSON "
                                                "(content-type: application/json)")
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return self._too_large(length.decode())
        return None

    async def _read_body(self, receive) -> bytes | None:
        """The whole body, or None when the client went away; raises DeadlineExceeded past
        `body_timeout_s` and PayloadTooLarge as soon as more than `max_bytes` arrived."""
        chunks, size = [], 0
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s
        while True:
            try:  # a body dripped in slowly (slowloris) is cut off, not waited for forever
                message = await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
            except asyncio.TimeoutError:
                raise DeadlineExceeded(f"the request body did not arrive within {self.body_timeout_s:g} s "
                                       "(body_timeout_s)") from None
            if message["type"] != "http.request":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                raise self._too_large(f"more than {self.max_bytes}")
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _refuse_body(self, path: str, body: bytes) -> InvalidInput | None:
        """The error for a body too deep, with too many items or unknown top-level fields, or None."""
        # a large body is measured off the event loop (~1 s for 30 MB), so gRPC and other
        # requests of this worker keep going meanwhile
        known = self.fields.get(path)
        check = functools.partial(inspect_body, body, known)
        depth, items, unknown = check() if len(body) < 1 << 20 else \
            await asyncio.get_running_loop().run_in_executor(None, check)
        if depth > MAX_JSON_DEPTH:
            return InvalidInput("body", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if items > self.max_items:
            return InvalidInput("items", f"about {items} items; the limit is {self.max_items} per request "
                                         "(max_items_per_request), refused before parsing")
        if unknown:
            return InvalidInput(unknown[0] or "body", f"unknown field {quote(unknown[0])}; this request takes "
                                                      f"{', '.join(sorted(known or ()))}")
        return None


def replaying(body: bytes, receive):
    """An ASGI `receive` that hands the app the buffered body once, then passes on to `receive`."""
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: disconnect notices pass through

    return replay


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
            return await reject(exc, scope, receive, send)
        return await self.app(scope, receive, send)


KNOWN_PATHS = frozenset({"/", "/docs.json", "/metrics", "/livez", "/readyz", "/healthz", "/v1/score", "/v1/mix",
                         "/v1/openrlhf", "/v1/feedback-types", "/v1/profiles", *INSPECTOR_PATHS})
PROFILE_PREFIX = "/v1/profiles/"
PROFILE_ROUTE = "/v1/profiles/{name}"


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

    # patching BentoML's class in place (the docstring above says why): not a typed operation
    Metrics.__call__ = __call__  # type: ignore[method-assign]
    Metrics._fgrm_bounded = True  # type: ignore[attr-defined]


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
                return await reject(NotFound(f"no such path: {shown!r}"), scope, receive, send)
        return await self.app(scope, receive, send)
