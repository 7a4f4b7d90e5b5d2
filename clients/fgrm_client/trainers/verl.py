"""veRL: an async ``compute_score`` for the Reward Loop, and the pieces of a dense reward manager.

Modelled on verl-project/verl at 1dda039 (2026-08):

* ``verl/experimental/reward_loop/reward_manager/naive.py`` (``NaiveRewardManager.run_single``)
  awaits ``compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...)``
  when it is a coroutine function, one sample at a time; a dict answer must hold ``"score"``,
  and all of its keys become ``reward_extra_info``, stacked with ``np.array`` over the batch
  (``reward_loop.py``, ``compute_rm_score``), so every sample must return the same keys.
* ``verl/trainer/ppo/reward.py`` (``get_custom_reward_fn``) loads the function from
  ``reward.custom_reward_function.path`` (``pkg://module`` works) and merges
  ``custom_reward_function.reward_kwargs`` into every call: that is where ``url``, ``weights``...
  go. With a reward model enabled, verl also passes ``reward_router_address`` and
  ``reward_model_tokenizer``; they are ignored here.
* ``reward_manager/base.py`` (``RewardManagerBase.assemble_rm_scores``) turns the per-sample
  ``reward_score``s into the ``rm_scores`` tensor, by default one scalar on the last valid
  response token. :func:`assemble_dense_rm_scores` places a per-token list instead; the
  registered manager using it is ``fgrm_client.trainers.verl_manager`` (imports verl).

Usage (QA-Feedback-style data: ``extra_info`` carries ``question`` and ``passages``, and
``reference`` when there is a reference answer; ``label_as_reference=true`` sends verl's
``ground_truth`` instead)::

    reward.custom_reward_function.path=pkg://fgrm_client.trainers.verl
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.url=http://rm:3000
    +reward.custom_reward_function.reward_kwargs.weights.relevance=2.0

Failures raise (after one ERROR log line): veRL does not catch reward-function errors, so the
step fails instead of training on a made-up score.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping, Sequence

from ._common import Settings, async_client, decoded_item, dense, loud, qa_item, sample_reference, type_totals

# What verl itself adds to a compute_score call when a reward model is enabled.
_VERL_EXTRAS = ("reward_router_address", "reward_model_tokenizer")


def _question_passages(extra_info: Mapping[str, Any] | None) -> tuple[Any, Any]:
    extra_info = extra_info or {}
    if "question" not in extra_info:
        # Scoring relevance without the question would give numbers that mean nothing.
        raise ValueError("extra_info has no 'question': put the question (and 'passages') into "
                         "each row's extra_info when preparing the veRL parquet")
    return extra_info["question"], extra_info.get("passages")


def _extra_info(result) -> dict[str, float]:
    # "score" first, then one key per configured type: the same keys for every sample.
    return {"score": float(result.mixed.total), **type_totals(result)}


async def compute_score(data_source: Any, solution_str: str, ground_truth: Any,
                        extra_info: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, float]:
    """``{"score": mixed total, "<type>": per-type total, ...}`` for one response.

    ``data_source`` is unused; ``ground_truth`` is the reference answer only with
    ``label_as_reference=True`` (an ``extra_info["reference"]`` always is); ``kwargs`` are
    :class:`~fgrm_client.trainers._common.Settings` fields (from verl's ``reward_kwargs``)."""
    settings = Settings.of(**{k: v for k, v in kwargs.items() if k not in _VERL_EXTRAS})
    question, passages = _question_passages(extra_info)
    reference = sample_reference(extra_info, ground_truth, settings, "extra_info", "ground_truth")
    with loud("veRL compute_score"):
        [result] = await async_client(settings).score(
            [qa_item(question, passages, solution_str, reference=reference)], settings.weight_map, settings.profile)
    return _extra_info(result)


async def dense_reward(tokenizer: Any, response_ids: Sequence[int], extra_info: Mapping[str, Any] | None,
                       settings: Settings, ground_truth: Any = None) -> dict[str, Any]:
    """What a dense manager's ``run_single`` returns for one sample: ``reward_score`` is one
    reward per valid response token (summing to the mixed total), ``reward_extra_info`` the
    same keys as :func:`compute_score` (``ground_truth`` as there)."""
    question, passages = _question_passages(extra_info)
    reference = sample_reference(extra_info, ground_truth, settings, "extra_info", "ground_truth")
    ids = [int(t) for t in response_ids]
    # prefix decoding is len(ids) decodes: keep it off the event loop, as verl does for decode
    item = await asyncio.get_running_loop().run_in_executor(
        None, decoded_item, tokenizer, ids, question, passages, reference)
    with loud("veRL dense reward manager"):
        [result] = await async_client(settings).score([item], settings.weight_map, settings.profile)
    return {"reward_score": dense(result, len(ids)), "reward_extra_info": _extra_info(result)}


def assemble_dense_rm_scores(data: Any, scores: Sequence[Sequence[float]]):
    """``rm_scores`` (batch x response width, float32) with sample ``i``'s per-token rewards on
    its valid response tokens, as ``RewardManagerBase.assemble_rm_scores`` gets called:
    ``data.batch`` holds ``prompts``, ``responses`` and ``attention_mask``."""
    import torch  # verl brings torch; importing fgrm_client must not

    prompt_length = data.batch["prompts"].size(1)
    valid = data.batch["attention_mask"][:, prompt_length:].sum(dim=1)
    rm_scores = torch.zeros_like(data.batch["responses"], dtype=torch.float32)
    if len(scores) != rm_scores.size(0):
        raise ValueError(f"{len(scores)} reward lists for a batch of {rm_scores.size(0)}")
    for i, tokens in enumerate(scores):
        if not isinstance(tokens, Sequence):
            raise TypeError(f"sample {i}: reward_score is a scalar ({tokens!r}); the dense manager expects "
                            "one reward per response token (was run_single replaced?)")
        n = int(valid[i])
        if len(tokens) != n:
            raise ValueError(f"sample {i}: {len(tokens)} token rewards for {n} valid response tokens")
        rm_scores[i, :n] = torch.tensor(list(tokens), dtype=torch.float32)
    return rm_scores


def check_batch_path(config: Any) -> None:
    """Refuse a config on which verl would never call ``assemble_rm_scores``.

    verl's ``ray_trainer.py`` hands the reward workers to the agent loop (streaming rewards,
    ``agent_loop.py`` ``_compute_score``: one scalar on the last token) unless a colocated
    reward model is enabled (``reward.reward_model.enable`` true, ``enable_resource_pool``
    false); only then does ``RewardLoopManager.compute_rm_score`` batch the samples and call
    ``assemble_rm_scores``. On the streaming path a per-token list would fail deep inside
    verl, so say it here, at start-up."""
    rm = config.reward.reward_model
    if not rm.enable or rm.enable_resource_pool:
        raise ValueError(
            "fgrm's dense reward manager needs verl's batch reward path (reward.reward_model.enable=true, "
            "reward.reward_model.enable_resource_pool=false); on the streaming path verl keeps one scalar per "
            "response. Use compute_score from fgrm_client.trainers.verl there (scalar, per-type totals logged).")
