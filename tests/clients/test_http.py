"""HTTP client against httpx.MockTransport: wire format, error mapping, retries, failure injection."""

import asyncio
import json

import httpx
import pytest

from fgrm_client import (
    AsyncHttpClient,
    HttpClient,
    InvalidInput,
    NotReady,
    Overloaded,
    ProtocolError,
    RetryPolicy,
    ServerError,
    Timeout,
    Unauthorized,
    Unavailable,
)

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.01)

RESULT = {
    "types": {
        "relevance": {"granularity": "sub-sentence", "total": 0.6, "segments": [
            {"start": 0, "end": 5, "text": "Hello", "p_error": 0.1, "reward": 0.3},
            {"start": 7, "end": 12, "text": "world", "p_error": 0.2, "reward": 0.3}]},
        "completeness": {"granularity": "response", "total": 0.21, "segments": [
            {"start": 0, "end": 12, "text": "Hello, world", "score": 1.4, "reward": 0.21}]},
    },
    "mixed": {"weights": {"relevance": 1.0, "completeness": 1.0}, "total": 0.81,
              "events": [{"end": 5, "reward": 0.3}, {"end": 12, "reward": 0.51}]},
    "token_rewards": [0.3, 0.0, 0.51],
}
ITEM = {"question": "q?", "passages": ["p"], "response": "Hello, world",
        "token_offsets": [[0, 5], [5, 6], [6, 12]]}


def make(handler, **kw):
    return HttpClient("http://fgrm.test", transport=httpx.MockTransport(handler), retry=FAST, **kw)


def test_score_sends_the_wire_format_and_parses_results():
    seen = {}

    def handler(request):
        seen["path"] = request.url.path
        seen["body"] = json.loads(request.content)
        return httpx.Response(200, json={"results": [RESULT]})

    with make(handler) as c:
        [r] = c.score([ITEM], weights={"relevance": 2}, profile="default")
    assert seen["path"] == "/v1/score"
    assert seen["body"] == {"items": [ITEM], "weights": {"relevance": 2.0}, "profile": "default"}
    assert r.types["relevance"].segments[1].end == 12
    assert r.types["completeness"].segments[0].score == 1.4
    assert r.mixed.events[1].reward == pytest.approx(0.51)
    assert r.token_rewards == (0.3, 0.0, 0.51)


def test_score_omits_unset_optionals():
    def handler(request):
        body = json.loads(request.content)
        assert set(body) == {"items"} and "token_offsets" not in body["items"][0]
        return httpx.Response(200, json={"results": [RESULT]})

    with make(handler) as c:
        c.score([{"question": "q", "response": "r"}])


def test_service_down_bounded_retries_then_unavailable():
    calls = []

    def handler(request):
        calls.append(1)
        raise httpx.ConnectError("connection refused", request=request)

    with make(handler) as c, pytest.raises(Unavailable) as ei:
        c.score([ITEM])
    assert len(calls) == FAST.max_attempts
    assert ei.value.attempts == FAST.max_attempts
    assert ei.value.status is None and "fgrm.test" in ei.value.endpoint


def test_503_backs_off_then_succeeds(monkeypatch):
    sleeps = []
    monkeypatch.setattr("fgrm_client._drivers.time.sleep", sleeps.append)
    answers = iter([503, 503, 200])

    def handler(request):
        code = next(answers)
        if code == 503:
            return httpx.Response(503, json={"error": {"kind": "overloaded", "message": "queue full"}})
        return httpx.Response(200, json={"results": [RESULT]})

    with make(handler) as c:
        assert len(c.score([ITEM])) == 1
    assert len(sleeps) == 2  # two backoffs, then success


def test_backoff_grows_and_honours_retry_after(monkeypatch):
    sleeps = []
    monkeypatch.setattr("fgrm_client._drivers.time.sleep", sleeps.append)
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=1.0)

    def handler(request):
        return httpx.Response(429, headers={"retry-after": "0.5"}, json={"error": "busy"})

    c = HttpClient("http://fgrm.test", transport=httpx.MockTransport(handler), retry=policy)
    with pytest.raises(Overloaded) as ei:
        c.score([ITEM])
    assert ei.value.attempts == 3 and ei.value.status == 429
    assert sleeps == [0.5, 0.5]  # Retry-After wins over the tiny jittered backoff


def test_overload_exhausted_is_typed():
    def handler(request):
        return httpx.Response(503, json={"error": {"kind": "overloaded", "message": "queue full (64)"}})

    with make(handler) as c, pytest.raises(Overloaded, match=r"queue full \(64\)"):
        c.score([ITEM])


