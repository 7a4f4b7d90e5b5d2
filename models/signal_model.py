"""The signal reward model: frozen sentence embeddings + engineered signals + small heads.

One item becomes a list of short texts to embed (question, passage sentences, sub-sentences,
sentences, the whole response; duplicates once), one embedding row each; the heads stored in
the checkpoint's fgrm.json turn the signals (models.signals) into P(error) per sub-sentence
(relevance) and per sentence (factuality), and a Bradley-Terry score per response
(completeness). Training (models.tables via `item_texts` / `item_features`), `fgrm eval` and the
service's scorer all go through these functions, so what is evaluated is what is served.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.embedding import MAX_TOKENS, tokenize
from models.encoding import cached_ids
from models.errors import InputTooLong
from models.heads import LogisticHead, PreferenceHead, head_from_json
from models.segment import Segment
from models.signals import (COMPLETENESS_FEATURES, SEGMENT_FEATURES, SUBSENTENCE_FEATURES, Context,
                           completeness_input, in_context, reference_context_share, response_features,
                           segment_features, without_reference)

SIGNALS_VERSION = 2  # bump when a signal's definition changes: checkpoints record the version they were fitted on


def item_texts(ctx: Context, subs: list[Segment], sents: list[Segment], response: str) -> list[str]:
    """Every text one item needs embedded, in a fixed order (see `item_features`)."""
    return [*ctx.texts_to_embed(), *(s.text for s in subs), *(s.text for s in sents), response or " "]


def item_features(ctx: Context, response: str, subs: list[Segment], sents: list[Segment],
                  emb: np.ndarray | None):
    """(sub-sentence signals in context (SUBSENTENCE_FEATURES), sentence signals (SEGMENT_FEATURES),
    response signals); `emb`: rows for `item_texts(...)` in that order, or None for the lexical
    signals only."""
    if emb is None:
        ctx_emb = sub_emb = sent_emb = resp_emb = None
    else:
        n_ctx = len(ctx.texts_to_embed())
        ctx_emb, rest = emb[:n_ctx], emb[n_ctx:]
        sub_emb, sent_emb, resp_emb = rest[: len(subs)], rest[len(subs): len(subs) + len(sents)], rest[-1]
    sub_x = in_context(segment_features(ctx, response, subs, sub_emb, ctx_emb))
    sent_x = segment_features(ctx, response, sents, sent_emb, ctx_emb)
    return sub_x, sent_x, response_features(ctx, response, sents, sent_x, resp_emb, ctx_emb, sent_emb)


@dataclass
class ItemPlan:
    """One item's embedding rows and how to read them back."""

    ctx: Context
    response: str
    subs: list[Segment]
    sents: list[Segment]
    rows: list[list[int]]  # token ids of each distinct text
    index: list[int]  # item_texts position -> row
    # "unrelated" when the item's reference was dropped for sharing too little with the question
    # and passages (it is then scored as without one); "" otherwise
    reference_dropped: str = ""


@dataclass
class SignalOutputs:
    relevance: np.ndarray  # P(error) per sub-sentence
    factuality: np.ndarray  # P(error) per sentence
    completeness: float  # Bradley-Terry score of the response (not normalised)
    thresholds: dict[str, float]  # the error threshold of the heads that scored it
    # for an item with a reference, per head that can read one: "read", or why it did not:
    # "too_short" (under the relevance floor), "unrelated" (dropped: see ItemPlan); empty without
    reference_read: dict[str, str] = field(default_factory=dict)


# The suffix of the heads fitted with the reference signals too (the recipe's `reference_twin`):
# an item with a reference answer is scored by those, one without by the others.
WITH_REFERENCE = "@reference"


@dataclass
class HeadSet:
    relevance: LogisticHead
    factuality: LogisticHead
    completeness: PreferenceHead

    def thresholds(self) -> dict[str, float]:
        return {"relevance": self.relevance.threshold, "factuality": self.factuality.threshold}


def _on_base_scale(score: float, ref: PreferenceHead, base: PreferenceHead) -> float:
    """A reference head's completeness score on the scale of the head whose norm the service
    applies (checkpoint norm.completeness). The mean training answer and the blank answer land
    where the reference-free head puts them, so a blank answer is charged alike with or without
    a reference: z-scored by its own spread instead, the reference head charged it -2.21 against
    -3.50, and a PPO policy sent references fell silent sooner (clients/README.md)."""
    if ref.blank_score is None or base.blank_score is None or not ref.score_mean > ref.blank_score:
        return (score - ref.score_mean) / ref.score_std * base.score_std + base.score_mean
    stretch = (base.score_mean - base.blank_score) / (ref.score_mean - ref.blank_score)
    return base.score_mean + (score - ref.score_mean) * stretch


