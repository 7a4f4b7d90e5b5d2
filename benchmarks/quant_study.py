"""Int8 against fp32 on the shipped signal model: same decisions? how much faster? (issue 12)

    python -m benchmarks.quant_study                       # every method, all 400 records
    python -m benchmarks.quant_study --records 60 --methods dynamic,static

Decisions are what a trainer sees: the sign of each segment's reward, i.e. P(error) above the
head's threshold, per sub-sentence (relevance) and per sentence (factuality), on every
prediction (1-4) of the QA-Feedback records. Completeness is a score, so its agreement is the
order of each record's predictions (pairs ordered alike). Each int8 model embeds rows the way
the engine would serve it: one row per pass when it is not batch-invariant (dynamic), in
length-sorted batches when it is (fp32, static). fp32 is the reference.

Speed: the forward passes of `--speed-items` dev items, planned as the engine plans them
(`service.batching.plan`, the CPU token budget), timed in alternating rounds in this one
process so that other load on a shared machine hits every variant alike; each variant reports
its best round. Writes benchmarks/results/<name>.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

log = logging.getLogger("fgrm.quant")
CHECKPOINT = Path(__file__).resolve().parent.parent / "artifacts" / "fgrm-qa-signals"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def plans_of(model, records: list[dict]) -> list[tuple[int, int, object]]:
    """(record index, prediction k, ItemPlan) for every prediction the model can take."""
    from models.data import passages_of
    from models.errors import InputTooLong
    from models.segment import split_many

    out = []
    for i, r in enumerate(records):
        for k in (1, 2, 3, 4):
            resp = r.get(f"prediction {k}") or ""
            if not resp.strip():
                continue
            segs = split_many(resp, ["sub-sentence", "sentence"])
            try:
                out.append((i, k, model.plan(r["question"], passages_of(r), resp, segs["sub-sentence"],
                                             segs["sentence"])))
            except InputTooLong:
                continue
    return out


def embed(backend, rows: list[tuple[int, ...]], pad_id: int, batch: int) -> np.ndarray:
    """Embeddings of `rows` (distinct token-id tuples), length-sorted in batches of `batch` rows."""
    from models.encoding import pad_batch

    order = sorted(range(len(rows)), key=lambda j: len(rows[j]))
    out = np.zeros((len(rows), 384), dtype=np.float32)
    for b in range(0, len(order), batch):
        chunk = order[b:b + batch]
        ids, mask = pad_batch([list(rows[j]) for j in chunk], pad_id)
        out[chunk] = backend.forward(ids, mask)["embeddings"]
    return out


def decisions(model, plans, where: dict, emb: np.ndarray) -> dict:
    """Per plan: relevance/factuality decisions and P(error), and the completeness score."""
    thr = model.thresholds()
    rel, fact, p_rel, p_fact, comp = [], [], [], [], []
    for _, _, plan in plans:
        out = model.read(plan, emb[[where[tuple(r)] for r in plan.rows]])
        rel.append(out.relevance > thr["relevance"])
        fact.append(out.factuality > thr["factuality"])
        p_rel.append(out.relevance)
        p_fact.append(out.factuality)
        comp.append(out.completeness)
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
    return {"rel": cat(rel), "fact": cat(fact), "p_rel": cat(p_rel), "p_fact": cat(p_fact), "comp": np.array(comp)}


def agreement(ref: dict, got: dict, plans) -> dict:
    same_rel, same_fact = ref["rel"] == got["rel"], ref["fact"] == got["fact"]
    # completeness: pairs of predictions of one record ordered alike
    by_record: dict[int, list[int]] = {}
    for j, (i, _, _) in enumerate(plans):
        by_record.setdefault(i, []).append(j)
    pairs = agree = 0
    for js in by_record.values():
        for a in range(len(js)):
            for b in range(a + 1, len(js)):
                pairs += 1
                agree += (ref["comp"][js[a]] > ref["comp"][js[b]]) == (got["comp"][js[a]] > got["comp"][js[b]])
    n = len(same_rel) + len(same_fact)
    return {"decisions_agree": round(float((same_rel.sum() + same_fact.sum()) / n), 5),
            "relevance_agree": round(float(same_rel.mean()), 5), "factuality_agree": round(float(same_fact.mean()), 5),
            "segments": {"sub-sentence": int(len(same_rel)), "sentence": int(len(same_fact))},
            "flipped": int(n - same_rel.sum() - same_fact.sum()),
            "max_abs_p_error_diff": round(float(max(np.abs(ref["p_rel"] - got["p_rel"]).max(),
                                                    np.abs(ref["p_fact"] - got["p_fact"]).max())), 5),
            "mean_abs_p_error_diff": round(float(np.concatenate([np.abs(ref["p_rel"] - got["p_rel"]),
                                                                 np.abs(ref["p_fact"] - got["p_fact"])]).mean()), 6),
            "completeness_pairs_agree": round(agree / pairs, 5) if pairs else None,
            "completeness_max_abs_diff": round(float(np.abs(ref["comp"] - got["comp"]).max()), 5)}


def time_items(backend, plans, pad_id: int, budget: int, one_per_batch: bool) -> float:
    """Seconds to run every row of `plans` as the engine would: token-budget batches per item
    stream (all rows of all items, length-sorted, as `run_prepared` does)."""
    from models.encoding import pad_batch
    from service.batching import plan as plan_batches

    rows = [r for _, _, p in plans for r in p.rows]
    batches = plan_batches([len(r) for r in rows], budget, 64, one_per_batch)
    padded = [pad_batch([rows[b] for b in batch], pad_id) for batch in batches]
    t = time.perf_counter()
    for ids, mask in padded:
        backend.forward(ids, mask)
    return time.perf_counter() - t


def build_variants(methods: list[str], fp32: Path, work: Path, calibration_n: int, exclude: dict) -> dict[str, Path]:
    from models.runtime import quantize as q

    cal = None
    out = {}
    for m in methods:
        # METHOD[:calibration][~alpha][@tag]: "~0.5" = SmoothQuant alpha; "@tag" only names a variant
        spec = m.split("@")[0]
        spec, _, alpha = spec.partition("~")
        method, _, cal_method = spec.partition(":")
        path = work / f"{m.replace(':', '-')}.onnx"
        t = time.perf_counter()
        if method == "static" and cal is None:
            cal = q.calibration_rows(CHECKPOINT, calibration_n)
        q.quantize(fp32, path, method, calibration=cal or (), calibrate=cal_method or "minmax",
                   exclude=exclude.get(m, ()), smooth_alpha=float(alpha or 0), work=work)
        log.info("built %s in %.1f s (%.1f MB)", m, time.perf_counter() - t, path.stat().st_size / 1e6)
        out[m] = path
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=0, help="first N records only (default: all 400)")
    ap.add_argument("--methods", default="dynamic,fused-dynamic,static",
                    help="comma list of quantize METHOD[:calibration]")
    ap.add_argument("--exclude-layers", default="",
                    help="METHOD=regex of MatMul names kept fp32, ';'-separated (name variants METHOD@tag)")
    ap.add_argument("--calibration", type=int, default=512, help="calibration rows (static)")
    ap.add_argument("--speed-items", type=int, default=32)
    ap.add_argument("--speed-rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (default: every core)")
    ap.add_argument("--name", default="quant-study")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    return ap


def excluded_nodes(fp32: Path, spec: str) -> dict[str, list[str]]:
    """--exclude-layers "METHOD=regex;...": per variant, the MatMul nodes it keeps in fp32."""
    from models.runtime import quantize as q

    exclude = {}
    names = q.matmul_nodes(fp32)
    for part in filter(None, spec.split(";")):
        m, _, pattern = part.partition("=")
        exclude[m] = [n for n in names if re.search(pattern, n)]
    return exclude


def open_backends(paths: dict[str, Path], threads: int | None) -> tuple[dict, dict[str, bool]]:
    """fp32 and every int8 variant as OnnxBackends, and whether each is batch-invariant."""
    from models.runtime.onnx_backend import OnnxBackend
    from models.runtime.options import RuntimeOptions

    options = RuntimeOptions(ort_threads=threads or 0)
    backends = {"fp32": OnnxBackend(CHECKPOINT, options=options)}
    for m, path in paths.items():
        backends[m] = OnnxBackend(CHECKPOINT, quantized=True, model_path=path, options=options)
        backends[m].name = m
    invariant = {"fp32": True, **{m: m.startswith("static") for m in paths}}  # fixed scales: rows independent
    return backends, invariant


def measure_quality(model, plans, rows, reference, backends: dict, invariant: dict[str, bool]) -> dict[str, dict]:
    """Agreement of every int8 variant's decisions with those of the `reference` (fp32) backend."""
    where = {r: j for j, r in enumerate(rows)}
    t = time.perf_counter()
    ref = decisions(model, plans, where, embed(reference, rows, model.pad_id, 64))
    log.info("fp32 embeddings in %.1f s", time.perf_counter() - t)
    quality = {}
    for m in backends:
        if m == "fp32":
            continue
        t = time.perf_counter()
        # served as the engine would serve it: batch-invariant models in batches, others row by row
        emb = embed(backends[m], rows, model.pad_id, 64 if invariant[m] else 1)
        quality[m] = agreement(ref, decisions(model, plans, where, emb), plans)
        log.info("%s: %s (%.1f s)", m, quality[m], time.perf_counter() - t)
    return quality


