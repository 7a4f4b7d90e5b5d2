"""`python -m models.sweep`: choose the training recipe by 4-fold cross-validation, then train it.

Each variant is trained on three of the four hash folds of the train split and validated on
the fourth (`fgrm train --val-fold k`), for every fold; the dev split (fold 0) is never looked
at while choosing. The (variant, epoch) with the best mean validation composite
(mean of relevance accuracy, factuality accuracy, factuality error-F1 and preference accuracy)
is then trained on the whole train split and evaluated once on dev. Separate single-head
models are trained alongside, so the shared backbone is compared head by head with them.
Runs are subprocesses, several at a time: made for a GPU host, works anywhere.
"""
from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Named as in docs/training/run1_sweep_logs.tgz, which ran with `--corrected 1` as the default.
VARIANTS: dict[str, list[str]] = {
    "joint": ["--corrected", "1"],
    "joint-nocorr": ["--corrected", "0"],
    "joint-lr1e-4": ["--lr", "1e-4", "--corrected", "1"],
    "joint-factw2": ["--factuality-pos-weight", "2.0", "--corrected", "1"],
    "sep-relevance": ["--heads", "relevance", "--no-passages", "--corrected", "1"],
    "sep-relevance-psg": ["--heads", "relevance", "--corrected", "1"],
    "sep-factuality": ["--heads", "factuality", "--corrected", "1"],
    "sep-completeness": ["--heads", "completeness", "--corrected", "1"],
}


def composite(dev: dict) -> float | None:
    parts = [dev.get("relevance", {}).get("accuracy"), dev.get("factuality", {}).get("accuracy"),
             dev.get("factuality", {}).get("error_f1"), dev.get("completeness", {}).get("pairwise_accuracy")]
    parts = [p for p in parts if p is not None]
    return sum(parts) / len(parts) if len(parts) == 4 else None


def _run(cmd: list[str], log: Path) -> int:
    with log.open("w") as fh:
        return subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)


METRICS = (("relevance", "accuracy"), ("relevance", "error_f1"), ("factuality", "accuracy"),
           ("factuality", "error_f1"), ("factuality_all", "accuracy"), ("factuality_all", "error_f1"),
           ("completeness", "pairwise_accuracy"))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m models.sweep", description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True, help="folder for the runs' logs and checkpoints")
    ap.add_argument("--out", required=True, help="where the final checkpoint goes")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--folds", default="1,2,3,4", help="validation folds to run (subset for smoke tests)")
    ap.add_argument("--extra", default="", help="extra args for every run, e.g. '--max-length 256 --limit 20'")
    return ap


def run_folds(names: list[str], folds: list[int], work: Path, epochs: int, extra: list[str], parallel: int) -> list[str]:
    """Every (variant, validation fold) run, `parallel` at a time; returns the runs that failed."""
    jobs = []
    for name, fold in itertools.product(names, folds):
        run = work / f"{name}-f{fold}"
        cmd = [sys.executable, "-m", "models.finetune", "--epochs", str(epochs), "--val-fold", str(fold),
               "--out", str(run / "ckpt"), "--log", str(run / "log.jsonl"), *VARIANTS[name], *extra]
        run.mkdir(parents=True, exist_ok=True)
        jobs.append((name, fold, run, cmd))
    with ThreadPoolExecutor(parallel) as pool:
        codes = list(pool.map(lambda j: _run(j[3], j[2] / "stdout.log"), jobs))
    return [f"{j[0]}-f{j[1]}" for j, c in zip(jobs, codes) if c != 0]


def summarise_variant(work: Path, name: str, folds: list[int], epochs: int) -> list[dict]:
    """Per epoch, each validation metric and the composite averaged over the folds that logged it."""
    per_epoch: list[list[dict]] = [[] for _ in range(epochs)]
    for fold in folds:
        log = work / f"{name}-f{fold}" / "log.jsonl"
        if not log.is_file():
            continue
        for line in log.read_text().splitlines():
            row = json.loads(line)
            per_epoch[row["epoch"] - 1].append(row["dev"])
    summary = []
    for e, devs in enumerate(per_epoch):
        if not devs:
            continue
        agg: dict = {}
        for head, metric in METRICS:
            vals = [d[head][metric] for d in devs if head in d and d[head].get(metric) is not None]
            if vals:
                agg[f"{head}.{metric}"] = sum(vals) / len(vals)
        comps = [c for c in (composite(d) for d in devs) if c is not None]
        agg["composite"] = sum(comps) / len(comps) if comps else None
        agg["folds"] = len(devs)
        summary.append({"epoch": e + 1, **agg})
    return summary


def best_joint(variants: dict[str, list[dict]]) -> tuple[str, dict] | None:
    """(variant, epoch row) of the joint variant and epoch with the best mean composite."""
    joint = {n: s for n, s in variants.items() if n.startswith("joint") and s}
    return max(((n, row) for n, s in joint.items() for row in s if row.get("composite") is not None),
               key=lambda t: t[1]["composite"], default=None)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    names = [v for v in args.variants.split(",") if v]
    extra = args.extra.split()
    folds = [int(f) for f in args.folds.split(",") if f]

    failed = run_folds(names, folds, work, args.epochs, extra, args.parallel)
    results: dict = {"variants": {}, "failed": failed}
    for name in names:
        results["variants"][name] = summarise_variant(work, name, folds, args.epochs)
    best = best_joint(results["variants"])
    if best is None:
        print(json.dumps(results, indent=2))
        return 1
    results["chosen"] = {"variant": best[0], "epoch": best[1]["epoch"], "cv": best[1]}
    cmd = [sys.executable, "-m", "models.finetune", "--epochs", str(best[1]["epoch"]), "--out", args.out,
           "--log", str(work / "final-log.jsonl"), *VARIANTS[best[0]], *extra]
    code = _run(cmd, work / "final-stdout.log")
    results["final_exit"] = code
    if code == 0:
        rows = [json.loads(x) for x in (work / "final-log.jsonl").read_text().splitlines()]
        results["final_dev"] = rows[-1]["dev"]
    (work / "sweep_results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({"chosen": results["chosen"], "final_dev": results.get("final_dev"),
                      "failed": results["failed"]}, indent=2))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
