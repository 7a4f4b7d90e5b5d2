"""Engineered reward signals: what the labels of QA-Feedback mean, written as numbers.

The annotators marked a sub-sentence as a relevance error when it is irrelevant to the question,
repeats earlier text or is incoherent; a sentence as a factuality error when the passages do not
support it; and they preferred the answer that covers more of what the passages say. Each of
those has a cheap, measurable trace, which is what this module computes per segment:

- support in the passages: the share of a segment's content words, numbers and capitalised names
  found in the passages, in the best single passage sentence, and the share of its word bigrams
  found there (a fabricated name, date or number is the typical factuality error);
- novelty against the question and the passages together, and overlap with the question;
- redundancy: the largest share of its content words already said by an earlier segment;
- position and length (irrelevant material tends to come late, in long answers);
- with sentence embeddings (all-MiniLM-L6-v2, frozen): cosine to the question, the best cosine
  to a passage sentence, the best cosine to an earlier segment.

Everything is a pure function of one item (question, passages, response): no batch, no state,
so a reward never depends on what it was scored with. The column order is `SEGMENT_FEATURES` /
`RESPONSE_FEATURES`; a checkpoint stores the names it was trained on and the scorer checks them.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from models.segment import Segment

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CAPITAL = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-zA-Z]+")
# Passage sentences only need to be compared, not located: a cheap regex split is enough.
_PASSAGE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_STOP = frozenset("""a an the and or but if of to in on at by for with from as into onto over under than then
that this these those there here is are was were be been being am do does did has have had having it its it's
he she they them his her their hers theirs we our you your i me my mine which who whom whose what when where
why how not no nor so too very can could will would shall should may might must also just only more most
such other some any each both all many much one about after before during while since until because out up
down off again further once s t""".split())

BASE_SEGMENT_FEATURES = (
    "log_words", "position", "is_first", "is_last", "n_segments_log",
    "question_overlap", "passage_support", "novel", "best_sentence_support", "bigram_support",
    "numbers_unsupported", "names_unsupported", "redundancy_prev", "redundancy_response",
    "best_passage_question_overlap", "no_end_punct",
    "answer_region_support",
    "cos_question", "cos_best_passage", "cos_prev_max", "cos_best_passage_to_question", "cos_answer_region",
)
BASE_RESPONSE_FEATURES = (
    "log_words", "log_sentences", "passage_coverage", "question_passage_coverage", "unique_ratio",
    "mean_novel", "mean_redundancy", "no_end_punct", "cos_question", "cos_passages_mean",
)
# Against a reference answer, when the request gives one (0 without): the segment's content words
# and bigrams found in it, its best share in one reference sentence, its best cosine to one; per
# response, the share of the reference's content words and bigrams it covers, the share of its own
# words the reference has, the reference sentences it matches (best cosine to one of its sentences
# over REFERENCE_MATCH) and their mean best cosine. Only the reference heads read these
# (models.recipe); a human-written reference ranks relevance errors at ROC-AUC 0.87 alone on CV.
REFERENCE_SEGMENT_FEATURES = ("ref_support", "ref_bigram_support", "ref_best_sentence_support", "ref_cos_best")
REFERENCE_RESPONSE_FEATURES = ("ref_recall", "ref_bigram_recall", "ref_precision", "ref_sentences_matched",
                               "ref_cos_mean")
REFERENCE_MATCH = 0.6
SEGMENT_FEATURES = BASE_SEGMENT_FEATURES + REFERENCE_SEGMENT_FEATURES
RESPONSE_FEATURES = BASE_RESPONSE_FEATURES + REFERENCE_RESPONSE_FEATURES
# A sub-sentence is judged in its answer: errors come in runs (P(error | previous is an error) =
# 0.71 against 0.37 after a correct one, on the 400 records) and an answer's error rate varies
# far more between answers than the segment signals alone explain. So the relevance head also
# sees each signal of the previous and next sub-sentence, and its mean, max and running mean
# over the answer: still a pure function of the one response.
CONTEXT_VIEWS = ("prev", "next", "mean", "max", "sofar")
# A piece shorter than the segmenter ever cuts (models.segment merges pieces under 5 words into
# the previous one) is either a whole answer that short or a fragment: 1 of the 2,156 labelled
# sub-sentences. Without this flag the head extrapolates its signals and a one-word answer passed
# relevance, which a PPO policy under relevance weight 2 learnt to exploit (clients/README.md).
FRAGMENT_WORDS = 5
SUBSENTENCE_FEATURES = SEGMENT_FEATURES + tuple(f"{view}.{name}" for view in CONTEXT_VIEWS
                                                for name in SEGMENT_FEATURES) + ("fragment",)
# completeness is stacked on the segment heads: their P(error) summarised per response
STACK_FEATURES = ("relevance_p_mean", "relevance_p_max", "relevance_ok_sum",
                  "factuality_p_mean", "factuality_p_max", "factuality_p_sum")
COMPLETENESS_FEATURES = RESPONSE_FEATURES + STACK_FEATURES


def without_reference(features: tuple[str, ...]) -> tuple[str, ...]:
    """`features` less every reference signal and its context views: what a head reads that must
    score a response the same with or without a reference."""
    ref = set(REFERENCE_SEGMENT_FEATURES) | set(REFERENCE_RESPONSE_FEATURES)
    return tuple(f for f in features if f.split(".")[-1] not in ref)



def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if w not in _STOP and (len(w) > 2 or w.isdigit())}


def first_content_words(text: str, k: int) -> str:
    """`text`'s first words, up to and including its k-th content word (a reference cut short:
    docs/quality/experiments/terse_reference.py, benchmarks/reference_cost.py)."""
    out, n = [], 0
    for w in text.split():
        out.append(w)
        n += bool(content_words(w))
        if n >= k:
            break
    return " ".join(out)


def _bigrams(text: str) -> set[tuple[str, str]]:
    ws = words(text)
    return set(zip(ws, ws[1:]))


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def _names(text: str) -> set[str]:
    return {m.lower() for m in _CAPITAL.findall(text) if m.lower() not in _STOP}


@lru_cache(maxsize=4096)  # trainers score many samples of one prompt: its passages repeat
def passage_sentences(passage: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in _PASSAGE_SPLIT.split(passage) if s.strip())


@dataclass
class Context:
    """What every segment of one item is compared with (built once per item)."""

    question: str
    question_words: set[str]
    sentences: list[str]  # passage sentences, in document order
    sentence_words: list[set[str]]
    sentence_passage: list[int]  # index of the passage each sentence comes from
    passage_words: set[str]
    passage_bigrams: set[tuple[str, str]]
    passage_numbers: set[str]
    passage_text_lower: str
    passage_question_overlap: list[float]  # per passage: share of question words it contains
    answer_region: list[int]  # the passage sentences sharing most words with the question (up to 3)
    answer_region_words: set[str]
    reference_sentences: list[str]  # empty without a reference answer
    reference_sentence_words: list[set[str]]
    reference_words: set[str]
    reference_bigrams: set[tuple[str, str]]

    @classmethod
    def of(cls, question: str, passages: list[str], reference: str = "") -> "Context":
        sents, owner = [], []
        for k, p in enumerate(passages):
            for s in passage_sentences(p):
                sents.append(s)
                owner.append(k)
        sw = [content_words(s) for s in sents]
        qw = content_words(question)
        pw = set().union(*sw) if sw else set()
        big = set().union(*(_bigrams(s) for s in sents)) if sents else set()
        pq = [len(qw & content_words(p)) / len(qw) if qw else 0.0 for p in passages]
        ranked = sorted(range(len(sents)), key=lambda k: (-len(sw[k] & qw), k))
        region = [k for k in ranked[:3] if sw[k] & qw]
        region_words = set().union(*(sw[k] for k in region)) if region else set()
        ref = list(passage_sentences(reference)) if reference.strip() else []
        return cls(question, qw, sents, sw, owner, pw, big, _numbers(" ".join(passages)),
                   " ".join(passages).lower(), pq, region, region_words,
                   ref, [content_words(s) for s in ref], content_words(reference) if ref else set(),
                   _bigrams(reference) if ref else set())

    def without_reference(self) -> "Context":
        """This context as `Context.of` builds it without a reference (the passages not parsed again)."""
        return replace(self, reference_sentences=[], reference_sentence_words=[], reference_words=set(),
                       reference_bigrams=set())

    def texts_to_embed(self) -> list[str]:
        """The context's texts whose embeddings the embedding features need: question, passage
        sentences, then reference sentences."""
        return [self.question or " ", *self.sentences, *self.reference_sentences]


# Passages with fewer distinct content words than this are too little to judge a reference by: a
# right answer says more than two short sentences do (1 % of QA-Feedback's records have fewer).
REFERENCE_JUDGE_MIN_WORDS = 30


def reference_context_share(ctx: Context) -> float | None:
    """The share of the reference's distinct content words found in the question or the passages;
    None without a reference or with too little passage text to judge it by. A reference written
    for this question shares most of its words with them (QA-Feedback's gold answers: 1st
    percentile 0.36); another question's shares few (99th percentile 0.27)."""
    if not ctx.reference_words or len(ctx.passage_words) < REFERENCE_JUDGE_MIN_WORDS:
        return None
    return len(ctx.reference_words & (ctx.question_words | ctx.passage_words)) / len(ctx.reference_words)


