"""Feedback types as configuration: one TOML file lists them; adding a type is config + a checkpoint."""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from models.errors import ConfigError
from models.segment import GRANULARITIES

KINDS = ("segment_classifier", "preference_scorer", "prefix_delta")
DEFAULT_TYPES_FILE = Path(__file__).with_name("feedback_types.toml")
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class FeedbackType:
    """One reward model's contract with the engine."""

    name: str
    granularity: str  # "sub-sentence" | "sentence" | "response"
    kind: str  # one of KINDS
    checkpoint: Path  # directory; relative paths resolve against the TOML file's repository root
    head: str = ""  # head name inside a multi-head fgrm checkpoint (defaults to `name`)
    use_passages: bool = False  # input template: question + response, or question + passages + response
    reward_ok: float = 0.0  # segment_classifier: reward of a segment without error
    reward_error: float = 0.0  # segment_classifier: reward of a segment with an error
    scale: float = 1.0  # preference_scorer / prefix_delta: multiplier after normalisation
    norm_mean: float | None = None  # preference_scorer: None = read from the checkpoint's fgrm.json
    norm_std: float | None = None
    weight: float = 1.0  # default mixing weight
    label: int = 1  # prefix_delta: index of the "bad" class of the sequence classifier
    max_length: int | None = None  # None = the checkpoint's limit


_NUMBER_KEYS = ("weight", "scale", "norm_mean", "norm_std", "reward_ok", "reward_error")
_TYPED_KEYS = {"granularity": str, "kind": str, "checkpoint": str, "head": str, "use_passages": bool,
               "label": int, "max_length": int}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_types(name: str, raw: dict) -> None:
    # a wrong type would otherwise surface at the first scoring request, far from the file
    if not raw.get("checkpoint"):
        raise ConfigError(f"feedback type {name!r}: 'checkpoint' (a directory path) is required")
    for key, value in raw.items():
        if key in _NUMBER_KEYS and value is not None and not _is_number(value):
            raise ConfigError(f"feedback type {name!r}: {key!r} must be a number, got {value!r}")
        want = _TYPED_KEYS.get(key)
        if want and (not isinstance(value, want) or (want is int and isinstance(value, bool))):
            raise ConfigError(f"feedback type {name!r}: {key!r} must be of type {want.__name__}, got {value!r}")
    reward = raw.get("reward", {})
    if not isinstance(reward, dict) or set(reward) - {"ok", "error"}:
        raise ConfigError(f"feedback type {name!r}: 'reward' must be a table with keys 'ok' and 'error'")
    for key, value in reward.items():
        if not _is_number(value):
            raise ConfigError(f"feedback type {name!r}: 'reward.{key}' must be a number, got {value!r}")


def _check(name: str, raw: dict) -> None:
    _check_types(name, raw)
    if raw.get("granularity") not in GRANULARITIES:
        raise ConfigError(f"feedback type {name!r}: granularity must be one of {GRANULARITIES}")
    if raw.get("kind") not in KINDS:
        raise ConfigError(f"feedback type {name!r}: kind must be one of {KINDS}")
    if raw["kind"] == "preference_scorer" and raw["granularity"] != "response":
        raise ConfigError(f"feedback type {name!r}: a preference_scorer is response-level")
    if raw["kind"] == "segment_classifier" and raw["granularity"] == "response":
        raise ConfigError(f"feedback type {name!r}: a segment_classifier needs sentence or sub-sentence granularity")
    w = raw.get("weight", 1.0)
    if not isinstance(w, (int, float)) or math.isnan(w) or w < 0:
        raise ConfigError(f"feedback type {name!r}: weight must be a non-negative number")


def load_feedback_types(path: str | Path = DEFAULT_TYPES_FILE, root: Path | None = None) -> list[FeedbackType]:
    """Parse the `[[feedback_type]]` tables of a TOML file into FeedbackType objects."""
    path = Path(path)
    with path.open("rb") as fh:
        try:
            doc = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    root = root or REPO_ROOT
    known = set(FeedbackType.__dataclass_fields__)
    types: list[FeedbackType] = []
    for raw in doc.get("feedback_type", []):
        name = raw.get("name")
        if not name or not isinstance(name, str):
            raise ConfigError(f"{path}: every [[feedback_type]] needs a string 'name'")
        unknown = set(raw) - known - {"reward"}
        if unknown:
            raise ConfigError(f"feedback type {name!r}: unknown keys {sorted(unknown)}")
        _check(name, raw)
        fields = {k: v for k, v in raw.items() if k != "reward"}
        reward = raw.get("reward", {})
        fields["reward_ok"] = float(reward.get("ok", raw.get("reward_ok", 0.0)))
        fields["reward_error"] = float(reward.get("error", raw.get("reward_error", 0.0)))
        ckpt = Path(raw["checkpoint"]).expanduser()
        fields["checkpoint"] = ckpt if ckpt.is_absolute() else (root / ckpt)
        fields["head"] = raw.get("head", name)
        types.append(FeedbackType(**fields))
    if len({t.name for t in types}) != len(types):
        raise ConfigError(f"{path}: feedback type names must be unique")
    if not types:
        raise ConfigError(f"{path}: no [[feedback_type]] tables")
    return types
