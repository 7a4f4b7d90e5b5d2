"""Experiment: do the small relevance gains add up when they are used together?

Every addition tried on top of the in-context relevance head landed within one fold std of it
(docs/quality/README.md). This checks whether the largest of them add up when used together, on the
same 5-fold CV by question, without synthetic rows and without the gold answer (as in
relevance_in_context.py and wordllama_signals.py, whose pieces it reuses):

- `base`: the in-context signals without the reference ones (logistic regression, C 0.03);
- `+mpnet`: plus all-mpnet-base-v2's five cosines per sub-sentence (wordllama_signals.py --mpnet);
- `+mpnet+tfidf`: plus the previous / next / mean / max / running-mean views of a cross-fitted
  TF-IDF (1-2 gram) model of the sub-sentence's words (relevance_in_context.py `tfidf`);
- `+mpnet+tfidf+stage2`: plus the same views of a first-stage head's cross-fitted logit
  (relevance_in_context.py `stage2`, on the `+mpnet` columns);
- the last one again at C 0.01 and 0.1, to see whether the wider row wants another penalty;
- `+...+emb`: plus the views of a cross-fitted logistic regression on the sub-sentence's own
  mpnet vector and its elementwise product with the question's (1,536 columns, C 0.01): what the
  encoder knows beyond the five cosines.

The training rows' extra columns are out-of-fold predictions over the training records only (the
inner folds are the other hash folds), so no test record is ever seen by the columns it is scored
with.

    # mpnet_backbone.py says where all-mpnet-base-v2 comes from and fills its embeddings cache
    OMP_NUM_THREADS=2 .venv/bin/python docs/quality/experiments/combined_ceiling.py --mpnet /tmp/mpnet/all-mpnet-base-v2

Measured 2026-11-28 (AUC, mean ± std over the 5 folds, 1 min with the caches): base 0.732 ± 0.012;
+mpnet 0.738 ± 0.013; +mpnet+tfidf 0.741 ± 0.012; +mpnet+tfidf+stage2 0.742 ± 0.014 (per fold over
base +0.001 / +0.000 / +0.010 / +0.010 / +0.032; at C 0.01 0.741, at C 0.1 0.739); with the
embedding classifier too 0.742 ± 0.017 (that classifier alone 0.614 ± 0.024). The gains add only
in part (+0.010 of the +0.006 +0.003 +0.001 measured apart), most of it on one fold, and the best
combination is still 0.008 short of 0.75 before the synthetic rows the served head needs (which
cost it about 0.006). Nothing here is shipped.
"""
import sys

if "--mpnet" not in sys.argv:
    sys.exit("usage: combined_ceiling.py --mpnet DIR (all-mpnet-base-v2; see mpnet_backbone.py)")

import numpy as np  # noqa: E402

import relevance_in_context as ric  # noqa: E402
import wordllama_signals as wls  # noqa: E402  (reads --mpnet from sys.argv: the mpnet cosines)

assert [t.fold for t in ric.tables] == [t.fold for t in wls.tables]


def base(i):
    return ric.tables[i].rel_x[:, wls.REL_BASE]


def with_mpnet(i):
    return np.c_[base(i), wls.REL_X[i]]


EMBED = wls.mpnet_embedder(sys.argv[sys.argv.index("--mpnet") + 1])
SEGS = [EMBED(t) for t in ric.texts]
QUESTIONS = EMBED([r["question"] or " " for r in ric.recs])


def emb_head(ix):
    """Logistic regression on [sub-sentence vector, its product with the question's]."""
    def x_of(i):
        return np.c_[SEGS[i], SEGS[i] * QUESTIONS[i]]
    return ric.lr_head(ix, x_of, c=0.01)


def extra_views(train, test, make):
    """Cross-fitted predictions of `make` over `train`, the full-train model's over `test`."""
    oof, full = ric.cross_fitted(train, make), make(train)
    return {**oof, **{i: full(i) for i in test}}


def main():
    results: dict[str, list[float]] = {}
    for f, train, test, y in ric.cv_folds():

        def score(name, columns, c=0.03):
            head = ric.lr_head(train, columns, c)
            results.setdefault(name, []).append(ric.roc_auc(ric.labelled(test, lambda i: head(i)[:, None])[0][:, 0], y))

        score("base", base)
        score("+mpnet", with_mpnet)
        tfidf = extra_views(train, test, ric.tfidf_head)

        def with_tfidf(i):
            return np.c_[with_mpnet(i), ric.views(tfidf[i])]

        score("+mpnet+tfidf", with_tfidf)
        stage2 = extra_views(train, test, lambda ix: ric.lr_head(ix, with_mpnet))

        def with_all(i):
            return np.c_[with_tfidf(i), ric.views(stage2[i])]

        for c in (0.03, 0.01, 0.1):
            score("+mpnet+tfidf+stage2" + ("" if c == 0.03 else f" C {c}"), with_all, c)
        emb = extra_views(train, test, emb_head)
        score("+mpnet+tfidf+stage2+emb", lambda i: np.c_[with_all(i), ric.views(emb[i])])
        score("emb alone", lambda i: emb[i][:, None])
        print(f"fold {f}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in results.items()), flush=True)
    b = np.array(results["base"])
    for name, v in results.items():
        d = np.array(v) - b
        print(f"{name}: AUC {np.mean(v):.3f} ± {np.std(v):.3f}  (− base per fold: "
              + " ".join(f"{x:+.3f}" for x in d) + ")")


if __name__ == "__main__":
    main()