# What /v1/feedback-types reports of each head's cross-validation (SignalModel.quality): the
# headline figure first, then the rest and the baselines the bar reads it against.
SEGMENT_QUALITY = ("auc", "accuracy", "error_f1", "ece", "lexical_auc", "lexical_accuracy", "majority_accuracy",
                   "all_error_f1")
PAIR_QUALITY = ("pairwise_accuracy", "prefer_earlier_accuracy", "lexical_pairwise_accuracy")


class SignalModel:
    """The heads of an embedding checkpoint, with its tokenizer; plays the role of
    models.encoding.Encoder for `models.checkpoint.load`."""

    def __init__(self, tokenizer, meta: dict):
        self.tokenizer = tokenizer
        self.meta = meta
        self.max_tokens = int(meta.get("max_length", MAX_TOKENS))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        version = meta.get("signals_version")
        if version != SIGNALS_VERSION:
            raise ValueError(f"checkpoint was fitted on signals version {version}; this code computes version "
                             f"{SIGNALS_VERSION}: retrain it (fgrm train)")
        heads = {name: head_from_json(h) for name, h in meta["heads"].items()}
        self.heads = HeadSet(heads["relevance"], heads["factuality"], heads["completeness"])
        # without reference heads (a checkpoint fitted by a recipe without a twin), a reference is ignored
        twin = [heads.get(f"{name}{WITH_REFERENCE}") for name in ("relevance", "factuality", "completeness")]
        self.reference_heads = HeadSet(*twin) if all(twin) else None
        # a reference with fewer distinct content words than this scores relevance by the
        # reference-free head (models.recipe.Recipe.relevance_reference_min_words says why)
        self.relevance_reference_min_words = int(meta.get("reference_relevance_min_words") or 0)
        # a reference sharing less of its content words with the question and passages is taken
        # for another question's and dropped (models.recipe.Recipe.reference_min_context_share)
        self.reference_min_context_share = float(meta.get("reference_min_context_share") or 0.0)
        # the heads whose twin reads a reference signal (factuality's does not): read off the
        # checkpoint once, for what each result says (`read`) and what /v1/feedback-types says
        readers = []
        for name in ("relevance", "factuality", "completeness") if self.reference_heads is not None else ():
            features = tuple(getattr(self.reference_heads, name).features)
            if without_reference(features) != features:
                readers.append(name)
        self.reference_readers = tuple(readers)
        for hs in (self.heads, self.reference_heads):
            if hs is not None:  # fail at load, not at the first request
                hs.relevance.columns(SUBSENTENCE_FEATURES)
                hs.factuality.columns(SEGMENT_FEATURES)
                hs.completeness.score(np.zeros((1, len(COMPLETENESS_FEATURES))), COMPLETENESS_FEATURES)
        self._ids_cache: dict[str, list[int]] = {}  # passage sentences repeat across samples of a prompt

    def heads_for(self, reference: bool) -> HeadSet:
        """The heads that score an item with (True) or without a reference answer."""
        return self.reference_heads if reference and self.reference_heads is not None else self.heads

    def thresholds(self) -> dict[str, float]:
        """The error thresholds of the heads that score items without a reference."""
        return self.heads.thresholds()

    def reference_policy(self, head: str) -> tuple[bool, int, float]:
        """What `head` ("relevance", "factuality" or "completeness") does with an item's reference:
        (whether its score can change with one; the fewest distinct content words it reads, 0 for
        any; the share of those words in the question and passages below which any reference is
        taken for another question's and ignored). Read off the checkpoint, not the recipe
        (`reference_readers`)."""
        if head not in self.reference_readers:
            return False, 0, 0.0
        min_words = self.relevance_reference_min_words if head == "relevance" else 0
        return True, min_words, self.reference_min_context_share

    def quality(self, head: str) -> dict[str, float]:
        """How well `head` agreed with the human labels on the cross-validation `fgrm train` ran
        (fgrm.json `cv`; mean over folds, `*_std` the fold std of the headline figure), beside the
        baselines to read it against; `*_with_reference` the same for its reference twin, when it
        reads one. Empty when the checkpoint was trained without CV (`--cv 0`)."""
        names = PAIR_QUALITY if head == "completeness" else SEGMENT_QUALITY
        out: dict[str, float] = {}
        for key, suffix in (("cv", ""), ("cv_with_reference", "_with_reference")):
            if suffix and head not in self.reference_readers:
                continue
            summary = ((self.meta.get(key) or {}).get("summary") or {}).get(head) or {}
            for i, name in enumerate(names):
                value = summary.get(name)
                if isinstance(value, dict) and value.get("mean") is not None:
                    out[name + suffix] = float(value["mean"])
                    if i == 0:  # the headline figure's spread over folds
                        out[f"{name}_std{suffix}"] = float(value["std"])
        if out:
            out["cv_folds"] = float((self.meta.get("cv") or self.meta.get("cv_with_reference") or {}).get("k") or 0)
            out["cv_records"] = float((self.meta.get("training") or {}).get("records") or 0)
        return out

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return cached_ids(self._ids_cache, texts, lambda missing: tokenize(self.tokenizer, missing, self.max_tokens))

    def plan(self, question: str, passages: list[str], response: str, subs: list[Segment],
             sents: list[Segment], reference: str = "") -> ItemPlan:
        # A response segment is never cut: one that does not fit the encoder is an error naming
        # the limit. (The question, passage sentences and the whole response are embedded from
        # their first max_tokens tokens: that is how their signals are defined, in training too.)
        seg_texts = list(dict.fromkeys(s.text for s in (*subs, *sents)))
        if seg_texts:
            longest = max(len(ids) for ids in self.tokenizer(seg_texts, add_special_tokens=True)["input_ids"])
            if longest > self.max_tokens:
                raise InputTooLong("response", longest, self.max_tokens)
        # a reference only costs embedding rows when there are heads to read it
        ctx = Context.of(question, list(passages), reference if self.reference_heads is not None else "")
        dropped = ""
        share = reference_context_share(ctx)
        if share is not None and share < self.reference_min_context_share:
            # decided on words alone, before embedding: the reference costs no rows, and every
            # type scores exactly as without it
            ctx, dropped = ctx.without_reference(), "unrelated"
        texts = item_texts(ctx, subs, sents, response)
        distinct = list(dict.fromkeys(texts))
        where = {t: k for k, t in enumerate(distinct)}
        return ItemPlan(ctx, response, subs, sents, self._ids(distinct), [where[t] for t in texts], dropped)

    def read(self, plan: ItemPlan, embeddings: np.ndarray) -> SignalOutputs:
        """Heads on one item, from its rows' embeddings (n_rows, dim) in `plan.rows` order."""
        # the network's rows are L2-normalised already; float64 as in training (TextEmbedder)
        emb = np.asarray(embeddings, dtype=np.float64)[plan.index]
        sub_x, sent_x, resp_x = item_features(plan.ctx, plan.response, plan.subs, plan.sents, emb)
        heads = self.heads_for(bool(plan.ctx.reference_sentences))
        p_rel = heads.relevance.p_error(sub_x, SUBSENTENCE_FEATURES)
        p_fact = heads.factuality.p_error(sent_x, SEGMENT_FEATURES)
        comp_x = completeness_input(resp_x, p_rel, p_fact)
        score = float(heads.completeness.score(comp_x, COMPLETENESS_FEATURES)[0])
        thresholds = heads.thresholds()
        read: dict[str, str] = {}
        if plan.reference_dropped:
            read = dict.fromkeys(self.reference_readers, plan.reference_dropped)
        if heads is not self.heads:
            score = _on_base_scale(score, heads.completeness, self.heads.completeness)
            read = dict.fromkeys(self.reference_readers, "read")
            if len(plan.ctx.reference_words) < self.relevance_reference_min_words:
                read["relevance"] = "too_short"
                # too short a reference for the twin's relevance head: the reference-free one
                # (which reads no reference column, so this is exactly the no-reference P). The
                # twin's completeness above still read the twin's P, as it was fitted and measured.
                p_rel = self.heads.relevance.p_error(sub_x, SUBSENTENCE_FEATURES)
                thresholds["relevance"] = self.heads.relevance.threshold
        return SignalOutputs(p_rel, p_fact, score, thresholds, read)

    def run(self, forward, plans: list[ItemPlan], max_rows: int = 64) -> list[SignalOutputs]:
        """Embed every plan's rows with `forward(ids, mask)` (rows sorted by length, in chunks)
        and read the heads: the offline path of `fgrm eval` and the tests."""
        from models.encoding import pad_batch

        rows = [(len(r), p, k) for p, plan in enumerate(plans) for k, r in enumerate(plan.rows)]
        rows.sort()
        out = [np.zeros((len(plan.rows), 0)) for plan in plans]
        for b in range(0, len(rows), max_rows):
            chunk = rows[b:b + max_rows]
            ids, mask = pad_batch([plans[p].rows[k] for _, p, k in chunk], self.pad_id)
            emb = forward(ids, mask)["embeddings"]
            for (_, p, k), e in zip(chunk, emb):
                if out[p].shape[1] == 0:
                    out[p] = np.zeros((len(plans[p].rows), len(e)))
                out[p][k] = e
        return [self.read(plan, e) for plan, e in zip(plans, out)]
