"""Experiment: do WordLlama's static token embeddings add to the relevance and factuality heads without a reference?

WordLlama (PyPI `wordllama` 0.4.0.post1, MIT, github.com/dleemiller/WordLlama) is a bag of static
token embeddings distilled from Llama-2-family token embeddings (l2_supercat, 256 dimensions,
average-pooled, no attention): its wheel ships its weights and tokenizer, it embeds the 400
records in about a second on one thread. This measures, on the same 5-fold CV by question as
relevance_in_context.py (no synthetic rows, the record's gold answer NOT read: every reference
signal and its context views left out, as the served no-reference heads leave them out):

- relevance (sub-sentences of prediction 1, `rel_y`): logistic regression (StandardScaler, C 0.03
  as relevance_in_context.py) on `base` = the in-context signals without the reference ones,
  against `+wl` = those plus five WordLlama cosines per sub-sentence: to the question
  (`wl_cos_question`), the best to one passage sentence (`wl_cos_best_passage`, passages split by
  models.signals.passage_sentences), to the previous sub-sentence (`wl_cos_prev`), the best to any
  earlier one (`wl_cos_prev_max`) and to the whole answer (`wl_cos_answer`); and `+wl ctx` = the
  five with the same context views (prev / next / mean / max / running mean) as every other signal;
- factuality (sentences of prediction 1, `fact_y`, the paper's way; C 0.1 as reference_features.py):
  the segment signals without the reference ones, against those plus `wl_cos_question` and
  `wl_cos_best_passage` of the sentence;
- each WordLlama cosine alone, its sign taken from the training folds, beside the frozen MiniLM
  cosine the project already has for the same comparison (where there is one).

    pip install wordllama==0.4.0.post1     # not a project requirement: this experiment only
    OMP_NUM_THREADS=1 .venv/bin/python docs/quality/experiments/wordllama_signals.py     # ~30 s, embeddings cached
    # the same five cosines from all-mpnet-base-v2 (mpnet_backbone.py: where from, and its cache);
    # the output still calls them wl_*
    OMP_NUM_THREADS=2 .venv/bin/python docs/quality/experiments/wordllama_signals.py --mpnet /tmp/mpnet/all-mpnet-base-v2

Offline: 0.4.0.post1 looks for its tokenizer under `wordllama/tokenizer/` while the wheel ships it
under `wordllama/tokenizers/`, so a plain `WordLlama.load()` tries huggingface.co for it (the
weights are found in the wheel; HF_HUB_OFFLINE does not stop it: it downloads with `requests`).
Passing the package directory as `cache_dir` with `disable_download=True` loads both files from
the wheel and never touches the network, which is what `load_wordllama` does.

Measured 2026-11-28 (AUC, mean ± std over the 5 folds; 28 s on one thread): relevance base 0.732
± 0.012, +wl 0.731 ± 0.015, +wl ctx 0.728 ± 0.008; factuality base 0.907 ± 0.022, +wl 0.907 ±
0.022. Alone (WordLlama / the project's MiniLM cosine): relevance wl_cos_question 0.616 ± 0.020 /
0.624 ± 0.013, wl_cos_best_passage 0.524 ± 0.032 / 0.475 ± 0.014, wl_cos_prev 0.557 ± 0.031,
wl_cos_prev_max 0.598 ± 0.037 / 0.604 ± 0.035, wl_cos_answer 0.554 ± 0.016; factuality
wl_cos_question 0.607 ± 0.036 / 0.602 ± 0.025, wl_cos_best_passage 0.841 ± 0.039 / 0.858 ± 0.030.
WordLlama's cosines rank about as well as the MiniLM ones they duplicate and add nothing on top of
the shipped signals (every difference well under one fold std): not worth a dependency.

With --mpnet (2026-11-28, 1 min with mpnet_backbone.py's cache): relevance +mpnet 0.738 ± 0.013
(per fold +0.001 / +0.005 / +0.007 / +0.005 / +0.014 over base), +mpnet ctx 0.736 ± 0.012;
factuality 0.908 ± 0.022. Alone: mpnet's question cosine 0.643 ± 0.009 against MiniLM's 0.624 ±
0.013, its best-passage cosine for factuality 0.850 ± 0.036 against 0.858 ± 0.030.
"""
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from models.data import IGNORE, label_response, load_records, passages_of
from models.heads import roc_auc
from models.segment import sentences
from models.signals import SEGMENT_FEATURES, SUBSENTENCE_FEATURES, Context, in_context, without_reference
from models.tables import build_with_cache, embedding_cache_path

