"""Experiment (not shipped): the reference-free completeness head's synthetic-pair weight.

The head learns from the human preference pairs and from synthetic pairs "each prediction over its
own first sentence" (models.tables._augment), which keep a cut answer from out-scoring the
whole one. They cost real-pair accuracy (0.554 at weight 1 against 0.593 without any synthetic
rows). This reruns the shipped recipe's 5-fold CV with the pairs at other weights
(`Recipe.augment_pair_weight`) and prints the completeness figures: pairwise accuracy on the
human pairs, the prefer-earlier baseline, and the share of held-out synthetic pairs ordered
(truncated; echo = each prediction over the question said back, not trained on; blank).

    .venv/bin/python docs/quality/experiments/pair_weight.py 1 0.3 0.1 0.03    # ~2 min, embeddings cached

Measured 2026-11-28: weight 1 (shipped) 0.554 ± 0.042, truncated 0.998, echo 0.967; 0.3: 0.564 ±
0.038, 0.993, 0.931; 0.1: 0.578 ± 0.033, 0.964, 0.838; 0.03: 0.582 ± 0.037, 0.864, 0.670
(prefer-earlier 0.613 ± 0.022). None reaches prefer-earlier, and each lighter weight lets the
question said back beat more real answers (docs/quality/README.md, "What else a policy could write").
"""
import sys
from dataclasses import replace

from models.crossval import cross_validate
from models.data import load_records
from models.recipe import RECIPES
from models.tables import build_with_cache, embedding_cache_path


def main() -> None:
    tables = build_with_cache(load_records("data/qa_feedback/dev_feedback.json"), embedding_cache_path(None))
    for weight in [float(a) for a in sys.argv[1:]] or [1.0, 0.3, 0.1, 0.03]:
        recipe = replace(RECIPES["signals-lr"], name=f"signals-lr-pairs{weight}", augment_pair_weight=weight)
        s = cross_validate(tables, recipe)["summary"]["completeness"]
        print(f"weight {weight}: " + ", ".join(f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in s.items()
                                               if isinstance(v, dict) and v.get("mean") is not None), flush=True)


if __name__ == "__main__":
    main()
