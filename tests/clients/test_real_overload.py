"""Overload against a real service with a 4-item queue: without retries the client raises
Overloaded (typed, limit in the message); with backoff + jitter every request gets through."""

import asyncio
import pytest

from fgrm_client import NO_RETRY, AsyncGrpcClient, AsyncHttpClient, Overloaded, RetryPolicy
from tests.conftest import start_service

ITEMS = [{"question": f"Who wrote book {i}?", "passages": [f"Book {i} was written by Ann."],
          "response": f"Ann wrote book {i}. It sold well."} for i in range(4)]
PATIENT = RetryPolicy(max_attempts=30, initial_backoff=0.05, max_backoff=0.5)


@pytest.fixture(scope="module")
def small_queue(tmp_path_factory):
    with start_service(tmp_path_factory.mktemp("fgrm-overload"), max_queue_items="4") as handle:
        yield handle


async def _burst(make_client, n=8):
    items = ITEMS
    async with make_client() as c:
        return await asyncio.gather(*(c.score(items) for _ in range(n)), return_exceptions=True)


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_overload_without_retries_is_typed_and_with_backoff_succeeds(small_queue, transport):
    def client(retry):
        if transport == "http":
            return lambda: AsyncHttpClient(small_queue.base_url, retry=retry, timeout=120)
        return lambda: AsyncGrpcClient(small_queue.grpc_target, retry=retry, timeout=120)

    refused = []
    for _ in range(5):  # concurrency is not guaranteed to collide on the first burst
        out = asyncio.run(_burst(client(NO_RETRY)))
        refused += [r for r in out if isinstance(r, Exception)]
        if refused:
            break
    assert refused, "a 4-item queue never refused 8 concurrent 4-item requests"
    assert all(isinstance(e, Overloaded) for e in refused), refused
    assert refused[0].attempts == 1

    out = asyncio.run(_burst(client(PATIENT)))
    assert all(not isinstance(r, Exception) for r in out), [r for r in out if isinstance(r, Exception)]
    assert all(len(r) == 4 for r in out)
