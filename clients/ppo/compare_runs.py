"""Overlay the held-out curves of several train_ppo.py runs (e.g. relevance weight up vs down).

    python clients/ppo/compare_runs.py runs/ppo-rel-up runs/ppo-rel-down --out runs/compare.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="train_ppo.py output directories")
    ap.add_argument("--out", default="runs/compare.png")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ["eval/mixed", "eval/length", "eval/relevance", "eval/factuality", "eval/completeness"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 4.0))
    for run in args.runs:
        rows = [json.loads(x) for x in (Path(run) / "log.jsonl").read_text().splitlines()]
        label = json.loads((Path(run) / "args.json").read_text()).get("weights") or Path(run).name
        evals = [r for r in rows if "eval/mixed" in r]
        for ax, key in zip(axes, keys):
            pts = [(r["step"], r[key]) for r in evals if key in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{Path(run).name} ({label})")
            ax.set_title(key.replace("eval/", "held-out "))
            ax.set_xlabel("PPO step")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(args.runs), fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(args.out)


if __name__ == "__main__":
    main()
