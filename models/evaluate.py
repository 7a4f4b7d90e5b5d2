"""`fgrm eval`: segment accuracy / error-F1 and preference accuracy on QA-Feedback-format data.

Definitions (also in the README):
- relevance.*: every sub-sentence of `prediction 1`; label "error" when it overlaps a relevance
  error span (Irrelevant/Redundant/Incoherent) by at least min(5, its word count) words.
- factuality.*: every sentence of `prediction 1` that does not overlap a relevance error span
  (annotators did not mark factual errors inside irrelevant text); label "error" when it
  overlaps a Wrong-Grounding/Unverifiable span. factuality_all.*: the same over all sentences.
- accuracy = correct / n; error_f1 = F1 of the "error" class; majority_accuracy = share of the
  larger class in this data; all_error_f1 = error-F1 of predicting "error" everywhere;
  auc = ROC-AUC of P(error); ece = expected calibration error of P(error) (10 equal bins).
  The error decision is the one the service makes: P(error) > the head's stored threshold
  (signal checkpoints), or > 0.5 (fine-tuned reward networks).
- with_reference.*: the same metrics with each record's `gold` answer sent as the request's
  reference (signal checkpoints with reference heads; `--reference none` skips them).
- completeness.pairwise_accuracy: over all non-tie human preference pairs among the four
  predictions, the share where the preferred one scores higher (a score tie counts as wrong);
  prefer_earlier_accuracy = share of pairs where the earlier prediction is preferred.
Empty sets give n = 0 and null metrics, never a division by zero.

`fgrm eval --cv K` runs the K-fold cross-validation by question instead (models.crossval).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

import numpy as np

from models.data import IGNORE, label_response, error_spans, preference_pairs
from models.encoding import Encoder, pad_batch
from models.errors import InputTooLong
from models.heads import ece, roc_auc
from models.outputs import ERROR_THRESHOLD, error_probability

ForwardFn = Callable[[np.ndarray, np.ndarray], dict]


def score_responses(forward: ForwardFn, encoder: Encoder, items: list[tuple[str, list[str], str, list]],
                    segment_heads: list[str], sequence_heads: list[str], batch_size: int = 16):
    """For each (question, passages, response, subsentences): (p_error[head] per segment, score[head])."""
    encoded = []
    for q, ps, resp, subs in items:
        try:
            encoded.append(encoder.encode(q, ps, resp, subs))
        except InputTooLong:
            encoded.append(None)
    order = sorted(range(len(items)), key=lambda i: len(encoded[i].input_ids) if encoded[i] else 0)
    out: list = [None] * len(items)
    for start in range(0, len(order), batch_size):
        idx = [i for i in order[start:start + batch_size] if encoded[i] is not None]
        if not idx:
            continue
        ids, mask = pad_batch([encoded[i].input_ids for i in idx], encoder.pad_id)
        res = forward(ids, mask)
        logits, scores = res["segment_logits"], res["sequence_scores"]
        for row, i in enumerate(idx):
            pos = encoded[i].marker_positions
            p = error_probability(logits[row, pos])  # (n_seg, H)
            out[i] = ({h: p[:, k] for k, h in enumerate(segment_heads)},
                      {h: float(scores[row, k]) for k, h in enumerate(sequence_heads)})
    return out


def signal_scores(model, forward: ForwardFn, items: list[tuple[str, list[str], str, list]],
                  references: list[str] | None = None):
    """`score_responses` for a signal checkpoint (models.signal_model.SignalModel), plus the error
    thresholds of the heads that scored each item (those of the reference heads where
    `references` gives one): factuality P(error) is placed at the sub-sentences that start a
    sentence, as the reward network gives it."""
    from models.segment import sentences

    plans, starts = [], []
    for i, (q, ps, resp, subs) in enumerate(items):
        sents = sentences(resp)
        plans.append(model.plan(q, ps, resp, subs, sents, references[i] if references else ""))
        starts.append(([s.start for s in subs], [s.start for s in sents]))
    out = []
    for res, (sub_starts, sent_starts) in zip(model.run(forward, plans), starts):
        fact = np.full(len(sub_starts), np.nan)
        at = {st: k for k, st in enumerate(sub_starts)}
        for st, p in zip(sent_starts, res.factuality):
            fact[at[st]] = p
        out.append(({"relevance": res.relevance, "factuality": fact}, {"completeness": res.completeness},
                    res.thresholds))
    return out


def embed_once(forward: ForwardFn) -> ForwardFn:
    """`forward` for the signal model's rows, each distinct row embedded once per evaluation: the
    labelled pass and the preference pass both embed prediction 1, and the pass with references
    every text but the references again. A row's embedding does not depend on its batch (the
    service's batch-invariance tests hold it to 1e-5), so this only saves the repeats."""
    seen: dict[tuple[int, ...], np.ndarray] = {}

    def run(ids, mask):
        ids, mask = np.asarray(ids), np.asarray(mask)
        keys = [tuple(row[m.astype(bool)].tolist()) for row, m in zip(ids, mask)]
        new = {k: i for i, k in enumerate(keys) if k not in seen}
        if new:
            rows = list(new.values())
            seen.update(zip(new, forward(ids[rows], mask[rows])["embeddings"]))
        return {"embeddings": np.stack([seen[k] for k in keys])}
    return run


