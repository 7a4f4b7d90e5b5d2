"""Model inputs: question, passages and a response with one marker token before each segment.

Layout: [CLS] question [SEP] passages [SEP] [SEG] seg_1 [SEG] seg_2 ... [SEP]
(without passages: [CLS] question [SEP] [SEG] seg_1 ... [SEP]).

Each segment is tokenised on its own from its exact character span, so the marker positions
are known by construction: no re-tokenising of the whole text to find segment ends (a
caveat of the paper's release). Markers are never truncated: passages are cut first, then
the question; a response that cannot fit raises `InputTooLong` naming the limit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from functools import lru_cache
from typing import Sequence

import numpy as np

from models.errors import InputTooLong
from models.segment import Segment

MARKER_TOKEN = "[SEG]"
_WORD = re.compile(r"[a-z0-9]{3,}")
# Passage sentences only rank evidence (no spans needed), so a cheap regex split is enough here;
# pysbd costs ~20 ms per record of passages, more than the forward pass it feeds.
_PASSAGE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_STOP = frozenset("the and was were for with that this from are has have had his her its which who not but".split())


@dataclass
class Encoded:
    input_ids: list[int]
    marker_positions: list[int]  # token index of the marker before each segment, in segment order
    passage_tokens: int  # how many passage tokens survived truncation (diagnostics)


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


@lru_cache(maxsize=4096)  # trainers score many samples of one prompt: its passages repeat
def _passage_sentences(passage: str) -> tuple[tuple[str, frozenset[str]], ...]:
    """(sentence, its content words) for each sentence of a passage."""
    return tuple((s.strip(), frozenset(_content_words(s))) for s in _PASSAGE_SPLIT.split(passage) if s.strip())


def rank_passage_sentences(passages: list[str], response: str) -> list[str]:
    """Passage sentences ordered by word overlap with the response (ties keep document order).

    A factual sentence is one the passages support; with ~500 words of passages and a 512-token
    window, keeping the sentences that share content words with the response is what lets the
    factuality head see the evidence. Deterministic, per item (batch-invariant).
    """
    resp = _content_words(response)
    sents = [s for p in passages for s in _passage_sentences(p)]
    scored = sorted(range(len(sents)), key=lambda i: (-len(sents[i][1] & resp), i))
    return [sents[i][0] for i in scored]


class Encoder:
    """Turns (question, passages, response segments) into token ids with marker positions."""

    def __init__(self, tokenizer, max_length: int, use_passages: bool, marker_token: str = MARKER_TOKEN):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.use_passages = use_passages
        self.marker_id = tokenizer.convert_tokens_to_ids(marker_token)
        if self.marker_id is None or self.marker_id == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no marker token {marker_token!r}")
        self.cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        self.sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._sentence_ids: dict[str, list[int]] = {}  # passage sentence -> token ids (prompts repeat)

    def _cached_ids(self, sentences: list[str]) -> list[list[int]]:
        return cached_ids(self._sentence_ids, sentences, self._ids)

    def _ids(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def response_cost(self, segments: list[Segment]) -> int:
        """Tokens the response needs with its markers (the part that may never be cut)."""
        return sum(len(ids) + 1 for ids in self._ids([s.text for s in segments]))

    def encode(self, question: str, passages: list[str], response: str, segments: list[Segment]) -> Encoded:
        seg_ids = self._ids([s.text for s in segments])
        fixed = 3 + (1 if self.use_passages else 0)  # CLS, SEP after question, [SEP after passages], final SEP
        resp_len = sum(len(ids) + 1 for ids in seg_ids)
        if fixed + resp_len > self.max_length:
            raise InputTooLong("response", fixed + resp_len, self.max_length)
        budget = self.max_length - fixed - resp_len
        q_ids = self._ids([question])[0] if question else []
        q_ids = q_ids[:budget]  # cut the question only if even the question alone does not fit
        budget -= len(q_ids)
        p_ids: list[int] = []
        if self.use_passages and passages and budget > 0:
            ranked = rank_passage_sentences(passages, response)
            for ids in self._cached_ids(ranked):
                if len(p_ids) + len(ids) > budget:
                    continue  # a shorter, less similar sentence may still fit
                p_ids.extend(ids)
        ids = [self.cls_id, *q_ids, self.sep_id]
        if self.use_passages:
            ids += [*p_ids, self.sep_id]
        markers = []
        for s_ids in seg_ids:
            markers.append(len(ids))
            ids.append(self.marker_id)
            ids.extend(s_ids)
        ids.append(self.sep_id)
        return Encoded(ids, markers, len(p_ids))


def cached_ids(cache: dict[str, list[int]], texts: list[str], tokenize, limit: int = 50_000) -> list[list[int]]:
    """Token ids of `texts` through `cache` (text -> ids), tokenizing the missing ones in one call.
    Trainers score many samples of one prompt, so its passage sentences repeat; the cache is
    emptied past `limit` entries, since a long-running service sees endless new prompts."""
    missing = list(dict.fromkeys(t for t in texts if t not in cache))
    if missing:
        if len(cache) > limit:
            cache.clear()
        cache.update(zip(missing, tokenize(missing)))
    return [cache[t] for t in texts]


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded int64 input_ids and attention_mask (shared by training, eval and the service)."""
    width = max((len(r) for r in rows), default=1)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for k, r in enumerate(rows):
        ids[k, : len(r)] = r
        mask[k, : len(r)] = 1
    return ids, mask
