"""Replicas under failure: two `fgrm serve` on loopback, callers on both transports through the
client's balancing, one replica killed in the middle of the run.

    python -m benchmarks.failover --callers 2 --seconds-before 15 --seconds-after 30 \
        --out benchmarks/results/failover.json

1. Starts two servers, A and B (default settings, free loopback ports).
2. Reference: every item of the pool scored by A alone, one call at a time, over HTTP.
3. Load: `--callers` HTTP callers (one `HttpClient([A, B])`, which takes the replicas in turn)
   and as many gRPC callers (one `GrpcClient([A, B])`, gRPC's round_robin), each a closed loop
   of one-item calls over the pool, each client with `RetryPolicy(max_attempts=8)`.
4. After `--seconds-before`, B is killed: SIGKILL to its arbiter and every worker
   (`benchmarks.launch.kill_tree`), no graceful shutdown, in-flight calls cut off; its ports are
   checked to refuse connections. The load goes on for `--seconds-after`.

Reports per transport the calls, the failed calls (after the client's retries; there should be
none) and the results that differ from the reference in any float (there should be none), and
the throughput in items/s of both replicas before the kill and of the survivor after it (the
whole window after the kill, the failover included). JSON to `--out`.

Bit-identity needs `--setting max_batch_rows=1`: then every forward pass holds one row, and an
item's rewards are a function of the item alone. With cross-request batching (the default) rows
share forward passes with other callers' rows and the floats move by about 1e-9 (the order of
sums in a batched matmul), within the engine's batch-invariance bound of 1e-5
(docs/ARCHITECTURE.md, "Batching"); `max_abs_difference` reports it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def refuses(base_url: str, grpc_target: str) -> bool:
    """Whether nothing answers on a killed replica's ports any more (no worker survived it)."""
    import socket

    for port in (int(base_url.rsplit(":", 1)[1]), int(grpc_target.rsplit(":", 1)[1])):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return False
        except OSError:
            pass
    return True


