"""Labels from QA-Feedback annotations: the rules the README documents."""
import pytest

from models.data import (IGNORE, corrected_example, error_spans, fold_of, label_response, preference_pairs,
                         split_records)

RESPONSE = ("Bloom is the second studio album by Troye Sivan, released in 2018 through EMI Australia. "
            "The album has guest appearances from Gordi and Ariana Grande. "
            "It was recorded on the moon in 1850.")


def _record(errors, preference=(1, 2, 0, 1, 2, 1)):
    return {"question": "When was Bloom released?", "passages": [["Bloom", "Bloom is an album."]],
            "prediction 1": RESPONSE, "prediction 2": "b", "prediction 3": "c", "prediction 4": "d",
            "preference": list(preference),
            "feedback": {"errors": errors, "corrected-prediction": "Bloom was released in 2018."}}


def _span(text, kind):
    start = RESPONSE.index(text)
    return {"error type": kind, "start": start, "end": start + len(text), "explanation": ""}


def test_relevance_needs_five_overlapping_words_and_factuality_skips_irrelevant_sentences():
    second = "The album has guest appearances from Gordi and Ariana Grande."
    third = "It was recorded on the moon in 1850."
    rec = _record([_span(second, "Irrelevant"), _span(third, "Wrong-Grounding"),
                   _span("released in 2018 through", "Redundant")])  # 4 words: below the 5-word rule
    ex = label_response(rec, RESPONSE, error_spans(rec))
    texts = [s.text for s in ex.subsentences]
    assert texts[0].startswith("Bloom is") and texts[-1] == third
    assert ex.relevance == [0, 0, 1, 0]
    # factuality labels sit on sentence-start sub-sentences only; a sentence that overlaps any
    # relevance span (even one too short to label its sub-sentence) is left out
    assert ex.factuality == [IGNORE, IGNORE, IGNORE, 1]
    assert ex.factuality_all == [0, IGNORE, 0, 1]


def test_corrected_prediction_is_all_ok_and_preferences_skip_ties():
    rec = _record([])
    ce = corrected_example(rec)
    assert ce is not None and set(ce.relevance) == {0}
    # pairs (1,2) (1,3) (1,4) (2,3) (2,4) (3,4) with preferences 1 2 0 1 2 1
    assert preference_pairs(rec) == [(1, 2), (3, 1), (2, 3), (4, 2), (3, 4)]


def test_split_is_by_question_and_stable():
    recs = [{"question": f"q{i}"} for i in range(200)] + [{"question": "q3"}]
    train, dev = split_records(recs)
    assert {r["question"] for r in train}.isdisjoint({r["question"] for r in dev})
    assert 20 <= len(dev) <= 60
    assert fold_of("q3") == fold_of(" q3 ")  # surrounding whitespace does not move a question


def test_preference_audit_counts_position_wins_and_orderings():
    from models.preference_audit import audit

    record = {"question": "Who wrote Hamlet?", "passages": [["Hamlet", "Hamlet was written by Shakespeare."]],
              "gold": "Shakespeare wrote Hamlet.",
              "prediction 1": "Shakespeare wrote it.", "prediction 2": "Nobody knows.",
              "prediction 3": "It was Shakespeare.", "prediction 4": "Marlowe wrote it in Paris.",
              # 1>2, 3>1 (later wins), 1~4 tie, 3>2, 2~4 tie, 3>4
              "preference": [1, 2, 0, 2, 0, 1]}
    res = audit([record])
    assert res["pairs"] == 4
    assert res["earlier_wins"] == {"1 vs 2": 1.0, "1 vs 3": 0.0, "2 vs 3": 0.0, "3 vs 4": 1.0}
    oracle = res["orderings"]["gold-answer overlap (oracle)"]
    # gold words {shakespeare, wrote, hamlet}: 1 has 2, 2 has 0, 3 has 1, 4 has 1 ("wrote")
    # 1>2 right, 3>1 wrong, 3>2 right, 3>4 tie
    assert oracle["accuracy_without_ties"] == pytest.approx(2 / 3) and oracle["ties"] == 0.25
