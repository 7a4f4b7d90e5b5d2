"""service.priority: compute threads get the configured niceness, the calling thread keeps its own."""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.config import Settings
from service.priority import lower_current_thread, lowering_new_threads, supported

pytestmark = pytest.mark.skipif(not supported(), reason="per-thread niceness needs Linux /proc/self/task")


def _niceness(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def test_threads_started_inside_the_block_are_lowered_and_the_caller_is_not():
    before = _niceness(threading.get_native_id())
    seen, go = {}, threading.Event()

    def worker():
        seen["tid"] = threading.get_native_id()
        go.wait(5)
        seen["nice"] = _niceness(threading.get_native_id())

    with lowering_new_threads(7, "test pool"):
        t = threading.Thread(target=worker)
        t.start()
        while "tid" not in seen:  # the task must exist before the block ends
            pass
    go.set()
    t.join()
    assert seen["nice"] == max(7, before)
    assert _niceness(threading.get_native_id()) == before


def test_an_executor_initialised_with_it_runs_its_work_lowered_and_zero_changes_nothing():
    with ThreadPoolExecutor(1, initializer=lower_current_thread, initargs=(9,)) as ex:
        assert ex.submit(lambda: _niceness(threading.get_native_id())).result() == 9
    base = _niceness(threading.get_native_id())
    with ThreadPoolExecutor(1, initializer=lower_current_thread, initargs=(0,)) as ex:
        assert ex.submit(lambda: _niceness(threading.get_native_id())).result() == base


def test_the_setting_is_bounded():
    with pytest.raises(ValueError, match="FGRM_COMPUTE_NICENESS must be in 0..19, got 20"):
        Settings(compute_niceness=20).check()
