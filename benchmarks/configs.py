"""Service throughput by configuration: runtime, workers, ORT threads, token budget (issue 12).

    python -m benchmarks.configs                          # the default grid below, 2 rounds
    python -m benchmarks.configs --configs "onnx/1/2,onnx-int8/2/1" --rounds 1

Each configuration `RUNTIME/WORKERS/THREADS[/BUDGET]` is a `fgrm serve` with FGRM_RUNTIME,
FGRM_WORKERS, FGRM_ORT_THREADS (and FGRM_MAX_BATCH_TOKENS) set, driven over HTTP by the
benchmark's client load (benchmarks.run.load_servers) at each concurrency on the same dev items.
Configurations alternate within a round, so a shared machine's drifting load hits each alike;
each reports its best round. Writes benchmarks/results/<name>.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("fgrm.configs")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT = "onnx/1/2,onnx/2/1,onnx/1/2/2048,onnx-int8/1/2,onnx-int8/2/1"


def parse(spec: str) -> dict[str, str]:
    parts = spec.split("/")
    out = {"runtime": parts[0], "workers": parts[1], "ort_threads": parts[2]}
    if len(parts) > 3:
        out["max_batch_tokens"] = parts[3]
    return out


def main(argv: list[str] | None = None) -> int:
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default=DEFAULT)
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--concurrency", type=ints, default=[1, 8, 32])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--name", default="cpu-configs")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from benchmarks.run import build_engine, load_items, load_servers, machine_info, server_settings
    from service.config import Settings
    from models.data import DATA_DIR
    from benchmarks import launch

    started = time.perf_counter()
    load_before = os.getloadavg()
    items, _ = load_items(build_engine("onnx"), DATA_DIR / "dev_feedback.json", args.items)
    specs = args.configs.split(",")
    rows = []
    work = Path(tempfile.mkdtemp(prefix="fgrm-configs-"))
    for k in range(1, args.rounds + 1):
        for spec in specs:
            settings = {**server_settings(Settings(), parse(spec)["runtime"]), **parse(spec)}
            with launch.start_service(work / f"{spec.replace('/', '-')}-{k}", **settings) as svc:
                for row in load_servers({(spec, "http"): svc.base_url}, items, args.concurrency):
                    rows.append({"round": k, "config": spec, **{x: row[x] for x in
                                 ("concurrency", "items_per_s", "p50_ms", "p99_ms", "errors")}})
    best: dict = {}
    for r in rows:
        key = (r["config"], r["concurrency"])
        if key not in best or r["items_per_s"] > best[key]["items_per_s"]:
            best[key] = r
    base = specs[0]
    table = ["| config (runtime / workers / ORT threads [/ token budget]) | " +
             " | ".join(f"c={c} items/s (× {base})" for c in args.concurrency) + " | p50 ms c=1 |",
             "|---|" + "---:|" * (len(args.concurrency) + 1)]
    for spec in specs:
        cells = [f"{best[(spec, c)]['items_per_s']:.2f} ({best[(spec, c)]['items_per_s'] / best[(base, c)]['items_per_s']:.2f})"
                 for c in args.concurrency]
        p50 = best[(spec, min(args.concurrency))]["p50_ms"]
        table.append(f"| {spec} | " + " | ".join(cells) + f" | {p50:.1f} |")
    results = {"name": args.name, "command": " ".join(["python -m benchmarks.configs", *(argv or sys.argv[1:])]),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": {**machine_info(), "load_average_before": [round(x, 2) for x in load_before],
                           "load_average_after": [round(x, 2) for x in os.getloadavg()]},
               "items": len(items), "rounds": rows, "best": list(best.values()), "table": table,
               "wall_s": round(time.perf_counter() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(table))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
