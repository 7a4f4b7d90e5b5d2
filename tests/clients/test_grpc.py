"""gRPC client against in-process fake RewardService servers (generic handlers, no stubs):
messages, error mapping from codes + trailing metadata, retries, deadlines, round_robin."""

import asyncio
import threading
import time
from concurrent import futures

import grpc
import pytest

from fgrm_client import (
    AsyncGrpcClient,
    GrpcClient,
    InvalidInput,
    NotReady,
    Overloaded,
    RetryPolicy,
    Timeout,
    Unavailable,
)
from fgrm_client import _proto

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.01)
SERVICE = "fgrm.v1.RewardService"


class FakeService:
    """Scores every response with reward = len(response) on one response-level type."""

    def __init__(self):
        self.pb = _proto.messages()
        self.calls = 0
        self.fail = []  # (code, details, metadata) popped per call before answering
        self.sleep = 0.0
        self.lock = threading.Lock()

    def _maybe_fail(self, context):
        with self.lock:
            self.calls += 1
            failure = self.fail.pop(0) if self.fail else None
        if self.sleep:
            time.sleep(self.sleep)
        if failure:
            code, details, md = failure
            context.set_trailing_metadata(md)
            context.abort(code, details)

    def score(self, req, context):
        self._maybe_fail(context)
        resp = self.pb.ScoreResponse()
        for it in req.items:
            r = resp.results.add()
            n = len(it.response)
            t = r.types["completeness"]
            t.granularity, t.total = "response", float(n)
            seg = t.segments.add()
            seg.start, seg.end, seg.text, seg.reward, seg.score = 0, n, it.response, float(n), 1.5
            w = req.weights.get("completeness", 1.0)
            r.mixed.weights["completeness"] = w
            r.mixed.total = w * n
            ev = r.mixed.events.add()
            ev.end, ev.reward = n, w * n
            if it.HasField("token_offsets"):
                vals = [0.0] * len(it.token_offsets.spans)
                vals[-1] = w * n
                r.token_rewards.values.extend(vals)
        return resp

    def mix(self, req, context):
        self._maybe_fail(context)
        resp = self.pb.MixResponse()
        for it in req.items:
            r = resp.results.add()
            for name, comp in it.types.items():
                w = req.weights.get(name, 1.0)
                r.mixed.weights[name] = w
                for s in comp.segments:
                    r.mixed.total += w * s.reward
                    ev = r.mixed.events.add()
                    ev.end, ev.reward = s.end, w * s.reward
        return resp

    def feedback_types(self, req, context):
        self._maybe_fail(context)
        resp = self.pb.ListFeedbackTypesResponse()
        t = resp.types.add()
        t.name, t.granularity, t.kind, t.default_weight, t.runtime = (
            "completeness", "response", "preference_scorer", 0.3, "onnx")
        return resp

    def handler(self):
        pb = self.pb

        def h(fn, req_cls, resp_cls):
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req_cls.FromString,
                response_serializer=resp_cls.SerializeToString)

        return grpc.method_handlers_generic_handler(SERVICE, {
            "Score": h(self.score, pb.ScoreRequest, pb.ScoreResponse),
            "Mix": h(self.mix, pb.MixRequest, pb.MixResponse),
            "ListFeedbackTypes": h(self.feedback_types, pb.ListFeedbackTypesRequest,
                                   pb.ListFeedbackTypesResponse),
        })


def health_handler(state):
    def check(req, context):
        return b"\x08\x01" if state["serving"] else b"\x08\x02"

    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(
            check, request_deserializer=bytes, response_serializer=bytes)})


@pytest.fixture
def servers():
    started = []

    def start(n=1):
        out = []
        for _ in range(n):
            fake, health = FakeService(), {"serving": True}
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
            server.add_generic_rpc_handlers((fake.handler(), health_handler(health)))
            port = server.add_insecure_port("127.0.0.1:0")
            server.start()
            started.append(server)
            out.append((fake, health, f"127.0.0.1:{port}"))
        return out

    yield start
    for s in started:
        s.stop(None)


ITEM = {"question": "q", "passages": ["p"], "response": "hello world",
        "token_offsets": [[0, 5], [5, 11], [11, 11]]}


