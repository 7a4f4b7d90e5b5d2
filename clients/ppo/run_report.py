"""What a PPO run (clients/ppo/train_ppo.py) writes besides the policy: log.jsonl, eval_samples.jsonl,
summary.json, and the curves drawn from log.jsonl into curves.png.

    python clients/ppo/run_report.py runs/ppo-demo     # redraw curves.png
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable


def plot_curves(out: Path) -> None:
    """Curves from log.jsonl into curves.png: rewards (train, held-out, per type), KL, length,
    losses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train = [r for r in rows if "reward/mixed" in r]
    evals = [r for r in rows if "eval/mixed" in r]

    def series(rs, key):
        pts = [(r["step"], r[key]) for r in rs if key in r]
        return [p[0] for p in pts], [p[1] for p in pts]

    def train_and_held_out(ax, train_key, eval_key, train_label, title):
        ax.plot(*series(train, train_key), label=train_label, alpha=0.6)
        ax.plot(*series(evals, eval_key), "o-", label="held-out")
        ax.set_title(title)
        ax.legend()

    types = sorted({k.split("/", 1)[1] for r in evals for k in r
                    if k.startswith("eval/") and k not in ("eval/mixed", "eval/length")})
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    train_and_held_out(axes[0, 0], "reward/mixed", "eval/mixed", "train (rollouts)", "mixed reward per response")
    ax = axes[0, 1]
    for t in types:
        ax.plot(*series(evals, f"eval/{t}"), "o-", label=t)
    ax.set_title("held-out reward per feedback type (unweighted)")
    ax.legend()
    train_and_held_out(axes[0, 2], "length", "eval/length", "train", "response length (tokens)")
    ax = axes[1, 0]
    ax.plot(*series(train, "kl_ref"))
    ax.set_title("KL(policy || reference) per response")
    ax = axes[1, 1]
    ax.plot(*series(train, "loss/policy"), label="policy")
    ax.plot(*series(train, "loss/value"), label="value")
    ax.set_title("losses")
    ax.legend()
    ax = axes[1, 2]
    ax.plot(*series(train, "approx_kl"), label="approx KL to rollout policy")
    ax.plot(*series(train, "clipfrac"), label="clip fraction")
    ax.set_title("PPO update size")
    ax.legend()
    for a in axes.flat:
        a.set_xlabel("PPO step")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=80)
    plt.close(fig)


class RunLog:
    """log.jsonl, eval_samples.jsonl, summary.json and the curves of one run; evaluates the policy
    at step 0, every --eval-every steps, at the last step and before a KL stop."""

    def __init__(self, out: Path, args: Any, evaluate_now: Callable[[], tuple[dict, list[str]]]):
        self.out, self.args, self.evaluate_now = out, args, evaluate_now
        self.log_file = (out / "log.jsonl").open("w")
        (out / "args.json").write_text(json.dumps(asdict(args), indent=1))
        self.samples_file = (out / "eval_samples.jsonl").open("w")
        self.t0 = time.time()
        first = {"step": 0, **self._eval(0), "seconds": time.time() - self.t0}
        self.log_file.write(json.dumps(first) + "\n")
        self.history = [first]

    def _eval(self, step: int) -> dict:
        stats, texts = self.evaluate_now()
        # a few per evaluation while training; every one when the run only evaluates (--total-steps
        # 0), so the answers can be measured afterwards (results/reference-2026-11-28/overlap.py)
        keep = texts if self.args.total_steps == 0 else texts[:4]
        self.samples_file.write(json.dumps({"step": step, "samples": keep}) + "\n")
        self.samples_file.flush()
        return stats

    def step(self, record: dict, last: bool) -> str | None:
        """Log one step; the reason to stop now, if there is one."""
        args, elapsed = self.args, time.time() - self.t0
        record["seconds"] = elapsed
        kl_stop = record["kl_ref"] > args.max_ref_kl
        if record["step"] % args.eval_every == 0 or last or elapsed > args.time_limit or kl_stop:
            t_eval = time.time()
            record.update(self._eval(record["step"]))
            record["seconds/eval"] = time.time() - t_eval
        self.history.append(record)
        self.log_file.write(json.dumps(record) + "\n")
        self.log_file.flush()
        if kl_stop:
            return f"KL to reference {record['kl_ref']:.1f} > --max-ref-kl {args.max_ref_kl}"
        return "time_limit" if time.time() - self.t0 > args.time_limit else None

    def close(self, stop_reason: str) -> dict:
        evals = [r for r in self.history if "eval/mixed" in r]
        summary = {
            "stop_reason": stop_reason, "steps": self.history[-1]["step"], "seconds": time.time() - self.t0,
            "eval_first": {k: v for k, v in evals[0].items() if k.startswith("eval/")},
            "eval_last": {k: v for k, v in evals[-1].items() if k.startswith("eval/")},
            "eval_last_step": evals[-1]["step"],
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
        self.log_file.close()
        self.samples_file.close()
        plot_curves(self.out)
        return summary


if __name__ == "__main__":
    plot_curves(Path(sys.argv[1]))
