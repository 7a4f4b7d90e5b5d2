"""Segmentation speed on QA-Feedback responses (all four predictions of every record).

    python -m benchmarks.segmentation
"""
from __future__ import annotations

import json
import time

from models.data import DATA_DIR, load_records
from models.segment import sentences, subsentences


def main() -> int:
    texts = [r[f"prediction {k}"] for r in load_records(DATA_DIR / "dev_feedback.json") for k in (1, 2, 3, 4)]
    words = sum(len(t.split()) for t in texts)
    subsentences(texts[0])  # warm-up: pysbd compiles its rules on first use
    out = {"responses": len(texts), "mean_words": round(words / len(texts), 1)}
    for name, fn in (("sentence", sentences), ("sub-sentence", subsentences)):
        t0 = time.perf_counter()
        n = sum(len(fn(t)) for t in texts)
        dt = time.perf_counter() - t0
        out[name] = {"segments": n, "ms_per_response": round(1000 * dt / len(texts), 3),
                     "responses_per_s": round(len(texts) / dt, 1)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
