"""Trainer adapters against the real service, each called the way its trainer calls it.

No trainer is installed (each pulls CUDA torch, Ray or vLLM): every test reproduces the call
site named in the adapter's docstring, with its argument names, types and positions, and
compares the answer with a direct ``HttpClient.score`` of the same item. The one exception is
the veRL manager's base class, stood in by a stub with verl's import paths and constructor
(see ``verl_stub``); the rewards still come from the real service.
"""

from __future__ import annotations

import asyncio
import math
import pickle
import sys
import types
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from types import SimpleNamespace

import httpx
import pytest

from fgrm_client import HttpClient

from .test_align import byte_level_bpe
from .test_real_service import PASSAGES, QUESTION, RESPONSES

WEIGHTS = {"relevance": 2.0, "factuality": 1.0, "completeness": 0.5}
# QA-Feedback passages as the dataset stores them: {"wikipage", "content"}
QA_PASSAGES = [{"wikipage": "Café", "content": PASSAGES[0]}, {"wikipage": "Hours", "content": PASSAGES[1]}]


@pytest.fixture(scope="module")
def url(real_service):
    return real_service[0]


@pytest.fixture(scope="module")
def direct(url):
    """Reference results: the same items scored directly, in one request."""
    with HttpClient(url) as client:
        def score(responses, weights=WEIGHTS, offsets=None):
            items = [{"question": QUESTION, "passages": PASSAGES, "response": r} for r in responses]
            for it, off in zip(items, offsets or [None] * len(items)):
                if off is not None:
                    it["token_offsets"] = off
            return client.score(items, weights=weights)
        yield score


# ----------------------------------------------------------------------------- veRL


def test_verl_compute_score_as_the_naive_manager_calls_it(url, direct):
    from fgrm_client.trainers.verl import compute_score
    from functools import partial as verl_partial
    import inspect

    # get_custom_reward_fn wraps it as partial(_call_with_kwargs_async, raw_fn, reward_kwargs), and
    # NaiveRewardManager awaits it only if inspect.iscoroutinefunction says so.
    assert inspect.iscoroutinefunction(compute_score)
    reward_kwargs = {"url": url, "weights": WEIGHTS}

    async def call_with_kwargs_async(raw_fn, extra_kwargs, *args, **kwargs):
        return await raw_fn(*args, **{**kwargs, **extra_kwargs})

    fn = verl_partial(call_with_kwargs_async, compute_score, reward_kwargs)
    assert inspect.iscoroutinefunction(fn)

    async def run_single(response):  # the keyword call of naive.py, extra_info as the manager fills it
        extra_info = {"question": QUESTION, "passages": QA_PASSAGES, "index": 3}
        extra_info["num_turns"] = None
        extra_info["rollout_reward_scores"] = {}
        return await fn(data_source="qa_feedback", solution_str=response, ground_truth=None,
                        extra_info=extra_info)

    async def batch():  # compute_score_batch: one task per sample, gathered
        return await asyncio.gather(*(run_single(r) for r in RESPONSES))

    outs = asyncio.run(batch())
    expected = direct(RESPONSES)
    keys = list(outs[0])
    assert keys[0] == "score" and set(keys) >= {"relevance", "factuality", "completeness"}
    for out, ref in zip(outs, expected):
        assert list(out) == keys  # same keys for every sample, the whitespace-only one included
        assert out["score"] == pytest.approx(ref.mixed.total, abs=1e-9)
        for name, t in ref.types.items():
            assert out[name] == pytest.approx(t.total, abs=1e-9)
    # reward_loop.py stacks each key with np.array over the batch: all plain floats
    assert all(isinstance(v, float) for out in outs for v in out.values())


def test_verl_compute_score_needs_the_question(url):
    from fgrm_client.trainers.verl import compute_score

    with pytest.raises(ValueError, match="question"):
        asyncio.run(compute_score("qa", "An answer.", None, {}, url=url))
    with pytest.raises(TypeError, match="unknown fgrm setting"):
        asyncio.run(compute_score("qa", "An answer.", None, {"question": "q"}, ulr=url))


