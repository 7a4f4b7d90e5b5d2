"""The serving benchmark: one command, one run, every setting on the same items and runtime.

    python -m benchmarks.run                  # 32 QA-Feedback dev responses per setting, 3 rounds
    python -m benchmarks.run --quick          # smoke run: 16 items, concurrency 1 and 8, 1 round
    python -m benchmarks.run --runtime onnx --name cpu-onnx

On the same QA-Feedback dev responses (all 4 predictions per record, `models.data`), it measures

(a) the raw engine in-process: `backend.forward` on pre-encoded, length-sorted batches
    (benchmarks/forward.py; the physical limit), and the `ScoringEngine` path without any
    transport (segment + encode, then forward + rewards), so service overhead is separable;
(b) the real service (`fgrm serve` on free loopback ports) over HTTP and gRPC, one item per
    request, at each concurrency: items/s, p50 and p99 request latency;
(c) a naive server (benchmarks/naive_server.py: one request at a time, batch size 1) under
    the same client load;
(d) a seed-style server (benchmarks/seed_style.py: the paper's way, one reward model per
    feedback type over the packed input, three forward passes per response, batch size 1, one
    request at a time) under the same client load.

The machine is shared, and other work comes and goes within minutes, so the server settings
run in `--rounds` passes, alternating (b), (c) and (d) at each concurrency, with the raw forward
(batch 1) measured again before each concurrency (and the engine one item at a time before
the first); every setting, raw included, reports its
least disturbed measurement (highest items/s), and every round is kept in the JSON.

and writes `<out>/<name>.json`, `<out>/<name>.png` and prints a markdown table with the
ratios against the targets (service at the highest concurrency >= 0.90 x raw and >= 5 x
naive; p50 overhead over the raw engine <= 3 ms at concurrency 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks import forward as fwd
from benchmarks import seed_style
from benchmarks.report import best_rounds, markdown_table, summarize, write_outputs

log = logging.getLogger("fgrm.bench")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
CLIENT_TIMEOUT_S = 600.0  # naive at concurrency 32 queues for seconds; never time out a measurement


# ----------------------------------------------------------------------------- items and engine
def build_engine(runtime: str = "auto"):
    """The in-process engine on the configured feedback types (FGRM_* environment honoured)."""
    from service.config import Settings
    from service.engine import ScoringEngine

    return ScoringEngine(Settings.from_env(runtime=runtime))


def load_items(engine, data: str | Path, n: int) -> tuple[list[dict], list]:
    """The first `n` dev-split responses (4 per record) that the model can take, as wire-format
    dicts, and the engine's prepared form of each. Responses too long for the model are skipped:
    the service answers them with an error, so there is nothing to time."""
    from models.data import load_records, passages_of, split_records
    from service.domain import Item
    from service.errors import InvalidInput

    _, dev = split_records(load_records(data))
    items, prepared = [], []
    for record in dev:
        for k in (1, 2, 3, 4):
            wire = {"question": record["question"], "passages": passages_of(record),
                    "response": record.get(f"prediction {k}") or ""}
            if not wire["response"].strip():
                continue
            try:
                [p] = engine.prepare([Item(wire["response"], wire["question"], tuple(wire["passages"]))])
            except InvalidInput:
                continue
            items.append(wire)
            prepared.append(p)
            if len(items) >= n:
                return items, prepared
    return items, prepared


def _domain(wire: dict):
    from service.domain import Item

    return Item(wire["response"], wire["question"], tuple(wire["passages"]))


def _latency_stats(latencies: list[float], n_items: int, wall: float) -> dict:
    return {"items_per_s": round(n_items / wall, 3), "p50_ms": round(1000 * statistics.median(latencies), 2),
            "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 2)}


def measure_raw_forward(engine, prepared: list, batch_sizes: list[int], repeats: int) -> list[dict]:
    """`backend.forward` alone (benchmarks/forward.py) on every scorer's rows of `prepared`.
    With several scorers an item costs the sum of their forwards, so times add up per item."""
    n = len(prepared)
    out = []
    for bs in batch_sizes:
        seconds_per_item, p50_per_item, p99_per_item, tokens = 0.0, 0.0, 0.0, []
        for k, scorer in enumerate(engine.scorers):
            rows = [r for p in prepared if p.parts for r in p.parts[k].rows]
            row = fwd.bench(scorer.backend, rows, scorer.pad_id, bs, repeats)
            per_item = len(rows) / n  # rows per item (1 for fgrm checkpoints)
            seconds_per_item += per_item / row["items_per_s"]
            # batch latency at batch size 1 is per row; scale to per item
            p50_per_item += row["batch_p50_ms"] * (per_item if bs == 1 else 1)
            p99_per_item += row["batch_p99_ms"] * (per_item if bs == 1 else 1)
            tokens.append(row["mean_tokens"])
        out.append({"batch_size": bs, "items_per_s": round(1 / seconds_per_item, 3),
                    "batch_p50_ms": round(p50_per_item, 2), "batch_p99_ms": round(p99_per_item, 2),
                    "mean_tokens": tokens[0] if len(tokens) == 1 else tokens})
        log.info("raw forward, batch %d: %.2f items/s, batch p50 %.1f ms", bs, out[-1]["items_per_s"],
                 out[-1]["batch_p50_ms"])
    return out


def measure_engine(engine, items: list[dict]) -> dict:
    """The ScoringEngine path without transports: all items at once with the engine's own
    token-budget plan (prepare, then run_prepared), and one item at a time."""
    domain = [_domain(w) for w in items]
    engine.score_sync(domain[:1])  # warm-up
    t0 = time.perf_counter()
    prepared = engine.prepare(domain)
    t1 = time.perf_counter()
    results = engine.run_prepared(prepared)
    t2 = time.perf_counter()
    n = len(items)
    batched = {"items_per_s": round(n / (t2 - t0), 3), "prepare_ms_per_item": round(1000 * (t1 - t0) / n, 2),
               "forward_rewards_items_per_s": round(n / (t2 - t1), 3)}
    log.info("engine in-process, all at once: %.2f items/s (prepare %.1f ms/item)", batched["items_per_s"],
             batched["prepare_ms_per_item"])
    return {"batched": batched, "single": measure_engine_single(engine, items),
            "mixed_totals": [r.mixed.total for r in results]}


def measure_engine_single(engine, items: list[dict]) -> dict:
    """The ScoringEngine path one item at a time (`score_sync`): what a request costs minus transport."""
    latencies = []
    t0 = time.perf_counter()
    for item in map(_domain, items):
        t = time.perf_counter()
        engine.score_sync([item])
        latencies.append(time.perf_counter() - t)
    single = _latency_stats(latencies, len(items), time.perf_counter() - t0)
    log.info("engine in-process, one at a time: %.2f items/s, p50 %.1f ms", single["items_per_s"], single["p50_ms"])
    return single


# ----------------------------------------------------------------------------- client load
async def drive(client, items: list[dict], concurrency: int, label: str) -> dict:
    """`concurrency` callers, one item per request, until every item is scored once."""
    from tqdm import tqdm

    from fgrm_client import FgrmError

    await client.score([items[0]])  # warm-up: connection, first forward of this setting
    latencies: list[float] = []
    totals: dict[int, float] = {}
    errors: dict[str, int] = {}
    todo = iter(range(len(items)))
    bar = tqdm(total=len(items), desc=label, leave=False, file=sys.stderr, disable=None)

    async def caller() -> None:
        for i in todo:  # one shared iterator: each item is sent once
            t = time.perf_counter()
            try:
                [result] = await client.score([items[i]])
            except FgrmError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            finally:
                bar.update(1)
            latencies.append(time.perf_counter() - t)
            totals[i] = result.mixed.total

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    bar.close()
    if not latencies:
        raise RuntimeError(f"{label}: every request failed: {errors}")
    row = {"concurrency": concurrency, "requests": len(items), "errors": errors, "wall_s": round(wall, 2),
           **_latency_stats(latencies, len(latencies), wall),
           "mixed_totals": [totals.get(i) for i in range(len(items))]}
    log.info("%s: %.2f items/s, p50 %.1f ms, p99 %.1f ms%s", label, row["items_per_s"], row["p50_ms"], row["p99_ms"],
             f", errors {errors}" if errors else "")
    return row


async def _load(targets: dict, items: list[dict], concurrencies: list[int], before_round=None) -> list[dict]:
    from fgrm_client import NO_RETRY, AsyncGrpcClient, AsyncHttpClient

    rows = []
    # concurrency outermost, so that drift in a shared machine's load hits every server alike
    for c in concurrencies:
        if before_round is not None:
            before_round(c)  # blocking is fine: nothing is in flight between rounds
        for (server, transport), target in targets.items():
            # a fresh client per setting: no connection state carries over between settings
            if transport == "http":
                client = AsyncHttpClient(target, timeout=CLIENT_TIMEOUT_S, retry=NO_RETRY)
            else:
                client = AsyncGrpcClient(target, timeout=CLIENT_TIMEOUT_S, retry=NO_RETRY)
            async with client:
                row = await drive(client, items, c, f"{server} {transport} c={c}")
            rows.append({"server": server, "transport": transport, **row})
    return rows


def load_servers(targets: dict, items: list[dict], concurrencies: list[int], before_round=None) -> list[dict]:
    """Client load on running servers: `targets` maps (server, "http") -> base URL and
    (server, "grpc") -> host:port. One row per (server, transport, concurrency);
    `before_round(concurrency)` runs before each concurrency's settings."""
    return asyncio.run(_load(targets, items, concurrencies, before_round))


