"""Scorers: turn an item into model rows, and model outputs back into per-type segment rewards.

A scorer owns one backend (one forward pass per row) and the feedback types read from it:

- `FgrmScorer`: an fgrm checkpoint (one encoder, several heads). One row per item, with a
  marker before every segment of the checkpoint's marker granularity (sub-sentence). Segment
  classifiers read P(error) at markers: sub-sentence types at every marker, sentence types at
  the markers that start a sentence (sub-sentences refine sentences, so every sentence start
  is a marker). Preference scorers read the sequence score of the same row.
- `SignalScorer`: an embedding checkpoint (models.signal_model, the shipped default). Many
  short rows per item: one per distinct text among the question, the passage sentences, the
  sub-sentences, the sentences and the whole response; the checkpoint's small heads turn the
  signals of those embeddings into P(error) per sub-sentence (relevance) and per sentence
  (factuality), and a Bradley-Terry score (completeness). The error decision uses the
  threshold stored with each head (chosen on cross-validation), not 0.5. An item with a
  `reference` answer is scored by the checkpoint's `@reference` heads (and its reference
  sentences are embedded too); one without, by the others.
- `PrefixDeltaScorer`: any Hugging Face sequence-classification checkpoint. One row per
  segment: the response prefix ending with that segment; reward_i = -(p_bad(prefix_i) -
  p_bad(prefix_{i-1})) x scale with p_bad(empty prefix) = 0, so a response's total is
  -p_bad(whole response) x scale (the detox setting's "-Δ toxicity after each sentence").

The engine uses them only through the `Scorer` protocol below: `prepare` and `finish`, the
backend they run on, and the attributes that describe them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence, cast

import numpy as np

from models.outputs import error_probability, is_error, softmax_last
from service.domain import Item, SegmentResult, TypeResult
from service.errors import InvalidInput

if TYPE_CHECKING:
    from models.config import FeedbackType
    from models.encoding import Encoder
    from models.runtime import Backend, LoadedCheckpoint
    from models.runtime.options import RuntimeOptions
    from models.segment import Segment
    from models.signal_model import SignalModel

REWARD_POSITION_GRANULARITIES = ("sub-sentence", "sentence", "response")
Segments = dict[str, list["Segment"]]
"""An item's response split at every granularity the scorers need (`models.segment.split_many`)."""
Outputs = dict[str, np.ndarray]
"""One row's slice of a backend's `forward` outputs."""


@dataclass
class Prepared:
    """A scorer's part of one item: the rows to run and what `finish` needs to read them."""

    rows: list[list[int]]
    state: Any = None


NO_REFERENCE = (False, 0, 0.0)  # a scorer whose model reads no reference answer


class Scorer(Protocol):
    """What the engine needs of a scorer: rows in, per-type segment rewards out."""

    types: list[FeedbackType]
    """The feedback types it serves, in configuration order."""
    backend: Backend
    """The runtime its rows go to (one batcher per scorer)."""
    pad_id: int
    """The token that pads its rows."""
    version: str
    """Model version reported by `GET /v1/feedback-types`."""

    def reference_policy(self, t: FeedbackType) -> tuple[bool, int, float]:
        """What type `t` does with an item's reference (models.signal_model.SignalModel.reference_policy)."""
        ...

    def quality(self, t: FeedbackType) -> dict[str, float]:
        """How type `t`'s model agreed with human labels on the CV its checkpoint records
        (models.signal_model.SignalModel.quality); empty when it records none."""
        ...

    def granularities(self) -> set[str]:
        """The segmentations `prepare` and `finish` read."""
        ...

    def prepare(self, item: Item, segs: Segments, index: int) -> Prepared:
        """The rows of one item; raises InvalidInput naming `items[index]` when it cannot take it."""
        ...

    def finish(self, item: Item, segs: Segments, prep: Prepared, outputs: list[Outputs]) -> dict[str, TypeResult]:
        """Rewards of each of its types, from the outputs of `prep.rows` (same order)."""
        ...


