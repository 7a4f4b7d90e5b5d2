"""A reward recipe (which signals feed which head, how strongly regularised, how the threshold is
chosen) and the one function that fits it: used by `fgrm train` and, fold by fold, by `fgrm
eval --cv`, so the cross-validated figures are those of the shipped recipe.

Completeness is stacked on the other two heads: a response's completeness signals include the
mean / max P(error) of its relevance and factuality heads (an answer whose sentences are
unsupported or off-topic covers less of what was asked). Those P(error) are cross-fitted: the
completeness head is trained on predictions for records the segment heads did not see.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from models.heads import (LogisticHead, PreferenceHead, add_flag, calibrate, choose_threshold, fit_logistic,
                          fit_platt, fit_preference)
from models.signals import (BASE_RESPONSE_FEATURES, BASE_SEGMENT_FEATURES, COMPLETENESS_FEATURES, CONTEXT_VIEWS,
                           SEGMENT_FEATURES, SUBSENTENCE_FEATURES, completeness_input, without_reference)
from models.tables import (RecordTable, features_of, stack, synthetic_factuality, synthetic_fragments,
                           synthetic_relevance)

LEXICAL = tuple(f for f in BASE_SEGMENT_FEATURES if not f.startswith("cos_"))
LEXICAL_IN_CONTEXT = LEXICAL + tuple(f"{view}.{name}" for view in CONTEXT_VIEWS for name in LEXICAL) + ("fragment",)


@dataclass(frozen=True)
class Recipe:
    name: str = "signals-lr"
    relevance_features: tuple[str, ...] = without_reference(SUBSENTENCE_FEATURES)
    factuality_features: tuple[str, ...] = without_reference(SEGMENT_FEATURES)
    completeness_features: tuple[str, ...] = without_reference(COMPLETENESS_FEATURES)
    # inverse L2 strength of the segment heads: relevance sees six views of every signal, so it
    # is regularised harder (chosen on CV: docs/quality/README.md)
    c_relevance: float = 0.1
    c_segment: float = 1.0
    c_completeness: float = 0.1
    # what the error threshold maximises on cross-fitted predictions: "accuracy", "f1" or "acc+f1".
    # Relevance errors are half of all sub-sentences, so "everything is an error" has an error-F1
    # of 0.66: maximising F1 there keeps both accuracy and F1 above their trivial rules on CV.
    threshold_objective: str = "acc+f1"
    relevance_threshold_objective: str = "f1"
    platt: bool = True  # recalibrate P(error) on cross-fitted predictions
    augment: bool = True  # add the synthetic contrasts of models.tables to the training rows
    factuality_augment_weight: float = 0.1  # each synthetic factuality row counts this much beside a human-labelled one
    # The same for relevance. Seeing its answer's context, the relevance head learns that an
    # on-topic answer's sub-sentences are mostly fine, and a short aside after a good sentence
    # ("He also liked cheese.") slipped under the threshold at 0.1; at 0.3 it is flagged again
    # for 0.003 of CV AUC (docs/quality/README.md).
    relevance_augment_weight: float = 0.3
    augment_pair_weight: float = 1.0  # each synthetic preference pair (full over truncated) counts this much
    # which synthetic preference pairs (models.tables): each prediction over its own first sentence
    # ("truncated") and, not shipped (docs/quality/README.md), over the question said back ("echo")
    synthetic_pairs: tuple[str, ...] = ("truncated",)
    # each answer preferred over the blank one, at this weight (0: not used)
    blank_pair_weight: float = 0.0
    # The synthetic fragment answers (models.tables): the first 1-4 words of an answer are relevance
    # errors. The head is fitted without them, then only the weight of the `fragment` flag is fitted
    # on the flagged rows (models.heads.add_flag), so every other sub-sentence scores as before.
    # Fitted jointly instead, the fragments taught the head that any one-sentence answer is suspect
    # (6 of the 8 on-topic answers of the off-topic contrast cases flagged: docs/quality/README.md).
    fragment_weight: float = 1.0
    fragment_jointly: bool = False
    # The served segment heads: the average of the inner-fold heads whose held-out predictions the
    # Platt calibration and the threshold were fitted on (True), so that what is calibrated is
    # exactly what is served; or refitted on every training record (False: sharper than the heads
    # the calibration saw, factuality ECE 0.096 against 0.081 on CV).
    average_folds: bool = True
    # The recipe whose heads `fgrm train` also fits and stores as the `@reference` heads, which
    # score the items that come with a reference answer (models.signal_model); "" for none.
    reference_twin: str = "signals-lr-reference"
    # Served by a reference twin only: an item whose reference has fewer distinct content words
    # than this gets its relevance from the reference-free head (its completeness still reads the
    # reference). The twin learnt ASQA's long gold answers; sent a short answer ("August 31,
    # 2018"), nearly every sub-sentence looks unsupported by it and is flagged (AUC 0.674 against
    # 0.723 without it). The twin stops losing to the reference-free head at about 10 distinct
    # content words, and with a floor of 10 no reference length scored relevance worse than no
    # reference by more than 0.002 of AUC on CV; with 8 or 12 some did by 0.01-0.04
    # (docs/quality/experiments/terse_reference.py); 0: no floor.
    relevance_reference_min_words: int = 0
    # Served by a reference twin only: an item whose reference shares less than this of its
    # distinct content words with the question and passages (models.signals.reference_context_share;
    # items with passages only) is scored by the reference-free heads, every type, as if it had
    # none: it was written for another question (a data-loader bug). Scored by the twin, another
    # question's gold answer made relevance worse than no reference (AUC 0.632 against 0.723) and
    # would pay a policy to talk about the other question. At 0.3 the guard caught 396 of 400 of
    # them (3 had too little passage text to judge by) and dropped 1 of the 400 records' own gold
    # answers (relevance 0.885 against 0.886 on CV); 0.25 caught 389, 0.4 dropped 13 golds
    # (docs/quality/experiments/terse_reference.py); 0: off.
    reference_min_context_share: float = 0.0


# With a reference answer (the records' gold in training): relevance and completeness read the
# reference's signals too; factuality does not (a true sentence the reference leaves out is
# still true: reading it, factuality over all sentences fell below the majority rule on CV).
# The synthetic "full over truncated" pairs count 0.1: at 1 they cost 0.03 of real-pair
# accuracy, at 0 a cut answer wins a quarter of its pairs (docs/quality/README.md).
REFERENCE = Recipe("signals-lr-reference", SUBSENTENCE_FEATURES, without_reference(SEGMENT_FEATURES),
                   COMPLETENESS_FEATURES, augment_pair_weight=0.1, reference_twin="",
                   relevance_reference_min_words=10, reference_min_context_share=0.3)

RECIPES = {
    "signals-lr": Recipe(),
    "signals-lr-reference": REFERENCE,
    "signals-lr-reference-pairs1": replace(REFERENCE, name="signals-lr-reference-pairs1", augment_pair_weight=1.0),
    "signals-lr-reference-pairs0": replace(REFERENCE, name="signals-lr-reference-pairs0", augment_pair_weight=0.0),
    "signals-lr-reference-factuality": replace(REFERENCE, name="signals-lr-reference-factuality",
                                               factuality_features=SEGMENT_FEATURES),
    "signals-lr-no-context": Recipe("signals-lr-no-context", BASE_SEGMENT_FEATURES + ("fragment",), c_relevance=1.0,
                                    relevance_augment_weight=0.1),
    "signals-lr-context-aug0.1": Recipe("signals-lr-context-aug0.1", c_relevance=0.03, relevance_augment_weight=0.1),
    "signals-lr-context-c0.03": Recipe("signals-lr-context-c0.03", c_relevance=0.03),
    "signals-lr-context-aug1": Recipe("signals-lr-context-aug1", relevance_augment_weight=1.0),
    "lexical-lr": Recipe("lexical-lr", LEXICAL_IN_CONTEXT, LEXICAL,
                         tuple(f for f in without_reference(COMPLETENESS_FEATURES) if not f.startswith("cos_"))),
    "signals-lr-nostack": Recipe("signals-lr-nostack", completeness_features=BASE_RESPONSE_FEATURES),
    "signals-lr-strong-l2": Recipe("signals-lr-strong-l2", c_relevance=0.01, c_segment=0.05, c_completeness=0.01),
    "signals-lr-threshold-accuracy": Recipe("signals-lr-threshold-accuracy", threshold_objective="accuracy",
                                            relevance_threshold_objective="accuracy"),
    "signals-lr-threshold-acc+f1": Recipe("signals-lr-threshold-acc+f1", relevance_threshold_objective="acc+f1"),
    "signals-lr-no-platt": Recipe("signals-lr-no-platt", platt=False),
    "signals-lr-no-augment": Recipe("signals-lr-no-augment", augment=False),
    "signals-lr-no-fragments": Recipe("signals-lr-no-fragments", without_reference(SUBSENTENCE_FEATURES)[:-1],
                                      fragment_weight=0.0),
    "signals-lr-fragments0.1": Recipe("signals-lr-fragments0.1", fragment_weight=0.1),
    "signals-lr-fragments10": Recipe("signals-lr-fragments10", fragment_weight=10.0),
    "signals-lr-fragments-jointly": Recipe("signals-lr-fragments-jointly", fragment_jointly=True),
    "signals-lr-echo": Recipe("signals-lr-echo", synthetic_pairs=("truncated", "echo")),
    "signals-lr-refit": Recipe("signals-lr-refit", average_folds=False),
    "signals-lr-coverage": Recipe("signals-lr-coverage", completeness_features=(
        "passage_coverage", "question_passage_coverage", "relevance_ok_sum", "factuality_p_sum", "factuality_p_mean",
        "mean_novel", "cos_question")),
    "signals-lr-coverage-small": Recipe("signals-lr-coverage-small", completeness_features=(
        "question_passage_coverage", "relevance_ok_sum", "factuality_p_sum")),
}


@dataclass
class FittedHeads:
    relevance: LogisticHead
    factuality: LogisticHead
    completeness: PreferenceHead


def _segment_heads(tables: list[RecordTable], recipe: Recipe, threshold_rel=0.5, threshold_fact=0.5):
    xr, yr, _ = stack(tables, "relevance")
    wr = np.ones(len(yr))
    if recipe.augment:
        xa, ya = synthetic_relevance(tables)
        xr, yr, wr = np.concatenate([xr, xa]), np.r_[yr, ya], np.r_[wr, np.full(len(ya), recipe.relevance_augment_weight)]
    flag = "fragment" in recipe.relevance_features and not recipe.fragment_jointly
    if recipe.augment and recipe.fragment_weight:
        xg = synthetic_fragments(tables)
        xr, yr, wr = np.concatenate([xr, xg]), np.r_[yr, np.ones(len(xg), dtype=yr.dtype)], \
            np.r_[wr, np.full(len(xg), recipe.fragment_weight)]
    # with the flag fitted apart, the head itself never sees a flagged row
    first = xr[:, SUBSENTENCE_FEATURES.index("fragment")] < 0.5 if flag else np.ones(len(yr), dtype=bool)
    xf, yf, _ = stack(tables, "factuality")
    wf = np.ones(len(yf))
    if recipe.augment:
        xs = synthetic_factuality(tables)
        xf, yf, wf = np.concatenate([xf, xs]), np.r_[yf, np.ones(len(xs), dtype=yf.dtype)], \
            np.r_[wf, np.full(len(xs), recipe.factuality_augment_weight)]
    rel = fit_logistic(xr[first], yr[first], [f for f in recipe.relevance_features if not (flag and f == "fragment")],
                       SUBSENTENCE_FEATURES, recipe.c_relevance, threshold_rel, wr[first])
    if flag:
        rel = add_flag(rel, xr, yr, "fragment", SUBSENTENCE_FEATURES, recipe.c_relevance, wr)
    fact = fit_logistic(xf, yf, list(recipe.factuality_features), SEGMENT_FEATURES, recipe.c_segment, threshold_fact,
                        wf)
    return rel, fact


def pair_weights(recipe: Recipe) -> dict[str, float]:
    """The weight of each kind of synthetic preference pair `recipe` trains on (none unless it augments)."""
    if not recipe.augment:
        return {}
    out = {kind: recipe.augment_pair_weight for kind in recipe.synthetic_pairs}
    if recipe.blank_pair_weight:
        out["blank"] = recipe.blank_pair_weight
    return {kind: w for kind, w in out.items() if w}


def _completeness_rows(tables: list[RecordTable], rel: LogisticHead, fact: LogisticHead,
                       synthetic: dict[str, float] | None = None, real_pairs: bool = True):
    """(preferred rows, other rows, every real response's row, pair weights) of the completeness
    signals; `synthetic` adds the synthetic pairs of each kind at its weight (training; and the
    CV's synthetic-pair checks, with `real_pairs` False)."""
    a, b, pool, w = [], [], [], []
    for t in tables:
        rows = {}
        for k, (sub_x, sent_x) in t.seg_x.items():
            rows[k] = completeness_input(t.resp_x[k], rel.p_error(sub_x, SUBSENTENCE_FEATURES),
                                         fact.p_error(sent_x, SEGMENT_FEATURES))
            if isinstance(k, int):  # real predictions only set the score normalisation
                pool.append(rows[k])
        pairs = [(p, o, 1.0) for p, o in t.pairs] if real_pairs else []
        pairs += [(p, o, (synthetic or {})[o.split("-")[0]]) for p, o in t.aug_pairs
                  if o.split("-")[0] in (synthetic or {})]
        for p, o, weight in pairs:
            if p in rows and o in rows:
                a.append(rows[p])
                b.append(rows[o])
                w.append(weight)
    width = len(COMPLETENESS_FEATURES)
    as_array = (lambda r: np.stack(r) if r else np.zeros((0, width)))
    return as_array(a), as_array(b), as_array(pool), np.array(w)


def average_heads(heads: list[LogisticHead], threshold: float) -> LogisticHead:
    """One logistic head whose logit is the mean of `heads`' logits: each head's standardisation
    folded into raw-feature weights, then averaged (a linear model, served like any other)."""
    raw_w = [np.asarray(h.coef) / np.asarray(h.scale) for h in heads]
    raw_b = [h.intercept - float(w @ np.asarray(h.mean)) for h, w in zip(heads, raw_w)]
    n = len(heads[0].features)
    return LogisticHead(list(heads[0].features), [0.0] * n, [1.0] * n, np.mean(raw_w, 0).tolist(),
                        float(np.mean(raw_b)), threshold)


def fit(tables: list[RecordTable], recipe: Recipe = Recipe()) -> FittedHeads:
    """Fit the three heads on `tables`. Thresholds and the completeness head's stacked inputs
    come from cross-fitted predictions (inner folds = the tables' own hash folds)."""
    folds = sorted({t.fold for t in tables})
    oof = {"relevance": ([], []), "factuality": ([], [])}
    inner_heads: dict[str, list[LogisticHead]] = {"relevance": [], "factuality": []}
    a_rows, b_rows, pool_rows, w_rows = [], [], [], []
    for f in folds if len(folds) > 1 else []:
        inner_train = [t for t in tables if t.fold != f]
        held = [t for t in tables if t.fold == f]
        rel, fact = _segment_heads(inner_train, recipe)
        for kind, head in (("relevance", rel), ("factuality", fact)):
            inner_heads[kind].append(head)
            x, y, _ = stack(held, kind)
            oof[kind][0].append(head.p_error(x, features_of(kind)))
            oof[kind][1].append(y)
        a, b, pool, w = _completeness_rows(held, rel, fact, pair_weights(recipe))
        w_rows.append(w)
        a_rows.append(a)
        b_rows.append(b)
        pool_rows.append(pool)
    thresholds, calibrations = {}, {}
    for kind in ("relevance", "factuality"):
        calibrations[kind] = (1.0, 0.0)
        if oof[kind][0]:
            p, y = np.concatenate(oof[kind][0]), np.concatenate(oof[kind][1])
            if recipe.platt and len(set(y.tolist())) == 2:
                calibrations[kind] = fit_platt(p, y)
                p = calibrate(p, calibrations[kind])
            objective = recipe.relevance_threshold_objective if kind == "relevance" else recipe.threshold_objective
            thresholds[kind] = choose_threshold(p, y, objective)
        else:  # a single fold (tiny inputs): no held-out predictions to choose from
            thresholds[kind] = 0.5
    if recipe.average_folds and inner_heads["relevance"]:
        rel = average_heads(inner_heads["relevance"], thresholds["relevance"])
        fact = average_heads(inner_heads["factuality"], thresholds["factuality"])
    else:
        rel, fact = _segment_heads(tables, recipe, thresholds["relevance"], thresholds["factuality"])
    rel.calibration, fact.calibration = calibrations["relevance"], calibrations["factuality"]
    if not a_rows:
        a, b, pool, w = _completeness_rows(tables, rel, fact, pair_weights(recipe))
        a_rows, b_rows, pool_rows, w_rows = [a], [b], [pool], [w]
    completeness = fit_preference(np.concatenate(a_rows), np.concatenate(b_rows), list(recipe.completeness_features),
                                  COMPLETENESS_FEATURES, recipe.c_completeness, np.concatenate(pool_rows),
                                  np.concatenate(w_rows))
    _, blank, _, _ = _completeness_rows(tables, rel, fact, {"blank": 1.0}, real_pairs=False)
    if len(blank):
        completeness.blank_score = float(completeness.score(blank, COMPLETENESS_FEATURES).mean())
    return FittedHeads(rel, fact, completeness)
