"""SkyRL: dense per-token rewards (``List[List[float]]``) for a generator's batch.

    generator = FgrmRewardGenerator(SkyRLGymGenerator(...), tokenizer, url="http://rm:3000")
    # or, inside your own generator:  output["rewards"] = await dense_rewards(tokenizer, ...)

Modelled on NovaSky-AI/SkyRL at a956457 (2026-08): ``skyrl/train/generators/base.py``
(``GeneratorInput``: ``prompts`` as chat conversations, ``env_extras`` one dict per prompt;
``GeneratorOutput.rewards: Union[List[float], List[List[float]]]``, rows in input order) and
``skyrl/train/trainer.py`` (a ``List[List[float]]`` is taken as token-level rewards as is,
one per ``response_ids`` token; a ``List[float]`` is put on each response's last token).

Each response is decoded from the ids the policy sampled, prefix by prefix, so reward ``j``
belongs to token ``j`` of ``response_ids[i]`` (``fgrm_client.align``); the question and
passages come from ``env_extras[i]`` (``question``, ``passages``) or else the prompt's last
user message, and the reference answer from ``env_extras[i]["reference"]`` or, with
``label_as_reference=True``, SkyRL's ``env_extras[i]["reward_spec"]["ground_truth"]``. The
environment's own rewards are replaced. Multi-turn responses include the observation tokens
(``loss_masks`` 0): they are scored as part of the text, and a reward landing on one is still
applied by SkyRL; single-turn QA has none. Failures raise.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping, Sequence

from ._common import Settings, async_client, decoded_item, dense, last_user_text, loud, sample_reference

BATCH = 32  # items per request: small enough for the service's per-request item limit


async def dense_rewards(tokenizer: Any, response_ids: Sequence[Sequence[int]], prompts: Sequence[Any],
                        env_extras: Sequence[Mapping[str, Any] | None] | None = None,
                        **settings: Any) -> list[list[float]]:
    """One reward per token of each ``response_ids[i]``; they sum to that response's mixed total."""
    s = Settings.of(**settings)
    if len(response_ids) != len(prompts):
        raise ValueError(f"{len(response_ids)} responses for {len(prompts)} prompts: step-wise or fan-out "
                         "outputs (one row per turn) need their rows mapped to prompts first")
    extras = list(env_extras) if env_extras is not None else [None] * len(prompts)
    loop = asyncio.get_running_loop()

    def build(i: int) -> dict[str, Any]:
        extra = extras[i] or {}
        question = extra.get("question")
        if question is None:
            question = last_user_text(prompts[i])
        spec = extra.get("reward_spec")
        label = spec.get("ground_truth") if isinstance(spec, Mapping) else None
        reference = sample_reference(extra, label, s, f"env_extras[{i}]",
                                     f"env_extras[{i}]['reward_spec']['ground_truth']")
        return decoded_item(tokenizer, [int(t) for t in response_ids[i]], question, extra.get("passages"),
                            reference)

    items = await loop.run_in_executor(None, lambda: [build(i) for i in range(len(prompts))])
    client = async_client(s)
    with loud("SkyRL generator"):
        chunks = await asyncio.gather(*(client.score(items[i:i + BATCH], s.weight_map, s.profile)
                                        for i in range(0, len(items), BATCH)))
    results = [r for chunk in chunks for r in chunk]
    return [dense(r, len(ids)) for r, ids in zip(results, response_ids)]


class FgrmRewardGenerator:
    """Wraps any SkyRL generator (``await generate(input_batch) -> GeneratorOutput``) and
    replaces its ``rewards`` with fgrm's per-token rewards."""

    def __init__(self, generator: Any, tokenizer: Any, **settings: Any) -> None:
        self.generator = generator
        self.tokenizer = tokenizer
        self.settings = settings
        Settings.of(**settings)  # fail on a typo at construction

    def __getattr__(self, name: str) -> Any:  # everything else is the wrapped generator's
        if name == "generator":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.generator, name)

    async def generate(self, input_batch: Mapping[str, Any]) -> dict[str, Any]:
        output = await self.generator.generate(input_batch)
        output["rewards"] = await dense_rewards(
            self.tokenizer, output["response_ids"], input_batch["prompts"], input_batch.get("env_extras"),
            **self.settings)
        return output
