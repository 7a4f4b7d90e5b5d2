"""Experiment (not shipped): what completeness charges a blank answer, in units of its own spread.

The reward for completeness is the head's score as a z-score over the training responses
(x 0.3). PPO with references fell silent faster than without (clients/README.md), and the
reason is here: the reference head puts a blank answer 7.4 of its standard deviations below the
mean answer, the reference-free head 11.7. This fits each head on all 400 records and prints
that distance, then tries preference pairs "each answer over the blank one" (Recipe.blank_pair_weight)
as a way to push it further, with their 5-fold CV cost.

    .venv/bin/python docs/quality/experiments/blank_charge.py 0.1 1 3      # ~2.5 min, embeddings cached

Measured 2026-11-28: base -11.69 (CV pairwise 0.554); reference -7.37 (0.632); with blank pairs
at 0.1 / 1 / 3: -5.30 / -6.31 / -6.87 (0.631 / 0.630 / 0.630). The pairs bring the blank answer
*closer* (it was already below every answer; the pairs only ask for "below", and the
regularised fit takes the smaller step), so they were not kept; the reference head's score is
anchored to the served scale instead (models.signal_model._on_base_scale: the blank answer costs
the same in both modes).
"""
import sys
from dataclasses import replace

import numpy as np

from models.crossval import cross_validate
from models.data import load_records
from models.recipe import RECIPES, _completeness_rows, fit
from models.signals import COMPLETENESS_FEATURES
from models.tables import build_with_cache, embedding_cache_path

recs = load_records("data/qa_feedback/dev_feedback.json")
tables = build_with_cache(recs, embedding_cache_path(None))
variants = {"base": RECIPES["signals-lr"], "reference": RECIPES["signals-lr-reference"]}
for w in (float(x) for x in sys.argv[1:]):
    variants[f"reference + blank pairs at {w}"] = replace(RECIPES["signals-lr-reference"], name=f"blank{w}",
                                                          blank_pair_weight=w)
for name, recipe in variants.items():
    heads = fit(tables, recipe)
    c = heads.completeness
    answers, blank, _, _ = _completeness_rows(tables, heads.relevance, heads.factuality, {"blank": 1.0},
                                              real_pairs=False)
    z_blank = (c.score(blank, COMPLETENESS_FEATURES) - c.score_mean) / c.score_std
    z_answers = (c.score(answers, COMPLETENESS_FEATURES) - c.score_mean) / c.score_std
    cv = cross_validate(tables, recipe, 5)["summary"]["completeness"]
    print(f"{name}: blank z {z_blank.mean():.2f} (lowest answer {z_answers.min():.2f}, answers below blank "
          f"{np.mean(z_answers < z_blank):.3f}); CV pairwise {cv['pairwise_accuracy']['mean']:.3f} ± "
          f"{cv['pairwise_accuracy']['std']:.3f}, truncated ordered {cv['truncated_ordered']['mean']:.3f}", flush=True)
