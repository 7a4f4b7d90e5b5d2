"""Writes the inspector's "load example" records: a few QA-Feedback dev records, as the page sends them.

    python -m service.inspect_examples            # rewrites service/static/inspect/examples.json

The page is static and must not read the data folder, so the examples ship as a small JSON file
beside it; tests/service/test_inspector.py checks that the committed file is what this writes.
Chosen, in file order, from the dev split (models.data.split_records) where the two responses
differ, the annotators marked an error and preferred one of them, and the passages fit in a
page; each passage is one block of text, so none may hold a blank line (the page's separator).
"""

from __future__ import annotations

import json
from pathlib import Path

from models.data import DATA_DIR, load_records, passages_of, split_records
from service.inspector import STATIC

OUT = STATIC / "examples.json"
COUNT = 5
MAX_PASSAGE_CHARS = 3000  # all passages of a record together


def fits(record: dict) -> bool:
    passages = passages_of(record)
    return (record["prediction 1"] != record["prediction 2"] and bool(record["feedback"]["errors"])
            and record["preference"][0] in (1, 2) and sum(map(len, passages)) <= MAX_PASSAGE_CHARS
            and not any("\n\n" in p or not p.strip() for p in passages))


def build(data: Path = DATA_DIR / "dev_feedback.json", count: int = COUNT) -> dict:
    _, dev = split_records(load_records(data))
    examples = []
    for record in filter(fits, dev):
        preferred = "A" if record["preference"][0] == 1 else "B"  # `preference[0]` is prediction 1 vs 2
        examples.append({
            "label": f"{record['question']} (annotators preferred {preferred})",
            "question": record["question"],
            "passages": [p.strip() for p in passages_of(record)],  # as the page splits its blocks
            "responses": [record["prediction 1"], record["prediction 2"]],
        })
        if len(examples) == count:
            break
    return {"source": "QA-Feedback dev split, data/qa_feedback/dev_feedback.json (predictions 1 and 2)",
            "examples": examples}


def render(doc: dict) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(build()), encoding="utf-8")
    print(f"wrote {OUT}")
