"""CPU side of cross_encoder_full.py: what the cross-encoder's predictions add to the relevance head.

For each outer fold k the head is the in-context logistic regression of relevance_in_context.py
(no synthetic rows). The cross-encoder's logit enters with the same neighbour views as the
signals (own, previous, next, answer mean, max, running mean).

- `ce`: the cross-encoder alone (model trained without fold k, on fold k), per epoch;
- `lr`: the head without it;
- `stack`: the head with it. A training row of fold j gets the prediction of the model trained
  without k and j when those leave-two-out models exist (honest); otherwise ("stack~") the
  model trained without j, which saw fold k's labels: a go/no-go estimate, not a CV figure.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))


def analyse(out_dir, pred_dir, variant="rel_mark"):
    from relevance_in_context import cv_folds, folds, labelled, lr_head, tables, with_views
    from models.heads import roc_auc

    d = np.load(os.path.join(pred_dir, f"{variant}.npz"))
    preds, held = d["preds"], [tuple(h for h in row if h >= 0) for row in d["held"]]
    model_of = {h: m for m, h in enumerate(held)}
    honest = len(held) > 5
    by_record: dict[int, list[int]] = {}
    for row, rec in enumerate(d["record"]):
        by_record.setdefault(int(rec), []).append(row)

    def logit(p):
        p = np.clip(p, 1e-4, 1 - 1e-4)
        return np.log(p / (1 - p))

    def ce_feature(i, m, e):
        return logit(preds[m, e, by_record[i]])

    n_epochs = preds.shape[1]
    res: dict[str, list[float]] = {}
    for k, train, test, y in cv_folds():

        def score(name, head):
            res.setdefault(name, []).append(roc_auc(labelled(test, lambda i: head(i)[:, None])[0][:, 0], y))

        score("lr", lr_head(train, lambda i: tables[i].rel_x))
        for e in range(n_epochs):
            score(f"ce e{e + 1}", lambda i, e=e: ce_feature(i, model_of[(k,)], e))
            extra = {i: ce_feature(i, model_of[(k,)], e) for i in test}
            for i in train:
                j = int(folds[i])
                extra[i] = ce_feature(i, model_of[tuple(sorted((j, k)))] if honest else model_of[(j,)], e)
            score(f"stack{'' if honest else '~'} e{e + 1}", lr_head(train, with_views(extra)))
        print(f"fold {k}: " + ", ".join(f"{n} {v[-1]:.3f}" for n, v in res.items()), flush=True)
    for name, v in res.items():
        print(f"{name}: AUC {np.mean(v):.3f} ± {np.std(v):.3f}")


if __name__ == "__main__":
    analyse(sys.argv[1], sys.argv[2], *sys.argv[3:])
