"""Experiment: the annotators' corrected answers as extra relevance training rows.

QA-Feedback gives, for 305 of the 400 records, `prediction 1` as corrected by its annotator:
every marked error removed or fixed, so each of its sub-sentences is, by the annotator's own
judgement, relevant (label 0). As whole answers they also show what an answer without errors
looks like, which is what the in-context views (answer mean, max, running mean) can learn from.
Training rows only: the CV scores prediction 1's labelled sub-sentences, as everywhere else.

Same 5-fold CV and head as relevance_in_context.py (in-context logistic regression, C 0.03,
no synthetic rows; baseline `lr`); `corr w` adds the corrected answers' sub-sentences of the
training folds at sample weight w.

    .venv/bin/python docs/quality/experiments/relevance_corrected.py     # ~2 min, embeddings cached
"""
import os
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(__file__))

from relevance_in_context import cv_folds, labelled, recs, tables  # noqa: E402
from models.data import corrected_example  # noqa: E402
from models.embedding import TextEmbedder  # noqa: E402
from models.heads import roc_auc  # noqa: E402
from models.segment import sentences  # noqa: E402
from models.tables import embedding_cache_path, item_signals  # noqa: E402


def corrected_rows() -> dict[int, np.ndarray]:
    """In-context relevance signals of each record's corrected answer (all labelled relevant)."""
    embedder = TextEmbedder()
    cache = embedding_cache_path(None)
    embedder.load(cache)
    out = {}
    for i, r in enumerate(recs):
        ex = corrected_example(r)
        if ex is None or not ex.subsentences:
            continue
        out[i] = item_signals(embedder, ex.question, ex.passages, ex.response, ex.subsentences,
                              sentences(ex.response))[0]
    return out


def head(ix, extra, weight, c=0.03):
    x, y = labelled(ix, lambda i: tables[i].rel_x)
    w = np.ones(len(y))
    if weight:
        xe = np.concatenate([extra[i] for i in ix if i in extra])
        x, y, w = np.r_[x, xe], np.r_[y, np.zeros(len(xe), dtype=y.dtype)], np.r_[w, np.full(len(xe), weight)]
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(x), y, sample_weight=w)
    return lambda i: model.decision_function(scaler.transform(tables[i].rel_x))


def main():
    extra = corrected_rows()
    print(f"corrected answers: {len(extra)}, sub-sentences: {sum(len(v) for v in extra.values())}", flush=True)
    res: dict[str, list[float]] = {}
    for f, train, test, y in cv_folds():
        for w in (0.0, 0.1, 0.3, 1.0):
            h = head(train, extra, w)
            p = labelled(test, lambda i: h(i)[:, None])[0][:, 0]
            res.setdefault("lr" if not w else f"corr {w}", []).append(roc_auc(p, y))
        print(f"fold {f}: " + ", ".join(f"{n} {v[-1]:.3f}" for n, v in res.items()), flush=True)
    for name, v in res.items():
        print(f"{name}: AUC {np.mean(v):.3f} ± {np.std(v):.3f}")


if __name__ == "__main__":
    main()
