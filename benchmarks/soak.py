"""Soak: a steady load for a long time, watching the server's memory and latency drift.

    python -m benchmarks.soak --minutes 30 --rate 2 --out benchmarks/results/soak.json

Starts the real service (`fgrm serve` on free loopback ports, as the tests do), then sends
`--rate` requests per second (open loop; each request 1-4 QA-Feedback dev items, HTTP and gRPC
alternating) for `--minutes`. Every 15 s it records the service's RSS (the worker processes'
resident memory, summed over the process tree) and the p50/p99 latency of the last window.
Prints progress lines, writes the series as JSON, and a plot beside it. Loopback only; the
loop is bounded in time and stops by itself.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

WINDOW_S = 15.0


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    total, stack, seen = 0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        stack.extend(int(c) for c in children)
    return total / 1024


def items_pool() -> list[dict]:
    from models.data import DATA_DIR, load_records, passages_of

    return [{"question": r["question"], "passages": passages_of(r), "response": r[f"prediction {k}"]}
            for r in load_records(DATA_DIR / "dev_feedback.json") for k in (1, 2, 3, 4)]


async def run(args) -> dict:
    from fgrm_client import AsyncGrpcClient, AsyncHttpClient
    from fgrm_client.errors import FgrmError
    from benchmarks.launch import start_service

    pool = items_pool()
    rng = random.Random(0)
    series, latencies, errors = [], [], {}
    with start_service(Path(tempfile.mkdtemp(prefix="fgrm-soak-"))) as handle:
        async with AsyncHttpClient(handle.base_url, timeout=120) as http, \
                AsyncGrpcClient(handle.grpc_target, timeout=120) as rpc:
            t_end = time.monotonic() + args.minutes * 60
            next_sample = time.monotonic()
            tasks: set[asyncio.Task] = set()
            k = 0

            async def one(client, items):
                t = time.perf_counter()
                try:
                    await client.score(items)
                    latencies.append(time.perf_counter() - t)
                except FgrmError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

            while time.monotonic() < t_end:
                if time.monotonic() >= next_sample:
                    if handle.process.poll() is not None:  # a dead server would read as 0 MB, 0 requests
                        raise SystemExit(f"soak: the server exited (code {handle.process.returncode}) after "
                                         f"{len(series) * WINDOW_S:.0f} s; its log: {handle.log_path}")
                    window, latencies[:] = sorted(latencies), []
                    point = {"t_s": round(args.minutes * 60 - (t_end - time.monotonic()), 1),
                             "rss_mb": round(tree_rss_mb(handle.process.pid), 1), "requests": len(window),
                             "p50_ms": round(1000 * statistics.median(window), 1) if window else None,
                             "p99_ms": round(1000 * window[int(0.99 * (len(window) - 1))], 1) if window else None}
                    series.append(point)
                    print(json.dumps(point), flush=True)
                    next_sample += WINDOW_S
                client = http if k % 2 == 0 else rpc
                task = asyncio.create_task(one(client, rng.sample(pool, rng.randint(1, 4))))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                k += 1
                await asyncio.sleep(1.0 / args.rate)
            await asyncio.gather(*tasks)
    first = [p["rss_mb"] for p in series[1:5]] or [series[0]["rss_mb"]]  # after warm-up
    last = [p["rss_mb"] for p in series[-4:]]
    base = statistics.mean(first)
    return {"minutes": args.minutes, "rate_per_s": args.rate, "requests": k, "errors": errors, "series": series,
            "rss_start_mb": round(base, 1), "rss_end_mb": round(statistics.mean(last), 1),
            "rss_growth_pct": round(100 * (statistics.mean(last) - base) / base, 2)}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["series"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    a.plot([p["t_s"] / 60 for p in s], [p["rss_mb"] for p in s], marker=".")
    a.set_xlabel("minutes")
    a.set_ylabel("service RSS (MB)")
    a.set_title(f"RSS growth {result['rss_growth_pct']} %")
    pts = [p for p in s if p["p50_ms"] is not None]
    b.plot([p["t_s"] / 60 for p in pts], [p["p50_ms"] for p in pts], label="p50")
    b.plot([p["t_s"] / 60 for p in pts], [p["p99_ms"] for p in pts], label="p99")
    b.set_xlabel("minutes")
    b.set_ylabel("request latency (ms, 15 s windows)")
    b.legend()
    fig.suptitle(f"soak: {result['rate_per_s']} requests/s for {result['minutes']} min, HTTP + gRPC")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=2.0, help="requests per second (open loop)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "soak.json")
    args = ap.parse_args(argv)
    result = asyncio.run(run(args))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in result.items() if k != "series"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
