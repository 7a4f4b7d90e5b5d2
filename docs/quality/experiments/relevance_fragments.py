"""Experiment: content-free fragments as synthetic relevance errors (the PPO one-word hole).

The PPO re-run of 2026-11-28 (clients/README.md) found that a one-word answer ("the", "dragon")
passes relevance: nothing in QA-Feedback looks like it, so the head extrapolates. Here each
record adds three synthetic answers, the first 1, 2 and 3 words of its prediction 1, each one
sub-sentence labelled a relevance error, to the training folds at weight w. Same 5-fold CV and
head as relevance_in_context.py (no other synthetic rows); reported: AUC on the real rows, and
the share of the test folds' fragments the head puts above the median real row's score (how
often a fragment would look worse than a typical segment).

    .venv/bin/python docs/quality/experiments/relevance_fragments.py [--flag]   # 30 s, embeddings cached

`--flag` adds a column, 1 for a sub-sentence of 3 words or fewer, scaled x10 after standardising.
Measured 2026-11-28 (AUC; share of fragments above the median real row):
    no fragments      0.732 ± 0.012; 0 %
    w 0.03            0.719 ± 0.013; 98.6 %        with --flag: 0.726 ± 0.014; 98.8 %
    w 0.1             0.715 ± 0.013; 100 %         with --flag: 0.726 ± 0.014; 98.8 %
"""
import os
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(__file__))

from relevance_in_context import cv_folds, labelled, recs, tables  # noqa: E402
from models.data import label_response, passages_of  # noqa: E402
from models.embedding import TextEmbedder  # noqa: E402
from models.heads import roc_auc  # noqa: E402
from models.segment import sentences  # noqa: E402
from models.tables import embedding_cache_path, item_signals  # noqa: E402


def fragment_rows() -> dict[int, np.ndarray]:
    embedder = TextEmbedder()
    embedder.load(embedding_cache_path(None))
    out = {}
    for i, r in enumerate(recs):
        words = (r["prediction 1"] or "").split()
        rows = []
        for n in (1, 2, 3):
            text = " ".join(words[:n])
            ex = label_response(r, text, None)
            if len(ex.subsentences) == 1:
                rows.append(item_signals(embedder, r["question"], passages_of(r), text, ex.subsentences,
                                         sentences(text))[0])
        if rows:
            out[i] = np.concatenate(rows)
    return out


def with_fragment_flag(x: np.ndarray) -> np.ndarray:
    """The rows plus one column: 1 where the sub-sentence has at most 3 words (column 0 is its
    log word count). Real sub-sentences almost never are: the segmenter merges pieces under 5."""
    return np.c_[x, (np.expm1(x[:, 0]) <= 3.5).astype(float)] if FLAG else x


FLAG = "--flag" in sys.argv


def main():
    frags = {i: with_fragment_flag(v) for i, v in fragment_rows().items()}
    real = {i: with_fragment_flag(t.rel_x) for i, t in enumerate(tables)}
    print(f"real rows with the flag: {int(sum(v[:, -1].sum() for v in real.values())) if FLAG else '-'}")
    res: dict[str, list[float]] = {}
    for f, train, test, y in cv_folds():
        for w in (0.0, 0.003, 0.01, 0.03, 0.1, 0.3):
            x, yy = labelled(train, lambda i: real[i])
            xf = np.concatenate([frags[i] for i in train if i in frags])
            sw = np.r_[np.ones(len(yy)), np.full(len(xf), w)]
            x, yy = np.r_[x, xf], np.r_[yy, np.ones(len(xf), dtype=yy.dtype)]
            keep = sw > 0
            scaler = StandardScaler().fit(x[keep])
            # the flag column scaled up x10: its weight is then 10x cheaper under the L2 penalty, so
            # the head can use it for the fragments without bending the weights of the real signals
            boost = np.r_[np.ones(x.shape[1] - 1), 10.0] if FLAG else 1.0

            def tr(a):
                return scaler.transform(a) * boost

            model = LogisticRegression(C=0.03, max_iter=5000).fit(tr(x[keep]), yy[keep], sample_weight=sw[keep])
            z = model.decision_function(tr(labelled(test, lambda i: real[i])[0]))
            zf = model.decision_function(tr(np.concatenate([frags[i] for i in test if i in frags])))
            res.setdefault(f"w {w}: AUC", []).append(roc_auc(z, y))
            res.setdefault(f"w {w}: fragments above the median row", []).append(float((zf > np.median(z)).mean()))
        print(f"fold {f}: " + ", ".join(f"{n} {v[-1]:.3f}" for n, v in res.items()), flush=True)
    for name, v in res.items():
        print(f"{name} {np.mean(v):.3f} ± {np.std(v):.3f}")


if __name__ == "__main__":
    main()
