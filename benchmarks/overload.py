"""Overload: open-loop traffic at a multiple of what the service can do, with default settings.

    python -m benchmarks.overload --factor 3 --seconds 30 --out benchmarks/results/overload.json

1. Starts the real service (`fgrm serve`, default settings, free loopback ports).
2. Capacity: a closed loop of 8 HTTP callers, one QA-Feedback dev item per request, for
   `--probe-seconds`; items/s is the saturation rate.
3. Overload: requests sent at `--factor` x that rate for `--seconds`, open loop (each on a
   schedule, whatever happened to the previous ones), one item each, HTTP.
4. Recovery: once the load stops, a probe request every 100 ms until one answers within twice
   the idle latency measured before the load; the time that takes is the recovery time.

Reports refusals (503) and accepted requests with p50/p99 latency, errors other than 503
(there should be none), and the recovery time; JSON to `--out`. Loopback only, bounded in time.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(1000 * s[min(len(s) - 1, int(q * (len(s) - 1)))], 1)


async def capacity(client: httpx.AsyncClient, pool: list[dict], seconds: float) -> float:
    done, t_end = 0, time.monotonic() + seconds

    async def caller(i: int):
        nonlocal done
        k = i
        while time.monotonic() < t_end:
            r = await client.post("/v1/score", json={"items": [pool[k % len(pool)]]})
            done += r.status_code == 200
            k += 8

    t0 = time.monotonic()
    await asyncio.gather(*(caller(i) for i in range(8)))
    return done / (time.monotonic() - t0)


async def idle_latency(client: httpx.AsyncClient, item: dict, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        await client.post("/v1/score", json={"items": [item]})
        times.append(time.perf_counter() - t)
    return statistics.median(times)


async def run(args) -> dict:
    from benchmarks.soak import items_pool
    from benchmarks.launch import start_service

    pool = items_pool()
    settings = dict(kv.split("=", 1) for kv in args.setting)
    with start_service(Path(tempfile.mkdtemp(prefix="fgrm-overload-")), **settings) as handle:
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=handle.base_url, timeout=300, limits=limits) as client:
            idle = await idle_latency(client, pool[0])
            cap = await capacity(client, pool, args.probe_seconds)
            rate = args.factor * cap
            print(f"idle latency {1000 * idle:.0f} ms, capacity {cap:.2f} items/s, sending {rate:.1f} requests/s "
                  f"for {args.seconds:g} s", flush=True)
            refused, accepted, other = [], [], {}

            async def one(item):
                t = time.perf_counter()
                try:
                    r = await client.post("/v1/score", json={"items": [item]})
                except httpx.HTTPError as exc:
                    other[type(exc).__name__] = other.get(type(exc).__name__, 0) + 1
                    return
                elapsed = time.perf_counter() - t
                if r.status_code == 200:
                    accepted.append(elapsed)
                elif r.status_code == 503:
                    refused.append(elapsed)
                else:
                    other[str(r.status_code)] = other.get(str(r.status_code), 0) + 1

            tasks, t0, k = [], time.monotonic(), 0
            while time.monotonic() - t0 < args.seconds:
                due = t0 + k / rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                tasks.append(asyncio.create_task(one(pool[k % len(pool)])))
                k += 1
            load_end = time.monotonic()
            # recovery: probes from the moment the load stops (requests still in flight included)
            recovered = None
            while time.monotonic() - load_end < 120:
                t = time.perf_counter()
                r = await client.post("/v1/score", json={"items": [pool[1]]})
                if r.status_code == 200 and time.perf_counter() - t <= 2 * idle:
                    recovered = round(time.monotonic() - load_end, 2)
                    break
                await asyncio.sleep(0.1)
            await asyncio.gather(*tasks)
    return {"settings": settings, "factor": args.factor, "seconds": args.seconds, "capacity_items_per_s": round(cap, 2),
            "sent": k, "sent_per_s": round(rate, 2), "idle_latency_ms": round(1000 * idle, 1),
            "refused": len(refused), "refusal_p50_ms": pct(refused, 0.5), "refusal_p99_ms": pct(refused, 0.99),
            "accepted": len(accepted), "accepted_p50_ms": pct(accepted, 0.5), "accepted_p99_ms": pct(accepted, 0.99),
            "other_outcomes": other, "recovery_s": recovered}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--factor", type=float, default=3.0, help="multiple of the measured capacity")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--probe-seconds", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "overload.json")
    ap.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                    help="a server setting to change (e.g. ort_threads=1); default: none, the defaults are measured")
    args = ap.parse_args(argv)
    result = asyncio.run(run(args))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