def floats(x, path: str = ""):
    """(path, value) of every leaf of a parsed result, to measure how far two results are apart."""
    if dataclasses.is_dataclass(x):
        x = {f.name: getattr(x, f.name) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        for k, v in x.items():
            yield from floats(v, f"{path}.{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            yield from floats(v, f"{path}[{i}]")
    elif isinstance(x, float):
        yield path, x


def distance(a, b) -> float:
    fa, fb = dict(floats(a)), dict(floats(b))
    if fa.keys() != fb.keys():
        return float("inf")
    return max((abs(fa[k] - fb[k]) for k in fa), default=0.0)


def requests_by_transport(base_url: str) -> dict[str, float]:
    """fgrm_requests_total of one server, summed per transport: who served what."""
    import httpx

    out: dict[str, float] = {}
    for line in httpx.get(base_url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("fgrm_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            transport = labels.split('transport="', 1)[1].split('"', 1)[0]
            out[transport] = out.get(transport, 0.0) + float(value)
    return out


class Load:
    """Closed-loop callers of one-item calls over `pool`, `callers` threads per transport, each
    result checked against `reference`; tallies what succeeded (and when), failed and differed."""

    def __init__(self, pool: list[dict], reference: list, callers: int) -> None:
        self.pool, self.reference, self.callers = pool, reference, callers
        self.done: list[tuple[str, float]] = []  # (transport, finish time) of every successful call
        self.failures: Counter = Counter()
        self.mismatches: Counter = Counter()
        self.worst = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _caller(self, transport: str, client, first: int) -> None:
        k = first
        while not self._stop.is_set():
            i = k % len(self.pool)
            k += self.callers
            try:
                (result,) = client.score([self.pool[i]])
            except Exception as exc:  # noqa: BLE001 - a failed call is what is counted
                with self._lock:
                    self.failures[f"{transport}: {type(exc).__name__}: {str(exc)[:120]}"] += 1
                continue
            with self._lock:
                self.done.append((transport, time.monotonic()))
                if result != self.reference[i]:
                    self.mismatches[transport] += 1
                    self.worst = max(self.worst, distance(result, self.reference[i]))

    def start(self, clients: dict) -> None:
        """`callers` threads per (transport, client) of `clients`."""
        self._threads = [threading.Thread(target=self._caller, args=(t, c, j), daemon=True)
                         for t, c in clients.items() for j in range(self.callers)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=timeout)

    def calls(self, transport: str) -> int:
        return sum(1 for t, _ in self.done if t == transport)

    def rate(self, t0: float, t1: float, transport: str | None = None) -> float:
        """Successful calls per second that finished in [t0, t1), of one transport or all."""
        n = sum(1 for tr, t in self.done if t0 <= t < t1 and (transport is None or tr == transport))
        return round(n / (t1 - t0), 2)


def run(pool: list[dict], workdir: Path, *, callers: int, seconds_before: float, seconds_after: float,
        settings: dict[str, str] | None = None) -> dict:
    from fgrm_client import GrpcClient, HttpClient, RetryPolicy

    from benchmarks.launch import kill_tree, start_service

    settings = dict(settings or {})
    with ExitStack() as stack:
        a = stack.enter_context(start_service(workdir / "a", **settings))
        b = stack.enter_context(start_service(workdir / "b", **settings))
        with HttpClient(a.base_url, timeout=120) as single:
            reference = [single.score([item])[0] for item in pool]
        # the survivor takes the whole load at once and refuses what would wait over 2 s (503 /
        # RESOURCE_EXHAUSTED): a fleet client should be patient with that, so 8 tries, not 4
        retry = RetryPolicy(max_attempts=8)
        http = stack.enter_context(HttpClient([a.base_url, b.base_url], timeout=120, retry=retry))
        grpc = stack.enter_context(GrpcClient([a.grpc_target, b.grpc_target], timeout=120, retry=retry))
        grpc.wait_until_ready(60)

        load = Load(pool, reference, callers)
        start = time.monotonic()
        load.start({"http": http, "grpc": grpc})
        time.sleep(seconds_before)
        served = {"a": requests_by_transport(a.base_url), "b": requests_by_transport(b.base_url)}
        killed_at = time.monotonic()
        kill_tree(b.process)
        b_refuses = refuses(b.base_url, b.grpc_target)
        time.sleep(seconds_after)
        load.stop(timeout=150)
        end = time.monotonic()
        survivor_alive = a.process.poll() is None

    return {
        "callers_per_transport": callers, "pool_items": len(pool), "settings": settings,
        "seconds_before_kill": round(killed_at - start, 1), "seconds_after_kill": round(end - killed_at, 1),
        "requests_served_before_kill": served,
        "calls": {tr: load.calls(tr) for tr in ("http", "grpc")},
        "failed_calls": dict(load.failures), "mismatched_results": {tr: load.mismatches[tr] for tr in ("http", "grpc")},
        "max_abs_difference": load.worst,
        "items_per_s_two_replicas": load.rate(start, killed_at),
        "items_per_s_survivor": load.rate(killed_at, end),
        "items_per_s_survivor_by_transport": {tr: load.rate(killed_at, end, tr) for tr in ("http", "grpc")},
        "survivor_alive": survivor_alive, "killed_replica_refuses_connections": b_refuses,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--callers", type=int, default=2, help="closed-loop callers per transport")
    ap.add_argument("--seconds-before", type=float, default=15.0, help="load on both replicas before the kill")
    ap.add_argument("--seconds-after", type=float, default=30.0, help="load on the survivor after the kill")
    ap.add_argument("--items", type=int, default=32, help="QA-Feedback dev items in the pool")
    ap.add_argument("--setting", action="append", default=[], help="FGRM_* override for both servers, NAME=VALUE")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "failover.json")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.soak import items_pool

    args = parse_args(argv)
    pool = items_pool()[: args.items]
    result = run(pool, Path(tempfile.mkdtemp(prefix="fgrm-failover-")), callers=args.callers,
                 seconds_before=args.seconds_before, seconds_after=args.seconds_after,
                 settings=dict(kv.split("=", 1) for kv in args.setting))
    result["command"] = "python -m benchmarks.failover " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    ok = not result["failed_calls"] and not any(result["mismatched_results"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
