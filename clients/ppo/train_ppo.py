"""PPO on fine-grained rewards served over the wire (Wu et al. 2023, "Fine-Grained Human
Feedback Gives Better Rewards for Language Model Training", arXiv:2306.01693).

One file, cleanrl style (https://docs.cleanrl.dev/rl-algorithms/ppo/): arguments with a docstring
each, then the loop with the maths in view. Per step:

  1. sample responses from the policy for a batch of training questions;
  2. score them with the fgrm service, passing each response's token offsets, so the service
     returns a dense reward vector on the policy's own tokens:
       fine-grained: every segment's mixed reward  sum_k w_k r_k  on the token holding the
                     segment's last character, the response-level reward on the last token;
       holistic:     only one response-level (preference) reward, on the last token;
  3. add the per-token KL penalty  -beta * (log pi(a_t|s_t) - log pi_ref(a_t|s_t));
  4. GAE with gamma = 1, lambda = 0.95, whitened advantages;
  5. several epochs of clipped policy and value updates (epsilon = 0.2), stopping an epoch
     loop early when the approximate KL to the rollout policy passes --target-kl, and the whole
     run when the KL to the reference policy passes --max-ref-kl.

Every step appends one JSON line to <out>/log.jsonl; every --eval-every steps the policy is
scored on held-out questions; the curves are drawn into <out>/curves.png.

    python clients/ppo/train_ppo.py --policy runs/sft --weights relevance=1,factuality=1,completeness=1
"""

from __future__ import annotations

import copy
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_DATA, load_qa, load_tokenizer, parse_args, prompt_ids  # noqa: E402

from fgrm_client import FgrmError, GrpcClient, HttpClient  # noqa: E402
from fgrm_client.align import align_result, offsets_from_decode  # noqa: E402


@dataclass
class Args:
    """PPO against the fgrm reward service."""

    policy: str = "runs/sft"
    """Local HF causal-LM checkpoint (model + tokenizer) to start from; also the frozen reference."""
    out: str = "runs/ppo"
    """Output directory: log.jsonl, curves.png, the final policy."""
    url: str = "http://127.0.0.1:3000"
    """fgrm HTTP address (used when --grpc is empty)."""
    grpc: str = ""
    """Comma-separated gRPC addresses (host:port,...); load-balanced with round_robin."""
    mode: str = "fine-grained"
    """"fine-grained" (dense, per-segment, mixed) or "holistic" (one reward at the end)."""
    weights: str = ""
    """Mixing weights, e.g. "relevance=2,factuality=1,completeness=1"; empty: the service's."""
    holistic_type: str = "completeness"
    """The preference-type reward used in holistic mode."""
    data: str = DEFAULT_DATA
    """QA-Feedback directory (dev.json, dev_feedback.json)."""
    batch_size: int = 16
    """Rollouts per PPO step."""
    total_steps: int = 60
    """PPO steps (each: one batch of rollouts, then --ppo-epochs of updates)."""
    time_limit: float = 540.0
    """Stop (after a final evaluation) once this many seconds have passed."""
    max_prompt_tokens: int = 32
    """Prompt tokens kept."""
    max_new_tokens: int = 48
    """Longest response, in tokens."""
    temperature: float = 1.0
    """Sampling temperature of rollouts (top_k = 0: the full distribution)."""
    policy_lr: float = 3e-5
    """Adam learning rate of the policy."""
    value_lr: float = 1e-4
    """Adam learning rate of the value model."""
    kl_coef: float = 0.3
    """beta: weight of the per-token KL penalty against the reference policy (paper: 0.3)."""
    gamma: float = 1.0
    """Discount (paper: 1)."""
    lam: float = 0.95
    """GAE lambda (paper: 0.95)."""
    clip: float = 0.2
    """PPO ratio clip epsilon (paper: 0.2)."""
    vf_clip: float = 0.2
    """Value clip (paper: 0.2)."""
    vf_coef: float = 0.5
    """Value loss weight."""
    ppo_epochs: int = 4
    """Optimisation epochs over each batch of rollouts."""
    minibatch_size: int = 8
    """Rollouts per gradient step."""
    target_kl: float = 0.1
    """Stop this batch's epochs when the approximate KL to the rollout policy exceeds it."""
    max_ref_kl: float = 20.0
    """Stop the run when the mean per-response KL to the reference exceeds this (nats)."""
    eval_every: int = 10
    """Evaluate on held-out questions every this many steps (and at step 0 and the end)."""
    n_eval: int = 32
    """Held-out questions per evaluation (same questions and sampling seed every time)."""
    eval_samples: int = 1
    """Responses sampled per held-out question (more: less noisy evaluations, slower).
    --total-steps 0 only evaluates --policy, e.g. a trained one with --n-eval 100."""
    seed: int = 1
    """Random seed."""
    threads: int = 1
    """torch CPU threads. On a shared, busy CPU one thread is far faster than several (measured
    here: 2.5 s vs 45 s per PPO step while other jobs held the cores)."""
    save: bool = True
    """Save the final policy into <out>/policy."""


