"""OpenRLHF remote reward model compatibility: ``{"query": [...], "prompts": [...]}`` -> items.

OpenRLHF (`--remote_rm_url`) posts the full texts (`query` = prompt + response) with their
prompts and reads back ``{"rewards": [...]}``, one scalar per query. The scalar here is the
mixed total reward of the item (Σ_k w_k · total_k). QA-Feedback prompts have the form
``question: Q context: wikipage: T text: P | wikipage: T2 text: P2 ...``; when a prompt has
that form, the question and passages are parsed out of it so that the passage-aware feedback
types see the evidence; any other prompt is used as the question.
"""

from __future__ import annotations

import re

from service.domain import Item
from service.errors import InvalidInput

_QA = re.compile(r"^\s*question:\s*(?P<q>.*?)\s*context:\s*(?P<ctx>.*)$", re.DOTALL)
_PAGE = re.compile(r"wikipage:\s*(?P<title>.*?)\s*text:\s*(?P<text>.*)$", re.DOTALL)


def parse_prompt(prompt: str) -> tuple[str, tuple[str, ...]]:
    """(question, passages) of a QA-Feedback prompt; (prompt, ()) for any other prompt."""
    m = _QA.match(prompt)
    if not m:
        return prompt.strip(), ()
    passages = []
    for chunk in re.split(r"\s*\|\s*(?=wikipage:)", m.group("ctx").strip()):
        page = _PAGE.match(chunk.strip())
        if not page:
            if chunk.strip():
                passages.append(chunk.strip())
            continue
        title, text = page.group("title").strip(), page.group("text").strip()
        if title and text.startswith(title + "\n"):  # QA-Feedback repeats the title as the first line
            text = text[len(title):].lstrip()
        passages.append(f"{title}: {text}" if title else text)
    return m.group("q").strip(), tuple(passages)


def to_items(queries: list[str], prompts: list[str] | None) -> list[Item]:
    """One item per query; the response is what follows the prompt in the query."""
    if prompts is None:
        prompts = [""] * len(queries)
    if len(prompts) != len(queries):
        raise InvalidInput("prompts", f"{len(prompts)} prompts for {len(queries)} queries; they must pair up")
    items = []
    for i, (query, prompt) in enumerate(zip(queries, prompts)):
        if not query.startswith(prompt):
            raise InvalidInput(f"query[{i}]", "does not start with prompts[{0}]; OpenRLHF sends query = prompt + "
                                              "response".format(i))
        question, passages = parse_prompt(prompt)
        items.append(Item(query[len(prompt):], question, passages))
    return items