def test_score_mix_feedback_types_round_trip(servers):
    [(fake, _, addr)] = servers()
    with GrpcClient(addr, retry=FAST) as c:
        c.wait_until_ready(timeout=5)
        [r] = c.score([ITEM], weights={"completeness": 2.0})
        seg = r.types["completeness"].segments[0]
        assert (seg.end, seg.score, seg.p_error) == (11, 1.5, None)
        assert r.mixed.total == 22.0 and r.token_rewards == (0.0, 0.0, 22.0)
        [r2] = c.score([{"question": "q", "response": "abc"}])
        assert r2.token_rewards is None  # unset wrapper, not an empty list
        [m] = c.mix([r], {"completeness": 0.5})
        assert m.mixed.total == pytest.approx(5.5) and m.types == {}
        [ft] = c.feedback_types()
        assert (ft.name, ft.weight, ft.extra["runtime"]) == ("completeness", 0.3, "onnx")


def test_retries_unavailable_and_resource_exhausted_then_succeeds(servers):
    [(fake, _, addr)] = servers()
    fake.fail = [(grpc.StatusCode.UNAVAILABLE, "loading", ()),
                 (grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full (64 items)", ())]
    with GrpcClient(addr, retry=FAST) as c:
        assert len(c.score([ITEM])) == 1
    assert fake.calls == 3


def test_overload_exhausted_and_invalid_input_carry_details(servers):
    [(fake, _, addr)] = servers()
    fake.fail = [(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full (64 items)",
                  (("fgrm-error-kind", "overloaded"),))] * 4
    with GrpcClient(addr, retry=FAST) as c:
        with pytest.raises(Overloaded, match=r"queue full \(64 items\)") as ei:
            c.score([ITEM])
        assert ei.value.attempts == 4 and ei.value.status == "RESOURCE_EXHAUSTED"
        fake.fail = [(grpc.StatusCode.INVALID_ARGUMENT, "items[0].response: empty",
                      (("fgrm-field", "items[0].response"), ("fgrm-error-kind", "invalid_input")))]
        calls = fake.calls
        with pytest.raises(InvalidInput) as ei:
            c.score([ITEM])
        assert ei.value.field == "items[0].response" and fake.calls == calls + 1
        fake.fail = [(grpc.StatusCode.UNAVAILABLE, "models loading",
                      (("fgrm-error-kind", "not_ready"),))] * 4
        with pytest.raises(NotReady):
            c.score([ITEM])


def test_deadline_is_sent_and_timeout_not_retried(servers):
    [(fake, _, addr)] = servers()
    fake.sleep = 0.5
    with GrpcClient(addr, timeout=0.1, retry=FAST) as c, pytest.raises(Timeout):
        c.score([ITEM])
    assert fake.calls == 1


def test_service_down_bounded_retries_then_unavailable(servers):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    t0 = time.monotonic()
    with GrpcClient(f"127.0.0.1:{port}", timeout=2, retry=FAST) as c:
        with pytest.raises(Unavailable) as ei:
            c.score([ITEM])
        assert ei.value.attempts == FAST.max_attempts
        with pytest.raises(Timeout):
            c.wait_until_ready(timeout=0.3)
    assert time.monotonic() - t0 < 10


def test_round_robin_spreads_over_replicas_and_survives_one_down(servers):
    (f1, _, a1), (f2, _, a2) = servers(2)
    with GrpcClient([a1, a2], retry=FAST) as c:
        assert c.target.startswith("ipv4:127.0.0.1:")
        c.wait_until_ready(timeout=5)
        for _ in range(20):
            c.score([ITEM])
    assert f1.calls >= 5 and f2.calls >= 5, (f1.calls, f2.calls)
    # names are resolved to IPv4 literals for the ipv4: scheme
    from fgrm_client.grpc import make_target
    assert make_target(["localhost:1", "127.0.0.2:2"]) == "ipv4:127.0.0.1:1,127.0.0.2:2"


def test_async_client(servers):
    [(fake, health, addr)] = servers()
    fake.fail = [(grpc.StatusCode.UNAVAILABLE, "blip", ())]

    async def main():
        async with AsyncGrpcClient(addr, retry=FAST) as c:
            await c.wait_until_ready(timeout=5)
            [r] = await c.score([ITEM])
            [ft] = await c.feedback_types()
            return r, ft

    r, ft = asyncio.run(main())
    assert r.mixed.total == 11.0 and ft.name == "completeness" and fake.calls == 3


def test_wait_until_ready_waits_for_serving(servers):
    [(fake, health, addr)] = servers()
    health["serving"] = False
    threading.Timer(0.3, lambda: health.update(serving=True)).start()
    with GrpcClient(addr) as c:
        t0 = time.monotonic()
        c.wait_until_ready(timeout=5, poll_interval=0.05)
        assert time.monotonic() - t0 >= 0.25


def test_bundled_proto_is_the_services_proto():
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    assert _proto.proto_path().read_bytes() == (repo / "service" / "fgrm.proto").read_bytes()
