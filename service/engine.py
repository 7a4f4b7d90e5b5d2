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
from dataclasses import dataclass
from typing import Mapping, Sequence

from service.batching import Batcher, RunForward, plan
from service.config import Settings, batch_token_budget
from service.domain import Component, FeedbackTypeInfo, Item, ItemResult, MixResult, TypeResult
from service.errors import BackendFailure, InvalidInput, NotReady, Overloaded, ServiceError, quote
from service.mixing import MAX_REWARD, check_offsets, mix, token_rewards
from service.priority import lower_current_thread, lowering_new_threads
from service.profiles import build_profiles
from service.scorers import Prepared

log = logging.getLogger("fgrm.engine")
GRANULARITIES = ("sub-sentence", "sentence", "response")


@dataclass
class PreparedItem:
    """An item segmented and encoded: what the forward passes need, nothing transport-specific."""

    item: Item
    segs: dict[str, list] | None  # None: empty response, nothing to run
    parts: list[Prepared]  # one per scorer (empty when segs is None)


class ScoringEngine:
    def __init__(self, settings: Settings | None = None, *, scorers: list | None = None, metrics=None):
        """Load the configured feedback types (or take ready-made `scorers`, e.g. test doubles).

        `metrics`: a `service.metrics.EngineMetrics`; default the process-wide one.
        """
        from service.metrics import EngineMetrics

        self.settings = settings or Settings()
        loaded_from_file = scorers is None
        if scorers is None:
            from models.config import load_feedback_types
            from service.scorers import build_scorers

            if self.settings.torch_threads:
                import torch

                torch.set_num_threads(self.settings.torch_threads)
            with lowering_new_threads(self.settings.compute_niceness, "model load"):
                scorers = build_scorers(load_feedback_types(self.settings.feedback_types), self.settings.runtime)
        self.scorers = list(scorers)
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
        # forward passes on one thread (they use every core themselves); segmentation and
        # tokenisation on another, so preparing the next requests overlaps the current forward
        # (both below the event loop's CPU priority: service/priority.py)
        nice = (self.settings.compute_niceness,)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fgrm-forward",
                                            initializer=lower_current_thread, initargs=nice)
        self._prep_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fgrm-prepare",
                                                 initializer=lower_current_thread, initargs=nice)
        self._batchers: list[Batcher] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._admitted = 0
        self._rows_in_flight = 0  # rows admitted and not finished (for the wait estimate)
        self._closed = False

    # ------------------------------------------------------------------ descriptions
    def feedback_types(self) -> list[FeedbackTypeInfo]:
        out = []
        for s in self.scorers:
            for t in s.types:
                out.append(FeedbackTypeInfo(t.name, t.granularity, t.kind, float(t.weight), s.version,
                                            getattr(s.backend, "name", "unknown"),
                                            str(getattr(s.backend, "provider", "unknown")),
                                            bool(getattr(s.backend, "batch_invariant", True))))
        return out

    @property
    def ready(self) -> bool:
        return not self._closed

    # ------------------------------------------------------------------ validation + preparation
    def check_items(self, items: Sequence[Item]) -> list[Item]:
        """Per-item validation before any batching: a bad item fails its own request only."""
        s = self.settings
        if len(items) > s.max_items_per_request:
            raise InvalidInput("items", f"{len(items)} items; the limit is {s.max_items_per_request} per request "
                                        "(max_items_per_request)")
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
            offsets = item.token_offsets
            if offsets is not None:
                offsets = check_offsets(offsets, f"{where}.token_offsets", len(item.response))
                item = Item(item.response, item.question, tuple(item.passages), offsets)
            out.append(item)
        return out

    def segment(self, response: str) -> dict[str, list] | None:
        from models.segment import split_many

        if not response.strip():
            return None
        return split_many(response, [g for g in GRANULARITIES if g in self._granularities])

    def prepare(self, items: Sequence[Item]) -> list[PreparedItem]:
        """Validate, segment and encode. Raises InvalidInput naming the item and field."""
        return self._prepare_checked(self.check_items(items))

    def _prepare_checked(self, items: Sequence[Item]) -> list[PreparedItem]:
        out = []
        for i, item in enumerate(items):
            segs = self.segment(item.response)
            parts = [] if segs is None else [s.prepare(item, segs, i) for s in self.scorers]
            out.append(PreparedItem(item, segs, parts))
        return out

    # ------------------------------------------------------------------ results
    def _finish(self, p: PreparedItem, outputs: list[list[dict]], weights: Mapping[str, float]) -> ItemResult:
        if p.segs is None:
            types = {t.name: TypeResult(t.granularity) for t in self.types}
        else:
            types = {}
            for scorer, part, outs in zip(self.scorers, p.parts, outputs):
                types.update(scorer.finish(p.item, p.segs, part, outs))
            types = {name: types[name] for name in self.type_names}
        components = {name: Component.of(r) for name, r in types.items()}
        mixed = mix(components, weights)
        tokens = None
        if p.item.token_offsets is not None:
            tokens = token_rewards(components, weights, p.item.token_offsets)
        for name, r in types.items():
            self.metrics.reward.labels(name).observe(r.total)
        self.metrics.reward.labels("mixed").observe(mixed.total)
        return ItemResult(types, mixed, tokens)

    # ------------------------------------------------------------------ in-process, synchronous
    def run_prepared(self, prepared: Sequence[PreparedItem], weights: Mapping[str, object] | None = None,
                     profile: str | None = None) -> list[ItemResult]:
        """Score pre-built items in the calling thread with the same planning and forward code
        as the service, minus queue and transports (the benchmark's "raw engine")."""
        eff = self.profiles.resolve(weights, profile)
        outputs: list[list[list[dict]]] = [[[None] * len(part.rows) for part in p.parts] for p in prepared]
        for k, scorer in enumerate(self.scorers):
            index = [(i, j) for i, p in enumerate(prepared) if p.parts for j in range(len(p.parts[k].rows))]
            rows = [prepared[i].parts[k].rows[j] for i, j in index]
            batches = plan([len(r) for r in rows], self._budget(scorer), self.settings.max_batch_rows,
                           not getattr(scorer.backend, "batch_invariant", True))
            for batch in batches:
                for b, out in zip(batch, self._runs[k]([rows[b] for b in batch])):
                    i, j = index[b]
                    outputs[i][k][j] = out
        return [self._finish(p, outs, eff) for p, outs in zip(prepared, outputs)]

    def _budget(self, scorer) -> int:
        return batch_token_budget(self.settings, str(getattr(scorer.backend, "provider", "")))

    def score_sync(self, items: Sequence[Item], weights: Mapping[str, object] | None = None,
                   profile: str | None = None) -> list[ItemResult]:
        return self.run_prepared(self.prepare(items), weights, profile)

    # ------------------------------------------------------------------ async, shared batches
    def _batchers_for_loop(self) -> list[Batcher]:
        loop = asyncio.get_running_loop()
        if self._batchers is None or self._loop is not loop:
            s = self.settings
            self._loop = loop
            self._batchers = [
                Batcher(run, max_tokens=self._budget(sc), max_rows=s.max_batch_rows, wait_ms=s.batch_wait_ms,
                        one_per_batch=not getattr(sc.backend, "batch_invariant", True), executor=self._executor,
                        metrics=self.metrics, on_failure=self._backend_failure)
                for sc, run in zip(self.scorers, self._runs)]
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

    async def score(self, items: Sequence[Item], weights: Mapping[str, object] | None = None,
                    profile: str | None = None, transport: str = "inproc") -> list[ItemResult]:
        """Rewards for `items`, sharing forward passes with every concurrent caller."""
        t0 = time.perf_counter()
        self.metrics.requests.labels(transport, "score").inc()
        try:
            if self._closed:
                raise NotReady("the engine is shutting down")
            eff = self.profiles.resolve(weights, profile)
            items = self.check_items(items)
            n = len(items)
            limit = self.settings.max_queue_items
            if n > limit:  # could never be admitted: retrying would not help, so it is the request's fault
                raise InvalidInput("items", f"{n} items; the queue holds at most {limit} (max_queue_items)")
            refusal = self.admission_refusal(n)  # before any work for this request: a refusal costs nothing
            if refusal is not None:
                raise refusal
            self._admitted += n
            self.metrics.queue_depth.inc(n)
            rows = 0
            try:
                prepared = await asyncio.get_running_loop().run_in_executor(
                    self._prep_executor, self._prepare_checked, items)
                rows = sum(len(part.rows) for p in prepared for part in p.parts)
                self._rows_in_flight += rows
                batchers = self._batchers_for_loop()
                futures, shape = [], []
                for p in prepared:
                    shape.append([len(part.rows) for part in p.parts])
                    for k, part in enumerate(p.parts):
                        futures.extend(batchers[k].submit(part.rows, transport))
                flat = iter(await asyncio.gather(*futures))
                outputs = [[[next(flat) for _ in range(n_rows)] for n_rows in s] for s in shape]
                results = [self._finish(p, outs, eff) for p, outs in zip(prepared, outputs)]
            finally:
                self._admitted -= n
                self._rows_in_flight -= rows
                self.metrics.queue_depth.dec(n)
            self.metrics.items.labels(transport).inc(n)
            self.metrics.request_seconds.labels(transport).observe(time.perf_counter() - t0)
            return results
        except ServiceError as exc:
            self.metrics.errors.labels(exc.kind).inc()
            raise
        except asyncio.CancelledError:
            self.metrics.errors.labels("cancelled").inc()
            raise
        except Exception as exc:  # noqa: BLE001 - never leak internals to a client
            self.metrics.errors.labels(BackendFailure.kind).inc()
            raise self._backend_failure(exc) from None

    def mix(self, items: Sequence[tuple[Mapping[str, Component], object]], weights: Mapping[str, object] | None = None,
            profile: str | None = None, transport: str = "inproc") -> list[MixResult]:
        """Stateless re-weighting: `items` are (components by type, token offsets or None)."""
        self.metrics.requests.labels(transport, "mix").inc()
        try:
            eff = self.profiles.resolve(weights, profile)
            if len(items) > self.settings.max_items_per_request:
                raise InvalidInput("items", f"{len(items)} items; the limit is "
                                            f"{self.settings.max_items_per_request} per request")
            out = []
            for i, (components, offsets) in enumerate(items):
                comps = self._check_components(components, f"items[{i}].types")
                mixed = mix(comps, eff)
                tokens = None
                if offsets is not None:
                    tokens = token_rewards(comps, eff, check_offsets(offsets, f"items[{i}].token_offsets", None))
                out.append(MixResult(mixed, tokens))
            return out
        except ServiceError as exc:
            self.metrics.errors.labels(exc.kind).inc()
            raise

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