def test_verl_dense_reward_and_assemble_rm_scores(url, direct):
    torch = pytest.importorskip("torch")
    from fgrm_client.trainers._common import Settings
    from fgrm_client.trainers.verl import assemble_dense_rm_scores, dense_reward

    tok = byte_level_bpe()
    ids = [tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for r in RESPONSES[:3]]
    settings = Settings.of(url=url, weights=WEIGHTS)
    extra = {"question": QUESTION, "passages": PASSAGES}

    async def all_samples():
        return await asyncio.gather(*(dense_reward(tok, i, extra, settings) for i in ids))

    outs = asyncio.run(all_samples())
    for out, i in zip(outs, ids):
        assert len(out["reward_score"]) == len(i)
        assert sum(out["reward_score"]) == pytest.approx(out["reward_extra_info"]["score"], abs=1e-6)
    ref = direct([tok.decode(i, skip_special_tokens=True) for i in ids])
    assert [o["reward_extra_info"]["score"] for o in outs] == pytest.approx([r.mixed.total for r in ref], abs=1e-9)

    # The batch as RewardLoopManager.compute_rm_score sees it: left-padded prompts, right-padded responses.
    width, plen = max(map(len, ids)) + 2, 4
    responses = torch.zeros(len(ids), width, dtype=torch.long)
    mask = torch.zeros(len(ids), plen + width, dtype=torch.long)
    for row, i in enumerate(ids):
        responses[row, :len(i)] = torch.tensor(i)
        mask[row, plen - 2:plen + len(i)] = 1
    data = SimpleNamespace(batch={"prompts": torch.zeros(len(ids), plen, dtype=torch.long),
                                  "responses": responses, "attention_mask": mask})
    rm = assemble_dense_rm_scores(data, [o["reward_score"] for o in outs])
    assert rm.shape == responses.shape and rm.dtype == torch.float32
    for row, (i, out) in enumerate(zip(ids, outs)):
        assert rm[row, :len(i)].tolist() == pytest.approx(out["reward_score"], abs=1e-6)
        assert not rm[row, len(i):].any()
    with pytest.raises(ValueError, match="valid response tokens"):
        assemble_dense_rm_scores(data, [o["reward_score"][:-1] for o in outs])
    with pytest.raises(TypeError, match="scalar"):
        assemble_dense_rm_scores(data, [1.0, 2.0, 3.0])


@pytest.fixture
def verl_stub(monkeypatch):
    """verl's two import paths the manager uses, with the current RewardManagerBase constructor
    (config, tokenizer, compute_score) and @register: enough to load the binding without verl."""
    registry = {}
    pkg = types.ModuleType("verl.experimental.reward_loop.reward_manager")
    pkg.register = lambda name: (lambda cls: registry.setdefault(name, cls))
    base = types.ModuleType("verl.experimental.reward_loop.reward_manager.base")

    class RewardManagerBase:
        def __init__(self, config, tokenizer, compute_score):
            self.config, self.tokenizer, self.compute_score = config, tokenizer, compute_score

    base.RewardManagerBase = RewardManagerBase
    for name in ("verl", "verl.experimental", "verl.experimental.reward_loop"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, pkg.__name__, pkg)
    monkeypatch.setitem(sys.modules, base.__name__, base)
    monkeypatch.delitem(sys.modules, "fgrm_client.trainers.verl_manager", raising=False)
    return registry


