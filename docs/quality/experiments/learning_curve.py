"""Experiment: would more labelled records help? The shipped recipe's CV figures against the share
of the training records it is fitted on.

Every addition tried for relevance since the context views has landed within one fold std of the
shipped head, so the open question is whether the head is short of features or short of data
(QA-Feedback's 2,853 training records with feedback are not available here: data/README). This
fits the shipped recipe (`signals-lr`, `models.recipe.fit`, synthetic rows and all) on a random
25 / 50 / 75 / 100 % of each fold's training records (by record, so by question; three draws
each below 100 %) and scores the untouched test fold as `fgrm eval --cv 5` does: relevance and
factuality (the paper's sentences) ROC-AUC, completeness pairwise accuracy on the human pairs.
A curve still rising at 100 % says more records would pay; a flat one says they would not.

    OMP_NUM_THREADS=1 .venv/bin/python docs/quality/experiments/learning_curve.py [--plot FILE.png]   # ~10 min, embeddings cached

Measured 2026-11-28: see the README ("What is left").
"""
import argparse

import numpy as np

from models.crossval import _pairwise
from models.data import load_records
from models.heads import roc_auc
from models.recipe import RECIPES, _completeness_rows, fit
from models.signals import COMPLETENESS_FEATURES
from models.tables import build_with_cache, embedding_cache_path, features_of, stack

FRACTIONS = (0.25, 0.5, 0.75, 1.0)
DRAWS = 3


def scores(train, test) -> dict[str, float]:
    heads = fit(train, RECIPES["signals-lr"])
    out = {}
    for kind, head in (("relevance", heads.relevance), ("factuality", heads.factuality)):
        x, y, _ = stack(test, kind)
        out[kind] = roc_auc(head.p_error(x, features_of(kind)), y)
    a, b, _, _ = _completeness_rows(test, heads.relevance, heads.factuality)
    out["completeness"] = _pairwise(heads.completeness.score(a, COMPLETENESS_FEATURES),
                                    heads.completeness.score(b, COMPLETENESS_FEATURES))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plot", default=None)
    args = ap.parse_args()
    tables = build_with_cache(load_records("data/qa_feedback/dev_feedback.json"), embedding_cache_path(None), threads=1)
    folds = np.array([t.fold for t in tables])
    res: dict[float, dict[str, list[float]]] = {f: {} for f in FRACTIONS}
    for fraction in FRACTIONS:
        for f in range(5):
            train_ix = np.flatnonzero(folds != f)
            test = [tables[i] for i in np.flatnonzero(folds == f)]
            for draw in range(DRAWS if fraction < 1 else 1):
                rng = np.random.default_rng(1000 * f + draw)
                keep = np.sort(rng.choice(train_ix, int(round(fraction * len(train_ix))), replace=False))
                for kind, v in scores([tables[i] for i in keep], test).items():
                    res[fraction].setdefault(kind, []).append(v)
        n = int(round(fraction * np.mean([np.sum(folds != f) for f in range(5)])))
        print(f"{fraction:.0%} of the training records (~{n}): "
              + ", ".join(f"{k} {np.mean(v):.3f} ± {np.std(v):.3f}" for k, v in res[fraction].items()), flush=True)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7.2, 3.6))
        n_train = [fraction * 320 for fraction in FRACTIONS]
        for kind in ("relevance", "factuality", "completeness"):
            m = [np.mean(res[fr][kind]) for fr in FRACTIONS]
            s = [np.std(res[fr][kind]) for fr in FRACTIONS]
            ax.errorbar(n_train, m, yerr=s, marker="o", capsize=3, label=kind)
        for target, what in ((0.75, "relevance AUC target"), (0.62, "completeness target")):
            ax.axhline(target, color="grey", ls=":", lw=1)
            ax.text(n_train[0], target + 0.005, what, fontsize=7, color="grey")
        ax.set_xscale("log", base=2)  # each step right is twice the records
        ax.set_xticks(n_train, [f"{n:.0f}" for n in n_train])
        ax.set_xlabel("training records per fold (of ~320; log scale)")
        ax.set_ylabel("ROC-AUC / pairwise accuracy")
        ax.set_title("signals-lr on less data (5-fold CV by question)")
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
