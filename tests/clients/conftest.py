"""A real `fgrm serve` (BentoML HTTP + grpcio gRPC) on free ports, for client tests.

The service runs the tiny random checkpoints of tests/service/tiny.py: these tests are about the
wire (both transports, parity, errors, alignment), not reward quality, and must start in
seconds. Set FGRM_TEST_TYPES to a feedback-types TOML to run them on other checkpoints.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def real_service(tmp_path_factory):
    """(http_url, grpc_address) of a running service; stopped at the end of the session."""
    types = os.environ.get("FGRM_TEST_TYPES")
    d = tmp_path_factory.mktemp("fgrm-serve")
    if not types:
        from tests.service.tiny import tiny_fgrm_checkpoint, types_toml

        types = str(types_toml(d / "types.toml", tiny_fgrm_checkpoint(d / "fgrm")))
    http_port, grpc_port = free_port(), free_port()
    env = {**os.environ, "BENTOML_HOME": str(d / "bentoml"), "BENTOML_DO_NOT_TRACK": "True",
           "FGRM_WORKERS": "1", "FGRM_TORCH_THREADS": "1"}
    log = (d / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--http-host", "127.0.0.1",
         "--http-port", str(http_port), "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc_port),
         "--feedback-types", types],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{http_port}"
    try:
        from fgrm_client import HttpClient

        with HttpClient(url) as c:
            try:
                c.wait_until_ready(timeout=120)
            except Exception:
                raise RuntimeError("fgrm serve did not become ready:\n"
                                   + (d / "serve.log").read_text()[-3000:])
        yield url, f"127.0.0.1:{grpc_port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the whole group: bentoml starts worker processes
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
