"""Shared fixtures: the real service (`fgrm serve` = `bentoml serve` + gRPC) as a subprocess.

`fgrm_service` (session-scoped) starts it once on free ports with the shipped feedback types
and checkpoint, waits until HTTP /readyz answers 200 (which the service only does once the
models are loaded and the gRPC server is up), and yields a `ServiceHandle` with `base_url`
("http://127.0.0.1:PORT") and `grpc_target` ("127.0.0.1:PORT"). `start_service(...)` starts
another one with different settings (FGRM_* overrides), as a context manager. Starting and
stopping live in `benchmarks.launch`, shared with the benchmark.

FGRM_TEST_FEEDBACK_TYPES, when set, replaces the shipped feedback-types file (e.g. to run the
transport tests on tiny random checkpoints while the real ones are being retrained), and
FGRM_TEST_RUNTIME the runtime (e.g. onnx-int8, to check that a runtime which is not
batch-invariant still gives batch-invariant rewards through the service).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks import launch
from benchmarks.launch import REPO, ServiceHandle, free_port  # noqa: F401 - re-exported for tests

ADMIN_TOKEN = "test-admin-token"  # profile writes are refused without one (closed by default)
TEST_VARIABLES = (("FGRM_TEST_FEEDBACK_TYPES", "feedback_types"), ("FGRM_TEST_RUNTIME", "runtime"))


def start_service(workdir: Path, **settings: str):
    """Run `fgrm serve` on free ports; `settings` are FGRM_* overrides, e.g. max_queue_items="4"."""
    for test_var, name in TEST_VARIABLES:
        if os.environ.get(test_var):
            settings.setdefault(name, os.environ[test_var])
    return launch.start_service(workdir, **settings)


@pytest.fixture(scope="session", autouse=True)
def private_data_home(tmp_path_factory):
    """Served processes keep profiles under $XDG_DATA_HOME/fgrm unless told otherwise: point it
    at a temporary folder for the whole session, so no test can write the user's own store."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))
        yield


@pytest.fixture(scope="session")
def fgrm_service(tmp_path_factory):
    """The real service on the shipped models, shared by every test of the session.

    Its admission bound in time (max_wait_s) is raised: several tests fire 16-32 requests at
    once on purpose, and the default 2 s would refuse some of them on this 2-core machine
    (tests/service/test_hardening.py tests that bound on a service of its own).

    Its token budget is the GPU one (8192) on purpose: these tests exercise cross-request
    batching (shared passes, batch invariance), which the CPU default of 512 tokens mostly
    turns off for ~470-token QA-Feedback inputs."""
    with start_service(tmp_path_factory.mktemp("fgrm-service"), max_batch_tokens="8192",
                       admin_token=ADMIN_TOKEN, max_wait_s="120") as handle:
        yield handle