def measure_speed(model, speed_plans, backends: dict, invariant: dict[str, bool], rounds: int,
                  sizes: dict[str, Path]) -> dict[str, dict]:
    """Items per second of every variant, best of `rounds` alternating rounds."""
    from service.config import CPU_BATCH_TOKENS

    seconds: dict[str, list[float]] = {m: [] for m in backends}
    for name, b in backends.items():  # warm-up: first-run allocations out of the timing
        time_items(b, speed_plans[:2], model.pad_id, CPU_BATCH_TOKENS, not invariant[name])
    for _ in range(rounds):
        for name, b in backends.items():
            seconds[name].append(time_items(b, speed_plans, model.pad_id, CPU_BATCH_TOKENS, not invariant[name]))
    n = len(speed_plans)
    speed = {m: {"items_per_s_best": round(n / min(s), 2), "items_per_s_rounds": [round(n / x, 2) for x in s],
                 "vs_fp32": round(min(seconds["fp32"]) / min(s), 3), "batch_invariant": invariant[m],
                 "mb": round(sizes[m].stat().st_size / 1e6, 1)}
             for m, s in seconds.items()}
    for m, s in speed.items():
        log.info("speed %s: %s", m, s)
    return speed


def print_table(quality: dict[str, dict], speed: dict[str, dict]) -> None:
    print("| model | decisions same | relevance / factuality | completeness pairs | items/s | × fp32 |")
    print("|---|---:|---:|---:|---:|---:|")
    for m, s in speed.items():
        qm = quality.get(m)
        cells = ("1 (reference)", "–", "–") if qm is None else (
            f"{qm['decisions_agree']:.4f}", f"{qm['relevance_agree']:.4f} / {qm['factuality_agree']:.4f}",
            f"{qm['completeness_pairs_agree']:.4f}")
        print(f"| {m} | {cells[0]} | {cells[1]} | {cells[2]} | {s['items_per_s_best']} | {s['vs_fp32']} |")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger().setLevel(logging.WARNING)  # the quantiser logs every tensor at INFO on the root logger
    log.setLevel(logging.INFO)
    from models import runtime
    from models.data import DATA_DIR, load_records, split_records
    from models.runtime.onnx_backend import exported_path
    from service.config import CPU_BATCH_TOKENS

    started = time.perf_counter()
    loaded = runtime.load(CHECKPOINT, "onnx")
    model = loaded.encoder
    fp32 = exported_path(CHECKPOINT)
    records = load_records(DATA_DIR / "dev_feedback.json")
    records = records[: args.records] if args.records else records
    plans = plans_of(model, records)
    rows = list(dict.fromkeys(tuple(r) for _, _, p in plans for r in p.rows))
    log.info("%d records, %d responses, %d distinct rows", len(records), len(plans), len(rows))
    exclude = excluded_nodes(fp32, args.exclude_layers)
    methods = [m for m in args.methods.split(",") if m]
    paths = build_variants(methods, fp32, Path(tempfile.mkdtemp(prefix="fgrm-quant-")), args.calibration, exclude)
    threads = args.threads or None
    backends, invariant = open_backends(paths, threads)
    quality = measure_quality(model, plans, rows, loaded.backend, backends, invariant)

    _, dev = split_records(load_records(DATA_DIR / "dev_feedback.json"))
    speed_plans = plans_of(model, dev)[: args.speed_items]
    speed = measure_speed(model, speed_plans, backends, invariant, args.speed_rounds, {"fp32": fp32, **paths})
    from benchmarks.run import machine_info

    results = {"name": args.name, "command": " ".join(["python -m benchmarks.quant_study", *(argv or sys.argv[1:])]),
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": {**machine_info(), "load_average": [round(x, 2) for x in os.getloadavg()]},
               "threads": threads or os.cpu_count(), "records": len(records), "responses": len(plans),
               "distinct_rows": len(rows), "speed_items": len(speed_plans), "token_budget": CPU_BATCH_TOKENS,
               "excluded_nodes": exclude, "quality": quality, "speed": speed,
               "wall_s": round(time.perf_counter() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print_table(quality, speed)
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
