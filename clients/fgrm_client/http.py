"""HTTP clients (sync and async, over httpx) for the fgrm JSON wire format.

This module is a codec (:class:`HttpCodec`: JSON bodies, answers, statuses -> typed errors) and
two thin classes that hold an httpx client and send; the methods, the retry loop and the
concurrency cap are the drivers' (``fgrm_client._drivers``), shared with the gRPC clients.

Retries: scoring is idempotent, so connection failures (refused, reset, closed before an answer)
and the two "refused before doing any work" statuses, 503 and 429, are retried with backoff and
jitter, honouring ``Retry-After``. Read timeouts are not retried (the service may still be
working; a retry would double the load when it is already slow), nor are 4xx or other 5xx.

Several replicas: pass a list of base URLs. Calls take them in turn (round robin, starting one
further each call). A replica whose connection fails is skipped by every call for
``MARK_DOWN_S`` (as gRPC's round_robin skips a subchannel in TRANSIENT_FAILURE), and the call
that found it down moves to the next replica at once, without the backoff sleep. So a replica
that dies costs one refused connection per caller, not a failed call, and the retry budget is
spent on replicas that answer (:class:`Replicas`).
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import httpx

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
    FeedbackTypeInfo,
    Item,
    ItemResult,
    MixItem,
    parse_feedback_types,
    parse_item_result,
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
"""Seconds a replica whose connection failed is left out of every call's turn."""
# Network failures where the request cannot have been half-processed in a harmful way
# (scoring is idempotent). ReadTimeout/WriteTimeout/PoolTimeout are deliberately absent.
_RETRY_EXCEPTIONS = (httpx.NetworkError, httpx.ConnectTimeout, httpx.RemoteProtocolError)


