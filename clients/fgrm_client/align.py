"""Put the service's character-level rewards onto the policy's tokens.

The service reports each reward at a character position: a segment ``[start, end)`` earns its
reward at character ``end - 1`` (``mixed.events``). A PPO trainer needs one reward per generated
token. The rule (the same one the service applies when given ``token_offsets``):

* a segment-level reward goes to the token whose character span holds ``end - 1``; when several
  tokens hold it (byte-level BPE splits one emoji over two tokens), the *last* of them, so the
  reward arrives once the character is complete;
* when no token holds it (tokenizers that drop whitespace, or a span the policy skipped), the
  last token that starts at or before it, or the first token if none does;
* a response-level reward goes to the policy's last token (often EOS, whose span is empty).

Tokens with empty spans (special tokens) never hold a character. Nothing here imports torch or
transformers: offsets are plain ``(start, end)`` pairs, and the helper that computes them from a
tokenizer only calls its ``decode`` method.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from .types import Event, ItemResult

Offsets = Sequence[tuple[int, int]]


def token_for_char(offsets: Offsets, char: int) -> int:
    """Index of the token that receives a reward placed at character ``char``."""
    if not offsets:
        raise ValueError("no tokens to place a reward on")
    holder = -1
    before = -1
    for i, (s, e) in enumerate(offsets):
        if s < e and s <= char < e:
            holder = i  # keep going: the last holder wins
        if s < e and s <= char:
            before = i
    if holder >= 0:
        return holder
    return before if before >= 0 else 0


def align_events(
    offsets: Offsets,
    events: Iterable[Event | Mapping[str, Any]],
    length: int | None = None,
    final_reward: float = 0.0,
) -> list[float]:
    """Dense per-token rewards from ``mixed.events``.

    ``offsets`` are the character spans of the policy's generated tokens in the scored response;
    ``length`` (default ``len(offsets)``) is the policy's response length, which may exceed the
    offsets (e.g. padding after EOS gets zeros). ``final_reward`` is added on the last offset
    token: pass the response-level part here when the events exclude it.
    """
    n = len(offsets) if length is None else length
    if n < len(offsets):
        raise ValueError(f"length {n} is shorter than the {len(offsets)} offsets")
    dense = [0.0] * n
    if not offsets:
        return dense
    for ev in events:
        end, reward = (ev.end, ev.reward) if isinstance(ev, Event) else (ev["end"], ev["reward"])
        dense[token_for_char(offsets, int(end) - 1)] += float(reward)
    dense[len(offsets) - 1] += final_reward
    return dense


def align_result(
    result: ItemResult, offsets: Offsets, length: int | None = None
) -> list[float]:
    """Dense per-token rewards from a full result, honouring the response-level rule.

    Rebuilt from ``result.types`` and ``result.mixed.weights``: segment-level types land on the
    token holding ``end - 1``, response-level types on the last token. When the result has no
    per-type detail (a ``mix`` answer), falls back to :func:`align_events`.
    """
    if not result.types:
        return align_events(offsets, result.mixed.events, length)
    weights = result.mixed.weights
    events: list[Event] = []
    final = 0.0
    for name, t in result.types.items():
        w = float(weights.get(name, 0.0))
        if w == 0.0:
            continue
        if t.granularity == "response":
            final += w * sum(s.reward for s in t.segments)
        else:
            events.extend(Event(s.end, w * s.reward) for s in t.segments)
    return align_events(offsets, events, length, final_reward=final)


def offsets_from_decode(tokenizer: Any, token_ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """The text of ``token_ids`` and each token's character span in it, by prefix decoding.

    Re-tokenising the decoded text can give a different tokenisation than the one the policy
    sampled (BPE merges are not unique), and then the offsets no longer match the policy's
    tokens. Decoding growing prefixes cannot disagree with the policy: token ``i`` spans from
    the length of the decoded prefix before it to the length after it. Special tokens
    (skipped when decoding) get an empty span. Cost: ``len(token_ids)`` decodes, fine for the
    short responses of RLHF rollouts.
    """
    ids = [int(t) for t in token_ids]
    text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    offsets: list[tuple[int, int]] = []
    prev = 0
    for i in range(len(ids)):
        prefix = tokenizer.decode(
            ids[: i + 1], skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        # A prefix that ends mid-character (byte-level BPE) decodes to U+FFFD; never let an
        # end run past the final text or backwards.
        end = min(len(prefix), len(text))
        if prefix.endswith("\ufffd") and not text[:end].endswith("\ufffd"):
            end = prev
        end = max(end, prev)
        offsets.append((prev, end))
        prev = end
    return text, offsets

