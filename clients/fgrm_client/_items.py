"""Trainer data -> ``/v1/score`` items: the one place every adapter (TRL's reward function and
``fgrm_client.trainers.*``) turns prompts, passages, completions and labels into wire fields."""

from __future__ import annotations

from typing import Any, Mapping, Sequence


def text_of(x: Any) -> str:
    """A completion or prompt as text: plain strings, or TRL's conversational message lists."""
    if isinstance(x, str):
        return x
    if isinstance(x, Sequence) and x and isinstance(x[-1], Mapping):
        return str(x[-1].get("content", ""))
    return str(x)


def passages_of(p: Any) -> list[str]:
    if p is None:
        return []
    if isinstance(p, str):
        return [p]
    out = []
    for x in p:  # QA-Feedback passages may be dicts {"wikipage", "content"} or lists of strings
        if isinstance(x, Mapping):
            out.append(str(x.get("content", x.get("text", ""))))
        elif isinstance(x, (list, tuple)):
            out.append(" ".join(str(s) for s in x))
        else:
            out.append(str(x))
    return out


def qa_item(question: Any, passages: Any, response: str,
            token_offsets: Sequence[tuple[int, int]] | None = None, reference: Any = None) -> dict[str, Any]:
    """One ``/v1/score`` item from whatever the trainer carries (strings, chat messages,
    QA-Feedback passage dicts); ``reference`` (a gold answer) only when there is one."""
    item: dict[str, Any] = {"question": text_of(question) if question is not None else "",
                            "passages": passages_of(passages), "response": response}
    if token_offsets is not None:
        item["token_offsets"] = [list(o) for o in token_offsets]
    if reference:
        item["reference"] = text_of(reference)
    return item


def reference_of(label: Any, where: str) -> str | None:
    """A trainer's label as a reference answer: text as is, a number as text, a list of
    acceptable answers joined by "; "; ``None`` for none. Anything else names ``where``."""
    if label is None or isinstance(label, str):
        return label or None
    if isinstance(label, (int, float)) and not isinstance(label, bool):
        return str(label)
    if isinstance(label, (list, tuple)) and all(isinstance(x, (str, int, float)) for x in label):
        return "; ".join(str(x) for x in label if str(x).strip()) or None
    raise TypeError(f"{where}: a reference answer must be text, a number or a list of them, "
                    f"not {type(label).__name__}")
