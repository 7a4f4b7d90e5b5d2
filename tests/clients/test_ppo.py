"""PPO loop smoke tests: a few steps with a tiny random policy; parameters must change.

`test_ppo_steps_against_fake_service` checks the mechanics in seconds with the stdlib stand-in;
`test_ppo_steps_against_real_service` (in test_real_service.py) does the same against `fgrm serve`.
"""

import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tests.clients import fake_service  # noqa: E402

PPO_DIR = Path(__file__).resolve().parents[2] / "clients" / "ppo"
sys.path.insert(0, str(PPO_DIR))


def tiny_policy(path: Path) -> Path:
    """A 1-layer, width-32 GPT-2 with random weights and the bundled MiniLM tokenizer."""
    from common import load_tokenizer
    from sft import default_tokenizer_path

    tok = load_tokenizer(default_tokenizer_path())
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1,
                                  n_head=2, bos_token_id=tok.bos_token_id,
                                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def run_ppo_steps(tmp_path, url, mode="fine-grained", steps=2, reference=False):
    import train_ppo

    policy_dir = tiny_policy(tmp_path / "policy")
    before = {k: v.clone() for k, v in
              transformers.AutoModelForCausalLM.from_pretrained(policy_dir).state_dict().items()}
    args = train_ppo.Args(
        policy=str(policy_dir), out=str(tmp_path / "run"), url=url, mode=mode, total_steps=steps,
        batch_size=4, minibatch_size=2, ppo_epochs=1, n_eval=4, eval_every=100,
        max_new_tokens=8, max_prompt_tokens=16, policy_lr=1e-3, save=False,
        weights="relevance=2" if mode == "fine-grained" else "", reference=reference,
    )
    after = train_ppo.main(args).state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    return changed, rows, tmp_path / "run"


def test_ppo_steps_against_fake_service(tmp_path):
    url, server = fake_service.start()
    try:
        changed, rows, out = run_ppo_steps(tmp_path, url)
    finally:
        server.shutdown()
    assert changed, "no policy parameter changed"
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert {"reward/mixed", "reward/relevance", "kl_ref", "length", "loss/policy",
            "loss/value"} <= set(rows[1])
    assert "eval/mixed" in rows[0] and "eval/mixed" in rows[-1]
    assert (out / "curves.png").stat().st_size > 0
    assert server.calls >= 4  # step-0 eval, 2 rollouts, final eval


def test_holistic_mode_runs(tmp_path):
    url, server = fake_service.start()
    try:
        changed, rows, _ = run_ppo_steps(tmp_path, url, mode="holistic", steps=1)
    finally:
        server.shutdown()
    assert changed and rows[-1]["step"] == 1


def test_with_reference_every_item_carries_its_questions_gold_answer(tmp_path):
    from common import load_qa

    answers = {x["question"]: x["answer"] for part in load_qa() for x in part}
    url, server = fake_service.start()
    try:
        run_ppo_steps(tmp_path / "with", url, steps=1, reference=True)
        with_ref = list(server.items)
        server.items.clear()
        run_ppo_steps(tmp_path / "without", url, steps=1)
    finally:
        server.shutdown()
    assert with_ref and all(it["reference"] == answers[it["question"]] and it["reference"] for it in with_ref)
    assert server.items and not any("reference" in it for it in server.items)
