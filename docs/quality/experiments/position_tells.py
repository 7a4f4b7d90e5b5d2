"""Experiment: can the text tell which position a prediction was shown in?

"Prefer the earlier prediction" orders 0.613 of QA-Feedback's preference pairs, the completeness
baseline the shipped head (0.554) does not beat. `models.preference_audit` shows the earlier one
wins in every position pair. That is either a property of the text (prediction 1 decoded
differently from 2–4, say, or samples that get worse down the list) or of the annotation (the
order the four answers were shown in), and only the first is something a reward model could learn.

This asks the text directly, on the same 5-fold CV by question: for every pair of predictions
(a, b), a < b, of a test record, a logistic regression on the difference of the two answers'
response signals (the completeness head's inputs without the reference ones: coverage of the
passages, novelty, redundancy, length, cosines) fitted on the training records' pairs, both
orders, to say which of the two came first. ROC-AUC 0.5 means the positions cannot be told
apart from the text. Also, per position pair, the shipped completeness head's pairwise accuracy
(recipe `signals-lr`, cross-fitted) beside the share the earlier answer wins.

    OMP_NUM_THREADS=2 .venv/bin/python docs/quality/experiments/position_tells.py     # ~1 min, embeddings cached

Measured 2026-11-28: see the README (Completeness, "not reachable from the text as labelled").
"""
from itertools import combinations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from models.data import PAIRS, load_records
from models.heads import roc_auc
from models.recipe import RECIPES, _completeness_rows, fit
from models.signals import COMPLETENESS_FEATURES, RESPONSE_FEATURES, without_reference
from models.tables import build_with_cache, embedding_cache_path

COLS = [RESPONSE_FEATURES.index(f) for f in without_reference(RESPONSE_FEATURES)]


def pair_rows(tables, ix):
    """Rows x_a - x_b labelled 1 (a shown first) and their mirror images labelled 0, per pair (a, b)."""
    xs, ys, keys = [], [], []
    for i in ix:
        t = tables[i]
        for a, b in combinations(sorted(k for k in t.resp_x if isinstance(k, int)), 2):
            d = t.resp_x[a][COLS] - t.resp_x[b][COLS]
            xs += [d, -d]
            ys += [1, 0]
            keys += [(a, b), (a, b)]
    return np.array(xs), np.array(ys), keys


def main() -> None:
    records = load_records("data/qa_feedback/dev_feedback.json")
    tables = build_with_cache(records, embedding_cache_path(None), threads=2)
    folds = np.array([t.fold for t in tables])
    tells: dict[tuple[int, int], list[float]] = {}
    overall = []
    head_right: dict[tuple[int, int], list[bool]] = {p: [] for p in PAIRS}
    earlier: dict[tuple[int, int], list[bool]] = {p: [] for p in PAIRS}
    for f in range(5):
        train = np.flatnonzero(folds != f)
        test = np.flatnonzero(folds == f)
        x, y, _ = pair_rows(tables, train)
        scaler = StandardScaler().fit(x)
        model = LogisticRegression(C=0.1, max_iter=5000).fit(scaler.transform(x), y)
        xt, yt, kt = pair_rows(tables, test)
        s = model.decision_function(scaler.transform(xt))
        overall.append(roc_auc(s, yt))
        for p in PAIRS:
            m = np.array([k == p for k in kt])
            tells.setdefault(p, []).append(roc_auc(s[m], yt[m]))
        # the shipped completeness head, fitted on the training records only
        heads = fit([tables[i] for i in train], RECIPES["signals-lr"])
        for i in test:
            t = tables[i]
            a, b, _, _ = _completeness_rows([t], heads.relevance, heads.factuality)
            right = (heads.completeness.score(a, COMPLETENESS_FEATURES)
                     > heads.completeness.score(b, COMPLETENESS_FEATURES))
            for (preferred, other), ok in zip(t.pairs, right):
                p = (min(preferred, other), max(preferred, other))
                head_right[p].append(bool(ok))
                earlier[p].append(preferred < other)
    print(f"position told from the text, all pairs: ROC-AUC {np.mean(overall):.3f} ± {np.std(overall):.3f}")
    print("| pair | text tells which came first (AUC) | earlier preferred | shipped head right | pairs |")
    print("|---|---|---|---|---|")
    for p in PAIRS:
        print(f"| {p[0]} vs {p[1]} | {np.mean(tells[p]):.3f} ± {np.std(tells[p]):.3f} | "
              f"{np.mean(earlier[p]):.3f} | {np.mean(head_right[p]):.3f} | {len(earlier[p])} |")


if __name__ == "__main__":
    main()
