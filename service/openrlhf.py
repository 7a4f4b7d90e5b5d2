"""OpenRLHF remote reward model compatibility: ``{"query": [...], "prompts": [...], "labels": [...]}`` -> items.

OpenRLHF (`--reward.remote_url`, formerly `--remote_rm_url`) posts the full texts (`query` =
prompt + response, decoded from token ids) with the original prompts and reads back
``{"rewards": [...], "scores": [...], "extra_logs": {name: [...]}}``, one value per query. The
reward here is the item's mixed total (Σ_k w_k · total_k); `extra_logs` carries each feedback
type's total, which OpenRLHF logs per key. `labels` are accepted and not used, unless the URL
asks for them as references (`/v1/openrlhf?labels=reference`, e.g. `--reward.remote_url
http://rm:3000/v1/openrlhf?labels=reference` with the dataset's gold answers as labels): then
each label is its query's reference answer (`reference_labels`), and the signal models score it
with their reference heads. Opt-in, because it changes the rewards of callers whose labels are
something else.

Finding the response in a query, as OpenRLHF really sends it:
- the query usually starts with the prompt: the response is what follows;
- but OpenRLHF left-truncates prompts longer than its budget (QA-Feedback prompts are 1,100 to
  1,350 tokens), and decoding can change whitespace, so the query may start in the middle of
  the prompt. Then the response follows the *last* place where the prompt's final words occur
  in the query, matched with any whitespace between them;
- only when neither works is the query refused, saying so.

QA-Feedback prompts have the form ``question: Q context: wikipage: T text: P | wikipage: T2 ...``,
also inside a chat template (``<|im_start|>user\\nquestion: ...<|im_end|>\\n<|im_start|>assistant\\n``);
the question and passages are parsed out of them so the passage-aware feedback types see the
evidence. Any other prompt is used as the question.
"""

from __future__ import annotations

import re

from service.domain import Item
from service.errors import InvalidInput

_QA = re.compile(r"question:\s*(?P<q>.*?)\s*context:\s*(?P<ctx>.*)$", re.DOTALL)
_PAGE = re.compile(r"wikipage:\s*(?P<title>.*?)\s*text:\s*(?P<text>.*)$", re.DOTALL)
# chat-template markup: ChatML / Llama-3 role headers (with the role name), then any other
# <|...|> token, [INST] tags and <s>/</s>
_TEMPLATE = re.compile(r"<\|im_start\|>\s*\w+\s*|<\|start_header_id\|>\s*\w+\s*<\|end_header_id\|>\s*"
                       r"|<\|[^<>|\s]{1,40}\|>|\[/?INST\]|</?s>")
TAIL_WORDS = 12  # how many of the prompt's last words must be found in a query that does not start with it


def strip_template(prompt: str) -> str:
    return _TEMPLATE.sub("\n", prompt).strip()


def parse_prompt(prompt: str) -> tuple[str, tuple[str, ...]]:
    """(question, passages) of a QA-Feedback prompt, chat-templated or not; (prompt, ()) otherwise."""
    plain = strip_template(prompt)
    m = _QA.search(plain)
    if not m:
        return plain, ()
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


def locate_response(query: str, prompt: str) -> str | None:
    """The response part of `query` (see the module docstring), or None when it cannot be found."""
    if query.startswith(prompt):
        return query[len(prompt):]
    words = prompt.split()[-TAIL_WORDS:]
    if not words:
        return query
    tail = re.compile(r"\s*".join(re.escape(w) for w in words))
    last = None
    for last in tail.finditer(query):
        pass
    return None if last is None else query[last.end():]


def reference_labels(labels, n: int) -> list[str]:
    """OpenRLHF's `labels` as one reference answer per query (None or "" for none)."""
    if not isinstance(labels, list) or len(labels) != n:
        got = f"{len(labels)} labels" if isinstance(labels, list) else "no labels"
        raise InvalidInput("labels", f"{got} for {n} queries; with ?labels=reference each query needs its "
                                     "reference answer (or null)")
    for i, label in enumerate(labels):
        if label is not None and not isinstance(label, str):
            raise InvalidInput(f"labels[{i}]", f"a reference answer must be a string or null, not "
                                               f"{type(label).__name__}")
    return [label or "" for label in labels]


def to_items(queries: list[str], prompts: list[str] | None, references: list[str] | None = None) -> list[Item]:
    """One item per query; the response is what follows the prompt in the query."""
    if prompts is None:
        prompts = [""] * len(queries)
    if len(prompts) != len(queries):
        raise InvalidInput("prompts", f"{len(prompts)} prompts for {len(queries)} queries; they must pair up")
    items = []
    for i, (query, prompt) in enumerate(zip(queries, prompts)):
        response = locate_response(query, prompt)
        if response is None:
            shown = " ".join(prompt.split()[-TAIL_WORDS:])[-120:]
            raise InvalidInput(f"query[{i}]", f"neither starts with prompts[{i}] nor contains its last "
                                              f"{TAIL_WORDS} words ({shown!r}), so the response cannot be "
                                              "found; OpenRLHF sends query = prompt + response")
        question, passages = parse_prompt(prompt)
        items.append(Item(response, question, passages, reference=references[i] if references else ""))
    return items


def extra_logs(results, type_names: list[str], references: bool = False) -> dict[str, list[float]]:
    """Per-type totals, one list per feedback type (OpenRLHF logs each key). With labels as
    references, also `fgrm/reference_read/<type>`: 1 when that type's head read the query's
    reference, 0 when it had none or left it (too short, or another question's: the result's
    `reference`), so the mean OpenRLHF logs is the share read. OpenRLHF calls this endpoint
    directly, not through fgrm_client (which logs a warning), so nothing else would show its user
    that short labels change no relevance reward. Every type gets the key, factuality too (always
    0: it reads none), so each request returns the same keys."""
    out = {f"fgrm/{name}": [float(r.types[name].total) if name in r.types else 0.0 for r in results]
           for name in type_names}
    if references:
        out.update({f"fgrm/reference_read/{name}": [float(name in r.types and r.types[name].reference == "read")
                                                   for r in results] for name in type_names})
    return out


def as_openrlhf_error(exc: InvalidInput) -> InvalidInput:
    """The engine names items (`items[3].response`, `items[3].reference`); an OpenRLHF caller sent
    `query[3]` and `labels[3]`."""
    field = re.sub(r"^items(\[\d+\])?\.reference$", lambda m: "labels" + (m.group(1) or ""), exc.field)
    field = re.sub(r"^items(\[\d+\])?(\.response)?", lambda m: "query" + (m.group(1) or ""), field)
    message = exc.message.split(": ", 1)[1] if ": " in exc.message else exc.message
    return type(exc)(field, message)
