"""HTTP clients (sync and async, over httpx) for the fgrm JSON wire format.

Both classes share every piece of logic except the send loop: request bodies are built by
``_build_*``, answers parsed by ``_parse_*`` and errors mapped by :func:`error_from_response`.

Retries: scoring is idempotent, so connection failures (refused, reset, closed before an answer)
and the two "refused before doing any work" statuses, 503 and 429, are retried with backoff and
jitter, honouring ``Retry-After``. Read timeouts are not retried (the service may still be
working; a retry would double the load when it is already slow), nor are 4xx or other 5xx.

Several replicas: pass a list of base URLs. Calls take them in turn (round robin, starting one
further each call). A replica whose connection fails is skipped by every call for
``MARK_DOWN_S`` (as gRPC's round_robin skips a subchannel in TRANSIENT_FAILURE), and the call
that found it down moves to the next replica at once, without the backoff sleep. So a replica
that dies costs one refused connection per caller, not a failed call, and the retry budget is
spent on replicas that answer.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any, Iterable, Iterator, Mapping, Sequence

import httpx

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
from .types import (
    FeedbackTypeInfo,
    Item,
    ItemResult,
    TypeResult,
    parse_feedback_types,
    parse_item_result,
    to_items,
)

DEFAULT_URL = "http://127.0.0.1:3000"
DEFAULT_TIMEOUT = 30.0
"""Seconds for one attempt to come back (a big batch on CPU can take a few seconds)."""
DEFAULT_CONNECT_TIMEOUT = 5.0

SCORE_PATH = "/v1/score"
MIX_PATH = "/v1/mix"
FEEDBACK_TYPES_PATH = "/v1/feedback-types"
READY_PATH = "/readyz"

RETRY_STATUSES = frozenset({429, 503})
MARK_DOWN_S = 5.0
"""Seconds a replica whose connection failed is left out of the rotation (then tried again)."""
# Network failures where the request cannot have been half-processed in a harmful way
# (scoring is idempotent). ReadTimeout/WriteTimeout/PoolTimeout are deliberately absent.
_RETRY_EXCEPTIONS = (httpx.NetworkError, httpx.ConnectTimeout, httpx.RemoteProtocolError)


# ----------------------------------------------------------------------------- bodies


def _build_score(items, weights, profile) -> dict[str, Any]:
    body: dict[str, Any] = {"items": [it.to_json() for it in to_items(items)]}
    if weights is not None:
        body["weights"] = {str(k): float(v) for k, v in weights.items()}
    if profile is not None:
        body["profile"] = profile
    return body


def _offsets_json(offs) -> list[list[int]]:
    return [[int(a), int(b)] for a, b in offs]


def mix_items_json(components, token_offsets=None) -> list[dict[str, Any]]:
    """``MixRequest.items`` as JSON: per type its granularity and (end, reward) per segment."""
    items = []
    for i, c in enumerate(components):
        types = c.types if isinstance(c, ItemResult) else c
        item: dict[str, Any] = {"types": {}}
        for name, t in types.items():
            if isinstance(t, TypeResult):
                t = {"granularity": t.granularity,
                     "segments": [{"end": s.end, "reward": s.reward} for s in t.segments]}
            item["types"][name] = {
                "granularity": t["granularity"],
                "segments": [{"end": int(s["end"]), "reward": float(s["reward"])}
                             for s in t["segments"]],
            }
        if token_offsets is not None and token_offsets[i] is not None:
            item["token_offsets"] = _offsets_json(token_offsets[i])
        items.append(item)
    return items


def _build_mix(components, weights, token_offsets, profile=None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "items": mix_items_json(components, token_offsets),
        "weights": {str(k): float(v) for k, v in (weights or {}).items()},
    }
    if profile is not None:
        body["profile"] = profile
    return body


def _parse_results(data: Any, n: int, endpoint: str) -> list[ItemResult]:
    if not isinstance(data, Mapping) or not isinstance(data.get("results"), list):
        raise ProtocolError("answer has no 'results' list", endpoint=endpoint)
    results = [parse_item_result(r) for r in data["results"]]
    if len(results) != n:
        raise ProtocolError(f"sent {n} items, got {len(results)} results", endpoint=endpoint)
    return results


def _parse_mix(data: Any, n: int, endpoint: str) -> list[ItemResult]:
    # A mix answer is a score answer whose results have no "types" of their own.
    if isinstance(data, Mapping) and isinstance(data.get("results"), list):
        data = {"results": [{"types": {}, **r} for r in data["results"]]}
    return _parse_results(data, n, endpoint)


# ----------------------------------------------------------------------------- errors


def _error_payload(response: httpx.Response) -> tuple[str, str | None, str | None]:
    """(message, field, type) from whatever error body the service sent."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        text = response.text.strip()
        return (text[:500] or response.reason_phrase or "error"), None, None
    if isinstance(data, Mapping):
        err = data.get("error", data)
        if isinstance(err, Mapping):
            message = err.get("message") or err.get("detail") or json.dumps(err)[:500]
            if isinstance(message, list):  # pydantic-style [{"loc": [...], "msg": ...}]
                first = message[0] if message else {}
                loc = first.get("loc") if isinstance(first, Mapping) else None
                field = ".".join(str(p) for p in loc) if loc else None
                return str(first.get("msg", message)), field, None
            kind = err.get("kind") or err.get("type") or err.get("code")
            return str(message), err.get("field"), kind
        return str(err), data.get("field"), data.get("type")
    return str(data)[:500], None, None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None


