"""Clients against a real running `fgrm serve` (both transports): parity, alignment, errors,
mix, and the PPO loop fetching real rewards."""

import asyncio

import pytest

from fgrm_client import AsyncGrpcClient, AsyncHttpClient, GrpcClient, HttpClient, InvalidInput
from fgrm_client.align import align_result, offsets_from_decode

from .test_align import TRICKY, byte_level_bpe, wordpiece

QUESTION = "Where is the café and what does it cost?"
PASSAGES = ["The café is in Zürich. A coffee costs 3€.", "It opens at 8 am."]
RESPONSES = [
    "The café is in Zürich.   A coffee costs 3€!  It opens at 8 am.",
    TRICKY,
    "Yes.",
    "   ",  # whitespace only: no segments, completeness still scores it
]


@pytest.fixture(scope="module")
def clients(real_service):
    url, addr = real_service
    with HttpClient(url) as h, GrpcClient(addr) as g:
        g.wait_until_ready(timeout=30)
        yield h, g


def items_with_offsets(tok):
    items = []
    for resp in RESPONSES:
        eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        ids = tok(resp, add_special_tokens=False)["input_ids"] + [eos]
        text, offs = offsets_from_decode(tok, ids)
        items.append({"question": QUESTION, "passages": PASSAGES, "response": text,
                      "token_offsets": offs})
    return items


@pytest.mark.parametrize("make_tok", [byte_level_bpe, wordpiece])
def test_http_grpc_parity_and_client_alignment_matches_service(clients, make_tok):
    h, g = clients
    items = items_with_offsets(make_tok())
    weights = {"relevance": 2.0, "completeness": 0.5}
    rh, rg = h.score(items, weights=weights), g.score(items, weights=weights)
    assert len(rh) == len(rg) == len(items)
    for a, b, it in zip(rh, rg, items):
        assert a.types.keys() == b.types.keys()
        for name in a.types:
            sa, sb = a.types[name].segments, b.types[name].segments
            assert [(s.start, s.end, s.text) for s in sa] == [(s.start, s.end, s.text) for s in sb]
            assert [s.reward for s in sa] == pytest.approx([s.reward for s in sb], abs=1e-6)
        assert a.mixed.weights == b.mixed.weights and a.mixed.weights["relevance"] == 2.0
        assert a.mixed.total == pytest.approx(b.mixed.total, abs=1e-6)
        assert a.token_rewards == pytest.approx(b.token_rewards, abs=1e-6)
        # The client's alignment helper puts every reward on the same token as the service.
        assert align_result(a, it["token_offsets"]) == pytest.approx(list(a.token_rewards), abs=1e-9)
        assert sum(a.token_rewards) == pytest.approx(a.mixed.total, abs=1e-6)
        for seg in a.types["factuality"].segments:  # segment text is the response's slice
            assert it["response"][seg.start:seg.end] == seg.text


def test_mix_reweights_exactly_like_score(clients):
    h, g = clients
    items = items_with_offsets(byte_level_bpe())[:2]
    base = h.score(items)
    offsets = [it["token_offsets"] for it in items]
    w = {"relevance": 0.0, "factuality": 3.0}
    direct = h.score(items, weights=w)
    for client in (h, g):
        mixed = client.mix(base, w, token_offsets=offsets)
        for m, d in zip(mixed, direct):
            assert m.mixed.total == pytest.approx(d.mixed.total, abs=1e-9)
            assert m.token_rewards == pytest.approx(d.token_rewards, abs=1e-9)


def test_invalid_input_names_the_field_on_both_transports(clients):
    for client in clients:
        with pytest.raises(InvalidInput) as ei:
            client.score([{"question": "q", "response": "a"}], weights={"nope": 1.0})
        assert ei.value.field == "weights.nope" and "unknown feedback type" in ei.value.message
        with pytest.raises(InvalidInput) as ei:
            client.score([{"question": "q", "response": "ab", "token_offsets": [[0, 5]]}])
        assert ei.value.field.startswith("items[0].token_offsets")


def test_feedback_types_agree(clients):
    h, g = clients
    fh, fg = h.feedback_types(), g.feedback_types()
    assert [(t.name, t.kind, t.granularity, t.weight) for t in fh] == \
           [(t.name, t.kind, t.granularity, t.weight) for t in fg]
    assert {t.name for t in fh} >= {"relevance", "factuality", "completeness"}
    keys = ("reads_reference", "reference_min_words", "reference_min_context_share", "batch_invariant", "quality")
    assert [{k: t.extra[k] for k in keys} for t in fh] == [{k: t.extra[k] for k in keys} for t in fg]
    assert fh[0].extra["quality"]["auc"] > fh[0].extra["quality"]["lexical_auc"]  # relevance: a number, not a string
    assert {t.name: t.extra["reads_reference"] for t in fg} == {"relevance": True, "factuality": False,
                                                                "completeness": True}


def test_async_clients(real_service):
    url, addr = real_service

    async def main():
        async with AsyncHttpClient(url) as h, AsyncGrpcClient(addr) as g:
            await g.wait_until_ready(timeout=30)
            item = {"question": QUESTION, "passages": PASSAGES, "response": RESPONSES[0]}
            return await asyncio.gather(h.score([item] * 3), g.score([item] * 3))

    rh, rg = asyncio.run(main())
    assert [r.mixed.total for r in rh] == pytest.approx([r.mixed.total for r in rg], abs=1e-6)


def test_ppo_steps_against_real_service(real_service, tmp_path):
    pytest.importorskip("torch")
    from .test_ppo import run_ppo_steps

    changed, rows, _ = run_ppo_steps(tmp_path, real_service[0])
    assert changed, "no policy parameter changed"
    assert {"reward/relevance", "reward/factuality", "reward/completeness"} <= set(rows[1])


def test_trl_reward_func_against_real_service(real_service, clients):
    from fgrm_client.trl import fgrm_reward_func

    h, _ = clients
    f = fgrm_reward_func(real_service[0], weights={"relevance": 2.0})
    rewards = f(prompts=[QUESTION] * 2, completions=RESPONSES[:2], passages=[PASSAGES] * 2)
    expected = h.score([{"question": QUESTION, "passages": PASSAGES, "response": r}
                        for r in RESPONSES[:2]], weights={"relevance": 2.0})
    assert rewards == pytest.approx([r.mixed.total for r in expected], abs=1e-9)
    assert f.__name__ == "fgrm"