# ----------------------------------------------------------------------------- servers
def seed_reference(engine, items: list[dict]) -> dict:
    """The seed-style engine in-process, one item at a time: its latency without a transport,
    and the mixed totals the seed-style server must return."""
    domain = [_domain(w) for w in items]
    engine.score_sync(domain[:1])  # warm-up
    latencies, totals = [], []
    t0 = time.perf_counter()
    for item in domain:
        t = time.perf_counter()
        [r] = engine.score_sync([item])
        latencies.append(time.perf_counter() - t)
        totals.append(r.mixed.total)
    return {**_latency_stats(latencies, len(items), time.perf_counter() - t0), "mixed_totals": totals,
            "forwards_per_item": len(engine.scorers), "checkpoint": str(seed_style.SEED_CHECKPOINT.relative_to(seed_style.REPO))}


def server_settings(engine_settings, runtime: str) -> dict[str, str]:
    """The settings the in-process engine ran with (what this process's FGRM_* variables set,
    i.e. every field that differs from the default), so the servers run the same, with the
    runtime pinned to the one the engine resolved."""
    import dataclasses

    from service.config import Settings

    default = Settings()
    settings = {f.name: str(getattr(engine_settings, f.name)) for f in dataclasses.fields(Settings)
                if f.compare and getattr(engine_settings, f.name) != getattr(default, f.name)}
    settings["runtime"] = runtime
    # this benchmark measures throughput at saturation, not admission: without this the default
    # bound in time (max_wait_s = 2 s) refuses part of the c=32 load on a 2-core CPU
    settings.setdefault("max_wait_s", "0")
    return settings


