"""Weights, the mix Σ_k w_k · r_k, and rewards on the trainer's tokens.

Pure functions over `service.domain` data: no model, no I/O, so `/v1/mix` is stateless and
cheap, and `/v1/score` mixes with exactly the same code.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from service.domain import Component, Mixed, MixEvent
from service.errors import InvalidInput, quote

# Bounds that keep every mixed total finite in float64 (JSON has no Infinity): |w · r| <= 1e12
# per segment, and no request carries 1e290 segments.
MAX_WEIGHT = 1e6
MAX_REWARD = 1e6


def check_weights(weights: Mapping[str, object], known: Sequence[str], field: str = "weights") -> dict[str, float]:
    """Validated weights: known feedback types, finite numbers >= 0. Errors name the entry."""
    out: dict[str, float] = {}
    for name, value in weights.items():
        where = f"{field}.{name}"
        if name not in known:
            raise InvalidInput(where, f"unknown feedback type {quote(name)}; known types: {', '.join(known)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInput(where, f"weight must be a number, got {type(value).__name__}")
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            raise InvalidInput(where, f"weight must be a finite number, got {value}")
        if value < 0 or value > MAX_WEIGHT:
            raise InvalidInput(where, f"weight must be in [0, {MAX_WEIGHT:g}], got {value:g}")
        out[name] = value
    return out


def mix(components: Mapping[str, Component], weights: Mapping[str, float]) -> Mixed:
    """Σ_k w_k · r_k per reward position (a segment's end), in the order of `weights`."""
    events: dict[int, float] = {}
    for name, w in weights.items():
        comp = components.get(name)
        if comp is None:
            continue
        for end, reward in comp.segments:
            events[end] = events.get(end, 0.0) + w * reward
    ordered = [MixEvent(end, events[end]) for end in sorted(events)]
    return Mixed(dict(weights), float(sum(e.reward for e in ordered)), ordered)


def token_rewards(components: Mapping[str, Component], weights: Mapping[str, float],
                  offsets: Sequence[tuple[int, int]]) -> list[float]:
    """Dense per-token rewards: a segment's reward on the token holding its last character
    (``end - 1``); a response-level reward on the last token. No tokens → ``[]``."""
    out = [0.0] * len(offsets)
    if not offsets:
        return out
    for name, w in weights.items():
        comp = components.get(name)
        if comp is None:
            continue
        for end, reward in comp.segments:
            idx = len(offsets) - 1 if comp.granularity == "response" else token_at(offsets, end - 1)
            out[idx] += w * reward
    return out


def token_at(offsets: Sequence[tuple[int, int]], char: int) -> int:
    """Index of the token that receives a reward placed at character `char`. The one rule,
    written the same way in the client (`fgrm_client.align.token_for_char`; a shared table of
    cases and a property test hold the two equal):

    - the last token whose span holds `char` (several hold it when byte-level BPE splits one
      character over two tokens: the reward arrives once the character is complete);
    - else (a gap between tokens) the last token starting at or before `char`;
    - else the first token. Zero-width tokens (special tokens) never hold or receive anything
      under the first two rules.
    """
    holder = before = -1
    for i, (s, e) in enumerate(offsets):
        if s >= e:
            continue
        if s > char:
            break  # starts never decrease (check_offsets): nothing later can hold or precede it
        before = i
        if char < e:
            holder = i
    if holder >= 0:
        return holder
    return before if before >= 0 else 0


def check_offsets(offsets: object, field: str, text_len: int | None) -> tuple[tuple[int, int], ...]:
    """Validated token offsets: [start, end] integer pairs, start <= end, starts non-decreasing,
    inside the response when its length is known."""
    if not isinstance(offsets, (list, tuple)):
        raise InvalidInput(field, "must be a list of [start, end] pairs")
    out = []
    prev = 0
    for j, pair in enumerate(offsets):
        where = f"{field}[{j}]"
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or \
                not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
            raise InvalidInput(where, f"must be a [start, end] pair of integers, got {quote(pair)}")
        start, end = pair
        if start < 0 or end < start:
            raise InvalidInput(where, f"needs 0 <= start <= end, got [{start}, {end}]")
        if text_len is not None and end > text_len:
            raise InvalidInput(where, f"end {end} is past the response's {text_len} characters")
        if start < prev:
            raise InvalidInput(where, f"token starts must not decrease (start {start} after {prev})")
        prev = start
        out.append((start, end))
    return tuple(out)