def error_from_response(response: httpx.Response, attempts: int = 1) -> FgrmError:
    """The typed error for a non-2xx answer (the one place HTTP statuses are interpreted)."""
    message, field, kind = _error_payload(response)
    kw = dict(endpoint=str(response.request.url), status=response.status_code, attempts=attempts)
    code = response.status_code
    # The service's error.kind is authoritative; the status decides only when it is absent.
    by_kind = {"invalid_input": InvalidInput, "overloaded": Overloaded, "not_ready": NotReady,
               "unauthorized": Unauthorized, "backend_failure": ServerError}
    cls = by_kind.get(str(kind or "").lower())
    if cls is InvalidInput or (cls is None and code in (400, 422)):
        return InvalidInput(message, field=field, **kw)
    if cls is not None:
        return cls(message, **kw)
    if code == 429:
        return Overloaded(message, **kw)
    if code in (401, 403):
        return Unauthorized(message, **kw)
    if code == 503:
        return Unavailable(message, **kw)
    if code == 504:
        return Timeout(message, **kw)
    if code >= 500:
        return ServerError(message, **kw)
    return ProtocolError(f"unexpected HTTP {code}: {message}", **kw)


def _error_from_exception(exc: httpx.HTTPError, url: str, attempts: int) -> FgrmError:
    kw = dict(endpoint=url, status=None, attempts=attempts)
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return Timeout(f"no answer in time: {type(exc).__name__}", **kw)
    return Unavailable(f"cannot reach the service: {type(exc).__name__}: {exc}", **kw)


