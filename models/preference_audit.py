"""How much of QA-Feedback's completeness preferences can any text-based reward explain?

`python -m models.preference_audit [--data FILE]` prints, over the non-tie preference pairs:

- the share won by the earlier prediction, per position pair (1 vs 2 ... 3 vs 4): the
  "prefer earlier" rule of `fgrm eval` owes its accuracy to where a prediction was shown, which
  no reward model sees;
- reference orderings by one number per response, ties left out: the overlap of the response's
  content words with the human-written gold answer (an oracle: the service never has the gold
  answer), with the passages, and fewer words the passages do not contain.

It reads no model: it is the yardstick for the completeness targets (README, "Reward quality").
"""
from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from models.data import DATA_DIR, PAIRS, load_records, passages_of, preference_pairs
from models.signals import Context, content_words


def audit(records: list[dict]) -> dict:
    by_position: dict[tuple[int, int], list[bool]] = defaultdict(list)
    orderings: dict[str, list[float]] = defaultdict(list)
    for r in records:
        ctx = Context.of(r["question"], passages_of(r))
        gold = content_words(r.get("gold") or "")
        words = {k: content_words(r.get(f"prediction {k}") or "") for k in (1, 2, 3, 4)}
        signals = {
            "gold-answer overlap (oracle)": {k: len(w & gold) for k, w in words.items()},
            "passage overlap": {k: len(w & ctx.passage_words) for k, w in words.items()},
            "fewer words outside the passages": {k: -len(w - ctx.passage_words) for k, w in words.items()},
        }
        for preferred, other in preference_pairs(r):
            by_position[(min(preferred, other), max(preferred, other))].append(preferred < other)
            for name, value in signals.items():
                orderings[name].append(float(np.sign(value[preferred] - value[other])))
    n = sum(len(v) for v in by_position.values())
    out: dict = {"pairs": n,
           "earlier_wins": {f"{a} vs {b}": float(np.mean(by_position[(a, b)])) for a, b in PAIRS if by_position[(a, b)]},
           "earlier_wins_all": float(np.mean([x for v in by_position.values() for x in v])) if n else None,
           "orderings": {}}
    for name, signs in orderings.items():
        s = np.array(signs)
        decided = s[s != 0]
        out["orderings"][name] = {"accuracy_without_ties": float((decided > 0).mean()) if len(decided) else None,
                                  "ties": float((s == 0).mean())}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.preference_audit", description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA_DIR / "dev_feedback.json"))
    res = audit(load_records(ap.parse_args(argv).data))
    print(f"non-tie preference pairs: {res['pairs']}; earlier prediction preferred: {res['earlier_wins_all']:.3f}")
    print("| pair | earlier preferred |\n|---|---|")
    for pair, share in res["earlier_wins"].items():
        print(f"| {pair} | {share:.3f} |")
    print("\n| one number per response | pairwise accuracy (ties left out) | ties |\n|---|---|---|")
    for name, m in res["orderings"].items():
        print(f"| {name} | {m['accuracy_without_ties']:.3f} | {m['ties']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