def _binary(pred: list[int], gold: list[int], probs: list[float] | None = None) -> dict:
    n = len(gold)
    if n == 0:
        return {"n": 0, "accuracy": None, "error_f1": None, "majority_accuracy": None, "all_error_f1": None,
                "error_rate": None, "auc": None, "ece": None}
    pred_a, gold_a = np.array(pred), np.array(gold)
    tp = int(((pred_a == 1) & (gold_a == 1)).sum())
    fp = int(((pred_a == 1) & (gold_a == 0)).sum())
    fn = int(((pred_a == 0) & (gold_a == 1)).sum())
    pos = int(gold_a.sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
    return {"n": n, "accuracy": float((pred_a == gold_a).mean()), "error_f1": f1,
            "majority_accuracy": max(pos, n - pos) / n, "all_error_f1": 2 * pos / (pos + n) if pos else 0.0,
            "error_rate": pos / n, "auc": roc_auc(probs, gold) if probs is not None else None,
            "ece": ece(probs, gold) if probs is not None else None}


def evaluate(records: list[dict], forward: ForwardFn, encoder, meta: dict, batch_size: int = 16,
             reference: str = "auto") -> dict:
    """Metrics of a loaded checkpoint (`encoder`: its models.encoding.Encoder, or its
    models.signal_model.SignalModel) on QA-Feedback-format `records`. With reference "auto" and a
    signal checkpoint that has reference heads, the same metrics with each record's `gold` answer
    as the request's reference come under "with_reference"."""
    from models.signal_model import SignalModel

    seg_heads, seq_heads = meta["segment_heads"], meta["sequence_heads"]
    if isinstance(encoder, SignalModel):
        once = embed_once(forward)

        def run(its, refs):  # noqa: E306
            return signal_scores(encoder, once, its, refs)
    else:
        fixed = {h: ERROR_THRESHOLD for h in seg_heads}

        def run(its, refs):
            return [o and (*o, fixed) for o in score_responses(forward, encoder, its, seg_heads, seq_heads, batch_size)]
    result = _metrics(records, run, seg_heads, seq_heads, None)
    if reference == "auto" and isinstance(encoder, SignalModel) and encoder.reference_heads is not None:
        result["with_reference"] = _metrics(records, run, seg_heads, seq_heads,
                                            [r.get("gold") or "" for r in records])
    result["records"] = len(records)
    return result


def _examples(records: list[dict]):
    return [label_response(r, r["prediction 1"], error_spans(r)) for r in records]


def _metrics(records: list[dict], run, seg_heads, seq_heads, golds: list[str] | None) -> dict:
    """`run(items, references)` -> per item (p_error by head, score by head, thresholds by head)."""
    examples = _examples(records)
    items = [(e.question, e.passages, e.response, e.subsentences) for e in examples]
    # all four predictions, for preferences (prediction 1's segments come from the labelled example)
    pref_items, pref_refs, pref_index = [], [], {}
    for ri, r in enumerate(records):
        for k in (1, 2, 3, 4):
            resp = r.get(f"prediction {k}") or ""
            pref_index[(ri, k)] = len(pref_items)
            pref_items.append((r["question"], items[ri][1], resp, label_response(r, resp, None).subsentences))
            pref_refs.append(golds[ri] if golds else "")
    seg_out = run(items, golds)
    result: dict = {"skipped_too_long": sum(1 for o in seg_out if o is None)}
    for head, attr, name in (("relevance", "relevance", "relevance"), ("factuality", "factuality", "factuality"),
                             ("factuality", "factuality_all", "factuality_all")):
        if head not in seg_heads:
            continue
        pred, gold, probs = [], [], []
        for e, o in zip(examples, seg_out):
            if o is None:
                continue
            for lab, p in zip(getattr(e, attr), o[0][head]):
                if lab != IGNORE:
                    gold.append(lab)
                    probs.append(float(p))
                    pred.append(int(p > o[2][head]))
        result[name] = _binary(pred, gold, probs)
    if "completeness" in seq_heads:
        scores = run(pref_items, pref_refs if golds else None)
        correct = earlier = n = 0
        for ri, r in enumerate(records):
            for a, b in preference_pairs(r):
                sa, sb = scores[pref_index[(ri, a)]], scores[pref_index[(ri, b)]]
                if sa is None or sb is None:
                    continue
                n += 1
                correct += int(sa[1]["completeness"] > sb[1]["completeness"])
                earlier += int(a < b)
        result["completeness"] = {"n_pairs": n, "pairwise_accuracy": correct / n if n else None,
                                  "prefer_earlier_accuracy": earlier / n if n else None}
    return result


def cv_main(args) -> int:
    """`fgrm eval --cv K`: cross-validate recipes on --data (models.crossval)."""
    from pathlib import Path

    from models.crossval import cross_validate, markdown, verdicts
    from models.data import load_records
    from models.recipe import RECIPES
    from models.tables import build_with_cache, embedding_cache_path

    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        print(f"fgrm eval: unknown recipe(s) {unknown}; known: {', '.join(RECIPES)}", file=sys.stderr)
        return 2
    if args.backbone:
        from models.embedding import check_backbone

        try:
            check_backbone(args.backbone)
        except ValueError as exc:
            print(f"fgrm eval: {exc}", file=sys.stderr)
            return 2
    records = load_records(args.data)
    tables = build_with_cache(records, embedding_cache_path(args.embedding_cache, args.backbone), args.threads,
                              backbone=args.backbone)
    results = []
    for name in names:
        res = cross_validate(tables, RECIPES[name], args.cv)
        res["beats_baselines"] = verdicts(res["summary"])
        results.append(res)
    if args.markdown:
        Path(args.markdown).write_text(markdown(results) + "\n")
    if args.plot:
        from models.crossval import plot

        plot(results, args.plot)
    out = results[0] if len(results) == 1 else {"recipes": results}
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    from models.config import REPO_ROOT
    from models.data import DATA_DIR, load_records, split_records

    ap = argparse.ArgumentParser(prog="fgrm eval", description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA_DIR / "dev_feedback.json"), help="QA-Feedback feedback-format JSON file")
    ap.add_argument("--checkpoint", default=str(REPO_ROOT / "artifacts" / "fgrm-qa-signals"))
    ap.add_argument("--runtime", default="auto", choices=["auto", "torch", "onnx", "onnx-int8"])
    ap.add_argument("--split", default="all", choices=["all", "train", "dev"],
                    help="evaluate on the fixed dev split (or train split) of --data instead of all of it")
    ap.add_argument("--json", action="store_true", help="print one JSON object (default: also JSON, indented)")
    ap.add_argument("--reference", default="auto", choices=["auto", "none"],
                    help="auto: with a signal checkpoint that has reference heads, also score every record with "
                         "its gold answer as the reference (reported under with_reference); none: do not")
    ap.add_argument("--cv", type=int, default=0, metavar="K",
                    help="K-fold cross-validation by question of --recipes on --data (5 is the protocol), "
                         "each fold fitted from scratch; --checkpoint is not used")
    ap.add_argument("--recipes", default="signals-lr", help="--cv: comma-separated recipes of models.recipe")
    ap.add_argument("--markdown", default=None, help="--cv: also write the CV table here")
    ap.add_argument("--plot", default=None, help="--cv: also draw the CV figures into this PNG")
    ap.add_argument("--threads", type=int, default=0, help="--cv: torch threads for the embedding")
    ap.add_argument("--embedding-cache", default=None, help="--cv: embeddings cache (see fgrm train --help)")
    ap.add_argument("--backbone", default=None, metavar="DIR",
                    help="--cv: embed with this sentence-transformers model instead of all-MiniLM-L6-v2 "
                         "(see fgrm train --help)")
    args = ap.parse_args(argv)
    if args.cv:
        if args.cv < 2:
            ap.error("--cv needs at least 2 folds")
        return cv_main(args)
    records = load_records(args.data)
    if args.split != "all":
        train, dev = split_records(records)
        records = dev if args.split == "dev" else train
    from models.checkpoint import check
    from models.runtime import load

    try:
        check(args.checkpoint)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"fgrm eval: {exc}") from None
    loaded = load(args.checkpoint, args.runtime)
    res = evaluate(records, loaded.backend.forward, loaded.encoder, loaded.meta, reference=args.reference)
    res["runtime"] = {"name": loaded.backend.name, "provider": loaded.backend.provider}
    print(json.dumps(res) if args.json else json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
