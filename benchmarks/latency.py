"""Where a request's time goes at concurrency 1: in-process engine vs the service on each transport.

    python -m benchmarks.latency                  # 32 dev items x 3 passes
    python -m benchmarks.latency --items 8 --passes 1

For each item, in turn and in the same pass (so a shared machine's drifting load hits every
path alike), it times one call of:

- `sync`:  `ScoringEngine.score_sync([item])` in this process (segment + encode + forward + heads);
- `async`: `await ScoringEngine.score([item])` in this process: adds the prepare thread, the
  batcher and the forward thread (the engine's own hops, no transport);
- `http`, `grpc`: one request to `fgrm serve` with the synchronous `fgrm_client` clients.

The headline is the median over items of the paired difference (path - sync), which cancels
most of the item-to-item variation. The server's own view comes from its Prometheus metrics
(deltas over each transport's requests): engine time per request (`fgrm_request_seconds`), of
which queue wait (`fgrm_queue_wait_seconds`) and forward passes (`fgrm_forward_seconds`); the
rest of a client's latency is transport: serialisation, the web framework / grpcio, the
loopback, and the client. Writes benchmarks/results/<name>.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("fgrm.latency")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
METRICS = ("fgrm_request_seconds", "fgrm_queue_wait_seconds", "fgrm_forward_seconds")


def scrape(base_url: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of the engine's latency histograms, by metric and transport label."""
    import httpx

    text = httpx.get(base_url + "/metrics", timeout=10).text
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        m = re.match(r"^(fgrm_\w+?)_(sum|count)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if not m or m.group(1) not in METRICS:
            continue
        transport = re.search(r'transport="(\w+)"', m.group(3) or "")
        key = m.group(1) + (f":{transport.group(1)}" if transport else "")
        acc = out.setdefault(key, [0.0, 0.0])
        acc[0 if m.group(2) == "sum" else 1] += float(m.group(4))
    return {k: (v[0], v[1]) for k, v in out.items()}


def _mean_ms(before: dict, after: dict, key: str) -> float | None:
    s0, c0 = before.get(key, (0.0, 0.0))
    s1, c1 = after.get(key, (0.0, 0.0))
    return round(1000 * (s1 - s0) / (c1 - c0), 2) if c1 > c0 else None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--name", default="latency-c1")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    return ap


def time_calls(calls: dict, n_items: int, passes: int) -> dict[str, list[list[float]]]:
    """Seconds of every call, by path and item: each pass calls every path on each item in turn."""
    times: dict[str, list[list[float]]] = {k: [[] for _ in range(n_items)] for k in calls}
    totals = {k: 0.0 for k in calls}
    for p in range(passes):
        for i in range(n_items):
            for name, call in calls.items():
                t = time.perf_counter()
                call(i)
                dt = time.perf_counter() - t
                times[name][i].append(dt)
                totals[name] += dt
        log.info("pass %d: %s", p + 1, {k: round(1000 * v / ((p + 1) * n_items), 1) for k, v in totals.items()})
    return times


def server_metrics(before: dict[str, dict], after: dict) -> dict[str, dict]:
    """The server's mean engine time per request by transport, queue wait and forward time."""
    server: dict[str, dict] = {}
    for transport in ("http", "grpc"):
        server[transport] = {
            "engine_request_ms_mean": _mean_ms(before[transport], after, f"fgrm_request_seconds:{transport}")}
    # queue wait and forward time are not labelled by transport: both transports together
    server["both"] = {"queue_wait_ms_mean": _mean_ms(before["http"], after, "fgrm_queue_wait_seconds"),
                      "forward_ms_mean": _mean_ms(before["http"], after, "fgrm_forward_seconds")}
    return server


def measure(engine, runtime: str, items: list[dict], passes: int) -> tuple[dict, dict]:
    """(times by path and item, server metrics) of `passes` passes over `items` on every path."""
    from benchmarks import launch
    from benchmarks.run import _domain, server_settings
    from fgrm_client import NO_RETRY, GrpcClient, HttpClient
    from service.config import Settings

    domain = [_domain(w) for w in items]
    loop = asyncio.new_event_loop()
    workdir = Path(tempfile.mkdtemp(prefix="fgrm-latency-"))
    with launch.start_service(workdir, **server_settings(Settings(), runtime)) as svc, \
            HttpClient(svc.base_url, timeout=60, retry=NO_RETRY) as http, \
            GrpcClient(svc.grpc_target, timeout=60, retry=NO_RETRY) as grpc_client:
        calls = {"sync": lambda i: engine.score_sync([domain[i]]),
                 "async": lambda i: loop.run_until_complete(engine.score([domain[i]])),
                 "http": lambda i: http.score([items[i]]), "grpc": lambda i: grpc_client.score([items[i]])}
        for call in calls.values():  # warm-up: connections, first forward of each path
            call(0)
        before = {k: scrape(svc.base_url) for k in ("http", "grpc")}
        times = time_calls(calls, len(items), passes)
        server = server_metrics(before, scrape(svc.base_url))
    loop.run_until_complete(engine.close())
    return times, server


def summarise(times: dict[str, list[list[float]]], server: dict[str, dict]) -> dict[str, dict]:
    """Medians, paired overheads against `sync`, means; adds client and transport time to `server`."""
    best = {k: [min(x) for x in v] for k, v in times.items()}  # per item, its least disturbed call
    p50 = {k: round(1000 * statistics.median(v), 2) for k, v in best.items()}
    overhead = {k: round(1000 * statistics.median([a - b for a, b in zip(best[k], best["sync"])]), 2)
                for k in ("async", "http", "grpc")}
    # every call, as the server's histograms count every call (the warm-up excepted)
    mean = {k: round(1000 * statistics.mean([x for xs in v for x in xs]), 2) for k, v in times.items()}
    for t in ("http", "grpc"):
        eng = server[t]["engine_request_ms_mean"]
        server[t]["client_ms_mean"] = mean[t]
        server[t]["transport_ms_mean"] = round(mean[t] - eng, 2) if eng is not None else None
    return {"p50_ms": p50, "mean_ms": mean, "p50_overhead_vs_sync_ms": overhead, "server_metrics": server}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from benchmarks.run import build_engine, load_items, machine_info
    from models.data import DATA_DIR

    engine = build_engine(args.runtime)
    runtime = engine.scorers[0].backend.name
    items, _ = load_items(engine, DATA_DIR / "dev_feedback.json", args.items)
    times, server = measure(engine, runtime, items, args.passes)
    results = {"name": args.name, "command": " ".join(["python -m benchmarks.latency", *(argv or sys.argv[1:])]),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": {**machine_info(), "load_average": [round(x, 2) for x in os.getloadavg()]},
               "runtime": runtime, "items": len(items), "passes": args.passes, **summarise(times, server)}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: results[k] for k in ("p50_ms", "p50_overhead_vs_sync_ms", "mean_ms", "server_metrics")},
                     indent=1))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
