"""The readiness poll behind every client's ``wait_until_ready``: one loop, sync and async.

A probe gets the seconds it may take (at most 2, never past the deadline) and returns None
when the service is ready, else a short reason that ends up in the ``Timeout`` message.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

from .errors import Timeout

PROBE_TIMEOUT_S = 2.0


def _timeout(timeout: float, last: str, endpoint: str) -> Timeout:
    return Timeout(f"service not ready after {timeout:.1f}s (last: {last})", endpoint=endpoint)


def poll_ready(probe: Callable[[float], str | None], timeout: float, poll_interval: float, endpoint: str) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while (remaining := deadline - time.monotonic()) > 0:
        last = probe(min(PROBE_TIMEOUT_S, remaining))
        if last is None:
            return
        time.sleep(min(poll_interval, max(deadline - time.monotonic(), 0)))
    raise _timeout(timeout, last, endpoint)


async def apoll_ready(probe: Callable[[float], Awaitable[str | None]], timeout: float, poll_interval: float,
                      endpoint: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = "no answer yet"
    while (remaining := deadline - loop.time()) > 0:
        last = await probe(min(PROBE_TIMEOUT_S, remaining))
        if last is None:
            return
        await asyncio.sleep(min(poll_interval, max(deadline - loop.time(), 0)))
    raise _timeout(timeout, last, endpoint)
