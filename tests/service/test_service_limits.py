"""A second real service with a tiny queue and an admin token: overload and authorisation."""

from __future__ import annotations

import concurrent.futures as cf
import json
import re
from pathlib import Path

import grpc
import httpx
import pytest

from service.proto import stubs
from tests.conftest import start_service

pb2, pb2_grpc = stubs()
SAMPLES = json.loads((Path(__file__).parent / "data" / "qa_samples.json").read_text())
TOKEN = "s3cret-admin"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    with start_service(tmp_path_factory.mktemp("fgrm-small"), max_queue_items="4", admin_token=TOKEN) as handle:
        yield handle


def test_overload_is_refused_at_once_on_both_transports(small):
    """Concurrent 4-item requests against a 4-item queue: whoever comes second is refused at
    once (503 / RESOURCE_EXHAUSTED) with the limit named; nothing else goes wrong."""
    items = SAMPLES[:4]
    refused_http, refused_grpc = [], []
    with httpx.Client(base_url=small.base_url, timeout=120) as http, \
            grpc.insecure_channel(small.grpc_target) as channel, cf.ThreadPoolExecutor(6) as pool:
        stub = pb2_grpc.RewardServiceStub(channel)

        def via_grpc():
            try:
                return stub.Score(pb2.ScoreRequest(items=[pb2.Item(**i) for i in items]), timeout=120)
            except grpc.RpcError as e:
                return e

        for _ in range(20):
            futures = [pool.submit(http.post, "/v1/score", json={"items": items}) for _ in range(3)]
            futures += [pool.submit(via_grpc) for _ in range(3)]
            for f in futures:
                r = f.result()
                if isinstance(r, httpx.Response):
                    assert r.status_code in (200, 503), r.text
                    if r.status_code == 503:
                        refused_http.append(r)
                elif isinstance(r, grpc.RpcError):
                    assert r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, r.details()
                    refused_grpc.append(r)
            if refused_http and refused_grpc:
                break
    assert refused_http and refused_grpc, "a 4-item queue never refused concurrent 4-item requests"
    err = refused_http[0].json()["error"]
    assert err["kind"] == "overloaded" and "max_queue_items" in err["message"]
    assert refused_http[0].headers["retry-after"] == "1"
    assert dict(refused_grpc[0].trailing_metadata())["fgrm-error-kind"] == "overloaded"
    assert "max_queue_items" in refused_grpc[0].details()
    # every refusal counted once, the HTTP ones answered by the request gate before the engine
    # included (they were not, and the FgrmQueueSaturated alert could not see HTTP overload)
    with httpx.Client(base_url=small.base_url, timeout=30) as http:
        counted = re.search(r'^fgrm_errors_total\{kind="overloaded"\} (\S+)$', http.get("/metrics").text, re.M)
    assert counted and float(counted.group(1)) == len(refused_http) + len(refused_grpc)
    # and as requests: the refusal ratio of the alerts cannot exceed 1
    with httpx.Client(base_url=small.base_url, timeout=30) as http:
        text = http.get("/metrics").text
    requests = sum(float(v) for v in re.findall(r'^fgrm_requests_total\{[^}]*\} (\S+)$', text, re.M))
    assert requests >= float(counted.group(1))


def test_profile_edits_need_the_admin_token(small):
    with httpx.Client(base_url=small.base_url, timeout=30) as http:
        r = http.put("/v1/profiles/mine", json={"weights": {"relevance": 2}})
        assert r.status_code == 401
        assert r.json()["error"]["kind"] == "unauthorized" and "FGRM_ADMIN_TOKEN" in r.json()["error"]["message"]
        r = http.put("/v1/profiles/mine", json={"weights": {"relevance": 2}},
                     headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json()["weights"]["relevance"] == 2.0
        r = http.put("/v1/profiles/mine", json={"weights": {"relevance": -2}},
                     headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 400 and r.json()["error"]["field"] == "weights.relevance"


def test_two_workers_share_the_grpc_port(tmp_path, tiny_dir):
    """With FGRM_WORKERS=2 each worker binds the gRPC port with SO_REUSEPORT; every
    connection is served, whichever worker the kernel gives it to (tiny models: mechanics)."""
    with start_service(tmp_path, workers="2", feedback_types=str(tiny_dir / "types.toml")) as svc:
        for _ in range(6):  # fresh connections, spread over the workers by the kernel
            with grpc.insecure_channel(svc.grpc_target) as channel:
                stub = pb2_grpc.RewardServiceStub(channel)
                [r] = stub.Score(pb2.ScoreRequest(items=[pb2.Item(response="Short one. Another one.")]),
                                 timeout=60).results
                assert len(r.types["factuality"].segments) == 2
            with httpx.Client(base_url=svc.base_url, timeout=60) as http:
                assert http.post("/v1/score", json={"items": [{"response": "Hi there."}]}).status_code == 200
