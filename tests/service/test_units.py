"""Pure helpers: batch planning, settings, mixing maths, error bodies."""

from __future__ import annotations

import math

import pytest

from models.encoding import pad_batch as pad
from service.batching import plan
from service.config import Settings
from service.domain import Component
from service.errors import InvalidInput
from service.mixing import check_offsets, mix, token_at, token_rewards
from service.profiles import Profiles


def test_plan_sorts_by_length_and_respects_the_token_budget():
    lengths = [500, 10, 12, 11, 480, 9, 30]
    batches = plan(lengths, max_tokens=1000, max_rows=64)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [i for b in batches for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths)
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 1000
    assert batches[0] == [5, 1, 3, 2, 6]  # the five short ones together, not padded to 500


def test_plan_limits_rows_and_handles_oversize_and_non_invariant_backends():
    assert plan([5] * 10, 1000, max_rows=4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert plan([2000, 10], 1000, 64) == [[1], [0]]  # longer than the budget: alone
    assert plan([3, 1, 2], 1000, 64, one_per_batch=True) == [[1], [2], [0]]
    assert plan([], 1000, 64) == []


def test_pad_right_pads_with_mask():
    ids, mask = pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_settings_from_env_types_and_errors(tmp_path):
    s = Settings.from_env({"FGRM_GRPC_PORT": "0", "FGRM_BATCH_WAIT_MS": "1.5", "FGRM_PROFILES": str(tmp_path),
                           "FGRM_TYPO": "x", "PATH": "/bin"})
    assert s.grpc_port == 0 and s.batch_wait_ms == 1.5 and s.profiles == tmp_path
    assert s.extra == {"FGRM_TYPO": "x"}
    assert Settings.from_env(Settings(grpc_port=7).to_env()).grpc_port == 7
    with pytest.raises(ValueError, match="FGRM_MAX_BATCH_TOKENS='lots' is not a valid int"):
        Settings.from_env({"FGRM_MAX_BATCH_TOKENS": "lots"})
    with pytest.raises(ValueError, match="FGRM_RUNTIME must be one of"):
        Settings.from_env({"FGRM_RUNTIME": "tensorrt"})


def test_mix_sums_weighted_rewards_per_end_position():
    comps = {"a": Component("sentence", ((10, 0.5), (20, -0.5))),
             "b": Component("sub-sentence", ((5, 0.3), (10, 0.3), (20, -0.3))),
             "c": Component("response", ((20, 1.0),))}
    m = mix(comps, {"a": 2.0, "b": 1.0, "c": 0.5})
    assert [(e.end, e.reward) for e in m.events] == [(5, 0.3), (10, 1.3), (20, pytest.approx(-0.8))]
    assert m.total == pytest.approx(0.8)


def test_token_rewards_segment_end_and_last_token():
    comps = {"a": Component("sentence", ((9, 1.0), (15, 2.0))), "c": Component("response", ((15, 4.0),))}
    # tokens: "Hello" "world." " Bye" "." "</s>"(zero width at 15)
    offsets = ((0, 5), (5, 9), (9, 13), (14, 15), (15, 15))
    assert token_rewards(comps, {"a": 1.0, "c": 0.5}, offsets) == [0.0, 1.0, 0.0, 2.0, 2.0]
    assert token_rewards(comps, {"a": 1.0}, ()) == []


def test_token_at_gaps_and_zero_width_tokens():
    # the full table, shared with the client, is tests/test_token_rule.py
    offsets = ((0, 3), (3, 3), (4, 8))
    assert token_at(offsets, 2) == 0
    assert token_at(offsets, 3) == 0  # a gap goes to the token before it; zero-width tokens never receive
    assert token_at(offsets, 5) == 2


def test_offsets_validation_names_the_pair():
    with pytest.raises(InvalidInput) as err:
        check_offsets([[0, 2], [1, "x"]], "items[0].token_offsets", 10)
    assert err.value.field == "items[0].token_offsets[1]"
    assert err.value.as_dict() == {"kind": "invalid_input", "field": "items[0].token_offsets[1]",
                                   "message": "items[0].token_offsets[1]: must be a [start, end] pair of integers, "
                                              "got [1, 'x']"}


def test_profiles_fill_unnamed_types_from_configured_defaults():
    p = Profiles({"a": 1.0, "b": 0.5})
    assert p.put("x", {"a": 3}) == {"a": 3.0, "b": 0.5}
    assert p.resolve({"b": 0}, "x") == {"a": 3.0, "b": 0.0}
    assert p.resolve(None, None) == {"a": 1.0, "b": 0.5}
    with pytest.raises(InvalidInput) as err:
        p.put("bad name!", {})
    assert err.value.field == "name"
    with pytest.raises(InvalidInput) as err:
        p.put("y", {"a": math.inf})
    assert err.value.field == "weights.a"


def test_openrlhf_prompt_parsing():
    from service.openrlhf import parse_prompt, to_items

    prompt = ("question: When does the new bunk'd come out? context: wikipage: Why Don't We text: Why Don't We\n\n"
              "Why Don't We is an American pop band. | wikipage: Bunk'd text: Bunk'd\n\nBunk'd is a series.")
    q, passages = parse_prompt(prompt)
    assert q == "When does the new bunk'd come out?"
    assert passages == ("Why Don't We: Why Don't We is an American pop band.", "Bunk'd: Bunk'd is a series.")
    assert parse_prompt("Write a poem.") == ("Write a poem.", ())
    [item] = to_items([prompt + " It is out."], [prompt])
    assert item.response == " It is out." and item.question == q
    with pytest.raises(InvalidInput) as err:
        to_items(["a", "b"], ["a"])
    assert err.value.field == "prompts"


QA_PROMPT = ("question: When does the new bunk'd come out? context: wikipage: Why Don't We text: Why Don't We\n\n"
             "Why Don't We is an American pop band. | wikipage: Bunk'd text: Bunk'd\n\nBunk'd is a series "
             "that premiered on July 31, 2015, and its fourth season premiered in 2019.")


def test_openrlhf_finds_the_response_after_a_left_truncated_prompt():
    from service.openrlhf import locate_response, to_items

    # OpenRLHF cut the prompt's first tokens and decoding changed the whitespace
    truncated = "Why Don't We is an American   pop band. | wikipage: Bunk'd text: Bunk'd\nBunk'd is a series that " \
                "premiered on July 31, 2015, and its fourth season premiered in 2019."
    query = truncated + " The new season came out in 2019."
    assert locate_response(query, QA_PROMPT) == " The new season came out in 2019."
    [item] = to_items([query], [QA_PROMPT])
    assert item.question == "When does the new bunk'd come out?" and len(item.passages) == 2
    with pytest.raises(InvalidInput) as err:
        to_items(["an unrelated text"], [QA_PROMPT])
    assert err.value.field == "query[0]" and "cannot be found" in err.value.message and "2019" in err.value.message


def test_openrlhf_recognises_qa_prompts_inside_chat_templates():
    from service.openrlhf import parse_prompt, to_items

    for chat in (f"<|im_start|>user\n{QA_PROMPT}<|im_end|>\n<|im_start|>assistant\n",
                 f"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{QA_PROMPT}<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n",
                 f"<s>[INST] {QA_PROMPT} [/INST]"):
        q, passages = parse_prompt(chat)
        assert q == "When does the new bunk'd come out?", chat
        assert passages[-1].endswith("premiered in 2019."), passages
        [item] = to_items([chat + "In 2019."], [chat])
        assert item.response == "In 2019." and item.passages == passages
    assert to_items([], []) == []  # OpenRLHF's URLs 2..N get empty lists


def test_split_many_equals_split_per_granularity():
    import json
    from pathlib import Path

    from models.segment import split, split_many

    texts = [s["response"] for s in json.loads((Path(__file__).parent / "data" / "qa_samples.json").read_text())]
    texts += ["", "  ", "One. Two, three four five six seven eight nine; ten eleven twelve thirteen fourteen!"]
    grans = ["sub-sentence", "sentence", "response"]
    for text in texts:
        assert split_many(text, grans) == {g: split(text, g) for g in grans}


def test_token_budget_defaults_by_device_and_an_explicit_one_wins():
    from service.config import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, batch_token_budget

    auto = Settings()
    assert auto.max_batch_tokens == 0
    assert batch_token_budget(auto, "CPUExecutionProvider") == CPU_BATCH_TOKENS == 512
    assert batch_token_budget(auto, "cpu:float32") == CPU_BATCH_TOKENS
    assert batch_token_budget(auto, "CUDAExecutionProvider") == GPU_BATCH_TOKENS == 8192
    assert batch_token_budget(auto, "cuda:0:float32") == GPU_BATCH_TOKENS
    assert batch_token_budget(Settings(max_batch_tokens=300), "CUDAExecutionProvider") == 300
    with pytest.raises(ValueError, match="FGRM_MAX_BATCH_TOKENS must be >= 0"):
        Settings(max_batch_tokens=-1).check()


def test_profiles_are_bounded_in_count_and_name():
    from service.profiles import MAX_PROFILES

    profiles = Profiles({"a": 1.0})
    for i in range(MAX_PROFILES - 1):  # "default" is one of them
        profiles.put(f"p{i}", {"a": 0.5})
    profiles.put("p0", {"a": 2.0})  # replacing one is always allowed
    with pytest.raises(InvalidInput) as err:
        profiles.put("one-too-many", {"a": 1.0})
    assert err.value.field == "name" and str(MAX_PROFILES) in err.value.message
    with pytest.raises(InvalidInput) as err:
        Profiles({"a": 1.0}).put("x" * 10_000, {"a": 1.0})
    assert len(err.value.message) < 200


def test_secrets_come_from_files_and_stay_out_of_repr(tmp_path):
    key = tmp_path / "key"
    key.write_text("  s3cret\n")
    s = Settings.from_env({"FGRM_API_KEY_FILE": str(key), "FGRM_ADMIN_TOKEN": "Zq9-token"})
    assert s.api_key == "s3cret" and s.admin_token == "Zq9-token"
    assert "s3cret" not in repr(s) and "Zq9-token" not in repr(s)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        Settings.from_env({"FGRM_ADMIN_TOKEN_FILE": str(tmp_path / "empty")})


def test_the_start_up_line_says_what_is_open():
    from service.bento_service import exposure

    assert "OPEN" in exposure(Settings()) and "DISABLED" in exposure(Settings())
    locked = exposure(Settings(api_key="k", admin_token="t"))
    assert "needs the API key" in locked and "need the admin token" in locked