def parse_weights(spec: str) -> dict[str, float] | None:
    if not spec:
        return None
    pairs = (kv.split("=") for kv in spec.split(","))
    return {k.strip(): float(v) for k, v in pairs}


class ValueModel(torch.nn.Module):
    """A copy of the policy's network with a scalar head on its last hidden state (the paper
    initialises the value model from the policy too)."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        self.head = torch.nn.Linear(lm.config.hidden_size if hasattr(lm.config, "hidden_size")
                                    else lm.config.n_embd, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, ids, mask, pos):
        out = self.lm(input_ids=ids, attention_mask=mask, position_ids=pos, output_hidden_states=True)
        return self.head(out.hidden_states[-1]).squeeze(-1)


def positions(mask):
    """Position ids for left-padded rows: count real tokens only."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def response_logprobs(model, ids, mask, n_prompt, temperature):
    """log pi(a_t | s_t) of every response token (positions n_prompt..end)."""
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask)).logits
    logits = logits[:, n_prompt - 1 : -1] / temperature
    return torch.gather(F.log_softmax(logits.float(), -1), 2, ids[:, n_prompt:, None]).squeeze(-1)


def masked_mean(x, m):
    return (x * m).sum() / m.sum().clamp(min=1)


def whiten(x, m, eps=1e-8):
    mean = masked_mean(x, m)
    var = masked_mean((x - mean) ** 2, m)
    return (x - mean) * torch.rsqrt(var + eps) * m


@torch.no_grad()
def rollout(policy, tok, questions, args, seed=None):
    """Sample responses; return token tensors and the masks of real (non-padding) tokens."""
    rows = [prompt_ids(tok, q, args.max_prompt_tokens) for q in questions]
    n = max(map(len, rows))
    prompt = torch.full((len(rows), n), tok.pad_token_id)
    pmask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):  # left padding: every response starts at column n
        prompt[i, n - len(r) :], pmask[i, n - len(r) :] = torch.tensor(r), 1
    with torch.random.fork_rng():  # a fixed evaluation seed must not reset training's RNG
        if seed is not None:
            torch.manual_seed(seed)
        seq = policy.generate(
            input_ids=prompt, attention_mask=pmask, do_sample=True, top_k=0, top_p=1.0,
            temperature=args.temperature, max_new_tokens=args.max_new_tokens,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        )
    resp = seq[:, n:]
    # Response tokens up to and including the first EOS are real; the rest is padding.
    is_eos = (resp == tok.eos_token_id).long()
    after_eos = (is_eos.cumsum(-1) - is_eos) > 0
    rmask = (~after_eos).long()
    return seq, torch.cat([pmask, rmask], 1), n, rmask


