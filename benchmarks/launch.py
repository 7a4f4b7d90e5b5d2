"""Start a server as a subprocess on free loopback ports and wait until it is ready.

Shared by the test fixtures (tests/conftest.py) and the benchmark (benchmarks/run.py), which
both need the real `fgrm serve` (and the benchmark also its naive baseline server) running:

    with start_service(Path("/tmp/fgrm"), max_queue_items="4") as handle:
        httpx.post(handle.base_url + "/v1/score", ...)

`run_server` is the general form: any command that answers `GET /readyz` with 200 once it can
serve. Each server runs in its own process group, so stopping it (SIGTERM) also stops BentoML's
arbiter, which stops its workers; `kill_tree` kills a server and its workers without warning.
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
from typing import Iterator, Mapping, Sequence

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


def wait_ready(handle: ServiceHandle, timeout: float) -> None:
    """Poll HTTP /readyz until 200; fail with the server's log if it exits or times out."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if handle.process.poll() is not None:
            raise RuntimeError(f"{_command(handle)} exited with {handle.process.returncode}:\n{handle.log_tail()}")
        try:
            if httpx.get(handle.base_url + "/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{_command(handle)} not ready after {timeout:.0f}s:\n{handle.log_tail()}")


def _command(handle: ServiceHandle) -> str:
    args = [str(a) for a in handle.process.args]
    return " ".join([Path(args[0]).name, *args[1:]])


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the group we created: the arbiter stops its workers
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
    except ProcessLookupError:
        pass


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a server and every process under it, at once (no graceful shutdown).

    Not `killpg`: BentoML's arbiter (circus) starts each worker in a session of its own, so a
    worker outlives a killed process group and goes on serving on the socket it inherited.
    """
    import psutil

    try:
        root = psutil.Process(proc.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)
    proc.wait(timeout=30)


def server_env(settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment minus its FGRM_* variables, offline, plus `settings` as FGRM_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FGRM_")}
    env.update({
        "BENTOML_DO_NOT_TRACK": "True", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO),
    })
    env.update({f"FGRM_{k.upper()}": str(v) for k, v in (settings or {}).items()})
    return env


@contextlib.contextmanager
def run_server(cmd: Sequence[str], workdir: Path, http_port: int, grpc_port: int = 0, *,
               env: Mapping[str, str] | None = None, timeout: float = STARTUP_TIMEOUT_S) -> Iterator[ServiceHandle]:
    """Run `cmd` (which must listen on `http_port`) until the block ends; yield once /readyz is 200."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"serve-{http_port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(cmd), cwd=REPO, env=dict(env if env is not None else server_env()),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    handle = ServiceHandle(f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", http_port, grpc_port,
                           log_path, proc)
    try:
        wait_ready(handle, timeout)
        yield handle
    finally:
        stop(proc)


@contextlib.contextmanager
def start_service(workdir: Path, *, timeout: float = STARTUP_TIMEOUT_S, **settings: str) -> Iterator[ServiceHandle]:
    """Run `fgrm serve` on free ports; `settings` are FGRM_* overrides, e.g. max_queue_items="4"."""
    settings.setdefault("state_dir", str(workdir / "state"))  # never the user's own profile store
    http_port, grpc_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "service.cli", "serve", "--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    env = {**server_env(settings), "BENTOML_HOME": str(workdir / "bentoml")}  # keeps ~/bentoml untouched
    with run_server(cmd, workdir, http_port, grpc_port, env=env, timeout=timeout) as handle:
        yield handle
