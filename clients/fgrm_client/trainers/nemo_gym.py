"""NeMo Gym: the fields of a resources server's ``verify()`` answer, from fgrm.

    class QAFeedbackServer(SimpleResourcesServer):
        config: QAFeedbackConfig

        async def verify(self, body: QAVerifyRequest) -> QAVerifyResponse:
            fields = await FgrmVerifier(self.config.fgrm_url).verify_fields(body)
            return QAVerifyResponse(**body.model_dump(), **fields)

    class QAVerifyResponse(BaseMultiRewardVerifyResponse):
        relevance: float = 0.0      # one top-level float per feedback type, for
        factuality: float = 0.0     # NeMo Gym's aggregate metrics
        completeness: float = 0.0

Modelled on NVIDIA-NeMo/Gym at 07d6b0d (2026-08): ``nemo_gym/base_resources_server.py``
(``BaseVerifyRequest``: ``responses_create_params`` + ``response``, a Responses-API object;
``BaseMultiRewardVerifyResponse.reward_components``: a required ``{objective: score}`` whose
values the multi-reward docs sum into ``reward``) and ``resources_servers/hotpotqa_qa/app.py``
(the response text is the ``output_text`` parts of the ``message`` items of
``body.response.output``; dataset fields such as ``question`` arrive as extra request fields:
``question``, ``passages`` and ``reference``, a gold answer, are forwarded).

``reward_components`` are the *weighted* per-type totals ``w_k * total_k``, so they add up to
``reward`` (the mixed total) exactly: ``reward`` is computed as their sum, and checked
against the service's mixed total. Failures raise: ``verify`` answers 500 and the rollout
fails. (NeMo Gym's ``judge_failsafe`` turns only its own ``JudgeError`` into reward 0.0; an
fgrm error is not one, on purpose.)
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from ..errors import ProtocolError
from ._common import Settings, async_client, last_user_text, loud, qa_item, sample_reference, weighted_totals


def _as_dict(x: Any) -> Any:
    return x.model_dump() if hasattr(x, "model_dump") else x


def response_text(response: Any) -> str:
    """The assistant's text: every ``output_text`` part of every ``message`` output item."""
    parts = []
    for item in _as_dict(response).get("output", None) or ():
        if item.get("type") != "message":
            continue  # reasoning, tool calls: not the answer being scored
        for part in item.get("content", None) or ():
            if part.get("type") == "output_text":
                parts.append(part.get("text", ""))
    return "".join(parts)


def prompt_text(responses_create_params: Any) -> str:
    """The prompt's last user message (``input`` is a string or a list of messages)."""
    return last_user_text(_as_dict(responses_create_params).get("input", ""))


class FgrmVerifier:
    """``await verify_fields(body)`` -> ``{"reward", "reward_components", <type>: ...}``."""

    def __init__(self, url: str | None = None, **settings: Any) -> None:
        self.settings = Settings.of(**({"url": url} if url else {}), **settings)

    async def verify_fields(self, body: Any) -> dict[str, Any]:
        data: Mapping[str, Any] = _as_dict(body)
        question = data.get("question")
        if question is None:
            question = prompt_text(data["responses_create_params"])
        item = qa_item(question, data.get("passages"), response_text(data["response"]),
                       reference=sample_reference(data, None, self.settings, "body", ""))
        with loud("NeMo Gym verify"):
            [result] = await async_client(self.settings).score(
                [item], self.settings.weight_map, self.settings.profile)
        components = weighted_totals(result)
        # plain left-to-right sum in the dict's order, not math.fsum: a consumer that checks
        # reward == sum(reward_components.values()) must get equality to the last bit
        reward = sum(components.values())
        if not math.isclose(reward, result.mixed.total, rel_tol=1e-9, abs_tol=1e-9):
            raise ProtocolError(f"weighted per-type totals sum to {reward}, the service's mixed total is "
                                f"{result.mixed.total}")
        return {"reward": reward, "reward_components": components, **components}