REL_WL = ("wl_cos_question", "wl_cos_best_passage", "wl_cos_prev", "wl_cos_prev_max", "wl_cos_answer")
FACT_WL = ("wl_cos_question", "wl_cos_best_passage")
# the project's frozen-MiniLM cosine for the same comparison, shown beside each WordLlama cosine alone
MINILM = {"wl_cos_question": "cos_question", "wl_cos_best_passage": "cos_best_passage", "wl_cos_prev_max": "cos_prev_max"}
REL_BASE = [SUBSENTENCE_FEATURES.index(f) for f in without_reference(SUBSENTENCE_FEATURES)]
FACT_BASE = [SEGMENT_FEATURES.index(f) for f in without_reference(SEGMENT_FEATURES)]
C_RELEVANCE, C_FACTUALITY = 0.03, 0.1


def load_wordllama():
    """WordLlama from the files its wheel ships, never the network (see the module docstring)."""
    import wordllama
    from wordllama import WordLlama

    return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)


def wl_features(embed, question: str, passages: list[str], response: str, segs: list[str]) -> np.ndarray:
    """(len(segs), len(REL_WL)) WordLlama cosines of each segment of `response` (REL_WL order)."""
    n = len(segs)
    if n == 0:
        return np.zeros((0, len(REL_WL)))
    psents = Context.of(question, passages).sentences
    emb = embed([question or " ", response or " ", *segs, *psents])
    q, a, s, p = emb[0], emb[1], emb[2:2 + n], emb[2 + n:]
    self_cos = s @ s.T
    out = np.zeros((n, len(REL_WL)))
    out[:, 0] = s @ q
    out[:, 1] = (s @ p.T).max(1) if len(p) else 0.0
    out[1:, 2] = np.diag(self_cos, -1)
    for i in range(1, n):
        out[i, 3] = self_cos[i, :i].max()
    out[:, 4] = s @ a
    return out


recs = load_records("data/qa_feedback/dev_feedback.json")
tables = build_with_cache(recs, embedding_cache_path(None), threads=1)
folds = np.array([t.fold for t in tables])


def mpnet_embedder(path: str):
    """all-mpnet-base-v2 (mpnet_backbone.py says where it comes from), with its embeddings cache."""
    from models.embedding import TextEmbedder

    embed = TextEmbedder(backbone=path, threads=2)
    cache = embedding_cache_path(None, path)
    if cache.is_file():
        embed.load(cache)
    return embed


def build_wl():
    if "--mpnet" in sys.argv:  # the same cosines from all-mpnet-base-v2 instead of WordLlama
        embed = mpnet_embedder(sys.argv[sys.argv.index("--mpnet") + 1])
    else:
        wl = load_wordllama()

        def embed(texts):
            return np.asarray(wl.embed(texts, norm=True), dtype=np.float64)

    rel, fact = [], []
    for r, t in zip(recs, tables):
        ex = label_response(r, r["prediction 1"], None)
        q, ps = r["question"], passages_of(r)
        rel.append(wl_features(embed, q, ps, ex.response, [s.text for s in ex.subsentences]))
        fact.append(wl_features(embed, q, ps, ex.response, [s.text for s in sentences(ex.response)]))
        assert len(rel[-1]) == len(t.rel_x) and len(fact[-1]) == len(t.fact_x)
    return rel, fact


