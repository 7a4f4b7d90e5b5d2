"""Fixtures for engine tests: tiny random checkpoints and an instrumented backend wrapper."""

from __future__ import annotations

import threading
import time

import pytest

from tests.service.tiny import tiny_fgrm_checkpoint, tiny_sequence_classifier, types_toml


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    fgrm = tiny_fgrm_checkpoint(d / "fgrm")
    cls = tiny_sequence_classifier(d / "cls")
    types_toml(d / "types.toml", fgrm, None)
    types_toml(d / "types_prefix.toml", fgrm, cls)
    return d


class InstrumentedBackend:
    """Test double around a real backend: records batch shapes, can be slowed down, can fail on
    a poison token, and can claim not to be batch-invariant."""

    def __init__(self, inner, *, delay_s: float = 0.0, poison_token: int | None = None,
                 batch_invariant: bool | None = None):
        self.inner = inner
        self.name = inner.name
        self.provider = inner.provider
        self.batch_invariant = inner.batch_invariant if batch_invariant is None else batch_invariant
        self.delay_s, self.poison_token = delay_s, poison_token
        self.shapes: list[tuple[int, int]] = []
        self.started = threading.Event()
        self.gate: threading.Event | None = None  # when set by a test, forwards wait for it

    def forward(self, input_ids, attention_mask):
        self.shapes.append(tuple(input_ids.shape))
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.poison_token is not None and (input_ids == self.poison_token).any():
            raise RuntimeError("poisoned row")
        return self.inner.forward(input_ids, attention_mask)


def make_engine(types_file, *, registry=None, wrap=None, **settings):
    """A ScoringEngine on `types_file` with a private metrics registry; `wrap(backend)` may
    replace each scorer's backend with a test double."""
    import prometheus_client

    from models.config import load_feedback_types
    from service.config import Settings
    from service.engine import ScoringEngine
    from service.metrics import EngineMetrics
    from service.scorers import build_scorers

    # these tests are about batching mechanics: fix the budget rather than take the CPU default
    settings.setdefault("max_batch_tokens", 8192)
    s = Settings(feedback_types=types_file, runtime="torch", **settings)
    scorers = build_scorers(load_feedback_types(types_file), "torch")
    if wrap is not None:
        for sc in scorers:
            sc.backend = wrap(sc.backend)
    registry = registry or prometheus_client.CollectorRegistry()
    return ScoringEngine(s, scorers=scorers, metrics=EngineMetrics(registry)), registry


@pytest.fixture(scope="module")
def http(fgrm_service):
    """An HTTP client on the shared real service (tests/conftest.py)."""
    import httpx

    with httpx.Client(base_url=fgrm_service.base_url, timeout=120.0) as client:
        yield client


@pytest.fixture(scope="module")
def channel(fgrm_service):
    """A gRPC channel to the shared real service."""
    import grpc

    with grpc.insecure_channel(fgrm_service.grpc_target) as ch:
        yield ch