def test_verl_manager_binding(verl_stub, url):
    torch = pytest.importorskip("torch")
    import importlib

    mod = importlib.import_module("fgrm_client.trainers.verl_manager")
    assert verl_stub["fgrm_dense"] is mod.FgrmDenseRewardManager

    class DictConfig(SimpleNamespace):  # attribute access and .get, like omegaconf's
        def get(self, key, default=None):
            return getattr(self, key, default)

    def cfg(enable, pool=False):
        rm = DictConfig(enable=enable, enable_resource_pool=pool)
        return DictConfig(reward=DictConfig(reward_model=rm, reward_kwargs={"fgrm": {"url": url}}))

    tok = byte_level_bpe()
    kw = dict(tokenizer=tok, compute_score=None, reward_router_address=None, reward_model_tokenizer=None)
    with pytest.raises(ValueError, match="batch reward path"):
        mod.FgrmDenseRewardManager(config=cfg(False), **kw)  # streaming path: refused at start-up
    manager = mod.FgrmDenseRewardManager(config=cfg(True), **kw)  # load_reward_manager's keywords

    ids = tok(RESPONSES[0], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    item = SimpleNamespace(
        batch={"responses": torch.tensor(ids + [0, 0]), "attention_mask": torch.tensor([1, 1] + [1] * len(ids) + [0, 0])},
        non_tensor_batch={"extra_info": {"question": QUESTION, "passages": PASSAGES}, "data_source": "qa"})
    out = asyncio.run(manager.run_single([item]))
    assert len(out["reward_score"]) == len(ids)
    assert set(out["reward_extra_info"]) >= {"score", "relevance", "factuality", "completeness"}
    # verl's label (non_tensor_batch["reward_model"]["ground_truth"]) is the reference only when asked
    item.non_tensor_batch["reward_model"] = {"ground_truth": CAFE_REFERENCE, "style": "rule"}
    same = asyncio.run(manager.run_single([item]))
    assert same["reward_extra_info"] == out["reward_extra_info"]
    config = cfg(True)
    config.reward.reward_kwargs["fgrm"]["label_as_reference"] = True
    asked = asyncio.run(mod.FgrmDenseRewardManager(config=config, **kw).run_single([item]))
    assert asked["reward_extra_info"]["score"] != pytest.approx(out["reward_extra_info"]["score"], abs=1e-4)
    assert sum(asked["reward_score"]) == pytest.approx(asked["reward_extra_info"]["score"], abs=1e-6)


# ----------------------------------------------------------------------------- OpenRLHF


def test_openrlhf_two_remote_urls_second_gets_empty_lists(url):
    """SingleTurnAgentExecutor._fetch_rewards_via_http (openrlhf/utils/agent.py): one query,
    N URLs, batch_size = ceil(1/N) = 1: URL 1 gets the query, URLs 2..N get empty lists."""
    prompt = f"question: {QUESTION} context: wikipage: Café text: {PASSAGES[0]}"
    queries, prompts, labels = [prompt + RESPONSES[0]], [prompt], [None]
    endpoints = [url + "/v1/openrlhf"] * 2
    size = (len(queries) + len(endpoints) - 1) // len(endpoints)
    answers = []
    for i, rm in enumerate(endpoints):
        payload = {"query": queries[i * size:(i + 1) * size], "prompts": prompts[i * size:(i + 1) * size],
                   "labels": labels[i * size:(i + 1) * size]}
        r = httpx.post(rm, json=payload, timeout=60)
        assert r.status_code == 200, r.text
        answers.append(r.json())
    first, second = answers
    assert len(first["rewards"]) == len(first["scores"]) == 1
    assert second["rewards"] == [] and second["scores"] == []
    for answer, n in ((first, 1), (second, 0)):
        # samples_generator.py does torch.tensor([value]) per extra_logs key: numbers only
        assert answer["extra_logs"] and all(
            isinstance(v, list) and len(v) == n and all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)
            for v in answer["extra_logs"].values())


# ----------------------------------------------------------------------------- slime


def _sample(prompt, response, metadata=None, label="gold"):
    # slime.utils.types.Sample's fields that remote/custom RMs read
    return SimpleNamespace(prompt=prompt, response=response, label=label, metadata=metadata or {}, reward=None)