class StatusError(Exception):
    """A non-2xx answer, raised by the clients' ``_send`` so that it fails like a lost connection."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _checked(response: httpx.Response) -> httpx.Response:
    if not response.is_success:
        raise StatusError(response)
    return response


# ----------------------------------------------------------------------------- codec


def _mix_json(it: MixItem) -> dict[str, Any]:
    out: dict[str, Any] = {"types": {
        name: {"granularity": c.granularity, "segments": [{"end": e.end, "reward": e.reward} for e in c.segments]}
        for name, c in it.types.items()}}
    if it.token_offsets is not None:
        out["token_offsets"] = [[a, b] for a, b in it.token_offsets]
    return out


def _results(n: int, endpoint: str, fill_types: bool = False,
             references: Sequence[bool] = ()) -> Callable[[httpx.Response], list[ItemResult]]:
    def parse(response: httpx.Response) -> list[ItemResult]:
        data = _json_or_protocol_error(response)
        if not isinstance(data, Mapping) or not isinstance(data.get("results"), list):
            raise ProtocolError("answer has no 'results' list", endpoint=endpoint)
        # a mix answer is a score answer whose results have no "types" of their own
        rows = [{"types": {}, **r} if fill_types and isinstance(r, Mapping) else r for r in data["results"]]
        return check_count((parse_item_result(r) for r in rows), n, endpoint, references)

    return parse


class Replicas:
    """The base URLs of one client, taken in turn; those whose connection failed sit out a while."""

    def __init__(self, base_urls: Sequence[str]) -> None:
        self.base_urls = tuple(base_urls)
        self._turn = itertools.count()
        self._down_until: dict[str, float] = {}

    def route(self) -> Iterator[str]:
        """The base URL of each attempt of one call: the replicas in turn from the next one,
        leaving out those marked down unless every one is."""
        start = next(self._turn)
        for i in itertools.count():
            url = self.base_urls[(start + i) % len(self.base_urls)]
            if self._is_up(url) or not any(self._is_up(u) for u in self.base_urls):
                yield url

    def _is_up(self, url: str) -> bool:
        return self._down_until.get(url, 0.0) <= time.monotonic()

    def mark_down(self, url: str) -> bool:
        """Leave `url` out for MARK_DOWN_S; True when another replica is up to try at once."""
        if len(self.base_urls) < 2 or url not in self.base_urls:
            return False
        self._down_until[url] = time.monotonic() + MARK_DOWN_S
        return any(self._is_up(u) for u in self.base_urls)


def _base_of(exc: httpx.HTTPError) -> str | None:
    try:
        url = exc.request.url
    except RuntimeError:  # an error raised before any request was attached
        return None
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


class HttpCodec:
    """The fgrm JSON wire format: requests as ``(method, path, body)``, answers as httpx responses."""

    def __init__(self, base_urls: Sequence[str]) -> None:
        self.replicas = Replicas(base_urls)
        self.base_url = self.replicas.base_urls[0]

    def _call(self, method: str, path: str, body: Any, parse: Callable[[Any], Any],
              timeout: float | None = None) -> Call[Any]:
        return Call(self.base_url + path, (method, path, body), parse, timeout, self.replicas.route())

    def score(self, items: list[Item], weights: Mapping[str, float] | None,
              profile: str | None) -> Call[list[ItemResult]]:
        body: dict[str, Any] = {"items": [it.to_json() for it in items]}
        if weights is not None:
            body["weights"] = weight_map(weights)
        if profile is not None:
            body["profile"] = profile
        sent = [it.has_reference for it in items]
        return self._call("POST", SCORE_PATH, body, _results(len(items), self.base_url + SCORE_PATH, references=sent))

    def mix(self, items: list[MixItem], weights: Mapping[str, float] | None,
            profile: str | None) -> Call[list[ItemResult]]:
        body: dict[str, Any] = {"items": [_mix_json(it) for it in items], "weights": weight_map(weights)}
        if profile is not None:
            body["profile"] = profile
        return self._call("POST", MIX_PATH, body, _results(len(items), self.base_url + MIX_PATH, fill_types=True))

    def feedback_types(self) -> Call[list[FeedbackTypeInfo]]:
        return self._call("GET", FEEDBACK_TYPES_PATH, None,
                          lambda r: parse_feedback_types(_json_or_protocol_error(r)))

    def ready(self, seconds: float) -> Call[str | None]:
        return self._call("GET", READY_PATH, None, lambda r: None, timeout=max(seconds, 0.01))

    def classify(self, exc: Exception, endpoint: str) -> Failure | None:
        if isinstance(exc, StatusError):
            r = exc.response
            return Failure(error_from_response(r), r.status_code in RETRY_STATUSES, f"HTTP {r.status_code}",
                           _retry_after(r))
        if isinstance(exc, httpx.HTTPError):
            retryable = isinstance(exc, _RETRY_EXCEPTIONS)
            base = _base_of(exc)
            # a replica that cannot be reached sits out; the retry goes to another one at once
            immediate = retryable and base is not None and self.replicas.mark_down(base)
            where = base + endpoint.removeprefix(self.base_url) if base else endpoint
            return Failure(_error_from_exception(exc, where, 1), retryable, type(exc).__name__, cause=exc,
                           immediate=immediate)
        return None


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


class _HttpBase(_Driver):
    """The constructor both HTTP clients share; the subclass names its httpx client class."""

    _httpx_class: Any = httpx.Client

    def __init__(
        self,
        base_url: str | Sequence[str] = DEFAULT_URL,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        api_key: str | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        super().__init__(retry, max_concurrency)
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("no base URL given")
        self.base_urls = tuple(u.rstrip("/") for u in urls)
        self.base_url = self.base_urls[0]
        self._codec = HttpCodec(self.base_urls)
        self._ready_endpoint = self.base_url + READY_PATH
        auth = {"authorization": f"Bearer {api_key}"} if api_key else {}  # servers with --api-key-file
        self._http = self._httpx_class(
            base_url=self.base_url, timeout=httpx.Timeout(timeout, connect=connect_timeout),
            headers={"user-agent": "fgrm-client/0.1", **auth, **(headers or {})}, transport=transport,
        )

    def _args(self, call: Call[Any]) -> tuple[tuple[str, str], dict[str, Any]]:
        method, path, body = call.request
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        if call.timeout is not None:
            kwargs["timeout"] = call.timeout
        base = next(call.replicas) if call.replicas is not None else self.base_url
        return (method, base + path), kwargs


class HttpClient(_HttpBase, SyncClient):
    """Synchronous client. Use as a context manager, or call :meth:`close`.

    ``transport`` is passed to httpx (e.g. ``httpx.MockTransport`` in tests);
    ``max_concurrency`` caps the calls in flight at once (``None``: no cap).
    """

    _httpx_class = httpx.Client

    def _send(self, call: Call[Any]) -> httpx.Response:
        args, kwargs = self._args(call)
        return _checked(self._http.request(*args, **kwargs))

    def close(self) -> None:
        self._http.close()


class AsyncHttpClient(_HttpBase, AsyncClient):
    """Asynchronous client with the same methods as :class:`HttpClient`, awaitable."""

    _httpx_class = httpx.AsyncClient

    async def _send(self, call: Call[Any]) -> httpx.Response:
        args, kwargs = self._args(call)
        return _checked(await self._http.request(*args, **kwargs))

    async def close(self) -> None:
        await self._http.aclose()
