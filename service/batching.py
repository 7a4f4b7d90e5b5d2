"""Token-budget batching and the one queue that HTTP, gRPC and in-process callers share.

Why not BentoML's adaptive batching: it counts requests, not tokens (BentoML issue #4753), so a
batch of one 900-token and thirty 60-token responses is padded to 31 x 900. Here each backend
has one queue of rows (token sequences); whenever the backend is free, the batcher takes what
is queued, orders it by length and cuts it into sub-batches whose padded size (rows x longest
row) stays within `max_batch_tokens`. Requests that arrive during a forward pass join the next
one, so under load the batches grow by themselves and at concurrency 1 nothing waits.

Batch invariance: every row is scored from its own tokens only (attention masks hide padding),
so a row's outputs do not depend on its neighbours beyond float rounding. A backend that is
not batch-invariant (dynamic int8 ONNX computes activation scales per batch) gets one row per
forward pass.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from models.encoding import pad_batch

if TYPE_CHECKING:
    from models.runtime import Backend
    from service.metrics import EngineMetrics


def plan(lengths: Sequence[int], max_tokens: int, max_rows: int, one_per_batch: bool = False) -> list[list[int]]:
    """Indices of `lengths` grouped into sub-batches: sorted by length (ties by index, so the
    plan is deterministic), each padded size ``len(batch) * max(length)`` <= `max_tokens`
    (a row longer than the budget runs alone), at most `max_rows` rows."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    if one_per_batch:
        return [[i] for i in order]
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # sorted ascending, so the newest row is the longest one
        if current and ((len(current) + 1) * lengths[i] > max_tokens or len(current) >= max_rows):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True)
class BatchLimits:
    """How one backend's rows are cut into forward passes (the arguments of `plan`)."""

    max_tokens: int
    max_rows: int
    one_per_batch: bool = False

    def plan(self, lengths: Sequence[int]) -> list[list[int]]:
        return plan(lengths, self.max_tokens, self.max_rows, self.one_per_batch)


def split_outputs(out: dict[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
    """Per-row views of a batch's outputs (no copies)."""
    return [{key: value[k] for key, value in out.items()} for k in range(n)]


@dataclass
class Row:
    """One sequence waiting for a forward pass."""

    ids: list[int]
    transport: str
    future: asyncio.Future[dict[str, np.ndarray]]
    enqueued: float = field(default_factory=time.perf_counter)


class RunForward:
    """Runs one planned sub-batch on a backend and records its metrics. Shared by the async
    batcher and the synchronous in-process path, so both behave the same."""

    def __init__(self, backend: Backend, pad_id: int, metrics: EngineMetrics | None):
        self.backend, self.pad_id, self.metrics = backend, pad_id, metrics
        self._labels = (backend.name, str(backend.provider))
        self.seconds_per_row: float | None = None  # EWMA of forward time per row, for admission

    def _observe(self, elapsed: float, n_rows: int) -> None:
        per_row = elapsed / max(1, n_rows)
        prev = self.seconds_per_row
        self.seconds_per_row = per_row if prev is None else 0.8 * prev + 0.2 * per_row

    def __call__(self, rows: Sequence[Sequence[int]]) -> list[dict[str, np.ndarray]]:
        ids, mask = pad_batch(rows, self.pad_id)
        t0 = time.perf_counter()
        out = self.backend.forward(ids, mask)
        elapsed = time.perf_counter() - t0
        self._observe(elapsed, len(rows))
        m = self.metrics
        if m is not None:
            real = int(mask.sum())
            m.forward_seconds.labels(*self._labels).observe(elapsed)
            m.batch_size.observe(len(rows))
            m.batch_tokens.observe(ids.size)
            m.padding.observe(1.0 - real / ids.size)
        return split_outputs(out, len(rows))


class Batcher:
    """One queue and one loop per backend; forward passes run on a single worker thread so the
    event loop keeps accepting requests (torch and onnxruntime release the GIL)."""

    def __init__(self, run: RunForward, *, limits: BatchLimits, wait_ms: float, executor: ThreadPoolExecutor,
                 metrics: EngineMetrics | None, on_failure: Callable[[BaseException], BaseException]):
        self.run, self.limits, self.wait_s = run, limits, wait_ms / 1000.0
        self.executor, self.metrics, self.on_failure = executor, metrics, on_failure
        self._queue: list[Row] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="fgrm-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for row in self._queue:
            if not row.future.done():
                row.future.cancel()
        self._queue.clear()

    def submit(self, rows: Sequence[Sequence[int]], transport: str) -> list[asyncio.Future[dict[str, np.ndarray]]]:
        loop = asyncio.get_running_loop()
        futures = []
        for ids in rows:
            fut = loop.create_future()
            self._queue.append(Row(list(ids), transport, fut))
            futures.append(fut)
        self._wakeup.set()
        return futures

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            if self.wait_s > 0:
                await asyncio.sleep(self.wait_s)
            self._wakeup.clear()
            # rows whose caller gave up (deadline, disconnect) are dropped before any work
            taken = [r for r in self._queue if not r.future.done()]
            self._queue.clear()
            if not taken:
                continue
            batches = [[taken[i] for i in batch] for batch in self.limits.plan([len(r.ids) for r in taken])]
            # One thread hop for the whole drain, not one per sub-batch: a one-row-per-pass backend
            # (int8) makes ~26 passes per QA-Feedback item, and each hop costs a wake-up of the
            # worker and of the event loop (ms on a busy 2-core machine). Results still reach
            # their callers as each sub-batch finishes (`_deliver`, scheduled from the worker).
            failed = await loop.run_in_executor(self.executor, self._run_drain, loop, batches)
            for rows, exc in failed:
                await self._isolate(loop, rows, exc)

    def _run_drain(self, loop: asyncio.AbstractEventLoop, batches: list[list[Row]]) -> list:
        """In the forward thread: every sub-batch back to back. Returns the failed ones."""
        failed = []
        for rows in batches:
            rows = [r for r in rows if not r.future.done()]  # a caller may have given up meanwhile
            if not rows:
                continue
            if self.metrics is not None:
                now = time.perf_counter()
                for r in rows:
                    self.metrics.queue_wait.observe(now - r.enqueued)
                self.metrics.batches.labels("+".join(sorted({r.transport for r in rows}))).inc()
            try:
                outs = self.run([r.ids for r in rows])
            except Exception as exc:  # noqa: BLE001 - mapped to BackendFailure for the callers
                failed.append((rows, exc))
                continue
            try:
                loop.call_soon_threadsafe(self._deliver, rows, outs)
            except RuntimeError:  # the loop closed under us (shutdown): nobody is waiting any more
                return []
        return failed

    @staticmethod
    def _deliver(rows: list[Row], outs: list) -> None:
        for r, out in zip(rows, outs):
            if not r.future.done():
                r.future.set_result(out)

    async def _isolate(self, loop: asyncio.AbstractEventLoop, rows: list[Row], exc: BaseException) -> None:
        """A failed sub-batch: rerun its rows one by one, so a row that breaks the backend fails
        only its own request, not its neighbours'."""
        if len(rows) == 1:
            err = self.on_failure(exc)
            if not rows[0].future.done():
                rows[0].future.set_exception(err)
            return
        for r in rows:
            try:
                [out] = await loop.run_in_executor(self.executor, self.run, [r.ids])
            except Exception as one:  # noqa: BLE001
                await self._isolate(loop, [r], one)
                continue
            self._deliver([r], [out])
