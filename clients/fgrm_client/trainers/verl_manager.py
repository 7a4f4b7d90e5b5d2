"""A veRL reward manager that puts fgrm's per-token rewards into ``rm_scores`` (imports verl).

Select it with ``reward.reward_manager.source=importlib``,
``reward.reward_manager.module.path=pkg://fgrm_client.trainers.verl_manager``,
``reward.reward_manager.name=FgrmDenseRewardManager`` (or import this module and use
``reward.reward_manager.name=fgrm_dense``), with the service settings under
``+reward.reward_kwargs.fgrm.url=http://rm:3000`` (``weights``, ``profile``... likewise).

Modelled on verl-project/verl at 1dda039: ``reward_loop/reward_manager/naive.py`` (how
``run_single`` reads one sample), ``reward_manager/base.py`` (constructor, and the
``assemble_rm_scores`` classmethod overridden here), ``reward_loop.py``
(``RewardLoopManager.compute_rm_score``, the batch path that calls it) and
``trainer/ppo/reward.py`` (``load_reward_manager``: the keyword arguments it constructs with).
The logic lives in :mod:`fgrm_client.trainers.verl`, testable without verl; this file is the
binding. It refuses, at construction, a config where verl would not use the dense scores.
"""

from __future__ import annotations

from typing import Any

from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from ._common import Settings
from .verl import assemble_dense_rm_scores, check_batch_path, dense_reward


@register("fgrm_dense")
class FgrmDenseRewardManager(RewardManagerBase):
    """Dense fine-grained rewards: ``reward_score`` is one reward per valid response token."""

    def __init__(self, config, tokenizer, compute_score=None, reward_router_address=None,
                 reward_model_tokenizer=None, **_: Any) -> None:
        super().__init__(config, tokenizer, compute_score)
        check_batch_path(config)
        kwargs = config.reward.get("reward_kwargs", None) or {}
        self.settings = Settings.of(**dict(kwargs.get("fgrm", None) or {}))

    async def run_single(self, data) -> dict:
        if len(data) != 1:
            raise ValueError(f"run_single scores one sample, got {len(data)}")
        item = data[0]
        response_ids = item.batch["responses"]
        valid = int(item.batch["attention_mask"][-response_ids.shape[-1]:].sum())
        extra_info = item.non_tensor_batch.get("extra_info", None) or {}
        # where verl's naive manager reads the label (used with label_as_reference only)
        ground_truth = (item.non_tensor_batch.get("reward_model", None) or {}).get("ground_truth", None)
        return await dense_reward(self.tokenizer, response_ids[:valid].tolist(), extra_info, self.settings,
                                  ground_truth)

    @classmethod
    def assemble_rm_scores(cls, data, scores):
        return assemble_dense_rm_scores(data, scores)
