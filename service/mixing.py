"""Weights, named profiles, the mix Σ_k w_k · r_k, and rewards on the trainer's tokens.

Pure functions over `service.domain` data: no model, no I/O, so `/v1/mix` is stateless and
cheap, and `/v1/score` mixes with exactly the same code.
"""

from __future__ import annotations

import math
import re
import threading
import tomllib
from pathlib import Path
from typing import Mapping, Sequence

from service.domain import Component, Mixed, MixEvent
from service.errors import InvalidInput, clip, quote

DEFAULT_PROFILE = "default"
# Bounds that keep every mixed total finite in float64 (JSON has no Infinity): |w · r| <= 1e12
# per segment, and no request carries 1e290 segments.
MAX_WEIGHT = 1e6
MAX_REWARD = 1e6
MAX_PROFILE_NAME = 64
MAX_PROFILES = 256
PROFILE_NAME = re.compile(rf"[A-Za-z0-9_.-]{{1,{MAX_PROFILE_NAME}}}")


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


class Profiles:
    """Named weight profiles, complete over the configured types; "default" always exists.

    Kept in memory per worker process; PUT edits are not persisted (seed them with
    FGRM_PROFILES to survive restarts).
    """

    def __init__(self, defaults: Mapping[str, float], seed: Mapping[str, Mapping[str, object]] | None = None):
        self.types = list(defaults)
        self._configured = dict(defaults)
        self._profiles: dict[str, dict[str, float]] = {DEFAULT_PROFILE: dict(defaults)}
        self._lock = threading.Lock()
        for name, weights in (seed or {}).items():
            self.put(name, weights, field=f"profiles.{name}")

    @classmethod
    def from_files(cls, defaults: Mapping[str, float], paths: Sequence[Path | None]) -> "Profiles":
        """Profiles from the ``[profiles.NAME]`` tables of TOML files (later files win), e.g.
        the feedback-types file itself and FGRM_PROFILES."""
        seed: dict[str, Mapping[str, object]] = {}
        for path in paths:
            if path is None:
                continue
            with Path(path).open("rb") as fh:
                seed.update(tomllib.load(fh).get("profiles", {}))
        return cls(defaults, seed)

    def all(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {k: dict(v) for k, v in self._profiles.items()}

    def get(self, name: str, field: str = "profile") -> dict[str, float]:
        with self._lock:
            if name not in self._profiles:
                raise InvalidInput(field, f"unknown profile {quote(name)}; known profiles: "
                                          f"{clip(', '.join(self._profiles), 400)}")
            return dict(self._profiles[name])

    def put(self, name: str, weights: Mapping[str, object], field: str = "weights") -> dict[str, float]:
        """Create or replace a profile; types it does not name keep their configured default."""
        if not PROFILE_NAME.fullmatch(name):
            raise InvalidInput("name", f"profile names are 1-{MAX_PROFILE_NAME} of A-Z a-z 0-9 '-' '_' '.', "
                                       f"got {quote(name)}")
        checked = check_weights(weights, self.types, field)
        with self._lock:
            if name not in self._profiles and len(self._profiles) >= MAX_PROFILES:
                raise InvalidInput("name", f"this server already holds {MAX_PROFILES} profiles (the limit); "
                                           "replace one instead")
            full = {**self._configured, **checked}
            self._profiles[name] = full
            return dict(full)

    def resolve(self, weights: Mapping[str, object] | None, profile: str | None) -> dict[str, float]:
        """Effective weights: the profile's (default "default"), overridden per type by `weights`."""
        base = self.get(profile or DEFAULT_PROFILE)
        if weights:
            base.update(check_weights(weights, self.types))
        return base


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
