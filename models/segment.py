"""Segmentation of a response into sentences and sub-sentences with exact character spans.

Why pysbd: the paper used spaCy's downloaded English model, which cannot be had offline here.
pysbd is rule-based (no model download), pure Python, handles abbreviations ("U.S.", "Dr.")
and decimals, and its `clean=False` mode never rewrites the text. We do not trust its own
`char_span` offsets (they drift on repeated sentences); instead each sentence it returns is
located in the source with a forward-moving cursor, so spans always round-trip:
`text[s.start:s.end] == s.text` for every segment.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass

GRANULARITIES = ("sentence", "sub-sentence", "response")
_SUBSENTENCE_PUNCT = (",", ";", "!", "?")
_MIN_WORDS = 5  # the paper's sub-sentence rule: split only if > 5 words remain; merge pieces < 5 words
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Segment:
    start: int
    end: int
    text: str


_local = threading.local()


def _segmenter():
    # one per thread: a pysbd.Segmenter keeps the text being split in its attributes, so a
    # shared one returns mixed-up sentences when two threads segment at once
    seg = getattr(_local, "segmenter", None)
    if seg is None:
        import pysbd

        seg = _local.segmenter = pysbd.Segmenter(language="en", clean=False)
    return seg


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def sentences(text: str) -> list[Segment]:
    """Sentences of `text` as stripped, ordered, non-overlapping character spans."""
    if not text or text.isspace():
        return []
    out: list[Segment] = []
    cursor = 0
    for piece in _segmenter().segment(text):
        core = piece.strip()
        if not core:
            continue
        pos = text.find(core, cursor)
        if pos < 0:  # pysbd altered the text (should not happen with clean=False): fall back to its length
            pos = cursor
            core = text[pos:pos + len(piece)].strip()
            if not core:
                continue
        end = pos + len(core)
        gap_start, gap_end = _strip_span(text, cursor, pos)
        if gap_end > gap_start:  # pysbd dropped characters (seen in runs like "!!?"): keep them
            if out:
                prev = out.pop()
                out.append(Segment(prev.start, gap_end, text[prev.start:gap_end]))
            else:
                pos = gap_start
        start, end = _strip_span(text, pos, end)
        out.append(Segment(start, end, text[start:end]))
        cursor = end
    if cursor < len(text) and text[cursor:].strip():
        # text after the last sentence pysbd returned (never dropped: spans must cover all words)
        start, end = _strip_span(text, cursor, len(text))
        out.append(Segment(start, end, text[start:end]))
    return out


def _split_sentence(text: str, sent: Segment) -> list[Segment]:
    words = [(sent.start + m.start(), sent.start + m.end()) for m in _WORD.finditer(sent.text)]
    pieces: list[list[tuple[int, int]]] = [[]]
    for i, w in enumerate(words):
        pieces[-1].append(w)
        remaining = len(words) - i - 1
        if text[w[1] - 1] in _SUBSENTENCE_PUNCT and remaining > _MIN_WORDS:
            pieces.append([])
    pieces = [p for p in pieces if p]
    merged: list[list[tuple[int, int]]] = []
    for p in pieces:
        if merged and len(p) < _MIN_WORDS:
            merged[-1].extend(p)
        else:
            merged.append(list(p))
    if len(merged) > 1 and len(merged[0]) < _MIN_WORDS:  # a short first piece has no previous one
        merged[1] = merged[0] + merged[1]
        merged.pop(0)
    return [Segment(p[0][0], p[-1][1], text[p[0][0]:p[-1][1]]) for p in merged]


def subsentences(text: str) -> list[Segment]:
    """Sub-sentences (the paper's rule) inside each sentence; every sentence start is a sub-sentence start."""
    return [piece for sent in sentences(text) for piece in _split_sentence(text, sent)]


def split(text: str, granularity: str) -> list[Segment]:
    """Segments of `text` at `granularity` ("sentence" | "sub-sentence" | "response")."""
    if granularity == "sentence":
        return sentences(text)
    if granularity == "sub-sentence":
        return subsentences(text)
    if granularity == "response":
        if not text or text.isspace():
            return []
        start, end = _strip_span(text, 0, len(text))
        return [Segment(start, end, text[start:end])]
    raise ValueError(f"unknown granularity {granularity!r}; expected one of {GRANULARITIES}")


def split_many(text: str, granularities) -> dict[str, list[Segment]]:
    """`split` at several granularities at once, running the sentence splitter only once
    (sub-sentences refine sentences); equal to ``{g: split(text, g) for g in granularities}``."""
    need_sentences = bool({"sentence", "sub-sentence"} & set(granularities))
    sents = sentences(text) if need_sentences else []
    out: dict[str, list[Segment]] = {}
    for g in granularities:
        if g == "sentence":
            out[g] = list(sents)
        elif g == "sub-sentence":
            out[g] = [piece for sent in sents for piece in _split_sentence(text, sent)]
        else:
            out[g] = split(text, g)
    return out
