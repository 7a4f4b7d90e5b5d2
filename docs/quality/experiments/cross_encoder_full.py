"""Experiment: all-MiniLM-L6-v2 fine-tuned in full as a cross-encoder per fold (GPU), then
stacked into the signal heads (CPU).

Three steps, so the GPU step needs nothing but torch and transformers:

    .venv/bin/python docs/quality/experiments/cross_encoder_full.py prep OUT_DIR BACKBONE_DIR
        rows of every variant, already as text pairs, with fold, record and label -> OUT_DIR/rows.json
        (and an fp16 copy of the backbone, small enough to travel to the GPU machine)
    python3 cross_encoder_full.py train OUT_DIR PRED_DIR [variants]          # GPU
        per variant, one model per set of held-out folds: the 5 leave-one-fold-out models
        (the cross-encoder's own CV) and the 10 leave-two-folds-out models (so that a
        stacked head can be cross-fitted honestly: the row of fold j, seen from outer fold k,
        gets the model trained without k and j); every row predicted after every epoch
    .venv/bin/python docs/quality/experiments/cross_encoder_full.py analyse OUT_DIR PRED_DIR
        ROC-AUC of the cross-encoder alone per epoch, and of the shipped-style relevance head
        (in-context signals, no synthetic rows) with and without the cross-encoder's logit
        and its neighbour views as extra columns

Measured 2026-11-28 on this 2-core CPU (no GPU was lent), rel_mark only, the five
leave-one-fold-out models, 3 epochs (`CE_EPOCHS=3 CE_OUTER_ONLY=1 ... train .gpu runs/ce/cpu
rel_mark`, 49 min): alone AUC 0.606 / 0.617 / 0.617 after epochs 1 / 2 / 3; stacked into the
head 0.733 ± 0.013 against 0.732 ± 0.012 (docs/quality/README.md). Not kept.

On a GPU machine: the backbone copy under OUT_DIR (fp16, 45 MB) and the repository's 44 MB
`artifacts/fgrm-qa-minilm` do not fit the 64 MiB a call may carry together; move that artifact
out of the working tree for the call (it is not needed there) and carry OUT_DIR.

Variants (relevance rows are all sub-sentences of prediction 1, factuality rows its sentences;
unlabelled rows are predicted too, because the in-context views need them):
    rel_q      (question, sub-sentence)
    rel_mark   (question, the answer with the sub-sentence between << >>)
    rel_markp  (question, the marked answer [SEP] the passage sentences closest to the question)
    fact_p     (sentence, the passage sentences sharing most content words with it)
"""
import json
import os
import sys
import time
from itertools import combinations

import numpy as np

VARIANTS = ("rel_mark", "rel_markp", "fact_p", "rel_q")
MAXLEN = {"rel_q": 128, "rel_mark": 256, "rel_markp": 384, "fact_p": 320}
EPOCHS = int(os.environ.get("CE_EPOCHS", "5"))
BATCH, LR = 32, 5e-5


def held_out_sets(n_folds=5):
    return [(k,) for k in range(n_folds)] + list(combinations(range(n_folds), 2))


def prep(out_dir, backbone_dir):
    from models.data import labelled_example, load_records, fold_of, IGNORE
    from models.segment import sentences
    from models.signals import Context, content_words

    recs = load_records("data/qa_feedback/dev_feedback.json")
    rows = {v: [] for v in VARIANTS}
    for i, r in enumerate(recs):
        ex = labelled_example(r)
        ctx = Context.of(ex.question, ex.passages)
        region = " ".join(ctx.sentences[k] for k in sorted(range(len(ctx.sentences)),
                          key=lambda k: (-len(ctx.sentence_words[k] & ctx.question_words), k))[:6])
        f = fold_of(r["question"], 5)
        for j, (s, y) in enumerate(zip(ex.subsentences, ex.relevance)):
            marked = ex.response[:s.start] + " << " + ex.response[s.start:s.end] + " >> " + ex.response[s.end:]
            base = dict(fold=f, record=i, index=j, y=int(y))
            rows["rel_q"].append(dict(base, a=ex.question, b=s.text))
            rows["rel_mark"].append(dict(base, a=ex.question, b=marked))
            rows["rel_markp"].append(dict(base, a=ex.question, b=marked + " [SEP] " + region))
        start_to_sub = {s.start: k for k, s in enumerate(ex.subsentences)}
        for j, s in enumerate(sentences(ex.response)):
            cw = content_words(s.text)
            best = sorted(range(len(ctx.sentences)), key=lambda k: (-len(cw & ctx.sentence_words[k]), k))[:8]
            y = ex.factuality[start_to_sub[s.start]]
            rows["fact_p"].append(dict(fold=f, record=i, index=j, y=int(y if y != IGNORE else -1), a=s.text,
                                       b=" ".join(ctx.sentences[k] for k in best)))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "rows.json"), "w") as fh:
        json.dump(rows, fh)
    _fp16_backbone(backbone_dir, os.path.join(out_dir, "backbone"))
    print({v: (len(r), sum(x["y"] >= 0 for x in r)) for v, r in rows.items()})


