"""Experiment: learn which passage sentences answer the question, then ask of each sub-sentence
whether it says one of them.

Most relevance errors are "Irrelevant" (941 of 1,047 labelled error sub-sentences): true,
supported background that does not answer the question. QA-Feedback says which passage
sentences do answer it: `missing-info` marks the sentences prediction 1 left out (Missing-Answer,
Major/Minor auxiliary), and the labelled sub-sentences of prediction 1 point at the passage
sentence they restate (relevant: needed; irrelevant: not needed). A passage-sentence classifier
learns that from question-side features (overlap and cosine with the question, rank, passage,
position, answer-type cues); each sub-sentence then gets the predicted importance of the passage
sentence it matches best (by cosine and by content words), with the in-context views.

Everything is cross-fitted by question fold: for outer fold k, a training row of fold j gets
importances from a model trained without j and k, test rows from one trained without k (the
importance labels come from the very relevance labels being predicted, so anything less leaks).

    .venv/bin/python docs/quality/experiments/passage_importance.py     # ~2 min, embeddings cached
"""
import os
import re
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(__file__))

from relevance_in_context import cv_folds, folds, labelled, lr_head, recs, tables, views  # noqa: E402
from models.data import labelled_example  # noqa: E402
from models.embedding import TextEmbedder  # noqa: E402
from models.heads import roc_auc  # noqa: E402
from models.signals import Context, content_words  # noqa: E402
from models.tables import embedding_cache_path  # noqa: E402

YEAR, NUM = re.compile(r"\b1\d{3}\b|\b20\d{2}\b"), re.compile(r"\d")
NAME = re.compile(r"(?<=\s)[A-Z][a-z]{2,}")


def _best(words: set, ctx: Context) -> tuple[int, float]:
    shares = [len(words & sw) / len(words) if words else 0.0 for sw in ctx.sentence_words]
    k = int(np.argmax(shares)) if shares else -1
    return k, (shares[k] if shares else 0.0)


def sentence_features(q: str, ctx: Context, qe: np.ndarray, se: np.ndarray) -> np.ndarray:
    n = len(ctx.sentences)
    if not n:
        return np.zeros((0, 18))
    cos = se @ qe
    share = np.array([len(sw & ctx.question_words) / max(1, len(ctx.question_words)) for sw in ctx.sentence_words])
    first = {}
    for k, o in enumerate(ctx.sentence_passage):
        first.setdefault(o, k)
    ql = q.lower()
    when, who, many = ql.startswith("when") or "what year" in ql, ql.startswith("who"), "how many" in ql
    rows = []
    for k, s in enumerate(ctx.sentences):
        o = ctx.sentence_passage[k]
        year, num, names = bool(YEAR.search(s)), bool(NUM.search(s)), len(NAME.findall(" " + s))
        rows.append([cos[k], share[k], (cos[k] >= np.sort(cos)[-3:]).any(), (share[k] >= np.sort(share)[-3:]).any(),
                     cos[k] - cos.max(), share[k] - share.max(), o, ctx.passage_question_overlap[o], k - first[o],
                     k in ctx.answer_region, year, num, min(names, 5), np.log1p(len(ctx.sentence_words[k])),
                     when * year, who * min(names, 5), many * num, n])
    return np.array(rows, dtype=np.float64)


def build():
    emb = TextEmbedder()
    emb.load(embedding_cache_path(None))
    data = []
    for i, r in enumerate(recs):
        ex = labelled_example(r)
        ctx = Context.of(ex.question, ex.passages)
        vec = emb(ctx.texts_to_embed())
        qe, se = vec[0], vec[1:]
        label = np.full(len(ctx.sentences), -1.0)  # -1 unknown, 0 not needed, 1 needed
        for s, y in zip(ex.subsentences, ex.relevance):
            k, share = _best(content_words(s.text), ctx)
            if y in (0, 1) and share >= 0.5 and label[k] != 1:
                label[k] = 1 - y
        for m in r["feedback"].get("missing-info") or []:
            p = r["passages"][m["passage_id"] - 1]
            for sid in m["sentence_id"]:
                if sid < len(p):
                    k, share = _best(content_words(p[sid]), ctx)
                    if share >= 0.5:
                        label[k] = 1
        sub_e = emb([s.text for s in ex.subsentences]) if len(se) else np.zeros((len(ex.subsentences), 1))
        se = se if len(se) else np.zeros((0, 1))
        sub_best = np.array([_best(content_words(s.text), ctx)[0] for s in ex.subsentences])
        data.append(dict(words=ctx.sentence_words, x=sentence_features(ex.question, ctx, qe, se), y=label, match_cos=(sub_e @ se.T),
                         match_ovl=sub_best))
    return data


