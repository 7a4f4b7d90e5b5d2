"""Hostile and careless input against the real service, one test per finding of the hardening
review (issue 8): no 5xx from input, nothing echoed back whole, closed by default, quiet logs."""

from __future__ import annotations

import json
import socket
import time

import grpc
import httpx
import pytest

from service.proto import stubs
from tests.conftest import start_service

pb2, pb2_grpc = stubs()
KEY = "test-api-key"
ITEM = {"response": "One thing here, and more words follow. Another sentence, with some words."}


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    """A service with an API key and no admin token."""
    with start_service(tmp_path_factory.mktemp("locked"), api_key=KEY) as handle:
        yield handle


def _error(r: httpx.Response, status: int, field: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    if field is not None:
        assert err["field"] == field, err
    return err


def test_huge_but_finite_weights_and_rewards_are_refused_not_overflowed(http, channel):
    r = http.post("/v1/score", json={"items": [ITEM], "weights": {"relevance": 1e308, "factuality": 1e308}})
    assert "[0, 1e+06]" in _error(r, 400, "weights.relevance")["message"]
    comps = {"relevance": {"granularity": "sub-sentence", "segments": [{"end": 5, "reward": 1e308}]}}
    r = http.post("/v1/mix", json={"items": [{"types": comps}], "weights": {"relevance": 1e6}})
    _error(r, 400, "items[0].types.relevance.segments[0].reward")
    stub = pb2_grpc.RewardServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Score(pb2.ScoreRequest(items=[pb2.Item(response=ITEM["response"])], weights={"relevance": 1e308}),
                   timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_deeply_nested_json_is_a_400_and_the_connection_lives_on(http):
    body = '{"items": ' + "[" * 1000 + "]" * 1000 + "}"
    r = http.post("/v1/score", content=body, headers={"content-type": "application/json"})
    assert "nested deeper" in _error(r, 400, "body")["message"]
    r = http.put("/v1/profiles/x", content=body, headers={"content-type": "application/json"})
    _error(r, 400, "body")
    assert http.post("/v1/score", json={"items": [ITEM]}).status_code == 200  # same keep-alive client


def test_malformed_protobuf_and_invalid_utf8_are_invalid_argument_without_internal_names(channel):
    raw = channel.unary_unary("/fgrm.v1.RewardService/Score", request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
    # field 1 (items), length 5, holding field 3 (response) with two bytes that are not UTF-8
    bad_utf8 = b"\x0a\x04\x1a\x02\xff\xfe"
    for payload in (b"\xff\xff\xff\xff", bad_utf8):
        with pytest.raises(grpc.RpcError) as err:
            raw(payload, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        assert "class" not in err.value.details() and "fgrm.v1.ScoreRequest" in err.value.details()


def test_long_inputs_are_not_echoed_back(http, channel):
    name = "p" * 20_000
    err = _error(http.post("/v1/score", json={"items": [ITEM], "profile": name}), 400, "profile")
    assert len(err["message"]) < 300
    stub = pb2_grpc.RewardServiceStub(channel)
    with pytest.raises(grpc.RpcError) as rpc_err:  # was RESOURCE_EXHAUSTED: the status overflowed its metadata
        stub.Score(pb2.ScoreRequest(items=[pb2.Item(response="Hi.")], profile=name), timeout=30)
    assert rpc_err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and len(rpc_err.value.details()) < 300
    weird = "é" * 5000
    err = _error(http.post("/v1/score", json={"items": [ITEM], "weights": {weird: 1.0}}), 400)
    assert len(err["field"]) <= 120 and len(err["message"]) < 400


def test_oversized_and_form_bodies_are_refused_before_parsing(fgrm_service, http):
    # a client announcing 64 MiB gets its 413 before it has sent them (raw socket: no client sends a lie)
    host, port = fgrm_service.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 67108864\r\n\r\n{\"items\": [")
        head = sock.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 413") and "payload_too_large" in head
    chunks = (b" " * (1024 * 1024) for _ in range(40))  # chunked: no Content-Length to trust
    r = http.post("/v1/score", content=chunks, headers={"content-type": "application/json"})
    assert _error(r, 413, "body")["kind"] == "payload_too_large"
    r = http.post("/v1/score", content=b"items=1", headers={"content-type": "application/x-www-form-urlencoded"})
    assert _error(r, 415, "body")["kind"] == "unsupported_media_type"


def test_profile_names_and_count_are_bounded(http):
    from tests.conftest import ADMIN_TOKEN

    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    for name in ("a" * 65, "ünïcode", "semi;colon"):
        r = http.put(f"/v1/profiles/{name}", json={"weights": {"relevance": 1}}, headers=auth)
        assert "A-Z a-z 0-9" in _error(r, 400, "name")["message"], name


def test_openrlhf_errors_name_its_own_fields(http):
    long_sentence = "word " * 300
    err = _error(http.post("/v1/openrlhf", json={"query": [long_sentence], "prompts": [""]}), 400)
    assert err["field"] == "query[0]" and "items" not in err["message"]


def test_closed_by_default_and_the_api_key_guards_both_transports(locked):
    with httpx.Client(base_url=locked.base_url, timeout=60.0) as client:
        err = _error(client.post("/v1/score", json={"items": [ITEM]}), 401)
        assert err["kind"] == "unauthorized" and "API key" in err["message"]
        _error(client.post("/v1/score", json={"items": [ITEM]}, headers={"authorization": "Bearer nope"}), 401)
        good = client.post("/v1/score", json={"items": [ITEM]}, headers={"authorization": f"Bearer {KEY}"})
        assert good.status_code == 200, good.text
        assert client.get("/readyz").status_code == 200 and client.get("/docs.json").status_code == 200
        # no admin token configured: profile writes are off, whatever the caller sends
        err = _error(client.put("/v1/profiles/x", json={"weights": {"relevance": 1}},
                                headers={"authorization": f"Bearer {KEY}"}), 403)
        assert err["kind"] == "forbidden" and "--admin-token-file" in err["message"]
    with grpc.insecure_channel(locked.grpc_target) as ch:
        stub = pb2_grpc.RewardServiceStub(ch)
        request = pb2.ScoreRequest(items=[pb2.Item(response="Hi there.")])
        with pytest.raises(grpc.RpcError) as err:
            stub.Score(request, timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert stub.Score(request, timeout=30, metadata=(("authorization", f"Bearer {KEY}"),)).results
    log = locked.log_path.read_text()
    assert "scoring needs the API key" in log and "profile writes are DISABLED" in log
    from fgrm_client import GrpcClient, HttpClient
    from fgrm_client.errors import FgrmError

    for make in (lambda key: HttpClient(locked.base_url, api_key=key),
                 lambda key: GrpcClient(locked.grpc_target, api_key=key)):
        with make(KEY) as client:
            assert client.score([{"response": "Hi there."}])
        with make(None) as client, pytest.raises(FgrmError):
            client.score([{"response": "Hi there."}])


def test_validation_rejections_are_one_info_line_not_a_traceback(fgrm_service, http):
    before = fgrm_service.log_path.read_text().count("Traceback")
    for _ in range(3):
        _error(http.post("/v1/score", json={"items": [{"resp": "x"}]}), 400)
    log = fgrm_service.log_path.read_text()
    assert log.count("Traceback") == before
    assert "rejected by validation" in log


def test_a_second_server_on_the_same_host_leaves_the_first_ones_metrics_alone(tmp_path):
    shared = tmp_path / "same-home"  # both servers get the same BENTOML_HOME, as under `make serve`
    with start_service(shared) as first:
        assert httpx.post(first.base_url + "/v1/score", json={"items": [ITEM]}, timeout=60).status_code == 200
        with start_service(shared):
            metrics = httpx.get(first.base_url + "/metrics", timeout=30).text
    assert 'fgrm_items_total{transport="http"} 1.0' in metrics


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A service whose admission bound is tiny (any wait estimate over 50 ms is refused) and
    which gives a request body one second to arrive."""
    with start_service(tmp_path_factory.mktemp("guarded"), max_wait_s="0.05", body_timeout_s="1",
                       header_timeout_s="1") as handle:
        yield handle


def _qa_items(n: int) -> list[dict]:
    from models.data import DATA_DIR, load_records, passages_of

    recs = load_records(DATA_DIR / "dev_feedback.json")
    return [{"question": r["question"], "passages": passages_of(r), "response": r[f"prediction {k}"]}
            for r in recs for k in (1, 2, 3, 4)][:n]


def _metrics(base_url: str, *series: str) -> tuple[float, ...]:
    """The value of each named series (metric name with its labels) on /metrics; 0 when absent."""
    import re

    text = httpx.get(base_url + "/metrics", timeout=30).text
    found = [re.search(rf"^{re.escape(name)} (\S+)", text, re.M) for name in series]
    return tuple(float(m.group(1)) if m else 0.0 for m in found)


def _counters(base_url: str) -> tuple[float, ...]:
    return _metrics(base_url, 'fgrm_items_total{transport="http"}', 'fgrm_errors_total{kind="cancelled"}')


def _queue_items(base_url: str) -> float:
    return _metrics(base_url, "fgrm_queue_items")[0]


def test_http_disconnects_and_deadlines_drop_the_queued_work(guarded):
    import time

    items = _qa_items(48)  # several seconds of CPU work
    before = _counters(guarded.base_url)
    with pytest.raises(httpx.TimeoutException):
        httpx.post(guarded.base_url + "/v1/score", json={"items": items}, timeout=0.5)
    # until the server has seen that caller go, its rows are in flight, and this service's 50 ms
    # admission bound would refuse the next request with 503 (a race CI once lost): wait for it
    deadline = time.monotonic() + 30
    while _queue_items(guarded.base_url) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _queue_items(guarded.base_url) == 0, "the gone caller's items are still queued after 30 s"
    r = httpx.post(guarded.base_url + "/v1/score", json={"items": items}, headers={"x-request-timeout": "0.5"},
                   timeout=30)
    err = _error(r, 408)  # the caller's own deadline: a 4xx, no 5xx comes from input
    assert err["kind"] == "deadline_exceeded" and "dropped" in err["message"]
    time.sleep(3)
    scored, cancelled = _counters(guarded.base_url)
    assert scored == before[0], "the work of a gone caller was computed anyway"
    assert cancelled >= before[1] + 2
    assert httpx.post(guarded.base_url + "/v1/score", json={"items": items[:1]}, timeout=60).status_code == 200


def test_admission_is_bounded_in_time_not_only_in_items(guarded):
    import threading
    import time

    assert httpx.post(guarded.base_url + "/v1/score", json={"items": _qa_items(1)}, timeout=60).status_code == 200
    answers = []
    big = threading.Thread(target=lambda: answers.append(httpx.post(guarded.base_url + "/v1/score",
                                                                    json={"items": _qa_items(32)}, timeout=120)))
    big.start()
    time.sleep(0.5)  # let the big request be admitted first (with a small one in flight, *it* would be refused)
    try:
        refused = None
        for _ in range(40):  # while the big request is in flight, a small one is refused at once
            r = httpx.post(guarded.base_url + "/v1/score", json={"items": _qa_items(1)}, timeout=60)
            if r.status_code == 503:
                refused = r
                break
        assert refused is not None, "no refusal while seconds of work were queued"
        err = refused.json()["error"]
        assert err["kind"] == "overloaded" and "max_wait_s" in err["message"]
        assert refused.headers["retry-after"] == "1"
    finally:
        big.join()
    assert answers[0].status_code == 200, answers[0].text


def test_random_paths_and_profile_names_add_no_metric_series(fgrm_service, http):
    from tests.conftest import ADMIN_TOKEN

    def size() -> int:
        return len(http.get("/metrics").text.splitlines())

    http.get("/no/such/path/warmup")
    http.put("/v1/profiles/warmup", json={"weights": {"relevance": 1}},
             headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    before = size()
    for i in range(30):
        r = http.get(f"/random/{i}/path")
        assert _error(r, 404)["kind"] == "not_found" and f"/random/{i}/path" in r.json()["error"]["message"]
        r = http.put(f"/v1/profiles/p{i}", json={"weights": {"relevance": 1}},
                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 200 and r.json()["name"] == f"p{i}"
    assert size() == before


def test_a_million_items_are_refused_before_parsing_and_grpc_keeps_answering(http, channel):
    import threading
    import time

    body = b'{"items": [' + b",".join([b'{"response": ""}'] * 1_000_000) + b"]}"  # 18 MB
    answer = {}
    sender = threading.Thread(target=lambda: answer.setdefault("r", http.post(
        "/v1/score", content=body, headers={"content-type": "application/json"})))
    sender.start()
    stub = pb2_grpc.RewardServiceStub(channel)
    worst = 0.0
    while sender.is_alive():  # the worker's event loop stays free: gRPC answers meanwhile
        t = time.perf_counter()
        stub.ListFeedbackTypes(pb2.ListFeedbackTypesRequest(), timeout=30)
        worst = max(worst, time.perf_counter() - t)
        time.sleep(0.05)
    sender.join()
    err = _error(answer["r"], 400, "items")
    assert "refused before parsing" in err["message"]
    assert worst < 2.0, f"gRPC stalled {worst:.1f} s while the body was checked"


def test_unknown_top_level_fields_are_refused_like_unknown_item_fields(http):
    err = _error(http.post("/v1/score", json={"items": [ITEM], "wieghts": {"relevance": 2}}), 400, "wieghts")
    assert "items, profile, weights" in err["message"]
    _error(http.post("/v1/openrlhf", json={"query": [], "prompt": []}), 400, "prompt")
    assert http.post("/v1/score", json={"items": [ITEM], "weights": None, "profile": None}).status_code == 200


def _dripped_until_closed(sock: socket.socket, head: bytes, seconds: float) -> float:
    """Send `head` one byte every 0.2 s; seconds until the server closes (or `seconds`)."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    for k in range(len(head)):
        if time.monotonic() - t0 > seconds:
            break
        try:
            sock.sendall(head[k:k + 1])
            if sock.recv(1024) == b"":
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except OSError:  # reset by the server: closed
            return time.monotonic() - t0
    return time.monotonic() - t0


def test_headers_dripped_in_slowly_are_cut_off_on_new_and_kept_alive_connections(guarded):
    host, port = guarded.base_url.removeprefix("http://").split(":")
    head = b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + b"X-Pad: a\r\n" * 20
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        assert _dripped_until_closed(sock, head, 8) < 4  # header_timeout_s=1
    body = json.dumps({"items": [ITEM]}).encode()
    request = (b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body) + body)
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(request)  # a whole request in one go is answered, then the next head drips
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            reply += sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200")
        assert _dripped_until_closed(sock, head, 8) < 4
    assert httpx.post(guarded.base_url + "/v1/score", json={"items": [ITEM]}, timeout=60).status_code == 200


def test_a_body_dripped_in_slowly_is_cut_off_and_others_are_served(guarded):
    host, port = guarded.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{")
        ok = httpx.post(guarded.base_url + "/v1/score", json={"items": [ITEM]}, timeout=60)  # meanwhile
        head = sock.recv(65536).decode("latin-1")  # after ~1 s: refused, not waited for
    assert ok.status_code == 200
    assert head.startswith("HTTP/1.1 408") and "x-fgrm-error: deadline_exceeded" in head


def test_a_grpc_message_over_the_size_limit_is_invalid_input_and_not_retried(fgrm_service):
    # grpc refuses it with RESOURCE_EXHAUSTED, the code of an overload; the client must not
    # retry it as one (the same message can never fit) but say what happened
    from fgrm_client import GrpcClient, InvalidInput, RetryPolicy

    big = {"question": "q", "passages": ["x" * (33 * 1024 * 1024)], "response": "One sentence here."}
    with GrpcClient(fgrm_service.grpc_target, retry=RetryPolicy(max_attempts=4, initial_backoff=0.01)) as client:
        with pytest.raises(InvalidInput) as err:
            client.score([big])
        assert err.value.attempts == 1 and err.value.field == "request"
        assert "larger than max" in str(err.value) and err.value.status == "RESOURCE_EXHAUSTED"
        assert len(client.score([ITEM])) == 1  # the channel is fine afterwards
