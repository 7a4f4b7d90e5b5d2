"""Experiment: what a reference answer (the record's `gold`) adds to each reward type, on CV.

The service never sees a gold answer today. A trainer often has one (ASQA's long answers are
QA-Feedback's `gold`), so this measures, on the same 5-fold CV by question, what reference
signals add on top of the shipped signals, before deciding whether to serve an optional
`reference` field:

- relevance: the sub-sentence's content words / bigrams found in the reference, its best share
  in one reference sentence and its best cosine to a reference sentence, with the same context
  views as the other signals (logistic regression, C 0.03, no synthetic rows, like
  relevance_in_context.py: `lr` there is 0.732 ± 0.012);
- factuality: the same four per sentence (logistic regression, C 0.1);
- completeness: per response, the share of the reference's content words and bigrams it
  covers, the share of its own words in the reference, the reference sentences it matches
  (cosine > 0.6) and its mean best cosine; Bradley-Terry (logistic regression on differences).

    .venv/bin/python docs/quality/experiments/reference_features.py     # ~1 min, embeddings cached

Measured 2026-11-28 (no synthetic rows; "signals" = the shipped signal set): relevance AUC
signals 0.732 ± 0.012, reference alone 0.871 ± 0.022, both 0.890 ± 0.017; factuality 0.907 ±
0.022 / 0.786 ± 0.053 / 0.926 ± 0.021; completeness pairwise 0.589 ± 0.040 / 0.611 ± 0.027 /
0.638 ± 0.029. Shipped as the recipe signals-lr-reference (docs/quality/README.md, "With a reference
answer"), whose own CV figures are in docs/quality/cv.md.
"""
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from models.data import IGNORE, label_response, load_records
from models.embedding import TextEmbedder
from models.heads import roc_auc
from models.segment import sentences
from models.signals import _bigrams, content_words, in_context, passage_sentences
from models.tables import build_with_cache, embedding_cache_path

recs = load_records("data/qa_feedback/dev_feedback.json")
cache = embedding_cache_path(None)
tables = build_with_cache(recs, cache)
folds = np.array([t.fold for t in tables])
embed = TextEmbedder()
embed.load(cache)

REF_SEG = ("ref_support", "ref_bigram_support", "ref_best_sentence_support", "ref_cos_best")


def ref_parts(gold):
    sents = list(passage_sentences(gold)) or [gold or " "]
    return sents, [content_words(s) for s in sents], content_words(gold), _bigrams(gold), embed(sents)


def seg_ref(texts, ref):
    sents, sw, gw, gb, gemb = ref
    emb = embed(texts) if texts else np.zeros((0, gemb.shape[1]))
    out = []
    for t, e in zip(texts, emb):
        cw, bg = content_words(t), _bigrams(t)
        out.append([len(cw & gw) / len(cw) if cw else 0.0, len(bg & gb) / len(bg) if bg else 0.0,
                    max((len(cw & s) / len(cw) if cw else 0.0) for s in sw), float((gemb @ e).max())])
    return np.array(out).reshape(len(texts), len(REF_SEG))


def resp_ref(response, ref):
    sents, sw, gw, gb, gemb = ref
    cw, bg = content_words(response), _bigrams(response)
    rs = [s.text for s in sentences(response)] or [response or " "]
    cos = gemb @ embed(rs).T  # (gold sentences, response sentences)
    best = cos.max(1)
    return np.array([len(cw & gw) / len(gw) if gw else 0.0, len(bg & gb) / len(gb) if gb else 0.0,
                     len(cw & gw) / len(cw) if cw else 0.0, float((best > 0.6).mean()), float(best.mean())])


rel_ref, fact_ref, comp_ref = [], [], []
for r, t in zip(recs, tables):
    ref = ref_parts(r["gold"])
    subs = [s.text for s in label_response(r, r["prediction 1"], None).subsentences]
    x = seg_ref(subs, ref)
    assert len(x) == len(t.rel_x)
    # in_context adds a fragment flag column we drop: the reference signals get the same views
    rel_ref.append(in_context(np.c_[x, np.log1p([len(s.split()) for s in subs])])[:, :-1])
    fact_ref.append(seg_ref([s.text for s in sentences(r["prediction 1"])], ref))
    comp_ref.append({k: resp_ref(r.get(f"prediction {k}") or "", ref) for k in (1, 2, 3, 4)})


def fit_eval(train, test, x_of, y_of, c):
    def xy(ix):
        x = np.concatenate([x_of(i) for i in ix])
        y = np.concatenate([y_of(i) for i in ix])
        return x[y != IGNORE], y[y != IGNORE]
    x, y = xy(train)
    sc = StandardScaler().fit(x)
    m = LogisticRegression(C=c, max_iter=5000).fit(sc.transform(x), y)
    xt, yt = xy(test)
    return roc_auc(m.decision_function(sc.transform(xt)), yt)


def bt_eval(train, test, x_of, c=1.0):
    def diffs(ix):
        d = [x_of(i, a) - x_of(i, b) for i in ix for a, b in tables[i].pairs]
        return np.array(d)
    d = diffs(train)
    sc = StandardScaler(with_mean=False).fit(d)
    x = np.r_[sc.transform(d), -sc.transform(d)]
    y = np.r_[np.ones(len(d)), np.zeros(len(d))]
    m = LogisticRegression(C=c, fit_intercept=False, max_iter=5000).fit(x, y)
    dt = diffs(test)
    return float((m.decision_function(sc.transform(dt)) > 0).mean())


REL = {"signals": lambda i: tables[i].rel_x, "reference": lambda i: rel_ref[i],
       "signals+reference": lambda i: np.c_[tables[i].rel_x, rel_ref[i]]}
FACT = {"signals": lambda i: tables[i].fact_x, "reference": lambda i: fact_ref[i],
        "signals+reference": lambda i: np.c_[tables[i].fact_x, fact_ref[i]]}
COMP = {"signals": lambda i, k: tables[i].resp_x[k], "reference": lambda i, k: comp_ref[i][k],
        "signals+reference": lambda i, k: np.r_[tables[i].resp_x[k], comp_ref[i][k]]}


def main():
    res: dict[str, list[float]] = {}
    for f in range(5):
        train = [i for i in range(len(tables)) if folds[i] != f]
        test = [i for i in range(len(tables)) if folds[i] == f]
        for name, xo in REL.items():
            res.setdefault(f"relevance {name}", []).append(fit_eval(train, test, xo, lambda i: tables[i].rel_y, 0.03))
        for name, xo in FACT.items():
            res.setdefault(f"factuality {name}", []).append(fit_eval(train, test, xo, lambda i: tables[i].fact_y, 0.1))
        for name, xo in COMP.items():
            res.setdefault(f"completeness {name}", []).append(bt_eval(train, test, xo))
        print(f"fold {f}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in res.items()), flush=True)
    for name, v in res.items():
        print(f"{name}: {'pairwise' if name.startswith('completeness') else 'AUC'} {np.mean(v):.3f} ± {np.std(v):.3f}")


if __name__ == "__main__":
    main()
