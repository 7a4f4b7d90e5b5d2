"""K-fold cross-validation by question (`fgrm eval --cv K`): the protocol every recipe choice is made on.

Folds: a question's fold is sha1(question)[0] % K (models.data.fold_of), so every answer to a
question is in the same fold and the folds never depend on file order. Each fold fits the
recipe from scratch on the other K-1 folds (thresholds and stacking cross-fitted inside them,
models.recipe.fit) and is scored on its own records. Reported per segment type, mean ± std over
folds: accuracy, error-F1, ROC-AUC and ECE of P(error); for completeness, pairwise accuracy over
non-tie human preferences. Beside each, on the same fold:

- trivial baselines: majority-class accuracy, the error-F1 of "everything is an error", AUC 0.5,
  and for completeness "prefer the earlier prediction";
- the lexical baseline: the best single word-overlap signal (overlap with the question or the
  passages, novelty against both, redundancy, position, length), picked with its sign by ROC-AUC
  on the training folds, turned into P(error) by a one-feature logistic regression and
  thresholded by the recipe's own rule; for completeness, the best single response signal;
- the best single engineered signal (any lexical signal of models.signals, same procedure): a
  stricter reference than the issue asks for, reported so nobody has to wonder.

And for relevance, the share of the test fold's synthetic fragment answers (an answer's first 1-4
words alone, models.tables) the head calls errors: no human label says so, but a reward that a
policy can earn by answering in one word is a hole (clients/README.md).
"""
from __future__ import annotations

import numpy as np

from models.heads import LogisticHead, binary_metrics, choose_threshold, ece, fit_logistic, roc_auc
from models.recipe import LEXICAL, Recipe, _completeness_rows, fit
from models.signals import (COMPLETENESS_FEATURES, REFERENCE_SEGMENT_FEATURES, RESPONSE_FEATURES, SEGMENT_FEATURES,
                           without_reference)
from models.tables import RecordTable, features_of, stack, synthetic_fragments

SEGMENT_KINDS = ("relevance", "factuality", "factuality_all")
# the "simple lexical-overlap signal" family
OVERLAP_FEATURES = ("question_overlap", "passage_support", "novel", "redundancy_prev", "redundancy_response",
                    "position", "log_words")
# A recipe that reads a reference answer is compared with the reference's own overlap signals too
# (overlap with a reference is the classic lexical reward: ROUGE-like)
REFERENCE_LEXICAL = tuple(f for f in REFERENCE_SEGMENT_FEATURES if not f.startswith("ref_cos"))


