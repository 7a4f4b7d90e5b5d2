"""The one scoring engine behind every transport.

validate -> admit (bounded) -> segment + encode (per item, off the event loop) -> token-budget
batches shared by all callers -> per-type rewards -> mix -> per-token rewards.

Transports call `score`, `mix`, `feedback_types` and `profiles`; benchmarks and other
in-process users can call `prepare` + `run_prepared` on pre-built batches with no queue and no
transport at all. Every error leaves as a `service.errors.ServiceError`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator, Mapping, Sequence

from service.batching import Batcher, BatchLimits, RunForward
from service.config import Settings, batch_token_budget
from service.domain import Component, FeedbackTypeInfo, Item, ItemResult, MixResult, TypeResult
from service.errors import BackendFailure, InvalidInput, NotReady, Overloaded, ServiceError, quote
from service.metrics import EngineMetrics, mark_counted
from service.mixing import MAX_REWARD, check_offsets, mix, token_rewards
from service.profiles import build_profiles
from service.scorers import Outputs, Prepared, Scorer, Segments

log = logging.getLogger("fgrm.engine")
GRANULARITIES = ("sub-sentence", "sentence", "response")


@dataclass
class PreparedItem:
    """An item segmented and encoded: what the forward passes need, nothing transport-specific."""

    item: Item
    segs: Segments
    parts: list[Prepared]  # one per scorer


class PreparedBatch(list[PreparedItem]):
    """Prepared items, and the one place their rows are scattered to the scorers and gathered back.

    Scorer `k` gets `rows_for(k)`: every item's rows for it, item by item. Whoever runs those
    (the in-process planner, the shared batchers) hands back one output per row in the same
    order, per scorer, and `assemble` returns them per item, per scorer.
    """

    def rows_for(self, k: int) -> list[list[int]]:
        return [row for p in self if p.parts for row in p.parts[k].rows]

    @property
    def n_rows(self) -> int:
        return sum(len(part.rows) for p in self for part in p.parts)

    def assemble(self, outputs: Sequence[Sequence[Outputs]]) -> list[list[list[Outputs]]]:
        """`outputs[k]`: the outputs of `rows_for(k)` -> per item, per scorer, its rows' outputs."""
        flat = [iter(out) for out in outputs]
        return [[[next(flat[k]) for _ in part.rows] for k, part in enumerate(p.parts)] for p in self]


