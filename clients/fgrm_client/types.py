"""The wire format of docs/ARCHITECTURE.md as small frozen dataclasses, shared by both transports.

Requests accept plain dicts or :class:`Item`; answers are always these dataclasses, so an HTTP
answer and a gRPC answer to the same request compare equal (up to float precision). The codecs
(``fgrm_client.http``, ``fgrm_client.grpc``) encode these, never each other's wire types; the
``parse_*`` functions read the JSON form, which is also what callers hand in as dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .errors import ProtocolError


@dataclass(frozen=True)
class Item:
    """One response to score. ``token_offsets`` (character span of each policy token in
    ``response``) asks the service to also return ``token_rewards`` aligned to those tokens.
    ``reference``: an optional reference (gold) answer to the question, which the service's
    signal models also score against; ``""`` means none and is left off the wire, so a server
    that predates the field still accepts the request."""

    question: str
    response: str
    passages: Sequence[str] = ()
    token_offsets: Sequence[tuple[int, int]] | None = None
    reference: str = ""

    @property
    def has_reference(self) -> bool:
        """Whether the service will take this item as having a reference (a blank one is none)."""
        return bool(self.reference.strip())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "question": self.question,
            "passages": list(self.passages),
            "response": self.response,
        }
        if self.token_offsets is not None:
            out["token_offsets"] = [[int(s), int(e)] for s, e in self.token_offsets]
        if self.reference:
            out["reference"] = self.reference
        return out


@dataclass(frozen=True)
class Segment:
    start: int
    end: int
    text: str
    reward: float
    p_error: float | None = None  # segment classifiers
    score: float | None = None  # preference scorers (raw, before normalisation)
    p_bad: float | None = None  # prefix_delta types: P(bad class) of the prefix ending here


@dataclass(frozen=True)
class TypeResult:
    """One feedback type's verdict on one response."""

    granularity: str
    total: float
    segments: tuple[Segment, ...]
    # what this type's head did with the item's reference: "read", "too_short" or "unrelated"
    # (both scored as without one); None without a reference or for a type that reads none
    reference: str | None = None


@dataclass(frozen=True)
class Event:
    """The mixed reward ``sum_k w_k * reward_k`` of every segment ending at character ``end``."""

    end: int
    reward: float


@dataclass(frozen=True)
class Mixed:
    weights: Mapping[str, float]
    total: float
    events: tuple[Event, ...]


@dataclass(frozen=True)
class ItemResult:
    types: Mapping[str, TypeResult]
    mixed: Mixed
    token_rewards: tuple[float, ...] | None = None


@dataclass(frozen=True)
class FeedbackTypeInfo:
    """What ``feedback_types()`` reports for one type."""

    name: str
    granularity: str
    kind: str
    weight: float
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MixComponent:
    """One type's rewards of one item, as ``/v1/mix`` takes them: each at its segment's end."""

    granularity: str
    segments: tuple[Event, ...]


@dataclass(frozen=True)
class MixItem:
    """One item of a mix request."""

    types: Mapping[str, MixComponent]
    token_offsets: tuple[tuple[int, int], ...] | None = None


def _mix_component(t: TypeResult | Mapping[str, Any]) -> MixComponent:
    if isinstance(t, TypeResult):
        return MixComponent(t.granularity, tuple(Event(s.end, s.reward) for s in t.segments))
    return MixComponent(str(t["granularity"]),
                        tuple(Event(int(s["end"]), float(s["reward"])) for s in t["segments"]))


def to_mix_items(components: Sequence[ItemResult | Mapping[str, Any]],
                 token_offsets: Sequence[Sequence[tuple[int, int]] | None] | None = None) -> list[MixItem]:
    """Mix inputs from earlier results, their ``.types``, or the same as JSON-like dicts."""
    out = []
    for i, c in enumerate(components):
        types = c.types if isinstance(c, ItemResult) else c
        offsets = None if token_offsets is None else token_offsets[i]
        out.append(MixItem({str(name): _mix_component(t) for name, t in types.items()},
                           None if offsets is None else tuple((int(a), int(b)) for a, b in offsets)))
    return out


def to_item(item: Item | Mapping[str, Any]) -> Item:
    """Accept an :class:`Item` or a dict with the same keys."""
    if isinstance(item, Item):
        return item
    offsets = item.get("token_offsets")
    return Item(
        question=item.get("question", ""),
        response=item["response"],
        passages=tuple(item.get("passages") or ()),
        token_offsets=None if offsets is None else tuple((int(s), int(e)) for s, e in offsets),
        reference=item.get("reference") or "",
    )


def to_items(items: Iterable[Item | Mapping[str, Any]]) -> list[Item]:
    return [to_item(it) for it in items]


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


def parse_type_result(d: Mapping[str, Any]) -> TypeResult:
    return TypeResult(
        granularity=str(d.get("granularity", "")),
        total=float(d.get("total", 0.0)),
        segments=tuple(
            Segment(
                start=int(s["start"]),
                end=int(s["end"]),
                text=str(s.get("text", "")),
                reward=float(s["reward"]),
                p_error=_num(s.get("p_error")),
                score=_num(s.get("score")),
                p_bad=_num(s.get("p_bad")),
            )
            for s in d.get("segments", ())
        ),
        reference=d.get("reference") or None,
    )


def parse_mixed(d: Mapping[str, Any]) -> Mixed:
    return Mixed(
        weights={str(k): float(v) for k, v in (d.get("weights") or {}).items()},
        total=float(d.get("total", 0.0)),
        events=tuple(Event(int(e["end"]), float(e["reward"])) for e in d.get("events", ())),
    )


def parse_item_result(d: Mapping[str, Any]) -> ItemResult:
    """Parse one element of ``results`` of a ``/v1/score`` answer."""
    try:
        tr = d.get("token_rewards")
        return ItemResult(
            types={str(k): parse_type_result(v) for k, v in d["types"].items()},
            mixed=parse_mixed(d["mixed"]),
            token_rewards=None if tr is None else tuple(float(x) for x in tr),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError(f"malformed score result: {exc!r}") from exc


def parse_feedback_types(d: Any) -> list[FeedbackTypeInfo]:
    """Accept ``{"types": [...]}``, ``{"feedback_types": [...]}`` or a bare list of dicts."""
    if isinstance(d, Mapping):
        d = d.get("types", d.get("feedback_types"))
    if not isinstance(d, list):
        raise ProtocolError("malformed feedback_types answer")
    out = []
    known = {"name", "granularity", "kind", "weight", "default_weight"}
    for t in d:
        out.append(
            FeedbackTypeInfo(
                name=str(t["name"]),
                granularity=str(t.get("granularity", "")),
                kind=str(t.get("kind", "")),
                weight=float(t.get("default_weight", t.get("weight", 1.0))),
                extra={k: v for k, v in t.items() if k not in known},
            )
        )
    return out
