"""The public client methods, once for blocking callers and once for asyncio.

A driver owns no wire format and no error mapping: it asks its codec for a :class:`Call`, sends
it with the transport's ``_send`` (the one method a client class writes, next to ``close``),
and hands failures to :class:`~fgrm_client._core.Attempts`. The two classes differ only where
Python makes them: ``await`` and ``asyncio.sleep``. The concurrency cap is held for a whole
call, retries and backoff included (``fgrm_client._limit`` says why).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Iterable, Mapping, Sequence, TypeVar

from ._core import Attempts, Call, Codec
from ._limit import ConcurrencyLimit
from ._ready import apoll_ready, poll_ready
from ._retry import RetryPolicy
from .types import FeedbackTypeInfo, Item, ItemResult, TypeResult, to_items, to_mix_items

T = TypeVar("T")
Items = Iterable["Item | Mapping[str, Any]"]
Components = Sequence["ItemResult | Mapping[str, TypeResult]"]
Offsets = Sequence["Sequence[tuple[int, int]] | None"]


class _Driver:
    """What both drivers hold: the codec, the retry policy, the cap, where readiness is asked."""

    _codec: Codec
    _ready_endpoint: str

    def __init__(self, retry: RetryPolicy | None, max_concurrency: int | None) -> None:
        self.retry = retry or RetryPolicy()
        self._limit = ConcurrencyLimit(max_concurrency)

    def _probe_reason(self, call: Call[Any], exc: Exception) -> str:
        failure = self._codec.classify(exc, call.endpoint)
        if failure is None:
            raise exc
        return failure.reason


class SyncClient(_Driver):
    """Blocking client; use as a context manager, or call :meth:`close`."""

    def _send(self, call: Call[Any]) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, call: Call[T]) -> T:
        with self._limit:
            tries = Attempts(self.retry, self._codec, call)
            while True:
                try:
                    return call.parse(self._send(call))
                except Exception as exc:  # noqa: BLE001 - Attempts re-raises what is not a transport failure
                    delay = tries.failed(exc)
                    if delay:  # 0: another replica takes the retry at once
                        time.sleep(delay)

    def score(self, items: Items, weights: Mapping[str, float] | None = None,
              profile: str | None = None) -> list[ItemResult]:
        """Score each item; one :class:`ItemResult` per item, in order.

        ``weights`` overrides the mixing weights of the named types (others keep the
        service's defaults); ``profile`` picks a named weight profile on the service.
        """
        return self._run(self._codec.score(to_items(items), weights, profile))

    def mix(self, components: Components, weights: Mapping[str, float] | None,
            token_offsets: Offsets | None = None, profile: str | None = None) -> list[ItemResult]:
        """Re-mix already computed per-type rewards with new weights, without re-scoring.

        ``components`` are earlier results (or their ``.types``); ``token_offsets`` (one entry
        per item, or ``None``) asks for ``token_rewards``. The answers carry ``mixed`` (and
        ``token_rewards``) but empty ``types``.
        """
        return self._run(self._codec.mix(to_mix_items(components, token_offsets), weights, profile))

    def feedback_types(self) -> list[FeedbackTypeInfo]:
        """The feedback types this service scores, with their default weights."""
        return self._run(self._codec.feedback_types())

    def wait_until_ready(self, timeout: float = 60.0, poll_interval: float = 0.25) -> None:
        """Block until the service reports ready; raise :class:`~fgrm_client.Timeout` after ``timeout`` s."""
        poll_ready(self._probe, timeout, poll_interval, self._ready_endpoint)

    def _probe(self, seconds: float) -> str | None:
        call = self._codec.ready(seconds)
        try:
            return call.parse(self._send(call))
        except Exception as exc:  # noqa: BLE001 - _probe_reason re-raises what is not a transport failure
            return self._probe_reason(call, exc)


class AsyncClient(_Driver):
    """Asynchronous client with the same methods as :class:`SyncClient`, awaitable."""

    async def _send(self, call: Call[Any]) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self, call: Call[T]) -> T:
        async with self._limit:
            tries = Attempts(self.retry, self._codec, call)
            while True:
                try:
                    return call.parse(await self._send(call))
                except Exception as exc:  # noqa: BLE001 - Attempts re-raises what is not a transport failure
                    delay = tries.failed(exc)
                    if delay:
                        await asyncio.sleep(delay)

    async def score(self, items: Items, weights: Mapping[str, float] | None = None,
                    profile: str | None = None) -> list[ItemResult]:
        """See :meth:`SyncClient.score`."""
        return await self._run(self._codec.score(to_items(items), weights, profile))

    async def mix(self, components: Components, weights: Mapping[str, float] | None,
                  token_offsets: Offsets | None = None, profile: str | None = None) -> list[ItemResult]:
        """See :meth:`SyncClient.mix`."""
        return await self._run(self._codec.mix(to_mix_items(components, token_offsets), weights, profile))

    async def feedback_types(self) -> list[FeedbackTypeInfo]:
        """See :meth:`SyncClient.feedback_types`."""
        return await self._run(self._codec.feedback_types())

    async def wait_until_ready(self, timeout: float = 60.0, poll_interval: float = 0.25) -> None:
        """See :meth:`SyncClient.wait_until_ready`."""
        await apoll_ready(self._probe, timeout, poll_interval, self._ready_endpoint)

    async def _probe(self, seconds: float) -> str | None:
        call = self._codec.ready(seconds)
        try:
            return call.parse(await self._send(call))
        except Exception as exc:  # noqa: BLE001 - _probe_reason re-raises what is not a transport failure
            return self._probe_reason(call, exc)
