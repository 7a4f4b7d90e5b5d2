"""Measurement (no model change): how much of a fold's ECE is sampling noise.

`fgrm eval --cv 5` reports ECE per fold (10 equal-width bins over ~430 relevance rows). Even a
perfectly calibrated predictor has a non-zero ECE on a finite sample, and the more its
predictions spread over the bins, the larger that floor: a one-feature model predicting
close to the base rate puts most rows in one or two bins and has a low floor. For each fold
and each model this draws labels from the model's own probabilities (so the model is
calibrated by construction) 2,000 times and reports the mean ECE of those draws beside the
measured one. Measured minus floor is the part a better calibration could remove.

    .venv/bin/python docs/quality/experiments/ece_noise_floor.py     # ~1 min, embeddings cached
"""
import numpy as np

from models.crossval import OVERLAP_FEATURES, _single_feature_head
from models.data import load_records
from models.heads import ece
from models.recipe import RECIPES, fit
from models.signals import SEGMENT_FEATURES
from models.tables import build_with_cache, embedding_cache_path, features_of, stack


def floor(p: np.ndarray, draws: int = 2000, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    return float(np.mean([ece(p, (rng.random(len(p)) < p).astype(float)) for _ in range(draws)]))


def main():
    tables = build_with_cache(load_records("data/qa_feedback/dev_feedback.json"), embedding_cache_path(None))
    recipe = RECIPES["signals-lr"]
    rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for f in range(5):
        train = [t for t in tables if t.fold != f]
        test = [t for t in tables if t.fold == f]
        heads = fit(train, recipe)
        for kind, head in (("relevance", heads.relevance), ("factuality", heads.factuality)):
            x, y, _ = stack(test, kind)
            tx, ty, _ = stack(train, kind)
            objective = recipe.relevance_threshold_objective if kind == "relevance" else recipe.threshold_objective
            lexical = _single_feature_head(tx, ty, list(OVERLAP_FEATURES), objective)
            for name, p in (("model", head.p_error(x, features_of(kind))),
                            ("lexical", lexical.p_error(x, SEGMENT_FEATURES))):
                rows.setdefault((kind, name), []).append((ece(p, y), floor(p)))
        print(f"fold {f} done", flush=True)
    print("| type | model | ECE | noise floor | ECE − floor |\n|---|---|---|---|---|")
    for (kind, name), v in rows.items():
        a = np.array(v)
        print(f"| {kind} | {name} | {a[:, 0].mean():.3f} ± {a[:, 0].std():.3f} | {a[:, 1].mean():.3f} | "
              f"{(a[:, 0] - a[:, 1]).mean():.3f} ± {(a[:, 0] - a[:, 1]).std():.3f} |")


if __name__ == "__main__":
    main()
