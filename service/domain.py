"""Plain data the engine takes and returns; transports convert to and from their wire types.

`as_dict()` gives exactly the HTTP JSON wire format of docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Item:
    """One response to score. `token_offsets`: character spans of the policy's response tokens.
    `reference`: an optional reference answer; the signal models read it (reference-aware heads),
    other models ignore it. Last, so positional constructions written before it still hold."""

    response: str
    question: str = ""
    passages: tuple[str, ...] = ()
    token_offsets: tuple[tuple[int, int], ...] | None = None
    reference: str = ""


@dataclass
class SegmentResult:
    start: int
    end: int
    text: str
    reward: float
    p_error: float | None = None  # segment_classifier
    score: float | None = None  # preference_scorer
    p_bad: float | None = None  # prefix_delta

    def as_dict(self) -> dict:
        out = {"start": self.start, "end": self.end, "text": self.text}
        for key in ("p_error", "score", "p_bad"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out["reward"] = self.reward
        return out


@dataclass
class TypeResult:
    granularity: str
    segments: list[SegmentResult] = field(default_factory=list)
    # for an item with a reference and a type whose head can read one: "read", "too_short" (left
    # for being under the relevance floor) or "unrelated" (dropped for sharing too little with
    # the question and passages); None otherwise. On the wire (left out when None) and in the
    # metrics, so a trainer can see per item what its reference did.
    reference: str | None = None

    @property
    def total(self) -> float:
        return float(sum(s.reward for s in self.segments))

    def as_dict(self) -> dict:
        out: dict[str, object] = {"granularity": self.granularity, "total": self.total,
                                  "segments": [s.as_dict() for s in self.segments]}
        if self.reference is not None:
            out["reference"] = self.reference
        return out


@dataclass(frozen=True)
class Component:
    """What mixing needs of one feedback type: its granularity and (end, reward) per segment."""

    granularity: str
    segments: tuple[tuple[int, float], ...]

    @classmethod
    def of(cls, result: TypeResult) -> "Component":
        return cls(result.granularity, tuple((s.end, s.reward) for s in result.segments))


@dataclass
class MixEvent:
    end: int
    reward: float


@dataclass
class Mixed:
    weights: dict[str, float]
    total: float
    events: list[MixEvent]

    def as_dict(self) -> dict:
        return {"weights": dict(self.weights), "total": self.total,
                "events": [{"end": e.end, "reward": e.reward} for e in self.events]}


@dataclass
class MixResult:
    mixed: Mixed
    token_rewards: list[float] | None = None

    def as_dict(self) -> dict:
        out: dict[str, object] = {"mixed": self.mixed.as_dict()}
        if self.token_rewards is not None:
            out["token_rewards"] = self.token_rewards
        return out


@dataclass
class ItemResult:
    types: dict[str, TypeResult]
    mixed: Mixed
    token_rewards: list[float] | None = None

    def as_dict(self) -> dict:
        out: dict[str, object] = {"types": {k: v.as_dict() for k, v in self.types.items()},
                                  "mixed": self.mixed.as_dict()}
        if self.token_rewards is not None:
            out["token_rewards"] = self.token_rewards
        return out


@dataclass(frozen=True)
class FeedbackTypeInfo:
    name: str
    granularity: str
    kind: str
    default_weight: float
    model_version: str
    runtime: str
    provider: str
    batch_invariant: bool
    # what the type does with an item's `reference` (models.signal_model.SignalModel.reference_policy):
    # whether it reads one at all, the fewest distinct content words it reads (0: any), and the share
    # of them in the question and passages below which a reference is ignored as another question's
    reads_reference: bool = False
    reference_min_words: int = 0
    reference_min_context_share: float = 0.0
    # how its model agreed with human labels on the CV its checkpoint records, beside the
    # baselines to read that against (models.signal_model.SignalModel.quality); empty: none recorded
    quality: Mapping[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {**self.__dict__, "quality": dict(self.quality)}