def score(client, tok, questions, passages, resp, rmask, args, weights):
    """Dense rewards (B, T) from the service, plus per-type totals for the log."""
    items, offsets = [], []
    for i in range(resp.shape[0]):
        ids = resp[i, : int(rmask[i].sum())].tolist()
        text, offs = offsets_from_decode(tok, ids)
        items.append({"question": questions[i], "passages": passages[i], "response": text,
                      "token_offsets": offs})
        offsets.append(offs)
    results = []
    for i in range(0, len(items), 64):  # bounded requests: evaluations can be hundreds of items
        results += client.score(items[i : i + 64], weights=weights)
    dense = torch.zeros(resp.shape, dtype=torch.float32)
    per_type: dict[str, list[float]] = {}
    for i, (r, offs) in enumerate(zip(results, offsets)):
        for name, t in r.types.items():
            per_type.setdefault(name, []).append(t.total)
        per_type.setdefault("mixed", []).append(r.mixed.total)
        if args.mode == "holistic":
            # One scalar at the end of the response: the preference model's reward only.
            dense[i, len(offs) - 1] = r.types[args.holistic_type].total
        else:
            tr = r.token_rewards if r.token_rewards is not None else align_result(r, offs)
            dense[i, : len(tr)] = torch.tensor(tr)
    stats = {f"reward/{k}": sum(v) / len(v) for k, v in per_type.items()}
    return dense, stats, [it["response"] for it in items]


@torch.no_grad()
def evaluate(policy, tok, client, held, args, weights):
    """Mean rewards of the current policy on fixed held-out questions, fixed sampling seed."""
    qs = [x["question"] for x in held] * args.eval_samples
    ps = [x["passages"] for x in held] * args.eval_samples
    seq, _, n, rmask = rollout(policy, tok, qs, args, seed=12345)
    _, stats, texts = score(client, tok, qs, ps, seq[:, n:], rmask, args, weights)
    stats = {"eval/" + k.split("/", 1)[1]: v for k, v in stats.items()}
    stats["eval/length"] = float(rmask.sum(1).float().mean())
    return stats, texts


