"""Experiment (not shipped): the other answers to the same prompt as a stand-in for a reference.

GRPO-style trainers sample several responses per prompt, and QA-Feedback has four predictions per
question. Where no reference answer exists, what the other samples say is the nearest thing to
one: content most samples share is likelier the answer (self-consistency), and an answer close
to the others is the consensus (minimum Bayes risk decoding picks it). Same 5-fold CV by
question as `fgrm eval --cv 5`:

- `relevance`: prediction 1's sub-sentences scored by the reference recipe (signals-lr-reference,
  as shipped: heads, thresholds, synthetic rows) with predictions 2-4 joined standing where the
  gold answer stood, in training and test: does "said by the siblings" work as "said by the
  reference" did (0.887)?
- `completeness`: per prediction, its consensus with the other three (mean content-word F1,
  bigram F1, share of each other's content words it covers, mean cosine of the whole answers'
  embeddings), alone and beside the completeness signals in a Bradley-Terry fit on the real
  pairs (no synthetic pairs, so each row compares with `bt`, the same fit without them).

    .venv/bin/python docs/quality/experiments/siblings.py       # ~4 min, embeddings cached

Measured 2026-11-28: relevance AUC 0.726 ± 0.014 with the siblings as the reference, against
0.723 ± 0.007 without (accuracy 0.618, error-F1 0.695): the siblings repeat the same background
the annotators marked irrelevant, so "said by the others" is no evidence of "answers the
question". Completeness, without a reference: consensus alone 0.597 ± 0.011, the signals' fit
0.595 ± 0.031, both 0.622 ± 0.024 (shipped head, synthetic pairs included, 0.554 ± 0.042);
with the gold reference 0.651 ± 0.032 and 0.660 ± 0.036. Not shipped: the gain is for
completeness without a reference only, within 1.1 std, and a reward for agreeing with the other
samples pays a GRPO policy to make its samples alike (a group that says one thing scores
highest), which is mode collapse by another name; it would also need every transport to carry a
sample's siblings.
"""
import sys

import numpy as np

from models.crossval import _pairwise, cross_validate
from models.data import fold_of, load_records
from models.embedding import TextEmbedder
from models.heads import fit_preference
from models.recipe import RECIPES, _completeness_rows, fit
from models.signals import COMPLETENESS_FEATURES, _bigrams, content_words
from models.tables import build_with_cache, embedding_cache_path

K = 5


def _f1(a: set, b: set) -> float:
    n = len(a & b)
    return 2 * n / (len(a) + len(b)) if n else 0.0


def consensus(record: dict, embed: TextEmbedder) -> dict[int, np.ndarray]:
    """Per prediction number: (content-word F1, bigram F1, coverage, cosine), each its mean against the other three."""
    texts = [record[f"prediction {i}"] for i in range(1, 5)]
    cw, bg, e = [content_words(t) for t in texts], [_bigrams(t) for t in texts], embed(texts)
    out = {}
    for i in range(4):
        others = [j for j in range(4) if j != i]
        out[i + 1] = np.array([np.mean([_f1(cw[i], cw[j]) for j in others]),
                               np.mean([_f1(bg[i], bg[j]) for j in others]),
                               np.mean([len(cw[i] & cw[j]) / max(1, len(cw[j])) for j in others]),
                               np.mean([float(e[i] @ e[j]) for j in others])])
    return out


def bradley_terry(train_a, train_b, test_a, test_b, c: float = 0.1) -> float:
    """Pairwise accuracy on the test pairs of the completeness head's own fit (models.heads.fit_preference)
    on the training pairs, over every column given."""
    columns = tuple(f"x{j}" for j in range(train_a.shape[1]))
    head = fit_preference(train_a, train_b, list(columns), columns, c)
    return _pairwise(head.score(test_a, columns), head.score(test_b, columns))


def relevance(records: list[dict], cache) -> None:
    sib = [{**r, "gold": " ".join(r[f"prediction {j}"] for j in (2, 3, 4))} for r in records]
    s = cross_validate(build_with_cache(sib, cache), RECIPES["signals-lr-reference"], K)["summary"]["relevance"]
    print("relevance, the siblings as the reference: " + ", ".join(
        f"{m} {s[m]['mean']:.3f} ± {s[m]['std']:.3f}" for m in ("auc", "accuracy", "error_f1", "ece")))


def completeness(records: list[dict], cache, recipe_name: str) -> None:
    tables = build_with_cache(records, cache)
    embed = TextEmbedder()
    embed.load(cache)
    by_question = {r["question"]: r for r in records}
    mbr = {t.question: consensus(by_question[t.question], embed) for t in tables}

    def pairs(ts):  # in _completeness_rows' order (real pairs only)
        rows = [(mbr[t.question][p], mbr[t.question][o]) for t in ts for p, o in t.pairs if p in t.seg_x and o in t.seg_x]
        return np.array([a for a, _ in rows]), np.array([b for _, b in rows])

    recipe = RECIPES[recipe_name]
    cols = [COMPLETENESS_FEATURES.index(f) for f in recipe.completeness_features]
    out: dict[str, list] = {}
    for f in range(K):
        train = [t for t in tables if fold_of(t.question, K) != f]
        test = [t for t in tables if fold_of(t.question, K) == f]
        heads = fit(train, recipe)
        a, b, _, _ = _completeness_rows(test, heads.relevance, heads.factuality)
        ta, tb, _, _ = _completeness_rows(train, heads.relevance, heads.factuality)
        ma, mb = pairs(test)
        tma, tmb = pairs(train)
        row = {"shipped head": _pairwise(heads.completeness.score(a, COMPLETENESS_FEATURES),
                                         heads.completeness.score(b, COMPLETENESS_FEATURES)),
               "bt": bradley_terry(ta[:, cols], tb[:, cols], a[:, cols], b[:, cols]),
               "consensus alone": bradley_terry(tma, tmb, ma, mb),
               "bt + consensus": bradley_terry(np.c_[ta[:, cols], tma], np.c_[tb[:, cols], tmb],
                                               np.c_[a[:, cols], ma], np.c_[b[:, cols], mb])}
        for k, v in row.items():
            out.setdefault(k, []).append(v)
        print(f"  fold {f}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), file=sys.stderr)
    print(f"completeness pairwise ({recipe_name}): " + ", ".join(
        f"{k} {np.mean(v):.3f} ± {np.std(v):.3f}" for k, v in out.items()))


def main() -> None:
    records = load_records("data/qa_feedback/dev_feedback.json")
    cache = embedding_cache_path(None)
    relevance(records, cache)
    completeness(records, cache, "signals-lr")
    completeness(records, cache, "signals-lr-reference")  # the tables carry each record's gold answer


if __name__ == "__main__":
    main()