def _json_or_protocol_error(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(
            f"answer is not JSON: {exc}", endpoint=str(response.request.url),
            status=response.status_code,
        ) from exc


# ----------------------------------------------------------------------------- clients


class _Base:
    def __init__(
        self,
        base_url: str | Sequence[str],
        timeout: float,
        connect_timeout: float,
        retry: RetryPolicy | None,
        headers: Mapping[str, str] | None,
        api_key: str | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("no base URL given")
        self.base_urls = tuple(u.rstrip("/") for u in urls)
        self.base_url = self.base_urls[0]
        self._turn = itertools.count()
        self._down_until: dict[str, float] = {}
        self.retry = retry or RetryPolicy()
        self._limit = ConcurrencyLimit(max_concurrency)  # fgrm_client._limit says why
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        auth = {"authorization": f"Bearer {api_key}"} if api_key else {}  # servers with --api-key-file
        self._headers = {"user-agent": "fgrm-client/0.1", **auth, **(headers or {})}

    def _attempt_urls(self) -> Iterator[str]:
        """The base URL of each attempt of one call: the replicas in turn from the next one,
        leaving out those marked down unless every one is."""
        start = next(self._turn)
        for i in itertools.count():
            url = self.base_urls[(start + i) % len(self.base_urls)]
            if self._is_up(url) or not any(self._is_up(u) for u in self.base_urls):
                yield url

    def _is_up(self, url: str) -> bool:
        return self._down_until.get(url, 0.0) <= time.monotonic()

    def _should_retry(self, attempt: int, response=None, exc=None, base: str = "") -> float | None:
        """Seconds to sleep before the next attempt, or None when the failure is final."""
        if exc is not None and isinstance(exc, _RETRY_EXCEPTIONS) and len(self.base_urls) > 1:
            self._down_until[base] = time.monotonic() + MARK_DOWN_S
            if attempt < self.retry.max_attempts and any(self._is_up(u) for u in self.base_urls):
                return 0.0  # another replica is up: no reason to wait before trying it
        if attempt >= self.retry.max_attempts:
            return None
        if exc is not None:
            return self.retry.backoff(attempt) if isinstance(exc, _RETRY_EXCEPTIONS) else None
        if response is not None and response.status_code in RETRY_STATUSES:
            return self.retry.backoff(attempt, _retry_after(response))
        return None


class HttpClient(_Base):
    """Synchronous client. Use as a context manager, or call :meth:`close`.

    ``transport`` is passed to httpx (e.g. ``httpx.MockTransport`` in tests);
    ``max_concurrency`` caps the calls in flight at once (``None``: no cap).
    """

    def __init__(
        self,
        base_url: str | Sequence[str] = DEFAULT_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        api_key: str | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        super().__init__(base_url, timeout, connect_timeout, retry, headers, api_key, max_concurrency)
        self._http = httpx.Client(
            base_url=self.base_url, timeout=self._timeout, headers=self._headers,
            transport=transport,
        )

    def __enter__(self) -> "HttpClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        with self._limit:
            return self._send(method, path, body)

    def _send(self, method: str, path: str, body: Any) -> Any:
        urls = self._attempt_urls()
        attempt = 0
        while True:
            attempt += 1
            base = next(urls)
            url = base + path
            try:
                response = self._http.request(method, url, json=body)
            except httpx.HTTPError as exc:
                delay = self._should_retry(attempt, exc=exc, base=base)
                if delay is None:
                    raise _error_from_exception(exc, url, attempt) from exc
                if delay:
                    time.sleep(delay)
                continue
            if response.is_success:
                return _json_or_protocol_error(response)
            delay = self._should_retry(attempt, response=response)
            if delay is None:
                raise error_from_response(response, attempt)
            if delay:
                time.sleep(delay)

    def score(
        self,
        items: Iterable[Item | Mapping[str, Any]],
        weights: Mapping[str, float] | None = None,
        profile: str | None = None,
    ) -> list[ItemResult]:
        """Score each item; one :class:`ItemResult` per item, in order.

        ``weights`` overrides the mixing weights of the named types (others keep the
        service's defaults); ``profile`` picks a named weight profile on the service.
        """
        body = _build_score(items, weights, profile)
        data = self._request("POST", SCORE_PATH, body)
        return _parse_results(data, len(body["items"]), self.base_url + SCORE_PATH)

    def mix(
        self,
        components: Sequence[ItemResult | Mapping[str, TypeResult]],
        weights: Mapping[str, float] | None,
        token_offsets: Sequence[Sequence[tuple[int, int]] | None] | None = None,
        profile: str | None = None,
    ) -> list[ItemResult]:
        """Re-mix already computed per-type rewards with new weights, without re-scoring.

        ``components`` are earlier results (or their ``.types``); ``token_offsets`` (one entry
        per item, or ``None``) asks for ``token_rewards``. The answers carry ``mixed`` (and
        ``token_rewards``) but empty ``types``.
        """
        body = _build_mix(components, weights, token_offsets, profile)
        data = self._request("POST", MIX_PATH, body)
        return _parse_mix(data, len(body["items"]), self.base_url + MIX_PATH)

    def feedback_types(self) -> list[FeedbackTypeInfo]:
        """The feedback types this service scores, with their default weights."""
        return parse_feedback_types(self._request("GET", FEEDBACK_TYPES_PATH))

    def wait_until_ready(self, timeout: float = 60.0, poll_interval: float = 0.25) -> None:
        """Block until the service reports ready; raise :class:`Timeout` after ``timeout`` s."""
        def probe(seconds: float) -> str | None:
            reasons = []
            for base in self.base_urls:  # ready when any replica is: calls go to the ready ones
                try:
                    r = self._http.get(base + READY_PATH, timeout=max(seconds / len(self.base_urls), 0.01))
                except httpx.HTTPError as exc:
                    reasons.append(type(exc).__name__)
                    continue
                if r.is_success:
                    return None
                reasons.append(f"HTTP {r.status_code}")
            return ", ".join(reasons)

        poll_ready(probe, timeout, poll_interval, self.base_url + READY_PATH)


class AsyncHttpClient(_Base):
    """Asynchronous client with the same methods as :class:`HttpClient`, awaitable."""

    def __init__(
        self,
        base_url: str | Sequence[str] = DEFAULT_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        api_key: str | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        super().__init__(base_url, timeout, connect_timeout, retry, headers, api_key, max_concurrency)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=self._timeout, headers=self._headers,
            transport=transport,
        )

    async def __aenter__(self) -> "AsyncHttpClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        async with self._limit:
            return await self._send(method, path, body)

    async def _send(self, method: str, path: str, body: Any) -> Any:
        urls = self._attempt_urls()
        attempt = 0
        while True:
            attempt += 1
            base = next(urls)
            url = base + path
            try:
                response = await self._http.request(method, url, json=body)
            except httpx.HTTPError as exc:
                delay = self._should_retry(attempt, exc=exc, base=base)
                if delay is None:
                    raise _error_from_exception(exc, url, attempt) from exc
                if delay:
                    await asyncio.sleep(delay)
                continue
            if response.is_success:
                return _json_or_protocol_error(response)
            delay = self._should_retry(attempt, response=response)
            if delay is None:
                raise error_from_response(response, attempt)
            if delay:
                await asyncio.sleep(delay)

    async def score(self, items, weights=None, profile=None) -> list[ItemResult]:
        """See :meth:`HttpClient.score`."""
        body = _build_score(items, weights, profile)
        data = await self._request("POST", SCORE_PATH, body)
        return _parse_results(data, len(body["items"]), self.base_url + SCORE_PATH)

    async def mix(self, components, weights, token_offsets=None, profile=None) -> list[ItemResult]:
        """See :meth:`HttpClient.mix`."""
        body = _build_mix(components, weights, token_offsets, profile)
        data = await self._request("POST", MIX_PATH, body)
        return _parse_mix(data, len(body["items"]), self.base_url + MIX_PATH)

    async def feedback_types(self) -> list[FeedbackTypeInfo]:
        """See :meth:`HttpClient.feedback_types`."""
        return parse_feedback_types(await self._request("GET", FEEDBACK_TYPES_PATH))

    async def wait_until_ready(self, timeout: float = 60.0, poll_interval: float = 0.25) -> None:
        """See :meth:`HttpClient.wait_until_ready`."""
        async def probe(seconds: float) -> str | None:
            reasons = []
            for base in self.base_urls:
                try:
                    r = await self._http.get(base + READY_PATH, timeout=max(seconds / len(self.base_urls), 0.01))
                except httpx.HTTPError as exc:
                    reasons.append(type(exc).__name__)
                    continue
                if r.is_success:
                    return None
                reasons.append(f"HTTP {r.status_code}")
            return ", ".join(reasons)

        await apoll_ready(probe, timeout, poll_interval, self.base_url + READY_PATH)

