"""Failure paths of the trainer adapters: no adapter turns a failed call into a reward.

Failures are injected without mocks: a port nothing listens on (connection refused, retried a
bounded number of times), and a socket that accepts connections but never answers (a hung
service, for the deadline). Each adapter must raise a typed ``FgrmError`` after one ERROR log
line that names the trainer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from types import SimpleNamespace

import pytest

from fgrm_client import Timeout, Unavailable

QA = {"question": "Who wrote it?", "passages": ["Ann wrote it."]}
FAST = {"max_attempts": 2}  # bounded: two tries, then the error


@pytest.fixture
def dead_url():
    with socket.socket() as s:  # bind, read the port, close: nothing listens there now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def hung_url():
    with socket.socket() as s:  # listens (the kernel completes connects) but never reads or answers
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def _logged(caplog, trainer):
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "fgrm_client.trainers"]
    assert errors and trainer in errors[0].getMessage() and "raising" in errors[0].getMessage(), \
        [r.getMessage() for r in caplog.records]


def test_verl_compute_score_raises(dead_url, caplog):
    from fgrm_client.trainers.verl import compute_score

    with pytest.raises(Unavailable) as ei:
        asyncio.run(compute_score("qa", "It was Ann.", None, dict(QA), url=dead_url, **FAST))
    assert ei.value.attempts == 2
    _logged(caplog, "veRL")


def test_slime_raises(dead_url, caplog):
    from fgrm_client.trainers.slime import SlimeReward, reward

    sample = SimpleNamespace(prompt="Who wrote it?", response="Ann.", label=None, metadata={})
    with pytest.raises(Unavailable):
        asyncio.run(SlimeReward(**FAST)(SimpleNamespace(rm_url=dead_url), sample))
    _logged(caplog, "slime")
    with pytest.raises(ValueError, match="rm-url"):
        asyncio.run(reward(SimpleNamespace(rm_url=None), sample))


def test_nemo_gym_raises(dead_url, caplog):
    from fgrm_client.trainers.nemo_gym import FgrmVerifier

    body = {"responses_create_params": {"input": "Who wrote it?"},
            "response": {"output": [{"type": "message", "content": [{"type": "output_text", "text": "Ann."}]}]}}
    with pytest.raises(Unavailable):
        asyncio.run(FgrmVerifier(dead_url, **FAST).verify_fields(body))
    _logged(caplog, "NeMo Gym")


def test_skyrl_raises(dead_url, caplog):
    from fgrm_client.trainers.skyrl import dense_rewards

    class Tok:  # decode is all the alignment needs
        def decode(self, ids, **_):
            return "".join(chr(97 + i) for i in ids)

    with pytest.raises(Unavailable):
        asyncio.run(dense_rewards(Tok(), [[0, 1, 2]], [[{"role": "user", "content": "q"}]], url=dead_url, **FAST))
    _logged(caplog, "SkyRL")


def test_areal_raises_within_its_deadline_on_a_hung_service(hung_url, caplog):
    from fgrm_client.trainers.areal import ArealReward

    fn = ArealReward(hung_url, deadline=0.5)
    t0 = time.monotonic()
    with pytest.raises(Timeout, match="deadline"):
        fn("Who wrote it?", "Ann.<|im_end|>", [1], [2])
    assert time.monotonic() - t0 < 2.0  # cut at the deadline, far below AReaL's 15 s
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("AReaL" in m and "deadline" in m for m in errors), errors


def test_areal_raises_on_a_dead_service(dead_url, caplog):
    from fgrm_client.trainers.areal import ArealReward, strip_end_tokens

    with pytest.raises(Unavailable):
        ArealReward(dead_url, deadline=5.0, **FAST)("q", "Ann.", [1], [2])
    _logged(caplog, "AReaL")
    assert strip_end_tokens("Ann wrote it. <|im_end|>\n<|endoftext|>") == "Ann wrote it."
