"""What sending a reference answer costs: the in-process engine on the same items, with and without.

    python -m benchmarks.reference_cost                 # 64 dev-split responses, 3 rounds, ~3 min
    python -m benchmarks.reference_cost --items 32 --rounds 1 --json out.json

An item with a reference embeds the reference's sentences too (one short row each) and reads
the `@reference` heads (models.signal_model). On the same QA-Feedback dev responses (all four
predictions of each record, `load_items` as benchmarks/run.py), each round scores them all at
once (`engine.score_sync`, the engine's own batching) with, as every item's reference:

- `none`: no reference;
- `own`: the record's gold answer (read by relevance and completeness);
- `other`: the next record's gold answer (another question's: dropped by the guard in
  `SignalModel.plan` before embedding, so it should cost about nothing);
- `short`: the gold answer's first three content words (under the relevance floor: embedded,
  read by completeness only).

Modes alternate within each round and each reports its least disturbed round (highest items/s:
the machine is shared), with the embedding rows per item, so the ratio against `none` is read
within one run. The transports are not involved: a reference changes what the engine does, not
what HTTP or gRPC do with the request (one more string field).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks.run import build_engine, load_items

MODES = ("none", "own", "other", "short")


def with_references(items: list[dict], golds: dict[str, str]) -> dict[str, list]:
    """Per mode, the items as engine Items carrying that mode's reference."""
    from models.signals import first_content_words
    from service.domain import Item

    questions = list(dict.fromkeys(it["question"] for it in items))
    following = {q: golds[questions[(k + 1) % len(questions)]] for k, q in enumerate(questions)}
    refs = {"none": lambda q: "", "own": lambda q: golds[q], "other": lambda q: following[q],
            "short": lambda q: first_content_words(golds[q], 3)}
    return {mode: [Item(it["response"], it["question"], tuple(it["passages"]), reference=refs[mode](it["question"]))
                   for it in items] for mode in MODES}


def main(argv: list[str] | None = None) -> int:
    from models.data import DATA_DIR, load_records

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", default=str(DATA_DIR / "dev_feedback.json"))
    ap.add_argument("--json", default="", help="also write the figures (every round) to this file")
    args = ap.parse_args(argv)

    engine = build_engine()
    items, _ = load_items(engine, args.data, args.items)
    golds = {r["question"]: r.get("gold") or "" for r in load_records(args.data)}
    batches = with_references(items, golds)
    rows = {mode: sum(len(part.rows) for p in engine.prepare(batch) for part in p.parts) / len(batch)
            for mode, batch in batches.items()}
    # an untimed pass of every mode first: the model caches the token ids of passage sentences
    # (they repeat across samples), so whichever mode ran first would pay that alone
    said = {mode: sorted({t.reference or "-" for r in engine.score_sync(batch) for t in r.types.values()})
            for mode, batch in batches.items()}
    rounds: dict[str, list[float]] = {mode: [] for mode in MODES}
    for k in range(args.rounds):
        for mode in MODES if k % 2 == 0 else reversed(MODES):
            t0 = time.perf_counter()
            engine.score_sync(batches[mode])
            rounds[mode].append(len(items) / (time.perf_counter() - t0))
            print(f"round {k + 1}, {mode}: {rounds[mode][-1]:.2f} items/s", file=sys.stderr)
    best = {mode: max(v) for mode, v in rounds.items()}
    # the same round's `none` is the fairest baseline when the machine's load drifts between rounds
    per_round = {mode: [a / b for a, b in zip(v, rounds["none"])] for mode, v in rounds.items()}
    print(f"\n{len(items)} dev responses, {args.rounds} rounds, best round per mode\n")
    print("| reference | items/s | ÷ none (best rounds) | ÷ none, each round | embedding rows per item "
          "| what the types said |")
    print("|---|---:|---:|---|---:|---|")
    for mode in MODES:
        print(f"| {mode} | {best[mode]:.2f} | {best[mode] / best['none']:.2f} | "
              f"{' / '.join(f'{r:.2f}' for r in per_round[mode])} | {rows[mode]:.1f} | {', '.join(said[mode])} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"items": len(items), "rounds": rounds, "best": best,
                                               "rows_per_item": rows, "said": said}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