def test_slime_custom_rm_single_and_group(url, direct):
    from fgrm_client.trainers.slime import SlimeReward, reward

    args = SimpleNamespace(rm_url=url, reward_key="score", custom_rm_path="fgrm_client.trainers.slime.reward",
                           group_rm=False)
    meta = {"question": QUESTION, "passages": QA_PASSAGES}
    one = asyncio.run(reward(args, _sample("ignored prompt", RESPONSES[0], meta)))  # async_rm(args, sample)
    [ref] = direct(RESPONSES[:1], weights=None)
    assert one["score"] == pytest.approx(ref.mixed.total, abs=1e-9)
    assert {k: one[k] for k in ref.types} == pytest.approx({k: t.total for k, t in ref.types.items()}, abs=1e-9)
    assert one[args.reward_key] == one["score"]  # Sample.get_reward_value(args)

    weighted = SlimeReward(weights=WEIGHTS)
    group = [_sample([{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}], r,
                     {"passages": PASSAGES}) for r in RESPONSES]
    outs = asyncio.run(weighted(args, group))  # batched_async_rm(args, samples) with --group-rm
    assert [o["score"] for o in outs] == pytest.approx([r.mixed.total for r in direct(RESPONSES)], abs=1e-9)


# ----------------------------------------------------------------------------- NeMo Gym


def _verify_body(response_text, **extra):
    """What NeMo Gym posts to a resources server's /verify: BaseVerifyRequest as JSON."""
    return {
        "responses_create_params": {"input": [{"role": "user", "content": QUESTION}], "temperature": 1.0},
        "response": {
            "id": "resp_1", "object": "response", "created_at": 0.0, "model": "policy", "status": "completed",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "thinking"}]},
                {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                 "content": [{"type": "output_text", "text": response_text, "annotations": []}]},
            ],
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
        },
        **extra,
    }


def test_nemo_gym_verify_components_sum_to_reward(url, direct):
    from fgrm_client.trainers.nemo_gym import FgrmVerifier

    verifier = FgrmVerifier(url, weights=WEIGHTS)
    body = _verify_body(RESPONSES[0], passages=PASSAGES)  # dataset columns arrive as extra fields
    fields = asyncio.run(verifier.verify_fields(body))
    [ref] = direct(RESPONSES[:1])
    assert fields["reward"] == sum(fields["reward_components"].values())  # exactly, as NeMo Gym requires
    assert fields["reward"] == pytest.approx(ref.mixed.total, abs=1e-9)
    for name, t in ref.types.items():
        assert fields["reward_components"][name] == pytest.approx(WEIGHTS[name] * t.total, abs=1e-9)
        assert fields[name] == fields["reward_components"][name]  # top-level for aggregate metrics
    # A pydantic body (what verify() receives) works the same.
    pydantic = pytest.importorskip("pydantic")
    Body = pydantic.create_model("Body", __config__=pydantic.ConfigDict(extra="allow"))
    assert asyncio.run(verifier.verify_fields(Body(**body))) == fields


# ----------------------------------------------------------------------------- SkyRL


