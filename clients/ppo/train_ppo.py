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
scored on held-out questions; the curves are drawn into <out>/curves.png (clients/ppo/run_report.py).
The maths of steps 3-5 are the small functions under "PPO maths", each checked against
hand-computed values in tests/clients/test_ppo_maths.py.

    python clients/ppo/train_ppo.py --policy runs/sft --weights relevance=1,factuality=1,completeness=1
"""

from __future__ import annotations

import copy
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEFAULT_DATA, load_qa, load_tokenizer, parse_args, prompt_ids  # noqa: E402
from run_report import RunLog  # noqa: E402

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
    reference: bool = False
    """Send each question's gold answer (dev.json "answer") as the item's reference: the service
    then scores relevance and completeness with its reference-aware heads."""


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


# ---------------------------------------------------------------------------------- PPO maths
# (B, T) tensors over response tokens; `m` is 1 on real tokens, 0 on padding.


def masked_mean(x, m):
    return (x * m).sum() / m.sum().clamp(min=1)


def whiten(x, m, eps=1e-8):
    """Zero mean, unit variance over the real tokens of the batch; padding stays 0."""
    mean = masked_mean(x, m)
    var = masked_mean((x - mean) ** 2, m)
    return (x - mean) * torch.rsqrt(var + eps) * m


def kl_penalised(scores, logp, ref_logp, m, beta):
    """Per-token reward r_t = service reward - beta * (log pi(a_t|s_t) - log pi_ref(a_t|s_t)),
    and that per-token KL estimate."""
    kl = (logp - ref_logp) * m
    return scores - beta * kl, kl


def gae(rewards, values, m, gamma, lam):
    """Generalised advantage estimation (Schulman et al. 2016): A_t = sum_l (gamma lam)^l delta_{t+l},
    delta_t = r_t + gamma V_{t+1} - V_t (V past the end = 0). Returns (advantages, returns = A + V).
    Padding has r = V = 0 and its A is zeroed, so nothing flows back from it."""
    B, T = rewards.shape
    adv = torch.zeros_like(rewards)
    last = torch.zeros(B)
    for t in reversed(range(T)):
        next_v = values[:, t + 1] if t + 1 < T else torch.zeros(B)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        last = (delta + gamma * lam * last) * m[:, t]
        adv[:, t] = last
    return adv, adv + values


def policy_loss(new_logp, old_logp, adv, m, clip):
    """PPO's clipped surrogate, negated to be minimised: mean of max(-A r, -A clip(r, 1-eps, 1+eps))
    with r = pi/pi_old. Also returns the k3 estimate of KL(pi_old || pi) and the clipped share."""
    log_ratio = (new_logp - old_logp) * m
    ratio = log_ratio.exp()
    loss = masked_mean(torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)), m)
    with torch.no_grad():
        approx_kl = masked_mean((ratio - 1) - log_ratio, m).item()
        clipfrac = masked_mean(((ratio - 1).abs() > clip).float(), m).item()
    return loss, approx_kl, clipfrac


def value_loss(v, old_v, returns, m, clip):
    """Clipped value loss: 0.5 * mean of max((V - R)^2, (V_old + clip(V - V_old, +-eps) - R)^2)."""
    v_clip = old_v + (v - old_v).clamp(-clip, clip)
    return 0.5 * masked_mean(torch.max((v - returns) ** 2, (v_clip - returns) ** 2), m)


# ---------------------------------------------------------------------------------- rollouts


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


def score(client, tok, examples, resp, rmask, args, weights):
    """Dense rewards (B, T) from the service for the responses to `examples` (load_qa's dicts),
    plus per-type totals for the log."""
    items, offsets = [], []
    for i in range(resp.shape[0]):
        ids = resp[i, : int(rmask[i].sum())].tolist()
        text, offs = offsets_from_decode(tok, ids)
        ex = examples[i]
        items.append({"question": ex["question"], "passages": ex["passages"], "response": text,
                      "token_offsets": offs, **({"reference": ex["answer"]} if args.reference else {})})
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
    examples = held * args.eval_samples
    seq, _, n, rmask = rollout(policy, tok, [x["question"] for x in examples], args, seed=12345)
    _, stats, texts = score(client, tok, examples, seq[:, n:], rmask, args, weights)
    stats = {"eval/" + k.split("/", 1)[1]: v for k, v in stats.items()}
    stats["eval/length"] = float(rmask.sum(1).float().mean())
    return stats, texts


def setup(args: Args):
    """The client, the policy, its frozen reference, the critic and their optimisers."""
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
    return client, tok, policy, ref, critic, p_opt, v_opt


@torch.no_grad()
def advantages(policy, ref, critic, seq, mask, n, scores, rm, args):
    """Steps 3-4: old log-probs, values, KL-penalised rewards, GAE, whitened advantages."""
    logp = response_logprobs(policy, seq, mask, n, args.temperature)
    ref_logp = response_logprobs(ref, seq, mask, n, args.temperature)
    values = critic(seq, mask, positions(mask))[:, n - 1 : -1] * rm
    rewards, kl = kl_penalised(scores, logp, ref_logp, rm, args.kl_coef)
    adv, returns = gae(rewards, values, rm, args.gamma, args.lam)
    return logp, values, whiten(adv, rm), returns, kl


def ppo_epochs(policy, critic, p_opt, v_opt, seq, mask, n, rm, logp, values, adv, returns, args):
    """Step 5: clipped policy and value updates over minibatches; stops an epoch loop early when
    the approximate KL to the rollout policy passes --target-kl. Returns the minibatch stats
    (policy loss, value loss, approx KL, clip fraction), the epochs run and whether it stopped early."""
    mb_stats = []
    for epoch in range(args.ppo_epochs):
        perm = torch.randperm(args.batch_size)
        for i in range(0, args.batch_size, args.minibatch_size):
            idx = perm[i : i + args.minibatch_size]
            m = rm[idx]
            new_logp = response_logprobs(policy, seq[idx], mask[idx], n, args.temperature)
            pg_loss, approx_kl, clipfrac = policy_loss(new_logp, logp[idx], adv[idx], m, args.clip)
            v = critic(seq[idx], mask[idx], positions(mask[idx]))[:, n - 1 : -1]
            vf_loss = value_loss(v, values[idx], returns[idx], m, args.vf_clip)
            p_opt.zero_grad()
            v_opt.zero_grad()
            (pg_loss + args.vf_coef * vf_loss).backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            torch.nn.utils.clip_grad_norm_(critic.parameters(), 1.0)
            p_opt.step()
            v_opt.step()
            mb_stats.append((pg_loss.item(), vf_loss.item(), approx_kl, clipfrac))
        if mb_stats[-1][2] > args.target_kl:
            return mb_stats, epoch + 1, True
    return mb_stats, args.ppo_epochs, False


def step_record(step, rstats, kl, rm, mb_stats, epochs_run, early, times):
    """One line of log.jsonl."""
    k = len(mb_stats)
    return {
        "step": step, **rstats, "kl_ref": float(kl.sum(1).mean()), "length": float(rm.sum(1).mean()),
        "loss/policy": sum(s[0] for s in mb_stats) / k, "loss/value": sum(s[1] for s in mb_stats) / k,
        "approx_kl": sum(s[2] for s in mb_stats) / k, "clipfrac": sum(s[3] for s in mb_stats) / k,
        "ppo_epochs_run": epochs_run, "early_stop": early, **times,
    }


def main(args: Args):
    if args.mode not in ("fine-grained", "holistic"):
        raise SystemExit(f"--mode must be fine-grained or holistic, got {args.mode!r}")
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights = parse_weights(args.weights)
    client, tok, policy, ref, critic, p_opt, v_opt = setup(args)
    train, held = load_qa(args.data)
    held = held[: args.n_eval]
    log = RunLog(out, args, lambda: evaluate(policy, tok, client, held, args, weights))
    stop_reason = "total_steps"
    bar = tqdm(range(1, args.total_steps + 1), desc="ppo")
    for step in bar:
        # ---- 1. rollouts ------------------------------------------------------------------
        batch = random.sample(train, args.batch_size)
        qs = [x["question"] for x in batch]
        t = time.time()
        seq, mask, n, rmask = rollout(policy, tok, qs, args)
        times = {"seconds/rollout": time.time() - t}
        rm = rmask.float()
        # ---- 2. rewards from the service ------------------------------------------------
        t = time.time()
        try:
            scores, rstats, _ = score(client, tok, batch, seq[:, n:], rmask, args, weights)
        except FgrmError as exc:  # typed: a trainer decides; here we stop cleanly and log it
            stop_reason = f"service error: {exc}"
            break
        times["seconds/score"] = time.time() - t
        # ---- 3-4. KL-penalised per-token rewards, GAE, whitened advantages ----------------
        logp, values, adv, returns, kl = advantages(policy, ref, critic, seq, mask, n, scores, rm, args)
        # ---- 5. PPO epochs ------------------------------------------------------------------
        t = time.time()
        mb_stats, epochs_run, early = ppo_epochs(policy, critic, p_opt, v_opt, seq, mask, n, rm, logp, values,
                                                 adv, returns, args)
        times["seconds/update"] = time.time() - t
        record = step_record(step, rstats, kl, rm, mb_stats, epochs_run, early, times)
        stop_reason = log.step(record, step == args.total_steps) or stop_reason
        bar.set_postfix(r=f"{rstats['reward/mixed']:.3f}", kl=f"{record['kl_ref']:.2f}", len=f"{record['length']:.0f}")
        if stop_reason != "total_steps":
            break
    summary = log.close(stop_reason)
    if args.save:
        policy.save_pretrained(out / "policy")
        tok.save_pretrained(out / "policy")
    client.close()
    print(json.dumps(summary))
    return policy


if __name__ == "__main__":
    main(parse_args(Args))
