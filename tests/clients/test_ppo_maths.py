"""The PPO maths of clients/ppo/train_ppo.py against values worked out by hand."""

import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "ppo"))
import train_ppo as ppo  # noqa: E402

T = torch.tensor


def test_kl_penalty_is_beta_times_the_log_ratio_on_real_tokens():
    # kl = logp - ref = [0.5, -1, (padding) 0]; r = score - 0.3 kl
    rewards, kl = ppo.kl_penalised(T([[0.0, 1.0, 7.0]]), T([[-1.0, -2.0, -3.0]]), T([[-1.5, -1.0, -9.0]]),
                                   T([[1.0, 1.0, 0.0]]), beta=0.3)
    assert kl[0].tolist() == pytest.approx([0.5, -1.0, 0.0])
    assert rewards[0].tolist() == pytest.approx([-0.15, 1.3, 7.0])


def test_gae_by_hand():
    # gamma 1, lambda 0.5, V = [0.5, 1.0]:
    #   t=1: delta = 2 + 0 - 1 = 1                  A_1 = 1
    #   t=0: delta = 1 + 1.0 - 0.5 = 1.5            A_0 = 1.5 + 0.5 * 1 = 2
    adv, ret = ppo.gae(T([[1.0, 2.0]]), T([[0.5, 1.0]]), T([[1.0, 1.0]]), gamma=1.0, lam=0.5)
    assert adv[0].tolist() == pytest.approx([2.0, 1.0])
    assert ret[0].tolist() == pytest.approx([2.5, 2.0])
    # gamma 0.9 discounts V_1: delta_0 = 1 + 0.9 * 1.0 - 0.5 = 1.4; delta_1 = 2 - 1 = 1; A_0 = 1.4 + 0.45
    adv, _ = ppo.gae(T([[1.0, 2.0]]), T([[0.5, 1.0]]), T([[1.0, 1.0]]), gamma=0.9, lam=0.5)
    assert adv[0].tolist() == pytest.approx([1.85, 1.0])


def test_gae_gives_padding_no_advantage_and_takes_none_from_it():
    # the second token is padding (r = V = 0 there): A_0 = 1 - 0.5 = 0.5, A_1 = 0
    adv, ret = ppo.gae(T([[1.0, 0.0]]), T([[0.5, 0.0]]), T([[1.0, 0.0]]), gamma=1.0, lam=0.95)
    assert adv[0].tolist() == pytest.approx([0.5, 0.0])
    assert ret[0].tolist() == pytest.approx([1.0, 0.0])


def test_whiten_uses_real_tokens_only():
    # mean 2, variance 1 over [1, 3]; the padded 100 is ignored and stays 0
    out = ppo.whiten(T([[1.0, 3.0, 100.0]]), T([[1.0, 1.0, 0.0]]))
    assert out[0].tolist() == pytest.approx([-1.0, 1.0, 0.0], abs=1e-6)
    out = ppo.whiten(T([[1.0, 2.0, 3.0]]), T([[1.0, 1.0, 1.0]]))
    s = math.sqrt(2 / 3)
    assert out[0].tolist() == pytest.approx([-1 / s, 0.0, 1 / s], abs=1e-6)


def test_clipped_policy_loss_by_hand():
    # ratio 1.5 on both tokens, eps 0.2:
    #   A = +1: max(-1.5, -1.2) = -1.2 (the clip stops the gain);  A = -1: max(1.5, 1.2) = 1.5
    new = T([[math.log(1.5), math.log(1.5)]])
    loss, approx_kl, clipfrac = ppo.policy_loss(new, T([[0.0, 0.0]]), T([[1.0, -1.0]]), T([[1.0, 1.0]]), clip=0.2)
    assert loss.item() == pytest.approx((-1.2 + 1.5) / 2)
    assert approx_kl == pytest.approx(0.5 - math.log(1.5))  # k3: (r - 1) - log r
    assert clipfrac == 1.0
    # inside the clip range the loss is the plain surrogate -A r, and nothing is clipped
    new = T([[math.log(1.1)]])
    loss, _, clipfrac = ppo.policy_loss(new, T([[0.0]]), T([[2.0]]), T([[1.0]]), clip=0.2)
    assert loss.item() == pytest.approx(-2.2) and clipfrac == 0.0


def test_clipped_value_loss_by_hand():
    # V = 2 from V_old = 1, R = 1.5: clipped V = 1.2; max(0.5^2, 0.3^2) = 0.25; halved
    assert ppo.value_loss(T([[2.0]]), T([[1.0]]), T([[1.5]]), T([[1.0]]), clip=0.2).item() == pytest.approx(0.125)
    # V = 2, V_old = 1, R = 3: the clipped value (1.2) is further from R: max(1, 3.24) = 3.24
    assert ppo.value_loss(T([[2.0]]), T([[1.0]]), T([[3.0]]), T([[1.0]]), clip=0.2).item() == pytest.approx(1.62)
    # padding does not count
    assert ppo.value_loss(T([[2.0, 9.0]]), T([[2.0, 0.0]]), T([[1.0, 0.0]]), T([[1.0, 0.0]]), clip=0.2).item() \
        == pytest.approx(0.5)