def _candidates(recipe: Recipe, kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(lexical, best-signal) candidates for the baselines of `recipe`'s `kind` head: with the
    reference's overlap signals where that head reads them."""
    features = {"relevance": recipe.relevance_features, "factuality": recipe.factuality_features,
                "completeness": recipe.completeness_features}[kind]
    reads = without_reference(features) != tuple(features)
    if kind == "completeness":
        names = tuple(f for f in (RESPONSE_FEATURES if reads else without_reference(RESPONSE_FEATURES))
                      if not f.startswith(("cos_", "ref_cos")))
        return names, names
    ref = REFERENCE_LEXICAL if reads else ()
    return OVERLAP_FEATURES + ref[:1], LEXICAL + ref


def _best_single(x: np.ndarray, y: np.ndarray, candidates) -> tuple[str, float]:
    """(feature, sign) with the highest training ROC-AUC once oriented."""
    best, best_auc = (candidates[0], 1.0), -1.0
    for name in candidates:
        auc = roc_auc(x[:, SEGMENT_FEATURES.index(name)], y) or 0.5
        sign = 1.0 if auc >= 0.5 else -1.0
        if max(auc, 1 - auc) > best_auc:
            best, best_auc = (name, sign), max(auc, 1 - auc)
    return best


def _single_feature_head(train_x, train_y, candidates, objective) -> LogisticHead:
    name, _ = _best_single(train_x, train_y, candidates)
    head = fit_logistic(train_x, train_y, [name], SEGMENT_FEATURES, c=1e6)
    # threshold chosen on the training folds' own predictions (one feature: no room to overfit)
    head.threshold = choose_threshold(head.p_error(train_x, SEGMENT_FEATURES), train_y, objective)
    return head


def _segment_report(p: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    m = binary_metrics(p > threshold, y)
    return {"accuracy": m["accuracy"], "error_f1": m["error_f1"], "auc": roc_auc(p, y), "ece": ece(p, y)}


def _pairwise(score_a: np.ndarray, score_b: np.ndarray) -> float | None:
    return float((score_a > score_b).mean()) if len(score_a) else None


def cross_validate(tables: list[RecordTable], recipe: Recipe, k: int = 5) -> dict:
    """Per-fold and summary metrics of `recipe` and the baselines (see the module docstring)."""
    from models.data import fold_of

    fold_by_question = {t.question: fold_of(t.question, k) for t in tables}
    folds = []
    for f in range(k):
        train = [t for t in tables if fold_by_question[t.question] != f]
        test = [t for t in tables if fold_by_question[t.question] == f]
        if not train or not test:
            continue
        heads = fit(train, recipe)
        fold: dict = {"fold": f, "records": len(test)}
        for kind in SEGMENT_KINDS:
            head = heads.relevance if kind == "relevance" else heads.factuality
            x, y, _ = stack(test, kind)
            tx, ty, _ = stack(train, kind)
            if not len(y):
                continue
            pos = float(y.mean())
            row = {"n": int(len(y)), "model": _segment_report(head.p_error(x, features_of(kind)), y, head.threshold),
                   "majority_accuracy": max(pos, 1 - pos), "all_error_f1": 2 * pos / (1 + pos) if pos else 0.0}
            for key, cands in zip(("lexical", "best_signal"), _candidates(recipe, kind.split("_")[0])):
                objective = (recipe.relevance_threshold_objective if kind == "relevance"
                             else recipe.threshold_objective)
                base = _single_feature_head(tx, ty, list(cands), objective)
                row[key] = {"feature": base.features[0],
                            **_segment_report(base.p_error(x, SEGMENT_FEATURES), y, base.threshold)}
            fold[kind] = row
        fragments = synthetic_fragments(test)
        if "relevance" in fold and len(fragments):
            flagged = heads.relevance.p_error(fragments, features_of("relevance")) > heads.relevance.threshold
            fold["relevance"]["fragments_flagged"] = float(flagged.mean())
        a, b, _, _ = _completeness_rows(test, heads.relevance, heads.factuality)
        ta, tb, _, _ = _completeness_rows(train, heads.relevance, heads.factuality)
        comp = heads.completeness
        row = {"n_pairs": int(len(a)),
               "model": _pairwise(comp.score(a, COMPLETENESS_FEATURES), comp.score(b, COMPLETENESS_FEATURES)),
               "prefer_earlier": float(np.mean([p < o for t in test for p, o in t.pairs])) if a.size else None}
        # lexical baseline: the single response signal (with its sign) that orders training pairs best
        best, best_acc = None, -1.0
        for name in _candidates(recipe, "completeness")[0]:
            j = COMPLETENESS_FEATURES.index(name)
            for sign in (1.0, -1.0):
                acc = _pairwise(sign * ta[:, j], sign * tb[:, j]) or 0.0
                if acc > best_acc:
                    best, best_acc = (name, sign, j), acc
        name, sign, j = best
        row["lexical"] = {"feature": name, "pairwise_accuracy": _pairwise(sign * a[:, j], sign * b[:, j])}
        for kind in ("truncated", "echo", "blank"):  # synthetic pairs: each prediction over its first sentence / the question / nothing
            sa, sb, _, _ = _completeness_rows(test, heads.relevance, heads.factuality, {kind: 1.0}, real_pairs=False)
            row[f"{kind}_ordered"] = _pairwise(comp.score(sa, COMPLETENESS_FEATURES), comp.score(sb, COMPLETENESS_FEATURES))
        fold["completeness"] = row
        folds.append(fold)
    return {"recipe": recipe.name, "k": k, "folds": folds, "summary": summarise(folds)}


def _ms(values) -> dict:
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    return {"mean": float(v.mean()) if len(v) else None, "std": float(v.std()) if len(v) else None}


def summarise(folds: list[dict]) -> dict:
    out: dict = {}
    for kind in SEGMENT_KINDS:
        rows = [f[kind] for f in folds if kind in f]
        if not rows:
            continue
        s: dict = {"n": sum(r["n"] for r in rows)}
        for metric in ("accuracy", "error_f1", "auc", "ece"):
            s[metric] = _ms(r["model"][metric] for r in rows)
            for base in ("lexical", "best_signal"):
                s[f"{base}_{metric}"] = _ms(r[base][metric] for r in rows)
        s["majority_accuracy"] = _ms(r["majority_accuracy"] for r in rows)
        s["all_error_f1"] = _ms(r["all_error_f1"] for r in rows)
        s["fragments_flagged"] = _ms(r.get("fragments_flagged") for r in rows)
        s["lexical_features"] = sorted({r["lexical"]["feature"] for r in rows})
        s["best_signal_features"] = sorted({r["best_signal"]["feature"] for r in rows})
        out[kind] = s
    rows = [f["completeness"] for f in folds]
    out["completeness"] = {"n_pairs": sum(r["n_pairs"] for r in rows),
                           "pairwise_accuracy": _ms(r["model"] for r in rows),
                           "prefer_earlier_accuracy": _ms(r["prefer_earlier"] for r in rows),
                           "lexical_pairwise_accuracy": _ms(r["lexical"]["pairwise_accuracy"] for r in rows),
                           "lexical_features": sorted({r["lexical"]["feature"] for r in rows}),
                           **{f"{kind}_ordered": _ms(r.get(f"{kind}_ordered") for r in rows)
                              for kind in ("truncated", "echo", "blank")}}
    return out


def verdicts(summary: dict) -> dict:
    """For each type and metric: does the model beat every baseline by more than one fold std?"""
    out = {}
    for kind in ("relevance", "factuality"):
        s = summary.get(kind)
        if not s:
            continue
        checks = {}
        for metric, trivial in (("accuracy", "majority_accuracy"), ("error_f1", "all_error_f1"), ("auc", None)):
            m, sd = s[metric]["mean"], s[metric]["std"]
            bars = [s[f"lexical_{metric}"]["mean"]] + ([s[trivial]["mean"]] if trivial else [0.5])
            checks[metric] = bool(m - sd > max(bars))
        checks["ece"] = bool(s["ece"]["mean"] + s["ece"]["std"] < s["lexical_ece"]["mean"])
        out[kind] = checks
    c = summary["completeness"]
    m, sd = c["pairwise_accuracy"]["mean"], c["pairwise_accuracy"]["std"]
    out["completeness"] = {"pairwise_accuracy": bool(m - sd > max(c["prefer_earlier_accuracy"]["mean"],
                                                                    c["lexical_pairwise_accuracy"]["mean"]))}
    return out


def markdown(results: list[dict]) -> str:
    """One table row per (recipe, type): model mean ± std and the baselines."""
    def f(d):
        return "–" if d["mean"] is None else f"{d['mean']:.3f} ± {d['std']:.3f}"

    lines = ["| recipe | type | accuracy (majority / lexical) | error-F1 (all-error / lexical) "
             "| ROC-AUC (lexical / best signal) | ECE (lexical) | fragments flagged |",
             "|---|---|---|---|---|---|---|"]
    for res in results:
        s = res["summary"]
        for kind in SEGMENT_KINDS:
            if kind not in s:
                continue
            k = s[kind]
            lines.append(f"| {res['recipe']} | {kind} | {f(k['accuracy'])} ({k['majority_accuracy']['mean']:.3f} / "
                         f"{k['lexical_accuracy']['mean']:.3f}) | {f(k['error_f1'])} "
                         f"({k['all_error_f1']['mean']:.3f} / "
                         f"{k['lexical_error_f1']['mean']:.3f}) | {f(k['auc'])} ({k['lexical_auc']['mean']:.3f} / "
                         f"{k['best_signal_auc']['mean']:.3f}) | {f(k['ece'])} ({k['lexical_ece']['mean']:.3f}) | "
                         f"{f(k['fragments_flagged']) if k.get('fragments_flagged', {}).get('mean') is not None else ''} |")
        c = s["completeness"]
        lines.append(f"| {res['recipe']} | completeness (pairwise) | {f(c['pairwise_accuracy'])} (earlier "
                     f"{c['prefer_earlier_accuracy']['mean']:.3f} / lexical "
                     f"{c['lexical_pairwise_accuracy']['mean']:.3f}; synthetic pairs ordered: truncated "
                     f"{f(c['truncated_ordered'])}, echo {f(c['echo_ordered'])}, blank {f(c['blank_ordered'])}) | | | | |")
    return "\n".join(lines)


def plot(results: list[dict], path) -> None:
    """One panel per type: each recipe's CV mean ± std beside the trivial and lexical baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("relevance", "auc", "ROC-AUC"), ("relevance", "accuracy", "accuracy"),
              ("factuality", "auc", "ROC-AUC"), ("factuality", "error_f1", "error-F1"),
              ("completeness", "pairwise_accuracy", "pairwise accuracy")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 0.45 * len(results) + 2.2), sharey=True)
    names = [r["recipe"] for r in results]
    for ax, (kind, metric, label) in zip(axes, panels):
        vals = [r["summary"][kind][metric] for r in results]
        ax.barh(range(len(names)), [v["mean"] for v in vals], xerr=[v["std"] for v in vals], color="#4477aa",
                alpha=0.85, capsize=3)
        s = results[0]["summary"][kind]
        if kind == "completeness":
            refs = [("prefer earlier", s["prefer_earlier_accuracy"]["mean"], "#cc6677"),
                    ("best single signal", s["lexical_pairwise_accuracy"]["mean"], "#999933")]
        else:
            trivial = {"auc": 0.5, "accuracy": s["majority_accuracy"]["mean"],
                       "error_f1": s["all_error_f1"]["mean"]}[metric]
            refs = [("trivial", trivial, "#cc6677"), ("lexical", s[f"lexical_{metric}"]["mean"], "#999933")]
        for name, x, colour in refs:
            ax.axvline(x, color=colour, linestyle="--", label=f"{name} {x:.3f}")
        lo = min([v["mean"] - v["std"] for v in vals] + [x for _, x, _ in refs])
        ax.set_xlim(max(0.0, lo - 0.05), min(1.0, max(v["mean"] + v["std"] for v in vals) + 0.05))
        ax.set_title(f"{kind}: {label}", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_yticks(range(len(names)))
    axes[0].set_yticklabels(names, fontsize=8)
    fig.suptitle(f"{results[0]['k']}-fold cross-validation by question (mean ± std over folds)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