def _split_context(ctx: Context, ctx_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`ctx_emb` (rows as `ctx.texts_to_embed()`) -> (question row, passage sentence rows, reference sentence rows)."""
    n_pass = len(ctx.sentences)
    return ctx_emb[0], ctx_emb[1:1 + n_pass], ctx_emb[1 + n_pass:]


def _share(part: set, whole: set) -> float:
    return len(part & whole) / len(part) if part else 0.0


def _reference_signals(ctx: Context, cw: set[str], bg: set[tuple[str, str]]) -> dict[str, float]:
    """A segment's lexical REFERENCE_SEGMENT_FEATURES from its content words and bigrams (none
    without a reference)."""
    if not ctx.reference_sentences:
        return {}
    return {"ref_support": _share(cw, ctx.reference_words), "ref_bigram_support": _share(bg, ctx.reference_bigrams),
            "ref_best_sentence_support": max(_share(cw, rw) for rw in ctx.reference_sentence_words)}


def segment_features(ctx: Context, response: str, segs: list[Segment],
                     seg_emb: np.ndarray | None = None, ctx_emb: np.ndarray | None = None) -> np.ndarray:
    """(n_segments, len(SEGMENT_FEATURES)) float64. Embeddings are L2-normalised rows:
    `seg_emb` one per segment, `ctx_emb` as `ctx.texts_to_embed()`; without them the
    embedding columns are 0."""
    n = len(segs)
    out = np.zeros((n, len(SEGMENT_FEATURES)), dtype=np.float64)
    if n == 0:
        return out
    seg_words = [content_words(s.text) for s in segs]
    if seg_emb is not None and ctx_emb is not None:
        q_vec, s_mat, r_mat = _split_context(ctx, ctx_emb)
        cos_q = seg_emb @ q_vec
        cos_p = seg_emb @ s_mat.T if len(s_mat) else np.zeros((n, 0))
        cos_self = seg_emb @ seg_emb.T
        sent_q = s_mat @ q_vec if len(s_mat) else np.zeros(0)
    for i, (seg, cw) in enumerate(zip(segs, seg_words)):
        ws = words(seg.text)
        nums = _numbers(seg.text)
        names = _names(seg.text)
        best_sup, best_k = 0.0, -1
        for k, sw in enumerate(ctx.sentence_words):
            sup = _share(cw, sw)
            if sup > best_sup:
                best_sup, best_k = sup, k
        prev = [_share(cw, seg_words[j]) for j in range(i)]
        others = set().union(*(seg_words[j] for j in range(n) if j != i)) if n > 1 else set()
        bg = _bigrams(seg.text)
        row = {
            "log_words": math.log1p(len(ws)),
            "position": i / (n - 1) if n > 1 else 0.0,
            "is_first": float(i == 0),
            "is_last": float(i == n - 1),
            "n_segments_log": math.log(n),
            "question_overlap": _share(cw, ctx.question_words),
            "passage_support": _share(cw, ctx.passage_words),
            "novel": len(cw - ctx.passage_words - ctx.question_words) / len(cw) if cw else 0.0,
            "best_sentence_support": best_sup,
            "bigram_support": len(bg & ctx.passage_bigrams) / len(bg) if bg else 0.0,
            "numbers_unsupported": len(nums - ctx.passage_numbers) / len(nums) if nums else 0.0,
            "names_unsupported": (sum(1 for m in names if m not in ctx.passage_text_lower) / len(names)
                                  if names else 0.0),
            "redundancy_prev": max(prev, default=0.0),
            "redundancy_response": _share(cw, others),
            "best_passage_question_overlap": (ctx.passage_question_overlap[ctx.sentence_passage[best_k]]
                                              if best_k >= 0 else 0.0),
            "no_end_punct": float(seg.text.rstrip()[-1:] not in ".!?\"')"),
            "answer_region_support": _share(cw, ctx.answer_region_words),
        }
        row.update(_reference_signals(ctx, cw, bg))
        if seg_emb is not None and ctx_emb is not None:
            row["cos_question"] = float(cos_q[i])
            row["cos_best_passage"] = float(cos_p[i].max()) if cos_p.shape[1] else 0.0
            row["cos_prev_max"] = float(cos_self[i, :i].max()) if i else 0.0
            row["cos_best_passage_to_question"] = (float(sent_q[int(cos_p[i].argmax())])
                                                   if cos_p.shape[1] else 0.0)
            row["cos_answer_region"] = float(cos_p[i, ctx.answer_region].max()) if ctx.answer_region else 0.0
            row["ref_cos_best"] = float((r_mat @ seg_emb[i]).max()) if len(r_mat) else 0.0
        out[i] = [row.get(name, 0.0) for name in SEGMENT_FEATURES]
    return out


def in_context(x: np.ndarray) -> np.ndarray:
    """One response's segment signals (n, len(SEGMENT_FEATURES)) -> (n, len(SUBSENTENCE_FEATURES)):
    the signals, then each CONTEXT_VIEWS of them (0 where there is no previous / next segment),
    then the fragment flag (fewer than FRAGMENT_WORDS words)."""
    n = len(x)
    if n == 0:
        return np.zeros((0, len(SUBSENTENCE_FEATURES)))
    prev, nxt = np.zeros_like(x), np.zeros_like(x)
    prev[1:], nxt[:-1] = x[:-1], x[1:]
    mean = np.broadcast_to(x.mean(0), x.shape)
    top = np.broadcast_to(x.max(0), x.shape)
    sofar = np.cumsum(x, 0) / np.arange(1, n + 1)[:, None]
    n_words = np.expm1(x[:, SEGMENT_FEATURES.index("log_words")])
    fragment = (n_words < FRAGMENT_WORDS - 0.5).astype(np.float64)[:, None]
    return np.hstack([x, prev, nxt, mean, top, sofar, fragment])


def response_features(ctx: Context, response: str, sents: list[Segment],
                      sent_features: np.ndarray, resp_emb: np.ndarray | None = None,
                      ctx_emb: np.ndarray | None = None, sent_emb: np.ndarray | None = None) -> np.ndarray:
    """(len(RESPONSE_FEATURES),) for one response; `sent_features` = segment_features of its
    sentences, `sent_emb` their embeddings (the reference cosines need them)."""
    ws = words(response)
    cw = content_words(response)
    # passage words the question points at: those of the passage sentences sharing a question word
    q_sents = [sw for sw in ctx.sentence_words if sw & ctx.question_words]
    q_pw = set().union(*q_sents) if q_sents else set()
    col = {name: k for k, name in enumerate(SEGMENT_FEATURES)}
    row = {
        "log_words": math.log1p(len(ws)),
        "log_sentences": math.log1p(len(sents)),
        "passage_coverage": len(cw & ctx.passage_words) / len(ctx.passage_words) if ctx.passage_words else 0.0,
        "question_passage_coverage": len(cw & q_pw) / len(q_pw) if q_pw else 0.0,
        "unique_ratio": len(set(ws)) / len(ws) if ws else 0.0,
        "mean_novel": float(sent_features[:, col["novel"]].mean()) if len(sent_features) else 0.0,
        "mean_redundancy": float(sent_features[:, col["redundancy_prev"]].mean()) if len(sent_features) else 0.0,
        "no_end_punct": float(response.rstrip()[-1:] not in ".!?\"')") if response.strip() else 0.0,
    }
    if ctx.reference_sentences:
        bg = _bigrams(response)
        row["ref_recall"] = _share(ctx.reference_words, cw)
        row["ref_bigram_recall"] = _share(ctx.reference_bigrams, bg)
        row["ref_precision"] = _share(cw, ctx.reference_words)
    if resp_emb is not None and ctx_emb is not None:
        q_vec, s_mat, r_mat = _split_context(ctx, ctx_emb)
        row["cos_question"] = float(resp_emb @ q_vec)
        row["cos_passages_mean"] = float((s_mat @ resp_emb).mean()) if len(s_mat) else 0.0
        if len(r_mat) and sent_emb is not None and len(sent_emb):
            best = (r_mat @ sent_emb.T).max(1)  # per reference sentence, its best match in the response
            row["ref_sentences_matched"] = float((best > REFERENCE_MATCH).mean())
            row["ref_cos_mean"] = float(best.mean())
    return np.array([row.get(name, 0.0) for name in RESPONSE_FEATURES], dtype=np.float64)


def completeness_input(resp_x: np.ndarray, p_rel: np.ndarray, p_fact: np.ndarray) -> np.ndarray:
    """A response's completeness signals: RESPONSE_FEATURES then STACK_FEATURES (relevance_ok_sum
    is the expected number of relevant sub-sentences: how much on-topic material there is)."""
    if not len(p_rel):  # an empty response: nothing relevant, nothing wrong
        return np.r_[resp_x, np.zeros(len(STACK_FEATURES))]
    p_fact = p_fact if len(p_fact) else np.zeros(1)
    stacked = [p_rel.mean(), p_rel.max(), float((1.0 - p_rel).sum()), p_fact.mean(), p_fact.max(), p_fact.sum()]
    return np.r_[resp_x, stacked]