def importance_model(data, ix, unknown_weight):
    x = np.concatenate([data[i]["x"] for i in ix])
    y = np.concatenate([data[i]["y"] for i in ix])
    w = np.where(y < 0, unknown_weight, 1.0)
    keep = w > 0
    x, y, w = x[keep], np.maximum(y[keep], 0), w[keep]
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=0.1, max_iter=3000).fit(scaler.transform(x), y, sample_weight=w)
    return lambda i: model.decision_function(scaler.transform(data[i]["x"])) if len(data[i]["x"]) else np.zeros(0)


def sub_columns(d, imp):
    """Per sub-sentence: importance of the best passage sentence by cosine, by words, cosine-weighted."""
    if not len(imp):
        return np.zeros((len(d["match_ovl"]), 3))
    by_cos = imp[np.argmax(d["match_cos"], axis=1)]
    by_ovl = imp[d["match_ovl"]]
    w = np.exp(20 * (d["match_cos"] - d["match_cos"].max(axis=1, keepdims=True)))
    soft = (w * imp).sum(1) / w.sum(1)
    return np.c_[by_cos, by_ovl, soft]


def main():
    data = build()
    lab = np.concatenate([d["y"] for d in data])
    print(f"passage sentences: {len(lab)}, needed {int((lab == 1).sum())}, not needed {int((lab == 0).sum())}", flush=True)
    res: dict[str, list[float]] = {}
    for f, train, test, y in cv_folds():

        def score(name, head):
            res.setdefault(name, []).append(roc_auc(labelled(test, lambda i: head(i)[:, None])[0][:, 0], y))

        score("lr", lr_head(train, lambda i: tables[i].rel_x))
        for uw in (0.0, 0.3):
            cols = {}
            outer = importance_model(data, train, uw)
            for i in test:
                cols[i] = sub_columns(data[i], outer(i))
            for j in sorted(set(folds[train])):
                inner = importance_model(data, [i for i in train if folds[i] != j], uw)
                for i in train:
                    if folds[i] == j:
                        cols[i] = sub_columns(data[i], inner(i))
            score(f"imp alone u{uw}", lambda i: cols[i][:, 0])
            extra = lambda i: np.c_[tables[i].rel_x, *(views(cols[i][:, c]) for c in range(3))]  # noqa: E731
            score(f"lr+imp u{uw}", lr_head(train, extra))
        print(f"fold {f}: " + ", ".join(f"{n} {v[-1]:.3f}" for n, v in res.items()), flush=True)
    for name, v in res.items():
        print(f"{name}: AUC {np.mean(v):.3f} ± {np.std(v):.3f}")




def completeness():
    """Does coverage of the sentences the importance model calls needed order the preference pairs?"""
    data = build()
    acc: dict[str, list[float]] = {}
    for f in range(5):
        train = [i for i in range(len(tables)) if folds[i] != f]
        model = importance_model(data, train, 0.3)
        for i in (i for i in range(len(tables)) if folds[i] == f):
            r, imp = recs[i], model(i)
            if not len(imp):
                continue
            sw = data[i]["words"]
            p = 1 / (1 + np.exp(-imp))
            top = np.argsort(-imp)[:3]
            cov = {}
            for k in (1, 2, 3, 4):
                words = content_words(r.get(f"prediction {k}") or "")
                share = np.array([len(s & words) / len(s) if s else 0.0 for s in sw])
                cov[k] = {"weighted": (p * share).sum() / p.sum(), "top3": share[top].mean()}
            for a, b in tables[i].pairs:
                for name in ("weighted", "top3"):
                    acc.setdefault(name, []).append(float(cov[a][name] > cov[b][name]) if cov[a][name] != cov[b][name]
                                                    else 0.5)
                acc.setdefault("prefer-earlier", []).append(float(a < b))
    for name, v in acc.items():
        print(f"{name}: pairwise {np.mean(v):.3f} over {len(v)} pairs")


if __name__ == "__main__":
    completeness() if sys.argv[1:] == ["completeness"] else main()
