"""The concurrency cap shared by every client: at most ``n`` calls of one client in flight.

Why the client needs one: trainers fire one reward call per sample (veRL's reward loop, slime,
AReaL), hundreds at once. Past the service's admission queue those are refused (429/503) and
retried, so an uncapped burst turns into a retry storm; a cap keeps the excess waiting in the
trainer, where waiting is free. A call holds its slot through its retries and backoff, so the
cap bounds the requests a client has outstanding, not only the sockets it has open.

``None`` means no cap (the default, as before). One object serves the sync clients (a thread
semaphore: veRL runs sync reward functions on executor threads) and the async ones (an asyncio
semaphore, created at first use inside the loop that uses the client).
"""

from __future__ import annotations

import asyncio
import threading


class ConcurrencyLimit:
    """``with limit:`` / ``async with limit:`` around one logical call (retries included)."""

    def __init__(self, n: int | None) -> None:
        if n is not None and n < 1:
            raise ValueError("max_concurrency must be >= 1 (or None for no cap)")
        self.n = n
        self._threads = threading.BoundedSemaphore(n) if n else None
        self._tasks: asyncio.Semaphore | None = None

    def __enter__(self) -> None:
        if self._threads is not None:
            self._threads.acquire()

    def __exit__(self, *exc) -> None:
        if self._threads is not None:
            self._threads.release()

    async def __aenter__(self) -> None:
        if self.n is None:
            return
        if self._tasks is None:
            self._tasks = asyncio.Semaphore(self.n)
        await self._tasks.acquire()

    async def __aexit__(self, *exc) -> None:
        if self._tasks is not None:
            self._tasks.release()