def _fp16_backbone(src, dst):
    import shutil
    from safetensors.torch import load_file, save_file

    os.makedirs(dst, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(os.path.join(src, name), dst)
    save_file({k: v.half().contiguous() for k, v in load_file(os.path.join(src, "model.safetensors")).items()},
              os.path.join(dst, "model.safetensors"))


def train(out_dir, pred_dir, variants):
    import torch
    from transformers import AutoModel, AutoTokenizer

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    rows = json.load(open(os.path.join(out_dir, "rows.json")))
    tok = AutoTokenizer.from_pretrained(os.path.join(out_dir, "backbone"))
    base = AutoModel.from_pretrained(os.path.join(out_dir, "backbone"), torch_dtype=torch.float32)
    limit = int(os.environ.get("CE_LIMIT", "0"))  # a smoke run on CPU: first N rows only
    os.makedirs(pred_dir, exist_ok=True)
    for v in variants:
        rs = rows[v][:limit] if limit else rows[v]
        enc = tok([r["a"] for r in rs], [r["b"] for r in rs], truncation="only_second", max_length=MAXLEN[v])
        ids, folds = enc["input_ids"], np.array([r["fold"] for r in rs])
        y = np.array([r["y"] for r in rs], dtype=np.float32)
        sets = held_out_sets()[:5] if os.environ.get("CE_OUTER_ONLY") else held_out_sets()
        preds = np.zeros((len(sets), EPOCHS, len(rs)), dtype=np.float32)
        t0 = time.time()
        for m, held in enumerate(sets):
            train_ix = np.where(~np.isin(folds, held) & (y >= 0))[0]
            preds[m] = _fit_predict(base, ids, y, train_ix, dev, seed=m)
            print(f"{v} held-out {held}: {len(train_ix)} rows, {time.time() - t0:.0f} s", flush=True)
        np.savez_compressed(os.path.join(pred_dir, f"{v}.npz"), preds=preds, held=np.array(
            [list(h) + [-1] * (2 - len(h)) for h in sets]), y=y, folds=folds,
            record=np.array([r["record"] for r in rs]), index=np.array([r["index"] for r in rs]),
            seconds=time.time() - t0)


def _batches(ids, order, size):
    import torch

    for s in range(0, len(order), size):
        part = [ids[k] for k in order[s:s + size]]
        n = max(map(len, part))
        x = torch.zeros((len(part), n), dtype=torch.long)
        for r, p in enumerate(part):
            x[r, :len(p)] = torch.tensor(p)
        yield x, (x != 0).long()


def _length_buckets(order, ids, chunk=8 * BATCH):
    """Random batches of similar length (less padding): sort each chunk of 8 batches by length."""
    return np.concatenate([sorted(order[s:s + chunk], key=lambda k: len(ids[k])) for s in range(0, len(order), chunk)])


def _fit_predict(base, ids, y, train_ix, dev, seed):
    """Fine-tunes a copy of `base` (mean pooling + linear head); returns P(error) of every row per epoch."""
    import copy
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    enc = copy.deepcopy(base).to(dev)
    head = torch.nn.Linear(enc.config.hidden_size, 1).to(dev)
    opt = torch.optim.AdamW([{"params": enc.parameters(), "lr": LR}, {"params": head.parameters(), "lr": 1e-3}],
                            weight_decay=0.01, fused=dev == "cuda")
    steps = EPOCHS * -(-len(train_ix) // BATCH)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, s / (0.1 * steps)) * max(0.0, 1 - s / steps))
    yt = torch.tensor(y, device=dev)
    out = np.zeros((EPOCHS, len(ids)), dtype=np.float32)

    def logits(x, mask):
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
            h = enc(input_ids=x, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        return head((h.float() * m).sum(1) / m.sum(1)).squeeze(-1)

    for e in range(EPOCHS):
        enc.train()
        order = _length_buckets(rng.permutation(train_ix), ids)
        for s, (x, mask) in zip(range(0, len(order), BATCH), _batches(ids, order, BATCH)):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits(x.to(dev), mask.to(dev)), yt[torch.tensor(order[s:s + BATCH], device=dev)])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        enc.eval()
        with torch.no_grad():
            by_len = np.argsort([len(p) for p in ids])
            for s, (x, mask) in zip(range(0, len(by_len), 256), _batches(ids, by_len, 256)):
                out[e, by_len[s:s + 256]] = torch.sigmoid(logits(x.to(dev), mask.to(dev))).cpu().numpy()
    return out


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "prep":
        prep(sys.argv[2], sys.argv[3])
    elif cmd == "train":
        train(sys.argv[2], sys.argv[3], sys.argv[4].split(",") if len(sys.argv) > 4 else VARIANTS)
    elif cmd == "analyse":
        from cross_encoder_stack import analyse  # CPU side, kept apart: it needs the repo's tables

        analyse(sys.argv[2], sys.argv[3])
