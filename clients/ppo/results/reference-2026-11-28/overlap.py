"""Overlap of each evaluated policy's held-out answers with the gold answers (no reward model):
content-word recall and precision against dev.json's answer, per run directory eval-*-scored-reference-false.

    .venv/bin/python clients/ppo/results/reference-2026-11-28/overlap.py runs/ppo-ref
"""
import json
import sys
from pathlib import Path

import numpy as np

from models.signals import content_words

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # clients/ppo, as train_ppo.py does
from common import load_qa  # noqa: E402


def main(root: str) -> None:
    _, held = load_qa()
    held = held[:100]
    rows = {}
    for d in sorted(Path(root).glob("eval-*-scored-reference-false")):
        samples = json.loads((d / "eval_samples.jsonl").read_text().splitlines()[0])["samples"]
        rec, prec = [], []
        for i, text in enumerate(samples):
            gold, got = content_words(held[i % len(held)]["answer"]), content_words(text)
            rec.append(len(gold & got) / len(gold) if gold else 0.0)
            prec.append(len(gold & got) / len(got) if got else 0.0)
        rows[d.name.removeprefix("eval-").removesuffix("-scored-reference-false")] = {
            "gold_recall": float(np.mean(rec)), "gold_precision": float(np.mean(prec)), "n": len(samples)}
    print(json.dumps(rows, indent=1))
    (Path(root) / "overlap.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/ppo-ref")