def test_skyrl_generator_output_gets_token_level_rewards(url, direct):
    from fgrm_client.trainers.skyrl import FgrmRewardGenerator

    tok = byte_level_bpe()
    ids = [tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for r in RESPONSES]

    class Generator:  # a SkyRL generator: GeneratorOutput rows in input order
        async def generate(self, input_batch):
            n = len(input_batch["prompts"])
            return {"prompt_token_ids": [[1, 2]] * n, "response_ids": ids, "rewards": [1.0] * n,
                    "loss_masks": [[1] * len(i) for i in ids], "stop_reasons": ["stop"] * n,
                    "rollout_metrics": None, "rollout_logprobs": None}

    input_batch = {"prompts": [[{"role": "user", "content": QUESTION}]] * len(ids),
                   "env_classes": ["qa"] * len(ids),
                   "env_extras": [{"passages": PASSAGES}] * len(ids),
                   "sampling_params": None, "trajectory_ids": None, "batch_metadata": None}
    out = asyncio.run(FgrmRewardGenerator(Generator(), tok, url=url, weights=WEIGHTS).generate(input_batch))
    rewards = out["rewards"]
    # trainer.py takes rewards as token-level when rewards[0] is a list: one per response token
    assert isinstance(rewards, list) and isinstance(rewards[0], list)
    assert [len(r) for r in rewards] == [len(i) for i in ids]
    ref = direct([tok.decode(i, skip_special_tokens=True) for i in ids])
    assert [sum(r) for r in rewards] == pytest.approx([x.mixed.total for x in ref], abs=1e-6)
    assert any(v != 0 for v in rewards[0][:-1])  # dense: not everything on the last token


# ----------------------------------------------------------------------------- AReaL


async def _areal_wrapper_call(executor, fn, *args, timeout_seconds=15, **kwargs):
    # AsyncRewardWrapper.__call__ (areal/api/reward_api.py): the function runs in a process pool
    loop = asyncio.get_event_loop()
    future = loop.run_in_executor(executor, partial(fn, *args, **kwargs))
    return await asyncio.wait_for(future, timeout=timeout_seconds)


def test_areal_reward_fn_in_a_process_pool(url, direct):
    from fgrm_client.trainers.areal import ArealReward

    fn = ArealReward(url, weights=WEIGHTS, deadline=10.0)
    assert pickle.loads(pickle.dumps(fn)).settings == fn.settings
    prompt = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    task_data = {"messages": [{"role": "user", "content": QUESTION}], "question": QUESTION, "passages": PASSAGES}

    async def episode(executor):  # rlvr.py: reward_fn(prompt_str, completions_str, input_tokens, output_tokens, **data)
        return await asyncio.gather(*(
            _areal_wrapper_call(executor, fn, prompt, r + "<|im_end|>", [1, 2, 3], [4, 5, 6], **task_data)
            for r in RESPONSES[:2]))

    with ProcessPoolExecutor(max_workers=1) as executor:
        rewards = asyncio.run(episode(executor))
    assert rewards == pytest.approx([r.mixed.total for r in direct(RESPONSES[:2])], abs=1e-9)
    with pytest.raises(ValueError, match="deadline"):
        ArealReward(url, deadline=15.0)


# ----------------------------------------------------------------------------- references

CAFE_REFERENCE = ("The café is in Zürich, on the old town's main square, and a coffee there costs three euros. "
                  "It opens at eight in the morning and closes in the early evening.")


def _with_and_without_reference(direct_url):
    """Mixed totals of RESPONSES[0] scored directly with CAFE_REFERENCE, with "Zürich", and without."""
    with HttpClient(direct_url) as client:
        item = {"question": QUESTION, "passages": PASSAGES, "response": RESPONSES[0]}
        return [r.mixed.total for r in client.score(
            [{**item, "reference": CAFE_REFERENCE}, {**item, "reference": "Zürich"}, item], weights=WEIGHTS)]