@contextlib.contextmanager
def naive_server(settings: dict[str, str], workdir: Path):
    """benchmarks/naive_server.py as a subprocess on a free port, ready."""
    from benchmarks import launch

    port = launch.free_port()
    cmd = [sys.executable, "-m", "benchmarks.naive_server", "--port", str(port), "--runtime", settings["runtime"]]
    with launch.run_server(cmd, workdir, port, env=launch.server_env(settings)) as handle:
        yield handle


def machine_info() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    for mod in ("torch", "onnxruntime"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return info


def server_rounds(args, engine, items: list[dict], prepared: list, results: dict, service_handle=None) -> None:
    """`--rounds` passes of client load on fgrm serve (or `service_handle`), the naive and the
    seed-style servers; before each concurrency the raw forward again (and before the first,
    the engine one item at a time). Appends to results' raw, engine and server rounds."""
    from benchmarks import launch

    workdir = Path(tempfile.mkdtemp(prefix="fgrm-bench-"))
    settings = server_settings(engine.settings, results["runtime"])
    with contextlib.ExitStack() as stack:
        if service_handle is None:
            log.info("starting fgrm serve and the naive server (runtime %s)", results["runtime"])
            service_handle = stack.enter_context(launch.start_service(workdir / "service", **settings))
        naive = stack.enter_context(naive_server(settings, workdir / "naive"))
        seed = stack.enter_context(seed_style.seed_server(settings["runtime"], workdir / "seed",
                                                          launch.server_env(settings)))
        targets = {("service", "http"): service_handle.base_url, ("service", "grpc"): service_handle.grpc_target,
                   ("naive", "http"): naive.base_url, ("seed", "http"): seed.base_url}
        results["raw_rounds"], results["engine_rounds"], results["server_rounds"] = [], [], []
        for k in range(1, args.rounds + 1):

            def raw_again(c: int, k: int = k) -> None:
                # the raw limit again right before each concurrency: a shared machine's load
                # drifts over minutes, so every round has its own reference figure
                [row] = measure_raw_forward(engine, prepared, [1], args.repeats)
                results["raw_rounds"].append({"round": k, "concurrency": c, **row})
                if c == min(args.concurrency):
                    results["engine_rounds"].append({"round": k, **measure_engine_single(engine, items)})

            log.info("round %d of %d", k, args.rounds)
            for row in load_servers(targets, items, args.concurrency, raw_again):
                results["server_rounds"].append({"round": k, **row})


def run(args, service_handle=None) -> dict:
    """Every measurement of one benchmark run. `service_handle`: an already running service
    (tests); else `fgrm serve` is started here. It and the naive server run side by side (an
    idle one costs nothing) so that their settings can alternate."""
    from models.data import DATA_DIR

    data = args.data or DATA_DIR / "dev_feedback.json"
    load_before = os.getloadavg()
    started = time.perf_counter()
    engine = build_engine(args.runtime)
    backend = engine.scorers[0].backend
    runtime = backend.name
    items, prepared = load_items(engine, data, args.items)
    log.info("%d items, runtime %s (%s); load average %.2f", len(items), runtime, backend.provider, load_before[0])
    results = {
        "name": args.name or f"cpu-{runtime}", "command": args.command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine_info(), "load_average_before": [round(x, 2) for x in load_before]},
        "runtime": runtime, "provider": str(backend.provider), "items": len(items),
        "concurrencies": args.concurrency,
        "engine_settings": {k: getattr(engine.settings, k) for k in
                            ("max_batch_tokens", "max_batch_rows", "batch_wait_ms", "workers", "torch_threads")},
        "raw_forward": measure_raw_forward(engine, prepared, args.batch_sizes, args.repeats),
        "engine": measure_engine(engine, items),
    }
    # the paper-style baseline (benchmarks/seed_style.py) in-process: its own reference rewards
    seed = seed_style.build_engine(runtime)
    results["seed_style"] = seed_reference(seed, items)
    del seed
    server_rounds(args, engine, items, prepared, results, service_handle)
    results["servers"] = best_rounds(results["server_rounds"])
    results["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results["wall_s"] = round(time.perf_counter() - started, 1)
    results["summary"] = summarize(results)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from models.runtime import RUNTIMES

    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=None, help="items per setting and round (default 32; 16 with --quick)")
    ap.add_argument("--concurrency", type=ints, default=None, help="comma list (default 1,8,32; 1,8 with --quick)")
    ap.add_argument("--batch-sizes", type=ints, default=None,
                    help="raw forward batch sizes (default 1,8,32; 1,8 with --quick)")
    ap.add_argument("--repeats", type=int, default=1, help="passes over the items for the raw forward")
    ap.add_argument("--runtime", default="auto", choices=RUNTIMES,
                    help="one runtime for every setting (default: auto, what the service picks)")
    ap.add_argument("--data", default=None, help="QA-Feedback JSON (default: data/qa_feedback/dev_feedback.json)")
    ap.add_argument("--name", default=None, help="results file name (default cpu-<runtime>, + -quick)")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--rounds", type=int, default=None,
                    help="passes over all server settings; each setting reports its best pass "
                         "(default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="smoke run: few items, one round")
    args = ap.parse_args(argv)
    args.items = args.items or (16 if args.quick else 32)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.concurrency = args.concurrency or ([1, 8] if args.quick else [1, 8, 32])
    args.batch_sizes = args.batch_sizes or ([1, 8] if args.quick else [1, 8, 32])
    args.command = " ".join(["python -m benchmarks.run", *(sys.argv[1:] if argv is None else argv)])
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    args = parse_args(argv)
    results = run(args)
    if args.quick and not args.name:
        results["name"] += "-quick"
    json_path, png_path = write_outputs(results, args.out)
    print(markdown_table(results))
    print(f"\nresults: {json_path}\nplot:    {png_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
