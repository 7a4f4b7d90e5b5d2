"""Experiment (not shipped): distant supervision for relevance.

A sub-sentence's share of content words found in the record's human-written gold answer ranks
relevance errors with ROC-AUC 0.847 (an oracle: the service never sees a gold answer). This
regresses that share on the signals plus the (question * segment, segment) embedding products
over the sub-sentences of all four predictions (~8,600 rows, four times the labelled ones),
cross-fitted inside the training folds, and stacks the prediction into the relevance logistic
regression. 5-fold CV by question.

    .venv/bin/python docs/quality/experiments/gold_overlap_distant.py feat+emb 3000
"""
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from models.data import IGNORE, label_response, load_records
from models.heads import roc_auc
from models.signals import content_words
from models.tables import build_with_cache, embedding_cache_path

MODE = sys.argv[1] if len(sys.argv) > 1 else "feat+emb"  # feat | emb | feat+emb
ALPHA = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
recs = load_records("data/qa_feedback/dev_feedback.json")
tables = build_with_cache(recs, embedding_cache_path(None))
cache = np.load(embedding_cache_path(None), allow_pickle=True)
E = dict(zip(cache["keys"].tolist(), cache["values"]))

# per record, one row per sub-sentence of every prediction: (prediction, signals, embedding
# products, share of its content words in the gold answer)
data = []
for r, t in zip(recs, tables):
    gold = content_words(r["gold"])
    q = E[r["question"] or " "]
    rows = []
    for k in (1, 2, 3, 4):
        subs = label_response(r, r.get(f"prediction {k}") or "", None).subsentences
        sub_x = t.seg_x[k][0]
        assert len(subs) == len(sub_x)
        for j, s in enumerate(subs):
            cw = content_words(s.text)
            rows.append((k, sub_x[j], np.r_[q * E[s.text], E[s.text]], len(cw & gold) / max(1, len(cw))))
    data.append(rows)


def design(idx, pred1_only=False):
    rows = [row for i in idx for row in data[i] if row[0] == 1 or not pred1_only]
    feats, embs = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    x = {"feat": feats, "emb": embs, "feat+emb": np.c_[feats, embs]}[MODE]
    return x, np.array([r[3] for r in rows])


def fit_reg(idx):
    x, y = design(idx)
    scaler = StandardScaler().fit(x)
    return scaler, Ridge(alpha=ALPHA).fit(scaler.transform(x), y)


def pred_reg(model, idx):
    scaler, ridge = model
    return ridge.predict(scaler.transform(design(idx, pred1_only=True)[0]))


def relevance_rows(idx, p):
    x = np.concatenate([tables[i].rel_x for i in idx])
    y = np.concatenate([tables[i].rel_y for i in idx])
    keep = y != IGNORE
    return x[keep], y[keep], p[keep]


def lr_auc(x_train, y_train, x_test, y_test):
    scaler = StandardScaler().fit(x_train)
    lr = LogisticRegression(max_iter=5000).fit(scaler.transform(x_train), y_train)
    return roc_auc(lr.predict_proba(scaler.transform(x_test))[:, 1], y_test)


aucs, aucs_base, aucs_only = [], [], []
folds = np.array([t.fold for t in tables])
for f in range(5):
    train, test = np.where(folds != f)[0], np.where(folds == f)[0]
    inner = sorted(set(folds[train]))  # cross-fitted predicted overlap for the training rows
    p_train = np.concatenate([pred_reg(fit_reg(train[folds[train] != g]), train[folds[train] == g]) for g in inner])
    order = np.concatenate([train[folds[train] == g] for g in inner])
    x_tr, y_tr, p_tr = relevance_rows(order, p_train)
    x_te, y_te, p_te = relevance_rows(test, pred_reg(fit_reg(train), test))
    aucs.append(lr_auc(np.c_[x_tr, p_tr], y_tr, np.c_[x_te, p_te], y_te))
    aucs_base.append(lr_auc(x_tr, y_tr, x_te, y_te))
    aucs_only.append(roc_auc(-p_te, y_te))
    print(f, round(aucs[-1], 3), round(aucs_base[-1], 3), round(aucs_only[-1], 3), flush=True)
print(MODE, ALPHA, "stacked", np.mean(aucs), np.std(aucs), "base", np.mean(aucs_base),
      "gold-pred only", np.mean(aucs_only))