def test_every_adapter_sends_a_reference_from_the_samples_data_and_its_label_only_when_asked(url):
    from fgrm_client.trainers.areal import ArealReward
    from fgrm_client.trainers.slime import SlimeReward
    from fgrm_client.trainers.verl import compute_score

    long_ref, short_ref, plain = _with_and_without_reference(url)
    assert len({round(v, 6) for v in (long_ref, short_ref, plain)}) == 3  # the reference changes the reward
    extra = {"question": QUESTION, "passages": PASSAGES}

    def verl(extra_info, ground_truth, **settings):
        return asyncio.run(compute_score("qa", RESPONSES[0], ground_truth, extra_info, url=url, weights=WEIGHTS,
                                         **settings))["score"]

    assert verl({**extra, "reference": CAFE_REFERENCE}, "Zürich") == pytest.approx(long_ref, abs=1e-9)
    assert verl(extra, "Zürich") == pytest.approx(plain, abs=1e-9)  # the label is not a reference by default
    assert verl(extra, ["Zürich"], label_as_reference=True) == pytest.approx(short_ref, abs=1e-9)
    # the sample's own reference wins over its label
    assert verl({**extra, "reference": CAFE_REFERENCE}, "Zürich", label_as_reference=True) == pytest.approx(
        long_ref, abs=1e-9)

    args = SimpleNamespace(rm_url=url)
    slime = SlimeReward(weights=WEIGHTS)
    assert asyncio.run(slime(args, _sample("p", RESPONSES[0], extra, label=CAFE_REFERENCE)))["score"] == (
        pytest.approx(plain, abs=1e-9))
    asked = SlimeReward(weights=WEIGHTS, label_as_reference=True)
    assert asyncio.run(asked(args, _sample("p", RESPONSES[0], extra, label=CAFE_REFERENCE)))["score"] == (
        pytest.approx(long_ref, abs=1e-9))
    assert asyncio.run(slime(args, _sample("p", RESPONSES[0], {**extra, "reference": "Zürich"})))["score"] == (
        pytest.approx(short_ref, abs=1e-9))

    from fgrm_client.trainers.nemo_gym import FgrmVerifier

    verifier = FgrmVerifier(url, weights=WEIGHTS)
    body = _verify_body(RESPONSES[0], question=QUESTION, passages=PASSAGES, reference=CAFE_REFERENCE)
    assert asyncio.run(verifier.verify_fields(body))["reward"] == pytest.approx(long_ref, abs=1e-9)
    body = _verify_body(RESPONSES[0], question=QUESTION, passages=PASSAGES, reference=["Zürich"])
    assert asyncio.run(verifier.verify_fields(body))["reward"] == pytest.approx(short_ref, abs=1e-9)
    with pytest.raises(TypeError, match=r"body\['reference'\]: a reference answer must be text"):
        asyncio.run(verifier.verify_fields(_verify_body(RESPONSES[0], question=QUESTION, reference={"a": 1})))

    areal = ArealReward(url, weights=WEIGHTS)
    assert areal(QUESTION, RESPONSES[0], **extra, reference=CAFE_REFERENCE) == pytest.approx(long_ref, abs=1e-9)
    with pytest.raises(ValueError, match="label_as_reference: AReaL passes no label"):
        ArealReward(url, label_as_reference=True)


def test_skyrl_takes_the_reward_specs_ground_truth_only_when_asked(url):
    from fgrm_client.trainers.skyrl import dense_rewards

    tok = byte_level_bpe()
    ids = [tok(RESPONSES[0], add_special_tokens=False)["input_ids"]]
    long_ref, _, plain = _with_and_without_reference(url)
    extras = [{"passages": PASSAGES, "reward_spec": {"method": "rule", "ground_truth": CAFE_REFERENCE}}]
    prompts = [[{"role": "user", "content": QUESTION}]]
    for settings, expected in (({}, plain), ({"label_as_reference": True}, long_ref)):
        [tokens] = asyncio.run(dense_rewards(tok, ids, prompts, extras, url=url, weights=WEIGHTS, **settings))
        assert sum(tokens) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("label, message", [
    ({"answer": "x"}, "ground_truth: a reference answer must be text, a number or a list of them, not dict"),
    ([["nested"]], "ground_truth: a reference answer must be text, a number or a list of them, not list"),
])
def test_a_label_that_is_no_text_is_refused_naming_it(url, label, message):
    from fgrm_client.trainers.verl import compute_score

    with pytest.raises(TypeError) as e:
        asyncio.run(compute_score("qa", RESPONSES[0], label, {"question": QUESTION}, url=url,
                                  label_as_reference=True))
    assert str(e.value) == message