def _version(path: Path, files: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for name in files:
        f = path / name
        if f.is_file():
            digest.update(f.read_bytes())
    return f"{path.name}@{digest.hexdigest()[:12]}"


def preference_norm(t, meta: dict, path) -> tuple[float, float]:
    """(mean, std) that normalise a preference_scorer type's score: the feedback type's own
    norm_mean/norm_std when set, else the checkpoint's norm.<head>."""
    if t.head not in meta.get("sequence_heads", []):
        raise ValueError(f"feedback type {t.name!r}: checkpoint {path} has no sequence head "
                         f"{t.head!r} (it has {meta.get('sequence_heads')})")
    stats = meta.get("norm", {}).get(t.head, {})
    mean = t.norm_mean if t.norm_mean is not None else stats.get("mean")
    std = t.norm_std if t.norm_std is not None else stats.get("std")
    if mean is None or std is None or not std > 0:
        raise ValueError(f"feedback type {t.name!r}: no normalisation statistics (norm_mean/norm_std "
                         f"in the config or norm.{t.head} in {path}/fgrm.json)")
    return float(mean), float(std)


class FgrmScorer:

    def __init__(self, types: list[FeedbackType], loaded: LoadedCheckpoint):
        """`types`: FeedbackTypes sharing one checkpoint and input template; `loaded`: its
        models.checkpoint.LoadedCheckpoint."""
        self.types = list(types)
        self.encoder = cast("Encoder", loaded.encoder)  # a reward network's (models.runtime.load)
        self.backend = loaded.backend
        self.pad_id = self.encoder.pad_id
        meta = loaded.meta
        self.marker_granularity = meta.get("marker_granularity", "sub-sentence")
        seg_heads, seq_heads = list(meta.get("segment_heads", [])), list(meta.get("sequence_heads", []))
        self.version = meta.get("version") or _version(Path(loaded.path), ("fgrm.json", "heads.safetensors"))
        self._plans: list[tuple[FeedbackType, int, tuple[float, float] | None]] = []
        for t in self.types:
            if t.kind == "segment_classifier":
                if t.head not in seg_heads:
                    raise ValueError(f"feedback type {t.name!r}: checkpoint {loaded.path} has no segment head "
                                     f"{t.head!r} (it has {seg_heads})")
                if self.marker_granularity == "sentence" and t.granularity == "sub-sentence":
                    raise ValueError(f"feedback type {t.name!r}: sub-sentence rewards need sub-sentence markers")
                self._plans.append((t, seg_heads.index(t.head), None))
            else:
                self._plans.append((t, seq_heads.index(t.head), preference_norm(t, meta, loaded.path)))

    def granularities(self) -> set[str]:
        return {self.marker_granularity} | {t.granularity for t in self.types}

    def reference_policy(self, t: FeedbackType) -> tuple[bool, int, float]:
        return NO_REFERENCE

    def quality(self, t: FeedbackType) -> dict[str, float]:
        return {}

    def prepare(self, item: Item, segs: Segments, index: int) -> Prepared:
        from models.errors import InputTooLong

        markers = segs[self.marker_granularity]
        try:
            enc = self.encoder.encode(item.question, list(item.passages), item.response, markers)
        except InputTooLong as exc:
            raise InvalidInput(f"items[{index}].response",
                               f"needs {exc.needed} tokens with its segment markers; the model's limit is "
                               f"{exc.limit} tokens (max_length of the checkpoint)") from None
        return Prepared([enc.input_ids], enc.marker_positions)

    def finish(self, item: Item, segs: Segments, prep: Prepared, outputs: list[Outputs]) -> dict[str, TypeResult]:
        out = outputs[0]
        markers = segs[self.marker_granularity]
        positions = np.asarray(prep.state, dtype=np.int64)
        # P(error) per marker and head: (n_markers, n_heads)
        p_error = error_probability(out["segment_logits"][positions]) if len(positions) else np.zeros((0, 0))
        start_to_marker = {seg.start: k for k, seg in enumerate(markers)}
        results: dict[str, TypeResult] = {}
        for t, head, norm in self._plans:
            res = TypeResult(t.granularity)
            if norm is not None:
                score = float(out["sequence_scores"][head])
                seg = segs["response"][0]
                reward = (score - norm[0]) / norm[1] * t.scale
                res.segments.append(SegmentResult(seg.start, seg.end, seg.text, reward, score=score))
            else:
                for seg in segs[t.granularity]:
                    p = float(p_error[start_to_marker[seg.start], head])
                    reward = t.reward_error if is_error(p) else t.reward_ok
                    res.segments.append(SegmentResult(seg.start, seg.end, seg.text, reward, p_error=p))
            results[t.name] = res
        return results


class SignalScorer:

    def __init__(self, types: list[FeedbackType], loaded: LoadedCheckpoint, use_passages: bool = True):
        """`types`: FeedbackTypes reading one embedding checkpoint; `loaded`: its LoadedCheckpoint
        (`loaded.encoder` is a models.signal_model.SignalModel)."""
        self.types = list(types)
        self.model = cast("SignalModel", loaded.encoder)  # an embedding network's (models.runtime.load)
        self.backend = loaded.backend
        self.pad_id = self.model.pad_id
        self.use_passages = use_passages
        meta = loaded.meta
        self.version = meta.get("version") or _version(Path(loaded.path), ("fgrm.json",))
        head_granularity = meta.get("granularity", {})
        self._norm: dict[str, tuple[float, float]] = {}
        for t in self.types:
            if t.kind == "segment_classifier":
                if t.head not in meta.get("segment_heads", []):
                    raise ValueError(f"feedback type {t.name!r}: checkpoint {loaded.path} has no segment head "
                                     f"{t.head!r} (it has {meta.get('segment_heads')})")
                if head_granularity.get(t.head) != t.granularity:
                    raise ValueError(f"feedback type {t.name!r}: head {t.head!r} of {loaded.path} scores "
                                     f"{head_granularity.get(t.head)} segments, not {t.granularity}")
            else:
                self._norm[t.name] = preference_norm(t, meta, loaded.path)

    def granularities(self) -> set[str]:
        return {"sub-sentence", "sentence", "response"}

    def reference_policy(self, t: FeedbackType) -> tuple[bool, int, float]:
        return self.model.reference_policy(t.head)

    def quality(self, t: FeedbackType) -> dict[str, float]:
        return self.model.quality(t.head)

    def prepare(self, item: Item, segs: Segments, index: int) -> Prepared:
        from models.errors import InputTooLong

        passages = list(item.passages) if self.use_passages else []
        try:
            plan = self.model.plan(item.question, passages, item.response, segs["sub-sentence"], segs["sentence"],
                                   item.reference)
        except InputTooLong as exc:
            raise InvalidInput(f"items[{index}].response",
                               f"a sentence needs {exc.needed} tokens; the model's limit is {exc.limit} tokens per "
                               "sentence (max_length of the checkpoint); split it with punctuation") from None
        return Prepared(plan.rows, plan)

    def finish(self, item: Item, segs: Segments, prep: Prepared, outputs: list[Outputs]) -> dict[str, TypeResult]:
        out = self.model.read(prep.state, np.stack([o["embeddings"] for o in outputs]))
        results: dict[str, TypeResult] = {}
        for t in self.types:
            res = TypeResult(t.granularity)
            if t.name in self._norm:
                mean, std = self._norm[t.name]
                seg = segs["response"][0]
                reward = (out.completeness - mean) / std * t.scale
                res.segments.append(SegmentResult(seg.start, seg.end, seg.text, reward, score=out.completeness))
            else:
                p_error = out.relevance if t.head == "relevance" else out.factuality
                threshold = out.thresholds[t.head]  # the reference heads' own when the item has a reference
                for seg, p in zip(segs[t.granularity], p_error):
                    reward = t.reward_error if p > threshold else t.reward_ok
                    res.segments.append(SegmentResult(seg.start, seg.end, seg.text, reward, p_error=float(p)))
            if t.head in out.reference_read:
                res.reference = out.reference_read[t.head]
            results[t.name] = res
        return results


class PrefixDeltaScorer:

    def __init__(self, ftype: FeedbackType, runtime: str = "auto"):
        from models.runtime.sequence_classifier import load

        self.types = [ftype]
        self.type = ftype
        self.encoder, self.backend = load(ftype.checkpoint, runtime, max_length=ftype.max_length)
        self.pad_id = self.encoder.pad_id
        self.version = _version(Path(ftype.checkpoint), ("config.json", "model.safetensors", "pytorch_model.bin"))
        if not 0 <= ftype.label < self.backend.num_labels:
            raise ValueError(f"feedback type {ftype.name!r}: label {ftype.label} is not a class of "
                             f"{ftype.checkpoint} ({self.backend.num_labels} classes)")

    def granularities(self) -> set[str]:
        return {self.type.granularity}

    def reference_policy(self, t: FeedbackType) -> tuple[bool, int, float]:
        return NO_REFERENCE

    def quality(self, t: FeedbackType) -> dict[str, float]:
        return {}

    def prepare(self, item: Item, segs: Segments, index: int) -> Prepared:
        from models.errors import InputTooLong

        try:
            rows = [self.encoder.encode(item.response[: seg.end]) for seg in segs[self.type.granularity]]
        except InputTooLong as exc:
            raise InvalidInput(f"items[{index}].response",
                               f"needs {exc.needed} tokens; the {self.type.name!r} model's limit is {exc.limit} tokens"
                               ) from None
        return Prepared(rows)

    def finish(self, item: Item, segs: Segments, prep: Prepared, outputs: list[Outputs]) -> dict[str, TypeResult]:
        t = self.type
        res = TypeResult(t.granularity)
        prev = 0.0
        for seg, out in zip(segs[t.granularity], outputs):
            p_bad = float(softmax_last(out["sequence_logits"])[t.label])
            res.segments.append(SegmentResult(seg.start, seg.end, seg.text, -(p_bad - prev) * t.scale, p_bad=p_bad))
            prev = p_bad
        return {t.name: res}


def build_scorers(types: list[FeedbackType], runtime: str, options: RuntimeOptions | None = None) -> list[Scorer]:
    """Scorers for the configured feedback types: fgrm types grouped by (checkpoint, input
    template, max length) so that one row serves all heads of a shared backbone; each backend
    is loaded once however many groups use it."""
    from models import runtime as runtimes
    from models.checkpoint import network_kind
    from models.encoding import Encoder

    scorers: list[Scorer] = []
    groups: dict[tuple, list[FeedbackType]] = {}
    for t in types:
        if t.kind == "prefix_delta":
            scorers.append(PrefixDeltaScorer(t, runtime))
        else:
            groups.setdefault((str(Path(t.checkpoint).resolve()), t.use_passages, t.max_length), []).append(t)
    loaded_by_path: dict[str, LoadedCheckpoint] = {}
    for (path, use_passages, max_length), members in groups.items():
        if path not in loaded_by_path:
            loaded_by_path[path] = runtimes.load(path, runtime, use_passages=use_passages, options=options)
        base = loaded_by_path[path]
        if network_kind(base.meta) == "embedding":
            scorers.append(SignalScorer(members, base, use_passages))
            continue
        assert isinstance(base.encoder, Encoder)  # a reward network's: models.runtime.load
        limit = min(max_length or base.encoder.max_length, base.encoder.max_length)
        encoder = Encoder(base.encoder.tokenizer, limit, use_passages, base.meta.get("marker_token", "[SEG]"))
        scorers.append(FgrmScorer(members, runtimes.LoadedCheckpoint(base.path, base.meta, encoder, base.backend)))
    order = {t.name: i for i, t in enumerate(types)}
    scorers.sort(key=lambda s: min(order[t.name] for t in s.types))
    return scorers
