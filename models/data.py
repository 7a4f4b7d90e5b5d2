"""QA-Feedback records → labelled examples for the three reward heads.

The split is by question and fixed: a question goes to the dev split when the first byte of
sha1(question) modulo 5 is 0 (about 20% of questions), so it never depends on file order or a
random seed. Cross-validation folds use the same hash modulo 5 on the training questions.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from models.segment import Segment, sentences, subsentences

# The QA-Feedback files ship inside the repository (data/qa_feedback/README.md: provenance, licence)
DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "qa_feedback"
RELEVANCE_ERRORS = ("Irrelevant", "Redundant", "Incoherent")
FACTUALITY_ERRORS = ("Wrong-Grounding", "Unverifiable")
PAIRS = ((1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4))  # order of the `preference` list
RELEVANCE_MIN_WORDS = 5  # the release's overlap rule for relevance labels (capped by segment length)
IGNORE = -100


def fold_of(question: str, n_folds: int = 5) -> int:
    return hashlib.sha1(question.strip().encode("utf-8")).digest()[0] % n_folds


def split_records(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(train, dev): dev = questions in fold 0 of the sha1 hash."""
    train = [r for r in records if fold_of(r["question"]) != 0]
    dev = [r for r in records if fold_of(r["question"]) == 0]
    return train, dev


def load_records(path: str | Path) -> list[dict]:
    with Path(path).open() as fh:
        return json.load(fh)


def passages_of(record: dict) -> list[str]:
    """QA-Feedback passages are [title, sentence, ...]; the wire format wants one string each."""
    out = []
    for p in record.get("passages") or []:
        if isinstance(p, str):
            out.append(p)
        elif p:
            out.append(f"{p[0]}: " + " ".join(s.replace(f"{p[0]}\n\n", "") for s in p[1:]))
    return out


def _words_overlap(text: str, seg: Segment, start: int, end: int) -> int:
    lo, hi = max(seg.start, start), min(seg.end, end)
    if hi <= lo:
        return 0
    return len(text[lo:hi].split())


def _has_error(text: str, seg: Segment, spans: list[tuple[int, int]], min_words: int) -> bool:
    need = max(1, min(min_words, len(seg.text.split())))
    return any(_words_overlap(text, seg, s, e) >= need for s, e in spans)


@dataclass
class Example:
    """One response with what is known about it; IGNORE marks an unknown label."""

    question: str
    passages: list[str]
    response: str
    subsentences: list[Segment]
    relevance: list[int]  # per sub-sentence: 1 error, 0 ok, IGNORE unknown
    factuality: list[int]  # per sub-sentence that starts a sentence: label; IGNORE elsewhere / excluded
    factuality_all: list[int] = field(default_factory=list)  # same, without the relevance exclusion


def label_response(record: dict, response: str, spans_by_kind: dict[str, list[tuple[int, int]]] | None) -> Example:
    """Labels for `response`; spans_by_kind None = unlabelled (segments only)."""
    subs = subsentences(response)
    sent_starts = {s.start for s in sentences(response)}
    q, ps = record["question"], passages_of(record)
    if spans_by_kind is None:
        n = len(subs)
        return Example(q, ps, response, subs, [IGNORE] * n, [IGNORE] * n, [IGNORE] * n)
    rel_spans, fact_spans = spans_by_kind["relevance"], spans_by_kind["factuality"]
    relevance = [int(_has_error(response, s, rel_spans, RELEVANCE_MIN_WORDS)) for s in subs]
    factuality, factuality_all = [], []
    sents = sentences(response)
    for i, s in enumerate(subs):
        if s.start not in sent_starts:
            factuality.append(IGNORE)
            factuality_all.append(IGNORE)
            continue
        sent = next(x for x in sents if x.start == s.start)
        label = int(_has_error(response, sent, fact_spans, 1))
        factuality_all.append(label)
        # annotators did not mark factual errors inside irrelevant text: leave those sentences out
        sent_rel_error = _has_error(response, sent, rel_spans, 1)
        factuality.append(IGNORE if sent_rel_error else label)
    return Example(q, ps, response, subs, relevance, factuality, factuality_all)


def error_spans(record: dict) -> dict[str, list[tuple[int, int]]]:
    errs = (record.get("feedback") or {}).get("errors") or []
    return {
        "relevance": [(e["start"], e["end"]) for e in errs if e["error type"] in RELEVANCE_ERRORS],
        "factuality": [(e["start"], e["end"]) for e in errs if e["error type"] in FACTUALITY_ERRORS],
    }


def labelled_example(record: dict) -> Example:
    """prediction 1 with its fine-grained labels (the only prediction that has them)."""
    return label_response(record, record["prediction 1"], error_spans(record))


def corrected_example(record: dict) -> Example | None:
    """The human-corrected prediction: annotators removed or fixed every marked error, so all its segments are 'ok'."""
    text = (record.get("feedback") or {}).get("corrected-prediction") or ""
    if not text.strip():
        return None
    return label_response(record, text, {"relevance": [], "factuality": []})


def preference_pairs(record: dict) -> list[tuple[int, int]]:
    """Non-tie pairs as (preferred, other) prediction numbers."""
    out = []
    for (a, b), p in zip(PAIRS, record.get("preference") or []):
        if p == 1:
            out.append((a, b))
        elif p == 2:
            out.append((b, a))
    return out