REL_X, FACT_X = build_wl()
FACT_COLS = [REL_WL.index(f) for f in FACT_WL]
RELEVANCE = {
    "base": lambda i: tables[i].rel_x[:, REL_BASE],
    "+wl": lambda i: np.c_[tables[i].rel_x[:, REL_BASE], REL_X[i]],
    # in_context's last column is its fragment flag (read off column 0 as log-words): dropped
    "+wl ctx": lambda i: np.c_[tables[i].rel_x[:, REL_BASE], in_context(_padded(REL_X[i]))[:, _ctx_cols()]],
}
FACTUALITY = {
    "base": lambda i: tables[i].fact_x[:, FACT_BASE],
    "+wl": lambda i: np.c_[tables[i].fact_x[:, FACT_BASE], FACT_X[i][:, FACT_COLS]],
}


def _padded(x):
    """The WordLlama columns placed in a SEGMENT_FEATURES-wide row, so that in_context can view them."""
    out = np.zeros((len(x), len(SEGMENT_FEATURES)))
    out[:, :x.shape[1]] = x
    return out


def _ctx_cols():
    """The columns of in_context(_padded(x)) that hold the WordLlama cosines and their views."""
    w, k = len(SEGMENT_FEATURES), len(REL_WL)
    return [v * w + j for v in range(6) for j in range(k)]


def labelled(ix, x_of, y_of):
    x = np.concatenate([x_of(i) for i in ix])
    y = np.concatenate([y_of(i) for i in ix])
    return x[y != IGNORE], y[y != IGNORE]


def fit_eval(train, test, x_of, y_of, c):
    x, y = labelled(train, x_of, y_of)
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(x), y)
    xt, yt = labelled(test, x_of, y_of)
    return roc_auc(model.decision_function(scaler.transform(xt)), yt)


def alone(train, test, x_of, y_of):
    """AUC of one column on the test records, its sign taken from the training records."""
    x, y = labelled(train, x_of, y_of)
    sign = 1.0 if roc_auc(x[:, 0], y) >= 0.5 else -1.0
    xt, yt = labelled(test, x_of, y_of)
    return roc_auc(sign * xt[:, 0], yt)


def main():
    res: dict[str, list[float]] = {}

    def rel_y(i):
        return tables[i].rel_y

    def fact_y(i):
        return tables[i].fact_y

    for f in range(5):
        train = [i for i in range(len(tables)) if folds[i] != f]
        test = [i for i in range(len(tables)) if folds[i] == f]
        for name, x_of in RELEVANCE.items():
            res.setdefault(f"relevance {name}", []).append(fit_eval(train, test, x_of, rel_y, C_RELEVANCE))
        for name, x_of in FACTUALITY.items():
            res.setdefault(f"factuality {name}", []).append(fit_eval(train, test, x_of, fact_y, C_FACTUALITY))
        for kind, y_of, wl_x, base_x, names, project in (
                ("relevance", rel_y, REL_X, lambda i: tables[i].rel_x, REL_WL, SUBSENTENCE_FEATURES),
                ("factuality", fact_y, FACT_X, lambda i: tables[i].fact_x, FACT_WL, SEGMENT_FEATURES)):
            for name in names:
                k = REL_WL.index(name)
                res.setdefault(f"{kind} alone {name}", []).append(
                    alone(train, test, lambda i, k=k: wl_x[i][:, k:k + 1], y_of))
                if name in MINILM:
                    j = project.index(MINILM[name])
                    res.setdefault(f"{kind} alone {MINILM[name]} (MiniLM)", []).append(
                        alone(train, test, lambda i, j=j: base_x(i)[:, j:j + 1], y_of))
        print(f"fold {f}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in res.items() if "alone" not in k), flush=True)
    for name, v in res.items():
        print(f"{name}: AUC {np.mean(v):.3f} ± {np.std(v):.3f}")


if __name__ == "__main__":
    main()
