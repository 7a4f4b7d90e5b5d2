"""Profiles through the real `fgrm serve`: two workers agree after a write, a restart keeps it,
and a read-only server refuses writes with the one error body.

Which worker answered is read from the `x-fgrm-worker` header (its pid). Every HTTP request
here opens its own connection, because the kernel hands each new connection to one worker;
requests are repeated until both pids have answered, and the test fails if one never does.
Over gRPC the worker is not visible; several fresh channels (connections) read the profiles.
"""

from __future__ import annotations

import time

import grpc
import httpx
import pytest

from service.http import WORKER_HEADER
from service.proto import stubs
from tests.conftest import ADMIN_TOKEN, start_service

pb2, pb2_grpc = stubs()
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
ITEM = {"question": "Who wrote Hamlet?", "passages": ["Hamlet is a tragedy written by William Shakespeare."],
        "response": "Hamlet was written by William Shakespeare."}
MAX_TRIES = 60  # new connections tried until both workers have answered...
# ...and, for the reads, for at least this long: "ready" means one worker answers /readyz, and in
# a full test run the other was twice seen to take more than 60 reads to start taking connections
READ_FOR_S = 60.0


def fresh(method: str, url: str, **kw) -> httpx.Response:
    """One request on a connection of its own."""
    with httpx.Client(timeout=60.0) as client:
        return client.request(method, url, **kw)


def put_until(base: str, name: str, weights: dict, pid: str | None = None) -> str:
    """PUT the profile, through worker `pid` when given (else any); the pid that took it."""
    for _ in range(MAX_TRIES):
        r = fresh("PUT", f"{base}/v1/profiles/{name}", json={"weights": weights}, headers=AUTH)
        assert r.status_code == 200, r.text
        if pid is None or r.headers[WORKER_HEADER] == pid:
            return r.headers[WORKER_HEADER]
    pytest.fail(f"no PUT reached worker {pid} in {MAX_TRIES} connections")


def read_from_every_worker(base: str, name: str, expected: dict, workers: int = 2) -> set[str]:
    """Reads (GET /v1/profiles and a score with the profile) until `workers` pids have answered;
    every single answer must already carry the new weights."""
    pids: set[str] = set()
    deadline = time.monotonic() + READ_FOR_S
    tries = 0
    while tries < MAX_TRIES or time.monotonic() < deadline:
        tries += 1
        got = fresh("GET", f"{base}/v1/profiles")
        assert got.json()["profiles"][name] == expected, (got.headers[WORKER_HEADER], got.text)
        scored = fresh("POST", f"{base}/v1/score", json={"items": [ITEM], "profile": name})
        assert scored.status_code == 200, scored.text
        assert scored.json()["results"][0]["mixed"]["weights"] == expected
        pids |= {got.headers[WORKER_HEADER], scored.headers[WORKER_HEADER]}
        if len(pids) >= workers:
            return pids
    pytest.fail(f"only workers {pids} answered in {tries} connections over {READ_FOR_S:.0f} s")


def grpc_profiles(target: str) -> dict:
    with grpc.insecure_channel(target) as channel:
        resp = pb2_grpc.RewardServiceStub(channel).ListProfiles(pb2.ListProfilesRequest(), timeout=30)
    return {p.name: dict(p.weights) for p in resp.profiles}


def test_two_workers_serve_the_same_profile_after_a_write_and_a_restart_keeps_it(tmp_path):
    state = tmp_path / "state"
    with start_service(tmp_path / "two", workers="2", admin_token=ADMIN_TOKEN, state_dir=str(state)) as svc:
        base = svc.base_url
        first = put_until(base, "ppo", {"relevance": 2.0, "factuality": 0.5})
        want = {"relevance": 2.0, "factuality": 0.5, "completeness": 1.0}  # unnamed: the type's default
        pids = read_from_every_worker(base, "ppo", want)
        assert first in pids and len(pids) == 2
        # and the other way round: a write through the other worker, read by both
        other = (pids - {first}).pop()
        put_until(base, "ppo", {"completeness": 0.0}, pid=other)
        want = {"relevance": 1.0, "factuality": 1.0, "completeness": 0.0}
        assert read_from_every_worker(base, "ppo", want) == pids
        for _ in range(6):  # several connections, so both workers' gRPC servers are likely asked
            assert grpc_profiles(svc.grpc_target)["ppo"] == want
    with start_service(tmp_path / "again", admin_token=ADMIN_TOKEN, state_dir=str(state)) as svc:
        assert fresh("GET", f"{svc.base_url}/v1/profiles").json()["profiles"]["ppo"] == want
        assert grpc_profiles(svc.grpc_target)["ppo"] == want


def test_a_read_only_server_refuses_writes_and_serves_the_mounted_profiles(tmp_path):
    mounted = tmp_path / "configmap" / "profiles.toml"
    mounted.parent.mkdir()
    mounted.write_text("[profiles.cluster]\nrelevance = 3.0\n")
    state = tmp_path / "state"
    with start_service(tmp_path / "ro", read_only="true", profiles=str(mounted), admin_token=ADMIN_TOKEN,
                       state_dir=str(state)) as svc:
        r = fresh("PUT", f"{svc.base_url}/v1/profiles/cluster", json={"weights": {"relevance": 1.0}}, headers=AUTH)
        assert r.status_code == 403
        error = r.json()["error"]
        assert error["kind"] == "forbidden" and set(error) == {"kind", "message"}
        assert error["message"].startswith("profiles are read-only on this server (FGRM_READ_ONLY): they come "
                                           "from its configuration files (")
        assert str(mounted) in error["message"] and "ConfigMap" in error["message"]
        want = {"relevance": 3.0, "factuality": 1.0, "completeness": 1.0}
        assert fresh("GET", f"{svc.base_url}/v1/profiles").json()["profiles"]["cluster"] == want
        assert grpc_profiles(svc.grpc_target)["cluster"] == want
        assert "profiles are READ-ONLY" in svc.log_path.read_text()
    assert not state.exists()
