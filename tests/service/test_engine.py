"""ScoringEngine mechanics on tiny random checkpoints: segments, rewards, batching, isolation."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from service.domain import Item
from service.errors import BackendFailure, InvalidInput, Overloaded
from tests.service.conftest import InstrumentedBackend, make_engine

RESPONSES = [
    "Paris is the capital of France, and it is big and old and very nice. It has many museums! Really.",
    "Short one.",
    "The Eiffel Tower was built in 1889 for the World's Fair, which celebrated the centennial of the "
    "French Revolution. It is 330 metres tall; for 41 years it was the tallest structure in the world. "
    "Gustave Eiffel's company designed and built it.",
    "  Leading and trailing spaces, kept out of segments.  ",
]
ITEMS = [Item(r, "what about paris?", ("Paris is a city in France. It is old.",)) for r in RESPONSES]


def flat_values(result):
    """Every number in a result, in a fixed order, for closeness checks."""
    out = []
    for name, tr in result.types.items():
        for s in tr.segments:
            out += [s.reward, s.p_error if s.p_error is not None else 0.0, s.score or 0.0, s.p_bad or 0.0]
    return np.array(out)


def test_segments_rewards_and_mix(tiny_dir):
    engine, _ = make_engine(tiny_dir / "types.toml")
    [res] = engine.score_sync([ITEMS[0]])
    text = ITEMS[0].response
    assert list(res.types) == ["relevance", "factuality", "completeness"]
    rel, fact, comp = res.types["relevance"], res.types["factuality"], res.types["completeness"]
    assert [s.text for s in rel.segments] == ["Paris is the capital of France,", "and it is big and old and very nice.",
                                              "It has many museums!", "Really."]
    assert [s.text for s in fact.segments] == ["Paris is the capital of France, and it is big and old and very nice.",
                                               "It has many museums!", "Really."]
    for tr in (rel, fact, comp):
        for s in tr.segments:
            assert text[s.start:s.end] == s.text
    for s in rel.segments:
        assert s.reward == (-0.3 if s.p_error > 0.5 else 0.3)
    for s in fact.segments:
        assert s.reward == (-0.5 if s.p_error > 0.5 else 0.5)
    assert fact.segments[1].start == rel.segments[2].start  # sentences start where sub-sentences do
    [only] = comp.segments
    assert (only.start, only.end) == (0, len(text))
    assert only.reward == pytest.approx((only.score - 0.1) / 2.0 * 0.3)
    assert rel.total == pytest.approx(sum(s.reward for s in rel.segments))
    # mix: Σ w_k r_k per segment end; default weights 1
    expected: dict[int, float] = {}
    for tr in res.types.values():
        for s in tr.segments:
            expected[s.end] = expected.get(s.end, 0.0) + s.reward
    assert {e.end: e.reward for e in res.mixed.events} == pytest.approx(expected)
    assert res.mixed.total == pytest.approx(rel.total + fact.total + comp.total)
    assert res.token_rewards is None


def test_sentence_type_reads_sentence_start_marker(tiny_dir):
    engine, _ = make_engine(tiny_dir / "types.toml")
    [p] = engine.prepare([ITEMS[0]])
    segs = p.segs
    starts = {s.start for s in segs["sub-sentence"]}
    assert all(s.start in starts for s in segs["sentence"])


@pytest.mark.parametrize("types", ["types.toml", "types_prefix.toml"])
def test_blank_response_has_no_segments_but_is_scored_as_a_response(tiny_dir, types):
    # every scorer kind: fgrm segment and preference heads, and the prefix-delta classifier
    # (which gets no rows at all for a blank answer)
    engine, _ = make_engine(tiny_dir / types)
    other = Item("Paris is the capital. It is large.", "q?", ("Paris is the capital of France.",))
    for text in ("", "   \n\t "):
        blank = Item(text, "q?", ("Paris is the capital of France.",), ((0, len(text)),) if text else ())
        [res] = engine.score_sync([blank])
        for name, tr in res.types.items():
            if tr.granularity == "response":
                [seg] = tr.segments
                assert (seg.start, seg.end, seg.text) == (0, 0, "") and np.isfinite(seg.reward)
            else:
                assert tr.segments == [] and tr.total == 0.0, name
        assert res.mixed.total == pytest.approx(res.types["completeness"].total)
        assert res.token_rewards == ([pytest.approx(res.mixed.total)] if text else [])
        # and the same whatever it is batched with
        assert engine.score_sync([other, blank, other])[1] == res


def test_batch_invariance_sync_and_async(tiny_dir):
    engine, _ = make_engine(tiny_dir / "types_prefix.toml", max_batch_tokens=100_000)
    alone = [engine.score_sync([it])[0] for it in ITEMS]
    together = engine.score_sync(ITEMS)
    reversed_ = engine.score_sync(ITEMS[::-1])[::-1]

    async def concurrent():
        return await asyncio.gather(*(engine.score([it]) for it in ITEMS * 2))

    conc = [r[0] for r in asyncio.run(concurrent())]
    for k, a in enumerate(alone):
        for other in (together[k], reversed_[k], conc[k], conc[k + len(ITEMS)]):
            np.testing.assert_allclose(flat_values(other), flat_values(a), atol=1e-5)


def test_token_budget_sorts_and_splits(tiny_dir):
    backend_box = []

    def wrap(b):
        backend_box.append(InstrumentedBackend(b))
        return backend_box[-1]

    engine, registry = make_engine(tiny_dir / "types.toml", wrap=wrap, max_batch_tokens=300)
    long = Item(" ".join(["word"] * 40) + ".")  # ~ 200 tokens with characters as tokens
    shorts = [Item(f"tiny {i}.") for i in range(6)]
    engine.score_sync([long, *shorts])
    shapes = backend_box[0].shapes
    assert sum(b for b, _ in shapes) == 7
    assert all(b * t <= 300 for b, t in shapes if b > 1)
    # the long row is not padded together with the short ones
    assert shapes[-1][0] == 1 and shapes[0][0] == 6
    assert registry.get_sample_value("fgrm_batch_size_count") == len(shapes)
    assert registry.get_sample_value("fgrm_batch_padding_fraction_count") == len(shapes)


def test_non_invariant_backend_runs_one_row_per_forward(tiny_dir):
    box = []

    def wrap(b):
        box.append(InstrumentedBackend(b, batch_invariant=False))
        return box[-1]

    engine, _ = make_engine(tiny_dir / "types.toml", wrap=wrap)
    engine.score_sync(ITEMS)

    async def concurrent():
        return await asyncio.gather(*(engine.score([it]) for it in ITEMS))

    asyncio.run(concurrent())
    assert box[0].shapes and all(b == 1 for b, _ in box[0].shapes)


def test_too_long_response_names_field_and_limit_without_hurting_others(tiny_dir):
    engine, _ = make_engine(tiny_dir / "types.toml")
    huge = Item("word " * 300)

    async def run():
        return await asyncio.gather(engine.score([ITEMS[0]]), engine.score([ITEMS[1], huge]),
                                    engine.score([ITEMS[2]]), return_exceptions=True)

    a, bad, c = asyncio.run(run())
    assert isinstance(bad, InvalidInput)
    assert bad.field == "items[1].response"
    assert "limit is 256 tokens" in bad.message
    ref = engine.score_sync([ITEMS[0], ITEMS[2]])
    np.testing.assert_allclose(flat_values(a[0]), flat_values(ref[0]), atol=1e-5)
    np.testing.assert_allclose(flat_values(c[0]), flat_values(ref[1]), atol=1e-5)


@pytest.mark.parametrize("item, field, words", [
    (Item("x" * 20_001), "items[0].response", "limit is 20000 (max_response_chars)"),
    (Item("ok.", token_offsets=((0, 2), (1, 9))), "items[0].token_offsets[1]", "past the response's 3 characters"),
    (Item("ok.", token_offsets=((2, 3), (0, 1))), "items[0].token_offsets[1]", "must not decrease"),
    (Item("ok.", token_offsets=((3, 1),)), "items[0].token_offsets[0]", "0 <= start <= end"),
    (Item("ok.", passages=tuple("p" for _ in range(65))), "items[0].passages", "max_passages"),
    (Item("ok.", reference="r" * 20_001), "items[0].reference", "limit is 20000 (max_reference_chars)"),
])
def test_invalid_items_name_the_field(tiny_dir, item, field, words):
    engine, registry = make_engine(tiny_dir / "types.toml")
    with pytest.raises(InvalidInput) as err:
        asyncio.run(engine.score([item]))
    assert err.value.field == field and words in err.value.message
    assert registry.get_sample_value("fgrm_errors_total", {"kind": "invalid_input"}) == 1


@pytest.mark.parametrize("weights, field, words", [
    ({"relevance": -1.0}, "weights.relevance", "in [0, 1e+06]"),
    ({"factuality": float("nan")}, "weights.factuality", "finite"),
    ({"fluency": 1.0}, "weights.fluency", "unknown feedback type 'fluency'"),
    ({"relevance": "a lot"}, "weights.relevance", "must be a number"),
])
def test_bad_weights_name_the_field(tiny_dir, weights, field, words):
    engine, _ = make_engine(tiny_dir / "types.toml")
    with pytest.raises(InvalidInput) as err:
        asyncio.run(engine.score([ITEMS[0]], weights))
    assert err.value.field == field and words in err.value.message


def test_weights_override_profile_and_profiles(tiny_dir):
    engine, _ = make_engine(tiny_dir / "types.toml")
    base = engine.score_sync([ITEMS[0]])[0]
    engine.profiles.put("facts", {"factuality": 2.0, "completeness": 0.0})
    res = engine.score_sync([ITEMS[0]], {"relevance": 0.5}, "facts")[0]
    assert res.mixed.weights == {"relevance": 0.5, "factuality": 2.0, "completeness": 0.0}
    t = base.types
    assert res.mixed.total == pytest.approx(0.5 * t["relevance"].total + 2 * t["factuality"].total)
    with pytest.raises(InvalidInput) as err:
        engine.score_sync([ITEMS[0]], profile="nope")
    assert err.value.field == "profile" and "known profiles: default, facts" in err.value.message


def test_token_rewards_on_true_offsets(tiny_dir):
    engine, _ = make_engine(tiny_dir / "types.toml")
    text = "Short one. Second one here, with more words inside it."
    # whitespace-split "tokens" with their true character offsets, plus a zero-width EOS at the end
    import re

    offsets = tuple((m.start(), m.end()) for m in re.finditer(r"\S+", text)) + ((len(text), len(text)),)
    [res] = engine.score_sync([Item(text, token_offsets=offsets)])
    w = res.mixed.weights
    expected = [0.0] * len(offsets)
    for name, tr in res.types.items():
        for s in tr.segments:
            if tr.granularity == "response":
                idx = len(offsets) - 1
            else:
                idx = next(i for i, (a, b) in enumerate(offsets) if a <= s.end - 1 < b)
            expected[idx] += w[name] * s.reward
    assert res.token_rewards == pytest.approx(expected)
    assert sum(res.token_rewards) == pytest.approx(res.mixed.total)
    assert res.token_rewards[-1] == pytest.approx(res.types["completeness"].total)


def test_overload_is_refused_immediately(tiny_dir):
    box = []

    def wrap(b):
        box.append(InstrumentedBackend(b))
        box[-1].gate = threading.Event()
        return box[-1]

    engine, registry = make_engine(tiny_dir / "types.toml", wrap=wrap, max_queue_items=3)

    async def run():
        first = asyncio.ensure_future(engine.score(ITEMS[:3]))
        await asyncio.to_thread(box[0].started.wait, 10)
        with pytest.raises(Overloaded) as err:
            await asyncio.wait_for(engine.score([ITEMS[0]]), 1.0)
        box[0].gate.set()
        await first
        return err.value

    err = asyncio.run(run())
    assert "max_queue_items" in err.message and "3 items in flight" in err.message
    assert registry.get_sample_value("fgrm_errors_total", {"kind": "overloaded"}) == 1


def test_cancelled_request_is_dropped_before_its_forward(tiny_dir):
    box = []

    def wrap(b):
        box.append(InstrumentedBackend(b))
        box[-1].gate = threading.Event()
        return box[-1]

    engine, _ = make_engine(tiny_dir / "types.toml", wrap=wrap)

    async def run():
        blocker = asyncio.ensure_future(engine.score([ITEMS[0]]))
        await asyncio.to_thread(box[0].started.wait, 10)
        with pytest.raises(asyncio.TimeoutError):  # a deadline that passes while queued
            await asyncio.wait_for(engine.score([ITEMS[2]]), 0.2)
        box[0].gate.set()
        await blocker
        assert engine._admitted == 0
        return await engine.score([ITEMS[1]])

    asyncio.run(run())
    assert len(box[0].shapes) == 2  # the blocker and the last request; the cancelled row never ran


def test_backend_failure_is_isolated_to_the_bad_row(tiny_dir):
    box = []
    marker_free_poison = None

    def wrap(b):
        box.append(InstrumentedBackend(b))
        return box[-1]

    engine, registry = make_engine(tiny_dir / "types.toml", wrap=wrap)
    tok = engine.scorers[0].encoder.tokenizer
    marker_free_poison = tok.convert_tokens_to_ids("~")
    box[0].poison_token = marker_free_poison

    async def run():
        return await asyncio.gather(engine.score([ITEMS[0]]), engine.score([Item("bad ~ row.")]),
                                    engine.score([ITEMS[1]]), return_exceptions=True)

    good1, bad, good2 = asyncio.run(run())
    assert isinstance(bad, BackendFailure) and "see the server log" in bad.message
    assert not isinstance(good1, Exception) and not isinstance(good2, Exception)
    assert registry.get_sample_value("fgrm_errors_total", {"kind": "backend_failure"}) == 1


def test_prefix_delta_rewards(tiny_dir):
    engine, _ = make_engine(tiny_dir / "types_prefix.toml")
    text = ITEMS[2].response
    [res] = engine.score_sync([Item(text)])
    tox = res.types["toxicity"]
    assert tox.granularity == "sentence" and len(tox.segments) == 3
    sc = engine.scorers[-1]
    prev = 0.0
    for seg in tox.segments:
        ids = np.array([sc.encoder.encode(text[: seg.end])])
        logits = sc.backend.forward(ids, np.ones_like(ids))["sequence_logits"][0]
        p = np.exp(logits - logits.max())
        p_bad = p[1] / p.sum()
        assert seg.p_bad == pytest.approx(p_bad, abs=1e-6)
        assert seg.reward == pytest.approx(-(p_bad - prev) * 2.0, abs=1e-6)
        prev = p_bad
    assert tox.total == pytest.approx(-tox.segments[-1].p_bad * 2.0)
    assert res.mixed.weights["toxicity"] == 0.5


def test_feedback_types_describe_models(tiny_dir):
    engine, _ = make_engine(tiny_dir / "types_prefix.toml")
    info = {t.name: t for t in engine.feedback_types()}
    assert info["relevance"].granularity == "sub-sentence" and info["relevance"].model_version == "tiny-test"
    assert info["completeness"].kind == "preference_scorer"
    assert info["toxicity"].kind == "prefix_delta" and info["toxicity"].default_weight == 0.5
    assert all(t.runtime == "torch" and t.batch_invariant for t in info.values())
    # neither an fgrm network nor a prefix-delta classifier reads a reference answer
    assert all((t.reads_reference, t.reference_min_words, t.reference_min_context_share) == (False, 0, 0.0)
               for t in info.values())
    # nor records a CV to report
    assert all(t.quality == {} and t.as_dict()["quality"] == {} for t in info.values())


def test_metrics_are_recorded_per_transport_and_batches_are_shared(tiny_dir):
    box = []

    def wrap(b):
        box.append(InstrumentedBackend(b))
        box[-1].gate = threading.Event()
        return box[-1]

    engine, registry = make_engine(tiny_dir / "types.toml", wrap=wrap)

    async def run():
        blocker = asyncio.ensure_future(engine.score(ITEMS[:1], transport="inproc"))
        await asyncio.to_thread(box[0].started.wait, 10)
        # while the backend is busy, one HTTP and one gRPC request queue up ...
        both = asyncio.gather(engine.score(ITEMS[:2], transport="http"), engine.score(ITEMS[2:], transport="grpc"))
        while engine._batchers[0]._queue.__len__() < 4:
            await asyncio.sleep(0.01)
        box[0].gate.set()
        await blocker
        await both

    asyncio.run(run())
    get = registry.get_sample_value
    # ... and share the next forward pass
    assert get("fgrm_batches_total", {"transports": "grpc+http"}) == 1
    assert box[0].shapes[1][0] == 4
    assert get("fgrm_requests_total", {"transport": "http", "api": "score"}) == 1
    assert get("fgrm_items_total", {"transport": "grpc"}) == 2
    assert get("fgrm_queue_wait_seconds_count") == 5
    assert get("fgrm_reward_count", {"type": "relevance"}) == 5
    assert get("fgrm_reward_count", {"type": "mixed"}) == 5
    assert get("fgrm_forward_seconds_count", {"runtime": "torch", "provider": "cpu:float32"}) == 2
    assert get("fgrm_queue_items") == 0


def test_request_larger_than_the_queue_is_invalid_not_overloaded(tiny_dir):
    engine, _ = make_engine(tiny_dir / "types.toml", max_queue_items=2)
    with pytest.raises(InvalidInput) as err:
        asyncio.run(engine.score(ITEMS[:3]))
    assert err.value.field == "items" and "at most 2 (max_queue_items)" in err.value.message


def test_profiles_from_the_types_file_and_a_profiles_file(tiny_dir, tmp_path):
    import prometheus_client

    from service.config import Settings
    from service.engine import ScoringEngine
    from service.metrics import EngineMetrics

    types = tmp_path / "types.toml"
    types.write_text((tiny_dir / "types.toml").read_text() + "\n[profiles.paper]\ncompleteness = 1.0\n"
                     "[profiles.facts]\nfactuality = 3.0\n")
    extra = tmp_path / "profiles.toml"
    extra.write_text("[profiles.facts]\nfactuality = 2.0\n[profiles.default]\nrelevance = 0.5\n")
    engine = ScoringEngine(Settings(feedback_types=types, profiles=extra, runtime="torch"),
                           metrics=EngineMetrics(prometheus_client.CollectorRegistry()))
    p = engine.profiles.all()
    assert p["paper"] == {"relevance": 1.0, "factuality": 1.0, "completeness": 1.0}
    assert p["facts"]["factuality"] == 2.0  # the profiles file wins over the types file
    assert p["default"]["relevance"] == 0.5
    extra.write_text("[profiles.bad]\nfluency = 1.0\n")
    with pytest.raises(InvalidInput) as err:
        ScoringEngine(Settings(feedback_types=types, profiles=extra, runtime="torch"),
                      metrics=EngineMetrics(prometheus_client.CollectorRegistry()))
    assert err.value.field == "profiles.bad.fluency"
