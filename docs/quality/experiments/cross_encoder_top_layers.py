"""Experiment (not shipped): a cross-encoder for relevance with a frozen bottom.

all-MiniLM-L6-v2 layers 0..F-1 frozen (their output cached once for every row), the top 6-F
layers plus a linear head fine-tuned per fold on (question, segment) pairs, 5-fold CV by
question; prints the held-out ROC-AUC after every epoch of every fold.

    .venv/bin/python docs/quality/experiments/cross_encoder_top_layers.py relevance q 3 4
"""
import copy
import json
import sys
import time

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from models.data import IGNORE, fold_of, labelled_example, load_records
from models.embedding import default_backbone
from models.heads import roc_auc
from models.segment import sentences
from models.signals import Context, content_words

torch.set_num_threads(2)
KIND, VARIANT, FROZEN, EPOCHS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
LR = float(sys.argv[5]) if len(sys.argv) > 5 else 5e-5
recs = load_records("data/qa_feedback/dev_feedback.json")


def best_sents(ctx, text, k):
    cw = content_words(text)
    sc = sorted(range(len(ctx.sentences)), key=lambda j: (-len(cw & ctx.sentence_words[j]), j))
    return " ".join(ctx.sentences[j] for j in sc[:k])


rows = []
for i, r in enumerate(recs):
    ex = labelled_example(r)
    ctx = Context.of(ex.question, ex.passages)
    f = fold_of(r["question"], 5)
    if KIND == "relevance":
        for s, y in zip(ex.subsentences, ex.relevance):
            if y == IGNORE:
                continue
            if VARIANT == "q":
                a, b = ex.question, s.text
            elif VARIANT == "qs":
                a, b = ex.question, s.text + " [SEP] " + best_sents(ctx, s.text, 1)
            elif VARIANT == "qprev":
                a, b = ex.question, s.text + " [SEP] " + ex.response[: s.start].strip()[-200:]
            rows.append((f, i, a, b, y))
    else:
        labels = {s.start: y for s, y in zip(ex.subsentences, ex.factuality)}
        for s in sentences(ex.response):
            y = labels.get(s.start, IGNORE)
            if y != IGNORE:
                rows.append((f, i, s.text, best_sents(ctx, s.text, 3), y))
print(KIND, VARIANT, "frozen", FROZEN, "rows", len(rows), flush=True)
MAXLEN = 128 if KIND == "relevance" else 256
tok = AutoTokenizer.from_pretrained(default_backbone())
base = AutoModel.from_pretrained(default_backbone(), attn_implementation="eager").eval()
t0 = time.time()
hidden, masks = [], []
with torch.inference_mode():
    for b in range(0, len(rows), 64):
        br = rows[b:b + 64]
        enc = tok([r[2] for r in br], [r[3] for r in br], truncation=True, max_length=MAXLEN, padding=True,
                  return_tensors="pt")
        hs = base(**enc, output_hidden_states=True).hidden_states[FROZEN]
        for k in range(len(br)):
            n = int(enc["attention_mask"][k].sum())
            hidden.append(hs[k, :n].clone())
print(f"cached layer-{FROZEN} states in {time.time()-t0:.0f}s", flush=True)


class Top(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList(copy.deepcopy(base.encoder.layer[FROZEN:]))
        self.head = torch.nn.Linear(384, 1)

    def forward(self, idx):
        hs = [hidden[k] for k in idx]
        T = max(len(h) for h in hs)
        x = torch.zeros(len(hs), T, 384)
        m = torch.zeros(len(hs), T)
        for j, h in enumerate(hs):
            x[j, :len(h)] = h
            m[j, :len(h)] = 1
        ext = (1.0 - m)[:, None, None, :] * torch.finfo(torch.float32).min
        for layer in self.layers:
            x = layer(x, attention_mask=ext)
            x = x[0] if isinstance(x, tuple) else x
        mm = m.unsqueeze(-1)
        return self.head((x * mm).sum(1) / mm.sum(1)).squeeze(-1)


ys = np.array([r[4] for r in rows])
oof = np.zeros(len(rows))
for f in range(5):
    tr = np.array([k for k, r in enumerate(rows) if r[0] != f])
    te = np.array([k for k, r in enumerate(rows) if r[0] == f])
    torch.manual_seed(f)
    model = Top().train()
    opt = torch.optim.AdamW([{"params": model.layers.parameters(), "lr": LR},
                             {"params": model.head.parameters(), "lr": 1e-3}], weight_decay=0.01)
    bs = 16
    steps = EPOCHS * ((len(tr) + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (0.1 * steps)) * max(0.0, 1 - s / steps))
    rng = np.random.default_rng(f)
    for ep in range(EPOCHS):
        order = tr[rng.permutation(len(tr))]
        for b in range(0, len(order), bs):
            idx = order[b:b + bs]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(idx), torch.tensor(ys[idx], dtype=torch.float32))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.inference_mode():
            p = np.concatenate([model(te[b:b + 64]).numpy() for b in range(0, len(te), 64)])
        model.train()
        print(f"fold {f} epoch {ep} auc {roc_auc(p, ys[te]):.3f} {time.time()-t0:.0f}s", flush=True)
    oof[te] = p
aucs = [roc_auc(oof[[k for k, r in enumerate(rows) if r[0] == f]], ys[[k for k, r in enumerate(rows) if r[0] == f]])
        for f in range(5)]
print(f"AUC {np.mean(aucs):.3f} ± {np.std(aucs):.3f}  time {time.time()-t0:.0f}s", flush=True)
json.dump({"rows": [(r[0], r[1], r[4]) for r in rows], "oof": oof.tolist(), "aucs": aucs},
          open(f"cetop_{KIND}_{VARIANT}_{FROZEN}_{EPOCHS}.json", "w"))
