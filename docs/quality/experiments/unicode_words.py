"""Experiment (not shipped): the signals' words with a Unicode-aware tokeniser.

models.signals splits words with `[A-Za-z0-9]+`: "Zürich" becomes "z" + "rich" and "Beyoncé"
becomes "beyonc". Both sides of an overlap are cut alike, so they still match each other, but
"rich" also matches the English word, and text in another script has no words at all (149 of
the question, answer, gold and passage texts of the 400 records have a word the two tokenisers
split differently). This reruns the 5-fold CV of the shipped recipe and its reference twin with
words as runs of Unicode letters and digits (and names starting with any capital letter):

    .venv/bin/python docs/quality/experiments/unicode_words.py ascii      # as shipped
    .venv/bin/python docs/quality/experiments/unicode_words.py unicode    # ~1 min each, embeddings cached

Measured 2026-11-28 (AUC / accuracy; completeness pairwise): signals-lr relevance 0.7233 /
0.612 -> 0.7232 / 0.613, factuality 0.9036 / 0.832 -> 0.9037 / 0.825, completeness 0.554 ->
0.553; signals-lr-reference relevance 0.8871 -> 0.8865, completeness 0.632 -> 0.633. No
difference on QA-Feedback (English Wikipedia), so the signal definition (and every figure measured
on it) stays; a deployment on text with many accented names, or another script, should redo this.
"""
import re
import sys

import models.signals as signals


def main() -> None:
    if sys.argv[1:] == ["unicode"]:
        signals._WORD = re.compile(r"[^\W_]+(?:['’][^\W\d_]+)?")
        signals._CAPITAL = re.compile(r"(?<![.!?]\s)(?<!^)\b[^\W\d_a-z][^\W\d_]+")
    from models.crossval import cross_validate
    from models.data import load_records
    from models.recipe import RECIPES
    from models.tables import build_with_cache, embedding_cache_path

    tables = build_with_cache(load_records("data/qa_feedback/dev_feedback.json"), embedding_cache_path(None))
    for name in ("signals-lr", "signals-lr-reference"):
        s = cross_validate(tables, RECIPES[name])["summary"]
        print(f"{sys.argv[1:] or ['ascii']} {name}: " + ", ".join(
            f"{k} AUC {s[k]['auc']['mean']:.4f} accuracy {s[k]['accuracy']['mean']:.3f}" for k in ("relevance", "factuality"))
            + f", completeness {s['completeness']['pairwise_accuracy']['mean']:.3f}", flush=True)


if __name__ == "__main__":
    main()
