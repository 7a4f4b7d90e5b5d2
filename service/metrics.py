"""Prometheus metrics of the scoring engine, all prefixed ``fgrm_``.

They are recorded in the engine, so HTTP, gRPC and in-process callers report the same numbers;
only `fgrm_errors_total` and `fgrm_requests_total` (api "refused") are also counted by the
transports, for what they refuse before the engine (`count_answered_error`).
Under `bentoml serve` they appear on BentoML's ``/metrics`` beside its own: BentoML runs
prometheus_client in multiprocess mode and sets PROMETHEUS_MULTIPROC_DIR in each worker
*after* importing the service module, so prometheus_client is imported here only when an
`EngineMetrics` is created (in the service's ``__init__``), never at module import.
"""

from __future__ import annotations

import threading

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_TOKEN_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
_FRACTION_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
_REWARD_BUCKETS = (-2.0, -1.0, -0.5, -0.3, -0.1, 0.0, 0.1, 0.3, 0.5, 1.0, 2.0)

_shared: dict[int, "EngineMetrics"] = {}
_lock = threading.Lock()


class EngineMetrics:
    """The engine's metric objects, registered once per registry."""

    def __init__(self, registry=None):
        import prometheus_client as pc

        kw = {"registry": registry} if registry is not None else {}
        # api "score" / "mix": counted by the engine; "refused": answered with an error by a
        # transport before the engine saw it (count_answered_error), so that errors / requests
        # (the alerts' ratios) never exceeds 1
        self.requests = pc.Counter("fgrm_requests", "Requests by transport and API ('refused': answered with an "
                                   "error before the engine saw them).", ["transport", "api"], **kw)
        self.items = pc.Counter("fgrm_items", "Items scored, by transport.", ["transport"], **kw)
        # counted once per error answered: by the engine for the requests it runs, by the
        # transports for what they refuse before it (count_answered_error)
        self.errors = pc.Counter("fgrm_errors", "Errors answered, by error kind (refusals before the engine "
                                 "included).", ["kind"], **kw)
        self.queue_wait = pc.Histogram("fgrm_queue_wait_seconds",
                                       "Time a sequence waited between admission and its forward pass.",
                                       buckets=_LATENCY_BUCKETS, **kw)
        self.queue_depth = pc.Gauge("fgrm_queue_items", "Items admitted and not yet answered.",
                                    multiprocess_mode="livesum", **kw)
        self.batch_size = pc.Histogram("fgrm_batch_size", "Sequences per forward pass.",
                                       buckets=_SIZE_BUCKETS, **kw)
        self.batch_tokens = pc.Histogram("fgrm_batch_tokens", "Padded tokens per forward pass (rows x width).",
                                         buckets=_TOKEN_BUCKETS, **kw)
        self.padding = pc.Histogram("fgrm_batch_padding_fraction", "Share of a forward pass's tokens that are padding.",
                                    buckets=_FRACTION_BUCKETS, **kw)
        self.batches = pc.Counter("fgrm_batches", "Forward passes, by the transports whose items they carried "
                                  "(e.g. 'grpc+http' = one pass shared by both).", ["transports"], **kw)
        self.forward_seconds = pc.Histogram("fgrm_forward_seconds", "Wall time of one forward pass.",
                                            ["runtime", "provider"], buckets=_LATENCY_BUCKETS, **kw)
        self.request_seconds = pc.Histogram("fgrm_request_seconds", "Engine time of one scoring request.",
                                            ["transport"], buckets=_LATENCY_BUCKETS, **kw)
        self.gc_frozen = pc.Gauge("fgrm_gc_frozen_objects", "Start-up objects hidden from the garbage collector "
                                  "(gc.freeze, setting freeze_startup_heap); 0 when off.",
                                  multiprocess_mode="livemax", **kw)
        self.reward = pc.Histogram("fgrm_reward", "Per-item total reward by feedback type (unweighted); "
                                   "type='mixed' is the weighted total.", ["type"], buckets=_REWARD_BUCKETS, **kw)
        # A trainer that sends short answers, or another question's, as references would otherwise
        # not see them ignored (models.recipe.Recipe.relevance_reference_min_words and
        # reference_min_context_share)
        self.references = pc.Counter("fgrm_references", "Items that carried a reference answer, by feedback type "
                                     "and whether its head read it ('read'), left it for being under the "
                                     "checkpoint's reference_relevance_min_words ('too_short') or dropped it "
                                     "for sharing too little with the question and passages ('unrelated').",
                                     ["type", "read"], **kw)

    @classmethod
    def shared(cls, registry=None) -> "EngineMetrics":
        """One instance per registry (prometheus refuses to register a name twice)."""
        if registry is None:
            import prometheus_client

            registry = prometheus_client.REGISTRY
        with _lock:
            key = id(registry)
            if key not in _shared:
                _shared[key] = cls(registry)
            return _shared[key]


_COUNTED = "_fgrm_counted"


def mark_counted(exc: BaseException) -> None:
    """Note that `exc` is in fgrm_errors_total already (the engine counts its own errors)."""
    setattr(exc, _COUNTED, True)


def count_answered_error(exc: BaseException, transport: str) -> None:
    """Count an error a transport is about to answer with, unless it (or the error it was made
    from) was counted already. What the engine never sees is counted here, error and request
    (api "refused"): the request gate's refusals (overload, size, media type), body validation
    and decoding, authentication, unknown paths. Without this, HTTP overload refusals, which the
    gate answers before the engine, were invisible to the FgrmQueueSaturated alert. (An error
    raised after the engine answered, e.g. while a transport encodes the result, is rare and is
    counted as a refused request too: an over-count, never an error without its request.)"""
    seen: BaseException | None = exc
    for _ in range(8):  # an error re-raised as another (`raise X from None` keeps __context__)
        if seen is None:
            break
        if getattr(seen, _COUNTED, False):
            return
        seen = seen.__cause__ or seen.__context__
    metrics = EngineMetrics.shared()
    metrics.errors.labels(getattr(exc, "kind", "internal")).inc()
    metrics.requests.labels(transport, "refused").inc()
    mark_counted(exc)
