"""Shared fixtures: the real service (`fgrm serve` = `bentoml serve` + gRPC) as a subprocess.

`fgrm_service` (session-scoped) starts it once on free ports with the shipped feedback types
and checkpoint, waits until HTTP /readyz answers 200 (which the service only does once the
models are loaded and the gRPC server is up), and yields a `ServiceHandle` with `base_url`
("http://127.0.0.1:PORT") and `grpc_target` ("127.0.0.1:PORT"). `start_service(...)` starts
another one with different settings (FGRM_* overrides), as a context manager.

FGRM_TEST_FEEDBACK_TYPES, when set, replaces the shipped feedback-types file (e.g. to run the
transport tests on tiny random checkpoints while the real ones are being retrained), and
FGRM_TEST_RUNTIME the runtime (e.g. onnx-int8, to check that a runtime which is not
batch-invariant still gives batch-invariant rewards through the service).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 180.0


@dataclass
class ServiceHandle:
    base_url: str
    grpc_target: str
    http_port: int
    grpc_port: int
    log_path: Path
    process: subprocess.Popen

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(handle: ServiceHandle, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if handle.process.poll() is not None:
            raise RuntimeError(f"fgrm serve exited with {handle.process.returncode}:\n{handle.log_tail()}")
        try:
            if httpx.get(handle.base_url + "/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"fgrm serve not ready after {timeout:.0f}s:\n{handle.log_tail()}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the group we created: bentoml's arbiter and its workers
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@contextlib.contextmanager
def start_service(workdir: Path, **settings: str):
    """Run `fgrm serve` on free ports; `settings` are FGRM_* overrides, e.g. max_queue_items="4"."""
    workdir.mkdir(parents=True, exist_ok=True)
    http_port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FGRM_")}
    env.update({
        "BENTOML_HOME": str(workdir / "bentoml"), "BENTOML_DO_NOT_TRACK": "True",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(REPO),
    })
    for test_var, var in (("FGRM_TEST_FEEDBACK_TYPES", "FGRM_FEEDBACK_TYPES"), ("FGRM_TEST_RUNTIME", "FGRM_RUNTIME")):
        if os.environ.get(test_var):
            env[var] = os.environ[test_var]
    env.update({f"FGRM_{k.upper()}": str(v) for k, v in settings.items()})
    log_path = workdir / f"serve-{http_port}.log"
    cmd = [sys.executable, "-m", "service.cli", "serve", "--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    handle = ServiceHandle(f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", http_port, grpc_port,
                           log_path, proc)
    try:
        _wait_ready(handle, STARTUP_TIMEOUT_S)
        yield handle
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def fgrm_service(tmp_path_factory):
    """The real service on the shipped models, shared by every test of the session."""
    with start_service(tmp_path_factory.mktemp("fgrm-service")) as handle:
        yield handle
