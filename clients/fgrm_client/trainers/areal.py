"""AReaL: a picklable ``reward_fn`` that answers within a deadline below AReaL's 15 s timeout.

    workflow = RLVRWorkflow(reward_fn=ArealReward("http://rm:3000", deadline=10.0), ...)

Modelled on inclusionAI/AReaL at 4aef98d (2026-05): ``areal/api/reward_api.py``
(``AsyncRewardWrapper``: runs ``reward_fn`` in a ``ProcessPoolExecutor``, so the function is
pickled with every call; ``timeout_seconds=15``; a timeout is retried ``max_retries`` (3) times
and then **returns 0**, while an exception is retried and then raised) and
``areal/workflow/rlvr.py`` (the call: ``reward_fn(prompt_str, completions_str, input_tokens,
output_tokens, **task_data)``, positional, ``completions_str`` decoded *with* special tokens).

So the function must never reach AReaL's timeout, or AReaL scores the sample 0. Each call runs
on a private event loop in the worker process and is cut at ``deadline`` seconds (retries and
backoff included; default 10 s). When it cannot answer in time, or the service fails, it logs
an ERROR line and raises: AReaL retries it, then fails the episode, never trains on a 0.

The question is ``task_data["question"]`` (with ``task_data["passages"]``, and
``task_data["reference"]``, a reference answer) when the dataset has those columns, otherwise
the prompt (AReaL has no label field of its own, so ``label_as_reference`` is refused);
trailing end-of-turn tokens are cut from the completion.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from ..errors import Timeout
from ._common import Settings, async_client, log, loud, qa_item, sample_reference

AREAL_TIMEOUT_S = 15.0
DEFAULT_DEADLINE_S = 10.0
END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "</s>", "<eos>", "<|end|>")

_loops = threading.local()


def _loop() -> asyncio.AbstractEventLoop:
    # One loop per thread and process, reused across calls so the cached client's connections
    # are too (a process-pool worker serves many calls).
    loop = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed() or getattr(_loops, "pid", None) != os.getpid():
        loop = _loops.loop = asyncio.new_event_loop()
        _loops.pid = os.getpid()
    return loop


def strip_end_tokens(text: str, end_tokens: tuple[str, ...] = END_TOKENS) -> str:
    """The completion without the end-of-turn tokens AReaL's decode leaves at its end."""
    stripped = True
    while stripped:
        stripped = False
        text = text.rstrip()
        for tok in end_tokens:
            if text.endswith(tok):
                text, stripped = text[: -len(tok)], True
    return text


class ArealReward:
    """``reward_fn(prompt, completions, prompt_ids, completion_ids, **task_data) -> float``.

    Returns the mixed total, or one type's total with ``feedback_type``. Holds only plain
    settings, so it pickles small; the client lives in the worker process.
    """

    def __init__(self, url: str | None = None, *, deadline: float = DEFAULT_DEADLINE_S,
                 feedback_type: str | None = None, end_tokens: tuple[str, ...] = END_TOKENS,
                 **settings: Any) -> None:
        if not 0 < deadline < AREAL_TIMEOUT_S:
            raise ValueError(f"deadline must be in (0, {AREAL_TIMEOUT_S:g}) s: past AReaL's timeout it scores 0")
        # One attempt may take the whole deadline; the deadline cuts the sum of them.
        settings.setdefault("timeout", deadline)
        self.settings = Settings.of(**({"url": url} if url else {}), **settings)
        if self.settings.label_as_reference:
            raise ValueError("label_as_reference: AReaL passes no label of its own; put a 'reference' column in "
                             "the dataset (it arrives in task_data)")
        self.deadline = deadline
        self.feedback_type = feedback_type
        self.end_tokens = tuple(end_tokens)

    def __call__(self, prompt: str, completions: str, prompt_ids: list[int] | None = None,
                 completion_ids: list[int] | None = None, **task_data: Any) -> float:
        question = task_data.get("question", prompt)
        item = qa_item(question, task_data.get("passages"), strip_end_tokens(completions, self.end_tokens),
                       reference=sample_reference(task_data, None, self.settings, "task_data", ""))
        try:
            result = _loop().run_until_complete(asyncio.wait_for(self._score(item), self.deadline))
        except asyncio.TimeoutError:
            log.error("fgrm AReaL reward_fn: no answer within its %.1f s deadline; raising instead of letting "
                      "AReaL's %g s timeout score the sample 0", self.deadline, AREAL_TIMEOUT_S)
            raise Timeout(f"no reward within the {self.deadline:g} s deadline",
                          endpoint=self.settings.url) from None
        if self.feedback_type is not None:
            return float(result.types[self.feedback_type].total)
        return float(result.mixed.total)

    async def _score(self, item: dict[str, Any]):
        with loud("AReaL reward_fn"):
            [result] = await async_client(self.settings).score(
                [item], self.settings.weight_map, self.settings.profile)
        return result
