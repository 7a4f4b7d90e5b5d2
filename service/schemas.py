"""Pydantic models of the HTTP JSON wire format (request validation + OpenAPI docs).

They check *shapes and types* only; meaning (limits, weights, offsets) is checked once, in
the engine, for every transport. Response models exist for the OpenAPI document: handlers
send `service.domain` objects' `as_dict()` directly, which has exactly this shape.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.domain import Component, Item


# strict: what the OpenAPI document says is what is accepted (no "1" for 1, no 1.5 for an
# integer offset, no true for a weight); JSON integers still pass as floats
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ItemIn(_Strict):
    question: str = Field("", description="The question (prompt) the response answers.")
    passages: list[str] = Field(default_factory=list, description="Evidence passages, one string each.")
    response: str = Field(..., description="The response to score.")
    token_offsets: list[tuple[int, int]] | None = Field(
        None, description="Character [start, end) of each policy token of the response; asks for token_rewards.")
    reference: str = Field("", description="An optional reference (gold) answer to the question; the signal "
                                           "models score relevance and completeness with heads that also "
                                           "read it when given (a short one, under the checkpoint's "
                                           "reference_relevance_min_words distinct content words, 10 for the "
                                           "shipped one, informs completeness only; one sharing less than its "
                                           "reference_min_context_share, 0.3, of its content words with the "
                                           "question and passages is taken for another question's and "
                                           "ignored). Empty: none.")

    def to_domain(self) -> Item:
        offsets = None if self.token_offsets is None else tuple((int(a), int(b)) for a, b in self.token_offsets)
        return Item(self.response, self.question, tuple(self.passages), offsets, self.reference)


class MixSegmentIn(BaseModel):
    # /v1/score's segments (with start, text, p_error) are accepted as they are
    model_config = ConfigDict(extra="ignore", strict=True)
    end: int
    reward: float


class ComponentIn(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)  # e.g. "total" from /v1/score
    granularity: str
    segments: list[MixSegmentIn] = Field(default_factory=list)

    def to_domain(self) -> Component:
        return Component(self.granularity, tuple((s.end, s.reward) for s in self.segments))


class MixItemIn(BaseModel):
    # a /v1/score result is accepted unchanged: its "mixed" and "token_rewards" are ignored
    model_config = ConfigDict(extra="ignore", strict=True)
    types: dict[str, ComponentIn] = Field(..., description="Component rewards by feedback type, as /v1/score returned "
                                                           "them (other keys of a result are ignored).")
    token_offsets: list[tuple[int, int]] | None = None

    def to_domain(self) -> tuple[dict[str, Component], list[tuple[int, int]] | None]:
        offsets = None if self.token_offsets is None else [(int(a), int(b)) for a, b in self.token_offsets]
        return {k: v.to_domain() for k, v in self.types.items()}, offsets


# ----------------------------------------------------------------------------- responses (docs)

class SegmentOut(BaseModel):
    start: int
    end: int
    text: str
    p_error: float | None = None
    score: float | None = None
    p_bad: float | None = None
    reward: float


class TypeResultOut(BaseModel):
    granularity: str
    total: float
    segments: list[SegmentOut]
    reference: Literal["read", "too_short", "unrelated"] | None = Field(
        None, description="Present when the item carried a reference and this type's head can read one: 'read'; "
                          "'too_short' (under the checkpoint's reference_relevance_min_words, relevance only: "
                          "scored as without it); 'unrelated' (sharing less than its reference_min_context_share "
                          "of its content words with the question and passages: scored as without it).")


class MixEventOut(BaseModel):
    end: int
    reward: float


class MixedOut(BaseModel):
    weights: dict[str, float]
    total: float
    events: list[MixEventOut]


class ItemResultOut(BaseModel):
    types: dict[str, TypeResultOut]
    mixed: MixedOut
    token_rewards: list[float] | None = None


class ScoreOut(BaseModel):
    results: list[ItemResultOut]


class MixResultOut(BaseModel):
    mixed: MixedOut
    token_rewards: list[float] | None = None


class MixOut(BaseModel):
    results: list[MixResultOut]


class OpenRLHFOut(BaseModel):
    rewards: list[float]
    scores: list[float]
    extra_logs: dict[str, list[float]] = Field(default_factory=dict,
                                               description="fgrm/<type>: each feedback type's total per query")
