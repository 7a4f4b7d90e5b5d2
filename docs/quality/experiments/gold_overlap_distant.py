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
from sklearn.linear_model import Ridge, LogisticRegression
from sklearn.preprocessing import StandardScaler
from models.data import load_records, label_response, IGNORE, passages_of
from models.signals import content_words, SEGMENT_FEATURES
from models.heads import roc_auc
from models.train import build, embedding_cache_path
recs = load_records("data/qa_feedback/dev_feedback.json")

tables = build(recs, embedding_cache_path(None))
z = np.load(embedding_cache_path(None), allow_pickle=True)
E = dict(zip(z["keys"].tolist(), z["values"]))
MODE = sys.argv[1] if len(sys.argv) > 1 else "feat+emb"
ALPHA = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
# per record: rows of all predictions: (X_feat, X_emb, target, is_pred1_labelled, rel_y)
data = []
for r, t in zip(recs, tables):
    gold = content_words(r["gold"]); q = E[r["question"] or " "]
    rows = []
    for k in (1, 2, 3, 4):
        resp = r.get(f"prediction {k}") or ""
        subs = label_response(r, resp, None).subsentences
        sub_x = t.seg_x[k][0]
        assert len(subs) == len(sub_x)
        for j, s in enumerate(subs):
            cw = content_words(s.text)
            e = E[s.text]
            rows.append((k, sub_x[j], np.r_[q * e, e], len(cw & gold) / max(1, len(cw))))
    data.append(rows)
def mats(idx, pred1_only=False):
    R = [row for i in idx for row in data[i] if (row[0] == 1 or not pred1_only)]
    F = np.array([row[1] for row in R]); M = np.array([row[2] for row in R]); y = np.array([row[3] for row in R])
    return F, M, y
def design(F, M):
    return {"feat": F, "emb": M, "feat+emb": np.c_[F, M]}[MODE]
def fit_reg(idx):
    F, M, y = mats(idx); X = design(F, M); sc = StandardScaler().fit(X)
    return sc, Ridge(alpha=ALPHA).fit(sc.transform(X), y)
def pred_reg(model, idx):
    sc, m = model; F, M, _ = mats(idx, True); return m.predict(sc.transform(design(F, M)))
aucs, aucs_base, aucs_only = [], [], []
folds = np.array([t.fold for t in tables])
for f in range(5):
    tr = np.where(folds != f)[0]; te = np.where(folds == f)[0]
    oof = {}
    for g in set(folds[tr]) :
        inner_tr = tr[folds[tr] != g]; inner_te = tr[folds[tr] == g]
        p = pred_reg(fit_reg(inner_tr), inner_te)
        oof[g] = p
    ptr = np.concatenate([oof[g] for g in sorted(oof)])
    order = np.concatenate([tr[folds[tr] == g] for g in sorted(oof)])
    pte = pred_reg(fit_reg(tr), te)
    def rel(idx, p):
        X = np.concatenate([tables[i].rel_x for i in idx]); y = np.concatenate([tables[i].rel_y for i in idx])
        keep = y != IGNORE
        return X[keep], y[keep], p[keep]
    Xtr, ytr, ptr_ = rel(order, ptr); Xte, yte, pte_ = rel(te, pte)
    sc = StandardScaler().fit(np.c_[Xtr, ptr_])
    lr = LogisticRegression(max_iter=5000).fit(sc.transform(np.c_[Xtr, ptr_]), ytr)
    aucs.append(roc_auc(lr.predict_proba(sc.transform(np.c_[Xte, pte_]))[:, 1], yte))
    sc0 = StandardScaler().fit(Xtr); lr0 = LogisticRegression(max_iter=5000).fit(sc0.transform(Xtr), ytr)
    aucs_base.append(roc_auc(lr0.predict_proba(sc0.transform(Xte))[:, 1], yte))
    aucs_only.append(roc_auc(-pte_, yte))
    print(f, round(aucs[-1], 3), round(aucs_base[-1], 3), round(aucs_only[-1], 3), flush=True)
print(MODE, ALPHA, "stacked", np.mean(aucs), np.std(aucs), "base", np.mean(aucs_base), "gold-pred only", np.mean(aucs_only))