def main(args: Args):
    if args.mode not in ("fine-grained", "holistic"):
        raise SystemExit(f"--mode must be fine-grained or holistic, got {args.mode!r}")
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = parse_weights(args.weights)
    client = (GrpcClient(args.grpc.split(","), timeout=120) if args.grpc
              else HttpClient(args.url, timeout=120))
    client.wait_until_ready(timeout=120)

    tok = load_tokenizer(args.policy)
    policy = AutoModelForCausalLM.from_pretrained(args.policy)
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    critic = ValueModel(copy.deepcopy(policy))
    # Dropout stays off throughout (eval mode; gradients still flow): with it on, the same
    # tokens get different log-probs in the rollout and the update, and the PPO ratio and its
    # KL early stop would measure dropout noise rather than policy change.
    policy.eval()
    critic.eval()
    policy.generation_config.pad_token_id = tok.pad_token_id
    p_opt = torch.optim.Adam(policy.parameters(), lr=args.policy_lr, eps=1e-5)
    v_opt = torch.optim.Adam(critic.parameters(), lr=args.value_lr, eps=1e-5)

    train, held = load_qa(args.data)
    held = held[: args.n_eval]
    log_file = (out / "log.jsonl").open("w")
    (out / "args.json").write_text(json.dumps(asdict(args), indent=1))
    samples_file = (out / "eval_samples.jsonl").open("w")

    def do_eval(step):
        stats, texts = evaluate(policy, tok, client, held, args, weights)
        samples_file.write(json.dumps({"step": step, "samples": texts[:4]}) + "\n")
        samples_file.flush()
        return stats

    t0 = time.time()
    first = {"step": 0, **do_eval(0), "seconds": time.time() - t0}
    log_file.write(json.dumps(first) + "\n")
    history = [first]
    bar = tqdm(range(1, args.total_steps + 1), desc="ppo")
    stop_reason = "total_steps"
    for step in bar:
        # ---- 1. rollouts ------------------------------------------------------------------
        batch = random.sample(train, args.batch_size)
        qs = [x["question"] for x in batch]
        t_roll = time.time()
        seq, mask, n, rmask = rollout(policy, tok, qs, args)
        t_roll = time.time() - t_roll
        resp = seq[:, n:]
        rm = rmask.float()
        # ---- 2. rewards from the service ------------------------------------------------
        t_score = time.time()
        try:
            scores, rstats, _ = score(client, tok, qs, [x["passages"] for x in batch], resp,
                                      rmask, args, weights)
        except FgrmError as exc:  # typed: a trainer decides; here we stop cleanly and log it
            stop_reason = f"service error: {exc}"
            break
        t_score = time.time() - t_score
        with torch.no_grad():
            logp = response_logprobs(policy, seq, mask, n, args.temperature)
            ref_logp = response_logprobs(ref, seq, mask, n, args.temperature)
            values = critic(seq, mask, positions(mask))[:, n - 1 : -1] * rm
            # ---- 3. per-token reward: service reward minus the KL penalty ---------------
            kl = (logp - ref_logp) * rm
            rewards = scores - args.kl_coef * kl
            # ---- 4. GAE (gamma, lambda); padding has r = V = 0, so A = 0 there ----------
            T = resp.shape[1]
            adv = torch.zeros_like(rewards)
            last = torch.zeros(resp.shape[0])
            for t in reversed(range(T)):
                next_v = values[:, t + 1] if t + 1 < T else torch.zeros(resp.shape[0])
                delta = rewards[:, t] + args.gamma * next_v - values[:, t]
                last = (delta + args.gamma * args.lam * last) * rm[:, t]
                adv[:, t] = last
            returns = adv + values
            adv = whiten(adv, rm)
        # ---- 5. PPO epochs ------------------------------------------------------------------
        t_update = time.time()
        mb_stats = []
        early = False
        for epoch in range(args.ppo_epochs):
            perm = torch.randperm(args.batch_size)
            for i in range(0, args.batch_size, args.minibatch_size):
                idx = perm[i : i + args.minibatch_size]
                m = rm[idx]
                new_logp = response_logprobs(policy, seq[idx], mask[idx], n, args.temperature)
                log_ratio = (new_logp - logp[idx]) * m
                ratio = log_ratio.exp()
                pg1 = -adv[idx] * ratio
                pg2 = -adv[idx] * ratio.clamp(1 - args.clip, 1 + args.clip)
                pg_loss = masked_mean(torch.max(pg1, pg2), m)
                v = critic(seq[idx], mask[idx], positions(mask[idx]))[:, n - 1 : -1]
                v_clip = values[idx] + (v - values[idx]).clamp(-args.vf_clip, args.vf_clip)
                vf_loss = 0.5 * masked_mean(torch.max((v - returns[idx]) ** 2,
                                                      (v_clip - returns[idx]) ** 2), m)
                p_opt.zero_grad()
                v_opt.zero_grad()
                (pg_loss + args.vf_coef * vf_loss).backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
                torch.nn.utils.clip_grad_norm_(critic.parameters(), 1.0)
                p_opt.step()
                v_opt.step()
                with torch.no_grad():
                    approx_kl = masked_mean((ratio - 1) - log_ratio, m).item()  # k3 estimator
                    clipfrac = masked_mean(((ratio - 1).abs() > args.clip).float(), m).item()
                mb_stats.append((pg_loss.item(), vf_loss.item(), approx_kl, clipfrac))
            if mb_stats[-1][2] > args.target_kl:
                early = True
                break
        t_update = time.time() - t_update
        # ---- log ------------------------------------------------------------------------
        ref_kl = float(kl.sum(1).mean())
        k = len(mb_stats)
        record = {
            "step": step,
            **rstats,
            "kl_ref": ref_kl,
            "length": float(rm.sum(1).mean()),
            "loss/policy": sum(s[0] for s in mb_stats) / k,
            "loss/value": sum(s[1] for s in mb_stats) / k,
            "approx_kl": sum(s[2] for s in mb_stats) / k,
            "clipfrac": sum(s[3] for s in mb_stats) / k,
            "ppo_epochs_run": epoch + 1,
            "early_stop": early,
            "seconds/rollout": t_roll,
            "seconds/score": t_score,
            "seconds/update": t_update,
            "seconds": time.time() - t0,
        }
        last_step = step == args.total_steps or time.time() - t0 > args.time_limit
        if step % args.eval_every == 0 or last_step or ref_kl > args.max_ref_kl:
            t_eval = time.time()
            record.update(do_eval(step))
            record["seconds/eval"] = time.time() - t_eval
        history.append(record)
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()
        bar.set_postfix(r=f"{rstats['reward/mixed']:.3f}", kl=f"{ref_kl:.2f}",
                        len=f"{record['length']:.0f}")
        if ref_kl > args.max_ref_kl:
            stop_reason = f"KL to reference {ref_kl:.1f} > --max-ref-kl {args.max_ref_kl}"
            break
        if time.time() - t0 > args.time_limit:
            stop_reason = "time_limit"
            break
    evals = [r for r in history if "eval/mixed" in r]
    summary = {
        "stop_reason": stop_reason, "steps": history[-1]["step"], "seconds": time.time() - t0,
        "eval_first": {k: v for k, v in evals[0].items() if k.startswith("eval/")},
        "eval_last": {k: v for k, v in evals[-1].items() if k.startswith("eval/")},
        "eval_last_step": evals[-1]["step"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log_file.close()
    samples_file.close()
    plot(out)
    if args.save:
        policy.save_pretrained(out / "policy")
        tok.save_pretrained(out / "policy")
    client.close()
    print(json.dumps(summary))
    return policy


def plot(out: Path) -> None:
    """Curves from log.jsonl into curves.png: rewards (train, held-out, per type), KL, length,
    losses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train = [r for r in rows if "reward/mixed" in r]
    evals = [r for r in rows if "eval/mixed" in r]

    def series(rs, key):
        pts = [(r["step"], r[key]) for r in rs if key in r]
        return [p[0] for p in pts], [p[1] for p in pts]

    types = sorted({k.split("/", 1)[1] for r in evals for k in r
                    if k.startswith("eval/") and k not in ("eval/mixed", "eval/length")})
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    ax = axes[0, 0]
    ax.plot(*series(train, "reward/mixed"), label="train (rollouts)", alpha=0.6)
    ax.plot(*series(evals, "eval/mixed"), "o-", label="held-out")
    ax.set_title("mixed reward per response")
    ax.legend()
    ax = axes[0, 1]
    for t in types:
        ax.plot(*series(evals, f"eval/{t}"), "o-", label=t)
    ax.set_title("held-out reward per feedback type (unweighted)")
    ax.legend()
    ax = axes[0, 2]
    ax.plot(*series(train, "length"), label="train", alpha=0.6)
    ax.plot(*series(evals, "eval/length"), "o-", label="held-out")
    ax.set_title("response length (tokens)")
    ax.legend()
    ax = axes[1, 0]
    ax.plot(*series(train, "kl_ref"))
    ax.set_title("KL(policy || reference) per response")
    ax = axes[1, 1]
    ax.plot(*series(train, "loss/policy"), label="policy")
    ax.plot(*series(train, "loss/value"), label="value")
    ax.set_title("losses")
    ax.legend()
    ax = axes[1, 2]
    ax.plot(*series(train, "approx_kl"), label="approx KL to rollout policy")
    ax.plot(*series(train, "clipfrac"), label="clip fraction")
    ax.set_title("PPO update size")
    ax.legend()
    for a in axes.flat:
        a.set_xlabel("PPO step")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main(parse_args(Args))
