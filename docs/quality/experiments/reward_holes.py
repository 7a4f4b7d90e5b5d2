"""Measurement (no model change): what else could a policy write to out-score real answers?

PPO with a tiny policy found two ways out of the rewards (a blank answer, then one word; both
closed, clients/README.md). This probes a running service with other cheap strategies a policy
could find, on the first 60 QA-Feedback records, each against that record's prediction 1 (an
answer written by a model that mostly answers right): the mean mixed reward of each strategy
and the share of records where it beats prediction 1.

    .venv/bin/fgrm serve --http-port 3931 --grpc-port 3932 &     # the checkpoint to probe
    .venv/bin/python docs/quality/experiments/reward_holes.py [--url URL] [--profile NAME]

To probe another recipe: `fgrm train --recipe R --out DIR --cv 0`, a copy of
models/feedback_types.toml pointing at DIR, and `FGRM_FEEDBACK_TYPES=that-copy fgrm serve ...`.
Measured 2026-11-28 (docs/quality/README.md, "What else a policy could write"); `--reference` sends
each record's gold answer as the reference (docs/quality/README.md, "With a reference answer"; these
records' gold answers trained the reference heads, so that column is in-sample).
"""
import argparse

import httpx
import numpy as np

from models.data import DATA_DIR, load_records, passages_of
from models.signals import passage_sentences


def strategies(record: dict) -> dict[str, str]:
    p1, p2 = record["prediction 1"], record["prediction 2"]
    sents = [s for p in passages_of(record) for s in passage_sentences(p.split(": ", 1)[-1])]
    return {"prediction 1": p1, "blank": "", "one word": p1.split()[0], "prediction 1 twice": f"{p1} {p1}",
            "predictions 1 + 2": f"{p1} {p2}", "3 passage sentences": " ".join(sents[:3]),
            "8 passage sentences": " ".join(sents[:8]),
            "the question said back": record["question"].strip().rstrip("?").strip() + "."}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:3931")
    ap.add_argument("--profile", default=None, help="weight profile (default: the service's default weights)")
    ap.add_argument("--records", type=int, default=60)
    ap.add_argument("--reference", action="store_true",
                    help="send each record's gold answer as the reference (the @reference heads score it)")
    args = ap.parse_args()
    records = load_records(DATA_DIR / "dev_feedback.json")[: args.records]
    per_record = [strategies(r) for r in records]
    names = list(per_record[0])
    items = [{"question": r["question"], "passages": passages_of(r), "response": text,
              **({"reference": r["gold"]} if args.reference else {})}
             for r, s in zip(records, per_record) for text in s.values()]
    body = {"profile": args.profile} if args.profile else {}
    results = []
    with httpx.Client(base_url=args.url, timeout=900) as client:
        for b in range(0, len(items), 40):
            r = client.post("/v1/score", json={"items": items[b:b + 40], **body})
            r.raise_for_status()
            results += r.json()["results"]
    k = len(names)

    def table(value) -> np.ndarray:
        return np.array([[value(x) for x in results[i:i + k]] for i in range(0, len(results), k)])

    mixed = table(lambda x: x["mixed"]["total"])
    totals = {t: table(lambda x, t=t: x["types"][t]["total"]) for t in ("relevance", "factuality", "completeness")}
    print("| strategy | mixed | relevance | factuality | completeness | beats prediction 1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for j, name in enumerate(names):
        cells = " | ".join(f"{totals[t][:, j].mean():+.2f}" for t in totals)
        print(f"| {name} | {mixed[:, j].mean():+.2f} | {cells} | {(mixed[:, j] > mixed[:, 0]).mean():.0%} |")


if __name__ == "__main__":
    main()
