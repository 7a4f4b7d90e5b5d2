"""Experiment (partly shipped): what else the relevance head could read once it sees its answer.

The shipped head reads each sub-sentence's signals in context (models.signals.in_context).
This compares, on the same 5-fold CV by question, without the synthetic rows (so the
figures are comparable with each other, not with the shipped recipe's):

- `lr`: logistic regression on the in-context signals (C 0.03);
- `stage2`: plus the previous / next / mean / max / running mean of a first-stage head's
  cross-fitted logit (a poor man's CRF: does the neighbours' *prediction* add to their signals?);
- `tfidf`: plus a cross-fitted TF-IDF (1-2 gram) logistic regression on the sub-sentence text;
- `resp`: plus the response signals of the whole answer, repeated on each of its rows;
- `gbt`: gradient-boosted trees on the in-context signals instead of the logistic regression.

    .venv/bin/python docs/quality/experiments/relevance_in_context.py     # ~3 min, embeddings cached

Measured 2026-11-28: lr 0.732 ± 0.012, stage2 0.733 ± 0.013, tfidf 0.735 ± 0.010, resp
0.724 ± 0.012, gbt 0.707 ± 0.004 (AUC). None is worth its cost over `lr`.
"""
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from models.data import IGNORE, label_response, load_records
from models.heads import roc_auc
from models.tables import build_with_cache, embedding_cache_path

recs = load_records("data/qa_feedback/dev_feedback.json")
tables = build_with_cache(recs, embedding_cache_path(None))
texts = [[s.text for s in label_response(r, r["prediction 1"], None).subsentences] for r in recs]
folds = np.array([t.fold for t in tables])


def labelled(ix, columns):
    x = np.concatenate([columns(i) for i in ix])
    y = np.concatenate([tables[i].rel_y for i in ix])
    return x[y != IGNORE], y[y != IGNORE]


def lr_head(ix, columns, c=0.03):
    x, y = labelled(ix, columns)
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(x), y)
    return lambda i: model.decision_function(scaler.transform(columns(i)))


def tfidf_head(ix):
    rows = [(t, y) for i in ix for t, y in zip(texts[i], tables[i].rel_y) if y != IGNORE]
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    model = LogisticRegression(C=1.0, max_iter=3000).fit(vec.fit_transform([t for t, _ in rows]),
                                                          [y for _, y in rows])
    return lambda i: model.decision_function(vec.transform(texts[i]))


def views(z):
    n = len(z)
    return np.c_[z, np.r_[0, z[:-1]], np.r_[z[1:], 0], np.full(n, z.mean()), np.full(n, z.max()),
                 np.cumsum(z) / np.arange(1, n + 1)]


def cv_folds(k=5):
    """(fold, training record indices, test record indices, test labels) for each fold."""
    for f in range(k):
        train = [i for i in range(len(tables)) if folds[i] != f]
        test = [i for i in range(len(tables)) if folds[i] == f]
        yield f, train, test, labelled(test, own)[1]


def cross_fitted(ix, make):
    """Out-of-fold predictions over `ix` (inner folds = the other hash folds)."""
    out = {}
    for g in sorted(set(folds[ix])):
        head = make([i for i in ix if folds[i] != g])
        out.update({i: head(i) for i in ix if folds[i] == g})
    return out


def own(i):
    return tables[i].rel_x


def with_response(i):
    return np.c_[tables[i].rel_x, np.repeat(tables[i].resp_x[1][None], len(tables[i].rel_x), 0)]


def with_views(extra):
    return lambda i: np.c_[tables[i].rel_x, views(extra[i])]


def main():
    results: dict[str, list[float]] = {}
    for f, train, test, y in cv_folds():

        def score(name, head):
            results.setdefault(name, []).append(roc_auc(labelled(test, lambda i: head(i)[:, None])[0][:, 0], y))

        score("lr", lr_head(train, own))
        for name, make in (("stage2", lambda ix: lr_head(ix, own)), ("tfidf", tfidf_head)):
            oof, full = cross_fitted(train, make), make(train)
            extra = {**oof, **{i: full(i) for i in test}}
            score(name, lr_head(train, with_views(extra)))
        score("resp", lr_head(train, with_response))
        x, yy = labelled(train, own)
        gbt = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=40,
                                             l2_regularization=1.0).fit(x, yy)
        score("gbt", lambda i: gbt.predict_proba(own(i))[:, 1])
        print(f"fold {f}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in results.items()), flush=True)
    for name, v in results.items():
        print(f"{name}: AUC {np.mean(v):.3f} ± {np.std(v):.3f}")


if __name__ == "__main__":
    main()
