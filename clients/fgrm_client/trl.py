"""A TRL ``GRPOTrainer`` reward function backed by the fgrm service (TRL need not be installed).

    from fgrm_client.trl import fgrm_reward_func
    trainer = GRPOTrainer(model=..., reward_funcs=[fgrm_reward_func("http://rm:3000",
                          weights={"relevance": 2.0})], train_dataset=ds, ...)

TRL calls ``reward_func(prompts=..., completions=..., **columns)`` and wants one float per
completion. Dataset columns named ``question``, ``passages`` and ``reference`` (a gold answer)
are forwarded to the service; without them the prompt is the question and there are no
passages and no reference.

What this drop-in loses: GRPO takes one scalar per completion, so the fine-grained structure
(which segment earned what, at which token) is summed away into ``mixed.total``. The per-type
split stays visible only if you pass several functions, one per feedback type
(``fgrm_reward_func(..., feedback_type="factuality")``), which TRL logs separately and can weight
with ``reward_weights``, at the cost of one request per function.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ._items import qa_item, reference_of, text_of
from .http import HttpClient


class FgrmRewardFunc:
    """Callable ``(prompts, completions, **kwargs) -> list[float]`` for ``reward_funcs``."""

    def __init__(
        self,
        client: Any,
        *,
        weights: Mapping[str, float] | None = None,
        profile: str | None = None,
        feedback_type: str | None = None,
        batch_size: int = 32,
    ) -> None:
        self.client = client
        self.weights = dict(weights) if weights is not None else None
        self.profile = profile
        self.feedback_type = feedback_type
        self.batch_size = batch_size
        # TRL names the logged reward column after __name__.
        self.__name__ = f"fgrm_{feedback_type}" if feedback_type else "fgrm"

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        questions = kwargs.get("question") or [text_of(p) for p in prompts]
        passages = kwargs.get("passages") or [None] * len(completions)
        references = kwargs.get("reference") or [None] * len(completions)
        # no reference, no field: older servers accept the item
        items = [qa_item(q, ps, text_of(c), reference=reference_of(r, f"reference[{i}]"))
                 for i, (q, ps, c, r) in enumerate(zip(questions, passages, completions, references))]
        rewards: list[float] = []
        for i in range(0, len(items), self.batch_size):
            results = self.client.score(items[i : i + self.batch_size], self.weights, self.profile)
            for r in results:
                if self.feedback_type is None:
                    rewards.append(r.mixed.total)
                else:
                    rewards.append(r.types[self.feedback_type].total)
        return rewards


def fgrm_reward_func(url: str = "http://127.0.0.1:3000", **kwargs: Any) -> FgrmRewardFunc:
    """An :class:`FgrmRewardFunc` over a new :class:`~fgrm_client.HttpClient` for ``url``."""
    client_kw = {k: kwargs.pop(k) for k in ("timeout", "retry") if k in kwargs}
    return FgrmRewardFunc(HttpClient(url, **client_kw), **kwargs)