def test_invalid_input_is_not_retried_and_names_the_field():
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(400, json={"error": {"kind": "invalid_input",
                                                   "field": "items[0].response",
                                                   "message": "items[0].response: empty"}})

    with make(handler) as c, pytest.raises(InvalidInput) as ei:
        c.score([ITEM])
    assert calls == [1]
    assert ei.value.field == "items[0].response"
    assert str(ei.value).startswith("items[0].response: empty (")  # field said once


def test_pydantic_style_422_yields_field():
    def handler(request):
        return httpx.Response(422, json={"detail": [{"loc": ["body", "items", 0], "msg": "bad"}]})

    with make(handler) as c, pytest.raises(InvalidInput) as ei:
        c.score([ITEM])
    assert ei.value.field == "body.items.0" and ei.value.message == "bad"


@pytest.mark.parametrize(
    "status,body,exc",
    [
        (500, {"error": {"kind": "backend_failure", "message": "boom"}}, ServerError),
        (503, {"error": {"kind": "not_ready", "message": "models loading"}}, NotReady),
        (504, "gateway timeout", Timeout),
        (404, "not found", ProtocolError),
        (401, {"error": {"kind": "unauthorized", "message": "admin token"}}, Unauthorized),
        (429, {"error": {"message": "full"}}, Overloaded),
    ],
)
def test_status_mapping(status, body, exc):
    calls = []

    def handler(request):
        calls.append(1)
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    with make(handler) as c, pytest.raises(exc):
        c.score([ITEM])
    assert len(calls) == (FAST.max_attempts if status in (429, 503) else 1)


def test_read_timeout_is_not_retried():
    calls = []

    def handler(request):
        calls.append(1)
        raise httpx.ReadTimeout("slow", request=request)

    with make(handler) as c, pytest.raises(Timeout):
        c.score([ITEM])
    assert calls == [1]


def test_wrong_result_count_and_non_json_are_protocol_errors():
    with make(lambda r: httpx.Response(200, json={"results": []})) as c, pytest.raises(ProtocolError):
        c.score([ITEM])
    with make(lambda r: httpx.Response(200, text="<html>")) as c, pytest.raises(ProtocolError):
        c.score([ITEM])


def test_wait_until_ready_polls_then_times_out():
    states = iter([503, 503, 200])
    with make(lambda r: httpx.Response(next(states))) as c:
        c.wait_until_ready(timeout=5, poll_interval=0.001)
    with make(lambda r: httpx.Response(503)) as c, pytest.raises(Timeout, match="not ready"):
        c.wait_until_ready(timeout=0.05, poll_interval=0.01)


def test_async_wait_until_ready_polls_then_times_out_naming_the_last_answer():
    async def run():
        states = iter([503, 200])
        async with AsyncHttpClient("http://fgrm.test", retry=FAST,
                                   transport=httpx.MockTransport(lambda r: httpx.Response(next(states)))) as c:
            await c.wait_until_ready(timeout=5, poll_interval=0.001)
        async with AsyncHttpClient("http://fgrm.test", retry=FAST,
                                   transport=httpx.MockTransport(lambda r: httpx.Response(503))) as c:
            with pytest.raises(Timeout, match=r"not ready after 0\.1s \(last: HTTP 503\)"):
                await c.wait_until_ready(timeout=0.05, poll_interval=0.01)

    asyncio.run(run())


def test_feedback_types_and_mix():
    def handler(request):
        if request.url.path == "/v1/feedback-types":
            return httpx.Response(200, json={"types": [
                {"name": "relevance", "granularity": "sub-sentence", "kind": "segment_classifier",
                 "default_weight": 0.7, "runtime": "onnx"}]})
        body = json.loads(request.content)
        assert request.url.path == "/v1/mix"
        assert body["weights"] == {"relevance": 0.5}
        assert body["items"][0]["types"]["relevance"] == {
            "granularity": "sub-sentence",
            "segments": [{"end": 5, "reward": 0.3}, {"end": 12, "reward": 0.3}]}
        return httpx.Response(200, json={"results": [{"mixed": {
            "weights": {"relevance": 0.5}, "total": 0.3,
            "events": [{"end": 5, "reward": 0.15}, {"end": 12, "reward": 0.15}]}}]})

    with make(handler) as c:
        [ft] = c.feedback_types()
        assert ft.name == "relevance" and ft.kind == "segment_classifier" and ft.weight == 0.7
        assert ft.extra == {"runtime": "onnx"}
        from fgrm_client.types import parse_item_result
        [m] = c.mix([parse_item_result(RESULT)], {"relevance": 0.5})
        assert m.mixed.total == pytest.approx(0.3) and m.types == {}


