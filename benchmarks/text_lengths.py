"""How long are the texts the signal model embeds? The evidence behind "no token budget to choose".

    python -m benchmarks.text_lengths       # writes benchmarks/results/text-lengths.json

The fine-tuned network packed question + passages + response into one row, so its passage
token budget (256 / 384 / 512) decided what was cut. The shipped model embeds each distinct
text alone, cut at MAX_TOKENS = 256 (all-MiniLM-L6-v2's max_seq_length): this counts, over
all 400 QA-Feedback records and their 4 predictions, how many texts of each kind reach 128 and
256 tokens. If none reaches 256, a larger cap changes no embedding and costs nothing either.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "text-lengths.json"


def main() -> int:
    from models import checkpoint as ckpt
    from models.data import DATA_DIR, load_records, passages_of
    from models.embedding import MAX_TOKENS
    from models.segment import sentences, subsentences
    from models.signals import Context

    tok = ckpt.load_tokenizer(Path(__file__).resolve().parent.parent / "artifacts" / "fgrm-qa-signals")
    kinds: dict[str, set] = {"question": set(), "passage sentence": set(), "segment": set(), "response": set()}
    for r in load_records(DATA_DIR / "dev_feedback.json"):
        ctx = Context.of(r["question"], passages_of(r))
        kinds["question"].add(ctx.question)
        kinds["passage sentence"].update(ctx.sentences)
        for k in (1, 2, 3, 4):
            resp = r.get(f"prediction {k}") or ""
            if resp.strip():
                kinds["segment"].update(s.text for s in (*subsentences(resp), *sentences(resp)))
                kinds["response"].add(resp)
    out = {"max_tokens": MAX_TOKENS, "kinds": {}}
    for kind, texts in kinds.items():
        n = np.array([len(x) for x in tok(sorted(texts), add_special_tokens=True)["input_ids"]])
        out["kinds"][kind] = {"distinct": int(len(n)), "p50": float(np.percentile(n, 50)),
                              "p90": float(np.percentile(n, 90)), "p99": float(np.percentile(n, 99)),
                              "max": int(n.max()), "over_128": int((n > 128).sum()), "over_256": int((n > 256).sum())}
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
