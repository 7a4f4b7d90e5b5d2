"""CPU priority of the compute threads, so the event loop answers first under saturation.

On a saturated CPU host the runtime's intra-op threads keep every core busy. The event loop is
what refuses excess requests (503 within milliseconds), answers /livez and /readyz and serves
/metrics; when it has to queue for a core behind the forward pass, refusals take a time slice
or more (RELIABILITY.md: p99 128 ms at 3x saturation with two ORT threads on two cores). Giving
the compute threads a higher niceness leaves the forward pass every idle cycle (throughput is
unchanged when the loop has nothing to do) while the loop, at niceness 0, runs as soon as it
wakes up.

Linux schedules threads as tasks, each with its own niceness, and a thread starts with the
niceness of the thread that created it: lowering the priority of the forward thread also
lowers that of intra-op pools created from it (OpenMP in torch); ONNX Runtime creates its pool
when the session is built, so those threads are found by listing the process's tasks before
and after loading. Elsewhere (no /proc, no per-thread niceness) this does nothing and says so.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator

log = logging.getLogger("fgrm.priority")
_TASKS = "/proc/self/task"


def supported() -> bool:
    return os.path.isdir(_TASKS) and hasattr(os, "setpriority")


def _tasks() -> set[int]:
    try:
        return {int(t) for t in os.listdir(_TASKS)}
    except OSError:
        return set()


def lower(tids, niceness: int) -> int:
    """Set `niceness` on each thread id (never raises it back: a lower value needs privileges
    and is not what we want). Returns how many threads were changed."""
    changed = 0
    for tid in tids:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < niceness:
                os.setpriority(os.PRIO_PROCESS, tid, niceness)
                changed += 1
        except OSError:  # the thread ended meanwhile, or the platform refuses: nothing to lower
            continue
    return changed


def lower_current_thread(niceness: int) -> None:
    """ThreadPoolExecutor initializer: the worker thread (and what it starts) at `niceness`."""
    if niceness > 0 and supported():
        lower([threading.get_native_id()], niceness)


@contextlib.contextmanager
def lowering_new_threads(niceness: int, what: str) -> Iterator[None]:
    """Threads started inside the block (a runtime's thread pool) get `niceness` at its end."""
    if niceness <= 0 or not supported():
        if niceness > 0:
            log.info("compute_niceness %d not applied to %s: per-thread priority is Linux-only", niceness, what)
        yield
        return
    before = _tasks()
    yield
    n = lower(_tasks() - before, niceness)
    log.info("%s: %d runtime thread(s) at niceness %d", what, n, niceness)