def test_async_client_retries_and_types():
    calls = []

    async def handler(request):
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"results": [RESULT]})

    async def main():
        async with AsyncHttpClient("http://fgrm.test", transport=httpx.MockTransport(handler),
                                   retry=FAST) as c:
            [r] = await c.score([ITEM])
            return r

    r = asyncio.run(main())
    assert len(calls) == 2 and r.mixed.total == pytest.approx(0.81)

    async def down():
        async def h(request):
            raise httpx.ConnectError("refused", request=request)
        async with AsyncHttpClient("http://fgrm.test", transport=httpx.MockTransport(h),
                                   retry=FAST) as c:
            await c.score([ITEM])

    with pytest.raises(Unavailable):
        asyncio.run(down())


def test_nothing_heavy_is_imported():
    import subprocess
    import sys

    code = ("import sys, fgrm_client, fgrm_client.align, fgrm_client.trl, fgrm_client.grpc, "
            "fgrm_client.trainers.verl, fgrm_client.trainers.slime, fgrm_client.trainers.nemo_gym, "
            "fgrm_client.trainers.skyrl, fgrm_client.trainers.areal; "
            "print([m for m in ('torch', 'transformers', 'bentoml') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_concurrency_cap_bounds_calls_in_flight():
    """max_concurrency: at most n calls in flight, sync (threads) and async (tasks) alike."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def enter_leave(sleep):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        sleep()
        with lock:
            state["now"] -= 1

    def sync_handler(request):
        import time
        enter_leave(lambda: time.sleep(0.02))
        return httpx.Response(200, json={"results": [RESULT]})

    with HttpClient("http://fgrm.test", transport=httpx.MockTransport(sync_handler), max_concurrency=3) as c:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: c.score([ITEM]), range(12)))
    assert state["peak"] == 3

    state["peak"] = 0

    async def async_handler(request):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        await asyncio.sleep(0.02)
        with lock:
            state["now"] -= 1
        return httpx.Response(200, json={"results": [RESULT]})

    async def burst():
        async with AsyncHttpClient("http://fgrm.test", transport=httpx.MockTransport(async_handler),
                                   max_concurrency=2) as c:
            await asyncio.gather(*(c.score([ITEM]) for _ in range(10)))

    asyncio.run(burst())
    assert state["peak"] == 2
    with pytest.raises(ValueError):
        HttpClient("http://fgrm.test", max_concurrency=0)


def test_several_replicas_take_turns_and_a_dead_one_costs_no_failed_call(monkeypatch):
    sleeps, hosts = [], []
    monkeypatch.setattr("fgrm_client._drivers.time.sleep", sleeps.append)

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host == "dead":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"results": [RESULT]})

    with HttpClient(["http://dead:1", "http://live:1"], retry=FAST,
                    transport=httpx.MockTransport(handler)) as client:
        for _ in range(6):
            assert client.score([ITEM])[0].mixed.total == 0.81
    # the first call finds the dead replica, moves on at once and leaves it out from then on
    assert hosts == ["dead"] + ["live"] * 6 and sleeps == []
    with HttpClient(["http://live:1", "http://live:2"], transport=httpx.MockTransport(handler)) as client:
        hosts.clear()
        for _ in range(4):
            client.score([ITEM])
        assert hosts == ["live"] * 4


def test_a_replica_marked_down_is_tried_again_later(monkeypatch):
    import fgrm_client.http as http_module

    clock = [100.0]
    monkeypatch.setattr(http_module.time, "monotonic", lambda: clock[0])
    hosts, dead = [], {"a"}

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.url.host in dead:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"results": [RESULT]})

    with HttpClient(["http://a:1", "http://b:1"], retry=FAST, transport=httpx.MockTransport(handler)) as client:
        client.score([ITEM])
        client.score([ITEM])
        assert hosts == ["a", "b", "b"]
        dead.clear()
        clock[0] += http_module.MARK_DOWN_S  # a is back, and its time out is over
        client.score([ITEM])
        client.score([ITEM])
        assert sorted(hosts[3:]) == ["a", "b"]


def test_several_replicas_all_down_back_off_after_trying_each(monkeypatch):
    sleeps = []
    monkeypatch.setattr("fgrm_client._drivers.time.sleep", sleeps.append)

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with HttpClient(["http://a:1", "http://b:1"], retry=FAST, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(Unavailable) as err:
            client.score([ITEM])
    assert err.value.attempts == 4 and len(sleeps) == 2  # a, b at once; both down: back off, a, back off, b
