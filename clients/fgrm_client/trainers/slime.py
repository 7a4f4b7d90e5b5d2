"""slime: a custom reward function, ``{"prompt", "response", "label"}`` -> ``{"score", <type>...}``.

    --custom-rm-path fgrm_client.trainers.slime.reward --rm-url http://rm:3000 --reward-key score

Modelled on THUDM/slime at 624b824 (2026-08), ``slime/rollout/rm_hub/__init__.py``:
``async_rm(args, sample)`` awaits ``load_function(args.custom_rm_path)(args, sample)`` for one
``Sample`` (``prompt``: str or chat messages, ``response``: str, ``label``, ``metadata``:
dict), and ``batched_async_rm(args, samples)`` awaits it with a list (``--group-rm``, or a
generate function that returns several samples); ``slime/utils/types.py``
(``Sample.get_reward_value``) then picks ``args.reward_key`` out of a dict reward.

Why a client-side function rather than ``--rm-type remote_rm`` against a new endpoint:
slime's ``remote_rm`` posts one sample per request and retries *any* error 10 times with
backoff up to 30 s, a 400 included, so a bad item costs minutes before it surfaces; through
this function the fgrm client's policy applies (connection errors and 429/503 retried, a 400
raised at once, with the offending field), a group is one request, and calls share the
client's concurrency cap.

The question is ``sample.metadata["question"]`` when the dataset carries it (slime's
``--metadata-key``), with ``metadata["passages"]``; otherwise the prompt's last user message.
``metadata["reference"]``, when there, is the reference answer; ``label`` is one only with
``SlimeReward(label_as_reference=True)`` (a label is often a short answer: see
:class:`~fgrm_client.trainers._common.Settings`). Failures raise (slime does not catch them in
the rollout): no sample gets a made-up reward.
"""

from __future__ import annotations

from typing import Any, Mapping

from ._common import Settings, async_client, last_user_text, loud, qa_item, sample_reference, type_totals


class SlimeReward:
    """``await reward(args, sample)`` -> dict; ``await reward(args, [samples])`` -> list of dicts.

    ``url`` defaults to slime's own ``--rm-url`` (``args.rm_url``); the other keyword
    arguments are :class:`~fgrm_client.trainers._common.Settings` fields. For weights other
    than the service's, bind an instance in your own module and point ``--custom-rm-path`` at it.
    """

    def __init__(self, url: str | None = None, **settings: Any) -> None:
        self.url = url
        self.settings = settings
        Settings.of(**settings)  # fail on a typo now, not at the first rollout

    async def __call__(self, args: Any, sample: Any, **kwargs: Any) -> dict[str, float] | list[dict[str, float]]:
        url = self.url or getattr(args, "rm_url", None)
        if not url:
            raise ValueError("no fgrm URL: pass --rm-url http://rm:3000 (or SlimeReward(url=...))")
        settings = Settings.of(url=url, **self.settings)
        samples = list(sample) if isinstance(sample, (list, tuple)) else [sample]
        items = [_item(s, settings) for s in samples]
        with loud("slime custom_rm"):
            results = await async_client(settings).score(items, settings.weight_map, settings.profile)
        rewards = [{"score": float(r.mixed.total), **type_totals(r)} for r in results]
        return rewards if isinstance(sample, (list, tuple)) else rewards[0]


def _item(sample: Any, settings: Settings) -> dict[str, Any]:
    metadata = sample.metadata if isinstance(getattr(sample, "metadata", None), Mapping) else {}
    question = metadata.get("question")
    if question is None:
        question = last_user_text(sample.prompt)
    reference = sample_reference(metadata, getattr(sample, "label", None), settings, "metadata", "label")
    return qa_item(question, metadata.get("passages"), sample.response, reference=reference)


reward = SlimeReward()
"""``--custom-rm-path fgrm_client.trainers.slime.reward``: the service at ``--rm-url``, its
default weights."""
