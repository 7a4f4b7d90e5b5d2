"""The TRL reward_funcs drop-in, with a stub client (no TRL, no service needed)."""

from fgrm_client.trl import FgrmRewardFunc
from fgrm_client.types import parse_item_result


class StubClient:
    def __init__(self):
        self.calls = []

    def score(self, items, weights=None, profile=None):
        self.calls.append((items, weights))
        return [parse_item_result({
            "types": {"factuality": {"granularity": "sentence", "total": -0.5, "segments": []}},
            "mixed": {"weights": {}, "total": float(len(it["response"])), "events": []},
        }) for it in items]


def test_reward_func_signature_batches_and_conversational_inputs():
    client = StubClient()
    f = FgrmRewardFunc(client, weights={"relevance": 2.0}, batch_size=2)
    assert f.__name__ == "fgrm"
    prompts = [[{"role": "user", "content": "q1"}], "q2", "q3"]
    completions = [[{"role": "assistant", "content": "abc"}], "de", "f"]
    out = f(prompts=prompts, completions=completions,
            passages=[[{"wikipage": "w", "content": "c"}], None, ["x"]])
    assert out == [3.0, 2.0, 1.0]
    assert len(client.calls) == 2 and client.calls[0][1] == {"relevance": 2.0}
    first = client.calls[0][0][0]
    assert first == {"question": "q1", "passages": ["c"], "response": "abc"}


def test_per_type_reward_func():
    f = FgrmRewardFunc(StubClient(), feedback_type="factuality")
    assert f.__name__ == "fgrm_factuality"
    assert f(["q"], ["a"], question=["real question"]) == [-0.5]