class ScoringEngine:
    def __init__(self, settings: Settings | None = None, *, scorers: Sequence[Scorer] | None = None,
                 metrics: EngineMetrics | None = None):
        """Load the configured feedback types (or take ready-made `scorers`, e.g. test doubles).

        `metrics`: a `service.metrics.EngineMetrics`; default the process-wide one.
        """
        self.settings = settings or Settings()
        loaded_from_file = scorers is None
        if scorers is None:
            scorers = self._load_scorers(self.settings)
        self.scorers: list[Scorer] = list(scorers)
        self.types = [t for s in self.scorers for t in s.types]
        self.type_names = [t.name for t in self.types]
        self._type_of = {t.name: t for t in self.types}
        self._granularities = {g for s in self.scorers for g in s.granularities()}
        # named profiles: [profiles.NAME] tables of the feedback-types file (when it was loaded
        # from there), then of FGRM_PROFILES; writes kept where the settings say (service.profiles)
        self.profiles = build_profiles(self.settings, {t.name: float(t.weight) for t in self.types},
                                       self.settings.feedback_types if loaded_from_file else None)
        self.metrics = metrics if metrics is not None else EngineMetrics.shared()
        self._runs = [RunForward(s.backend, s.pad_id, self.metrics) for s in self.scorers]
        self._limits = [BatchLimits(batch_token_budget(self.settings, str(s.backend.provider)),
                                    self.settings.max_batch_rows, not s.backend.batch_invariant)
                        for s in self.scorers]
        # forward passes on one thread (they use every core themselves); segmentation and
        # tokenisation on another, so preparing the next requests overlaps the current forward
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fgrm-forward")
        self._prep_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fgrm-prepare")
        self._batchers: list[Batcher] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._admitted = 0
        self._rows_in_flight = 0  # rows admitted and not finished (for the wait estimate)
        self._closed = False

    @staticmethod
    def _load_scorers(settings: Settings) -> list[Scorer]:
        from models.config import load_feedback_types
        from service.scorers import build_scorers

        if settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
        return build_scorers(load_feedback_types(settings.feedback_types), settings.runtime,
                             settings.runtime_options())

    # ------------------------------------------------------------------ descriptions
    def feedback_types(self) -> list[FeedbackTypeInfo]:
        return [FeedbackTypeInfo(t.name, t.granularity, t.kind, float(t.weight), s.version, s.backend.name,
                                 str(s.backend.provider), bool(s.backend.batch_invariant), *s.reference_policy(t),
                                 quality=s.quality(t))
                for s in self.scorers for t in s.types]

    @property
    def ready(self) -> bool:
        return not self._closed

    # ------------------------------------------------------------------ validation + preparation
    def _check_count(self, n: int) -> None:
        limit = self.settings.max_items_per_request
        if n > limit:
            raise InvalidInput("items", f"{n} items; the limit is {limit} per request (max_items_per_request)")

    def check_items(self, items: Sequence[Item]) -> list[Item]:
        """Per-item validation before any batching: a bad item fails its own request only."""
        s = self.settings
        self._check_count(len(items))
        out = []
        for i, item in enumerate(items):
            where = f"items[{i}]"
            if len(item.response) > s.max_response_chars:
                raise InvalidInput(f"{where}.response", f"{len(item.response)} characters; the limit is "
                                                        f"{s.max_response_chars} (max_response_chars)")
            if len(item.question) > s.max_question_chars:
                raise InvalidInput(f"{where}.question", f"{len(item.question)} characters; the limit is "
                                                        f"{s.max_question_chars} (max_question_chars)")
            if len(item.passages) > s.max_passages:
                raise InvalidInput(f"{where}.passages", f"{len(item.passages)} passages; the limit is "
                                                        f"{s.max_passages} (max_passages)")
            chars = sum(len(p) for p in item.passages)
            if chars > s.max_passage_chars:
                raise InvalidInput(f"{where}.passages", f"{chars} characters in all; the limit is "
                                                        f"{s.max_passage_chars} (max_passage_chars)")
            if len(item.reference) > s.max_reference_chars:
                raise InvalidInput(f"{where}.reference", f"{len(item.reference)} characters; the limit is "
                                                         f"{s.max_reference_chars} (max_reference_chars)")
            offsets = item.token_offsets
            if offsets is not None:
                offsets = check_offsets(offsets, f"{where}.token_offsets", len(item.response))
                # replace, not a new Item: every other field (reference included) is kept
                item = replace(item, passages=tuple(item.passages), token_offsets=offsets)
            out.append(item)
        return out

    def segment(self, response: str) -> Segments:
        from models.segment import Segment, split_many

        wanted = [g for g in GRANULARITIES if g in self._granularities]
        if not response.strip():
            # Nothing to judge segment by segment, but still an answer: response-level types
            # (completeness) score it, on one empty segment, so that saying nothing is not a free
            # 0 beside the negative scores of poor answers (a PPO policy learnt exactly that
            # within 40 steps: clients/README.md, "Does it learn?").
            return {g: [Segment(0, 0, "")] if g == "response" else [] for g in wanted}
        return split_many(response, wanted)

    def prepare(self, items: Sequence[Item]) -> PreparedBatch:
        """Validate, segment and encode. Raises InvalidInput naming the item and field."""
        return self._prepare_checked(self.check_items(items))

    def _prepare_checked(self, items: Sequence[Item]) -> PreparedBatch:
        out = PreparedBatch()
        for i, item in enumerate(items):
            segs = self.segment(item.response)
            parts = [s.prepare(item, segs, i) for s in self.scorers]
            out.append(PreparedItem(item, segs, parts))
        return out

    # ------------------------------------------------------------------ results
    def _finish(self, p: PreparedItem, outputs: list[list[Outputs]], weights: Mapping[str, float]) -> ItemResult:
        types: dict[str, TypeResult] = {t.name: TypeResult(t.granularity) for t in self.types}
        for scorer, part, outs in zip(self.scorers, p.parts, outputs):
            types.update(scorer.finish(p.item, p.segs, part, outs))
        components = {name: Component.of(r) for name, r in types.items()}
        mixed = mix(components, weights)
        tokens = None
        if p.item.token_offsets is not None:
            tokens = token_rewards(components, weights, p.item.token_offsets)
        for name, r in types.items():
            self.metrics.reward.labels(name).observe(r.total)
            if r.reference is not None:
                self.metrics.references.labels(name, r.reference).inc()
        self.metrics.reward.labels("mixed").observe(mixed.total)
        return ItemResult(types, mixed, tokens)

    # ------------------------------------------------------------------ in-process, synchronous
    def run_prepared(self, prepared: PreparedBatch, weights: Mapping[str, object] | None = None,
                     profile: str | None = None) -> list[ItemResult]:
        """Score pre-built items in the calling thread with the same planning and forward code
        as the service, minus queue and transports (the benchmark's "raw engine")."""
        eff = self.profiles.resolve(weights, profile)
        outputs = [self._run_rows(k, prepared.rows_for(k)) for k in range(len(self.scorers))]
        return [self._finish(p, outs, eff) for p, outs in zip(prepared, prepared.assemble(outputs))]

    def _run_rows(self, k: int, rows: list[list[int]]) -> list[Outputs]:
        out: list[Outputs] = [{} for _ in rows]
        for batch in self._limits[k].plan([len(r) for r in rows]):
            for b, o in zip(batch, self._runs[k]([rows[b] for b in batch])):
                out[b] = o
        return out

    def score_sync(self, items: Sequence[Item], weights: Mapping[str, object] | None = None,
                   profile: str | None = None) -> list[ItemResult]:
        return self.run_prepared(self.prepare(items), weights, profile)

    # ------------------------------------------------------------------ async, shared batches
    def _batchers_for_loop(self) -> list[Batcher]:
        loop = asyncio.get_running_loop()
        if self._batchers is None or self._loop is not loop:
            self._loop = loop
            self._batchers = [
                Batcher(run, limits=limits, wait_ms=self.settings.batch_wait_ms, executor=self._executor,
                        metrics=self.metrics, on_failure=self._backend_failure)
                for run, limits in zip(self._runs, self._limits)]
            for b in self._batchers:
                b.start()
        return self._batchers

    def admission_refusal(self, n: int = 1) -> Overloaded | None:
        """The refusal a new request of `n` items would get now, from what is already in flight:
        the queue full in items, or the rows in flight taking longer than max_wait_s to run
        (estimated from the measured forward time per row; a queue counted only in items held
        30-55 s of CPU work at 3x saturation). Cheap: the HTTP gate asks it (with n = 1, the
        count being unknown) before reading a body."""
        limit = self.settings.max_queue_items
        if self._admitted + n > limit:
            return Overloaded(f"queue full: {self._admitted} items in flight, this request adds {n}, the limit "
                              f"is {limit} (max_queue_items); retry with backoff")
        bound = self.settings.max_wait_s
        rates = [r.seconds_per_row for r in self._runs if r.seconds_per_row is not None]
        if not bound or not rates or not self._rows_in_flight:
            return None
        wait = self._rows_in_flight * max(rates)
        if wait > bound:
            return Overloaded(f"estimated wait {wait:.1f} s for the {self._rows_in_flight} rows in flight exceeds "
                              f"max_wait_s={bound:g}; retry with backoff")
        return None

    @staticmethod
    def _backend_failure(exc: BaseException) -> BaseException:
        log.error("backend forward failed", exc_info=exc)
        return BackendFailure("the model runtime failed on this batch; see the server log")

    @contextmanager
    def _errors_counted(self, unexpected_is_backend_failure: bool) -> Iterator[None]:
        """Count every error leaving a request by kind; optionally turn an unexpected exception
        into BackendFailure (never leak internals to a client)."""
        try:
            yield
        except ServiceError as exc:
            self.metrics.errors.labels(exc.kind).inc()
            mark_counted(exc)  # the transport that answers it must not count it again
            raise
        except asyncio.CancelledError:
            self.metrics.errors.labels("cancelled").inc()
            raise
        except Exception as exc:
            if not unexpected_is_backend_failure:
                raise
            self.metrics.errors.labels(BackendFailure.kind).inc()
            failure = self._backend_failure(exc)
            mark_counted(failure)
            raise failure from None

    async def score(self, items: Sequence[Item], weights: Mapping[str, object] | None = None,
                    profile: str | None = None, transport: str = "inproc") -> list[ItemResult]:
        """Rewards for `items`, sharing forward passes with every concurrent caller."""
        t0 = time.perf_counter()
        self.metrics.requests.labels(transport, "score").inc()
        with self._errors_counted(unexpected_is_backend_failure=True):
            if self._closed:
                raise NotReady("the engine is shutting down")
            eff = self.profiles.resolve(weights, profile)
            items = self.check_items(items)
            self._admit(len(items))
            try:
                results = await self._score_admitted(items, eff, transport)
            finally:
                self._admitted -= len(items)
                self.metrics.queue_depth.dec(len(items))
            self.metrics.items.labels(transport).inc(len(items))
            self.metrics.request_seconds.labels(transport).observe(time.perf_counter() - t0)
            return results

    def _admit(self, n: int) -> None:
        limit = self.settings.max_queue_items
        if n > limit:  # could never be admitted: retrying would not help, so it is the request's fault
            raise InvalidInput("items", f"{n} items; the queue holds at most {limit} (max_queue_items)")
        refusal = self.admission_refusal(n)  # before any work for this request: a refusal costs nothing
        if refusal is not None:
            raise refusal
        self._admitted += n
        self.metrics.queue_depth.inc(n)

    async def _score_admitted(self, items: list[Item], weights: Mapping[str, float],
                              transport: str) -> list[ItemResult]:
        prepared = await asyncio.get_running_loop().run_in_executor(self._prep_executor, self._prepare_checked, items)
        rows = prepared.n_rows
        self._rows_in_flight += rows
        try:
            batchers = self._batchers_for_loop()
            outputs = await asyncio.gather(*(asyncio.gather(*b.submit(prepared.rows_for(k), transport))
                                             for k, b in enumerate(batchers)))
            return [self._finish(p, outs, weights) for p, outs in zip(prepared, prepared.assemble(outputs))]
        finally:
            self._rows_in_flight -= rows

    def mix(self, items: Sequence[tuple[Mapping[str, Component], object]], weights: Mapping[str, object] | None = None,
            profile: str | None = None, transport: str = "inproc") -> list[MixResult]:
        """Stateless re-weighting: `items` are (components by type, token offsets or None)."""
        self.metrics.requests.labels(transport, "mix").inc()
        with self._errors_counted(unexpected_is_backend_failure=False):
            eff = self.profiles.resolve(weights, profile)
            self._check_count(len(items))
            out = []
            for i, (components, offsets) in enumerate(items):
                comps = self._check_components(components, f"items[{i}].types")
                mixed = mix(comps, eff)
                tokens = None
                if offsets is not None:
                    tokens = token_rewards(comps, eff, check_offsets(offsets, f"items[{i}].token_offsets", None))
                out.append(MixResult(mixed, tokens))
            return out

    def _check_components(self, components: Mapping[str, Component], field: str) -> dict[str, Component]:
        out = {}
        for name, comp in components.items():
            where = f"{field}.{name}"
            if name not in self._type_of:
                raise InvalidInput(where, f"unknown feedback type {quote(name)}; known types: "
                                          f"{', '.join(self.type_names)}")
            if comp.granularity not in GRANULARITIES:
                raise InvalidInput(f"{where}.granularity", f"must be one of {', '.join(GRANULARITIES)}, "
                                                           f"got {quote(comp.granularity)}")
            for j, (end, reward) in enumerate(comp.segments):
                if end < 0:
                    raise InvalidInput(f"{where}.segments[{j}].end", f"must be >= 0, got {end}")
                if not math.isfinite(reward) or abs(reward) > MAX_REWARD:
                    raise InvalidInput(f"{where}.segments[{j}].reward",
                                       f"must be a finite number within ±{MAX_REWARD:g}, got {reward:g}")
            out[name] = comp
        return out

    async def close(self) -> None:
        self._closed = True
        for b in self._batchers or []:
            await b.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._prep_executor.shutdown(wait=False, cancel_futures=True)
