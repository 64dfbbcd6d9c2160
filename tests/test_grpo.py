"""The GRPO objective against hand-computed values: advantages, KL, clipping, loss variants."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from train.grpo import LossOutput, group_advantages, k3_kl, policy_loss


# ---------------------------------------------------------------- advantages

def test_group_advantages_std_scaled_by_hand():
    r = torch.tensor([1.0, 0.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    adv, flat = group_advantages(r, 4, "group", eps=0.0)
    s = math.sqrt(1.0 / 3.0)  # unbiased std of [1, 0, 1, 0]
    assert torch.allclose(adv[:4], torch.tensor([0.5, -0.5, 0.5, -0.5]) / s, atol=1e-6)
    assert torch.equal(adv[4:], torch.zeros(4))
    assert flat == 1


def test_group_advantages_dr_grpo_and_batch_scale():
    r = torch.tensor([3.0, 1.0, 0.0, 4.0])
    adv, flat = group_advantages(r, 2, "none")
    assert torch.allclose(adv, torch.tensor([1.0, -1.0, -2.0, 2.0]))
    assert flat == 0
    adv_b, _ = group_advantages(r, 2, "batch", eps=0.0)
    assert torch.allclose(adv_b, torch.tensor([1.0, -1.0, -2.0, 2.0]) / r.std(), atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["group", "batch", "none"]), st.floats(-3, 3, allow_nan=False), st.integers(2, 6))
def test_equal_rewards_give_exactly_zero_advantage(scale, value, g):
    adv, flat = group_advantages(torch.full((3 * g,), value), g, scale)
    assert torch.equal(adv, torch.zeros(3 * g)) and flat == 3


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=8, max_size=8))
def test_group_advantages_sum_to_zero_per_group(values):
    adv, _ = group_advantages(torch.tensor(values), 4, "group")
    assert torch.allclose(adv.view(2, 4).sum(1), torch.zeros(2), atol=1e-4)


# ---------------------------------------------------------------- KL and the policy loss

def test_k3_kl_zero_for_identical_and_positive_otherwise():
    a = torch.tensor([-1.0, -2.0, -0.5])
    assert torch.equal(k3_kl(a, a), torch.zeros(3))
    b = torch.tensor([-1.5, -1.0, -0.1])
    d = b - a
    assert torch.allclose(k3_kl(a, b), torch.exp(d) - d - 1)
    assert (k3_kl(a, b) > 0).all()


VARIANTS = ["grpo", "dr_grpo", "dapo", "gspo"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_identical_policies_ratio_one_and_kl_zero(variant):
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, -9.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv = torch.tensor([1.0, -1.0])
    out = policy_loss(logp, logp.detach(), adv, mask, variant=variant, beta=0.1, ref_logp=logp.detach())
    assert out.ratio_sum == pytest.approx(5.0)
    assert out.kl_sum == 0.0 and out.clip_low == 0 and out.clip_high == 0
    # ratio 1: the loss is -A averaged with the variant's weights.
    expected = {"grpo": 0.0, "gspo": 0.0, "dr_grpo": -(3 - 2) / (2 * 3), "dapo": -(3 - 2) / 5}[variant]
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_equal_rewards_give_zero_policy_gradient(variant):
    rewards = torch.full((4,), 0.7)
    adv, _ = group_advantages(rewards, 4)
    logp = torch.randn(4, 5, requires_grad=True)
    old = (logp + 0.3 * torch.randn(4, 5)).detach()
    out = policy_loss(logp, old, adv, torch.ones(4, 5), variant=variant)
    out.loss.backward()
    assert torch.equal(logp.grad, torch.zeros(4, 5))


def test_clipping_active_exactly_outside_the_band():
    eps_lo, eps_hi = 0.2, 0.28
    ratios = torch.tensor([0.7, 0.79, 0.81, 1.0, 1.27, 1.29, 1.5])
    old = torch.zeros(2, 7)
    for a in (1.0, -1.0):
        logp = torch.log(ratios).expand(2, 7).clone().requires_grad_(True)
        out = policy_loss(logp, old, torch.tensor([a, a]), torch.ones(2, 7), variant="dapo",
                          eps_low=eps_lo, eps_high=eps_hi)
        out.loss.backward()
        g = logp.grad[0]
        if a > 0:  # clipped (no gradient) only above 1 + eps_high
            active = ratios > 1 + eps_hi
            assert out.clip_high == 2 * active.sum() and out.clip_low == 0
        else:  # clipped only below 1 - eps_low
            active = ratios < 1 - eps_lo
            assert out.clip_low == 2 * active.sum() and out.clip_high == 0
        assert torch.equal(g == 0, active)
        # Unclipped tokens: d(-rho * A)/d logp = -A * rho, over the batch's 14 tokens.
        assert torch.allclose(g[~active], -a * ratios[~active] / 14, atol=1e-6)


def _hand_losses(logp, old, adv, mask, max_new):
    """Each variant's loss written out with Python loops."""
    B, T = len(logp), len(logp[0])
    per = [[0.0] * T for _ in range(B)]
    for i in range(B):
        for t in range(T):
            rho = math.exp(logp[i][t] - old[i][t])
            per[i][t] = -min(rho * adv[i], min(max(rho, 0.8), 1.2) * adv[i])
    lens = [sum(mask[i]) for i in range(B)]
    grpo = sum(sum(per[i][t] * mask[i][t] for t in range(T)) / lens[i] for i in range(B)) / B
    tot = sum(per[i][t] * mask[i][t] for i in range(B) for t in range(T))
    dr = tot / (B * max_new)
    dapo = tot / sum(lens)
    gs = 0.0
    for i in range(B):
        s = math.exp(sum((logp[i][t] - old[i][t]) * mask[i][t] for t in range(T)) / lens[i])
        gs += -min(s * adv[i], min(max(s, 0.8), 1.2) * adv[i])
    return {"grpo": grpo, "dr_grpo": dr, "dapo": dapo, "gspo": gs / B}


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_normalisation_matches_hand_computation(variant):
    logp = [[-1.0, -0.5, -2.0, -0.1], [-0.2, -0.4, -3.0, -1.0], [-1.1, -0.9, -0.3, -0.6]]
    old = [[-1.1, -0.2, -2.0, -0.3], [-0.1, -0.9, -2.5, -1.0], [-1.0, -1.0, -0.6, -0.6]]
    mask = [[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    adv = [0.9, -1.3, 0.4]
    want = _hand_losses(logp, old, adv, mask, max_new=6)[variant]
    out = policy_loss(torch.tensor(logp), torch.tensor(old), torch.tensor(adv), torch.tensor(mask),
                      variant=variant, max_new_tokens=6)
    assert out.loss.item() == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_micro_batches_sum_to_the_full_batch_loss(variant):
    g = torch.Generator().manual_seed(3)
    logp = torch.randn(6, 5, generator=g)
    old = logp + 0.2 * torch.randn(6, 5, generator=g)
    ref = logp + 0.2 * torch.randn(6, 5, generator=g)
    mask = (torch.rand(6, 5, generator=g) > 0.3).float()
    mask[:, 0] = 1
    adv = torch.randn(6, generator=g)
    kw = dict(variant=variant, beta=0.05, max_new_tokens=5, eps_high=0.28)
    full = policy_loss(logp, old, adv, mask, ref_logp=ref, **kw)
    parts = [policy_loss(logp[i:i + 2], old[i:i + 2], adv[i:i + 2], mask[i:i + 2], ref_logp=ref[i:i + 2],
                         total_sequences=6, total_tokens=float(mask.sum()), **kw) for i in (0, 2, 4)]
    assert sum(p.loss.item() for p in parts) == pytest.approx(full.loss.item(), abs=1e-6)
    assert sum(p.kl_sum for p in parts) == pytest.approx(full.kl_sum, abs=1e-5)


def test_kl_term_adds_beta_times_k3():
    logp = torch.tensor([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -1.0]])
    base = policy_loss(logp, logp, torch.tensor([0.0]), torch.ones(1, 2))
    with_kl = policy_loss(logp, logp, torch.tensor([0.0]), torch.ones(1, 2), beta=0.5, ref_logp=ref)
    assert with_kl.loss.item() - base.loss.item() == pytest.approx(0.5 * k3_kl(logp, ref).mean().item())
    with pytest.raises(ValueError):
        policy_loss(logp, logp, torch.tensor([0.0]), torch.ones(1, 2), beta=0.5)
    with pytest.raises(ValueError):
        policy_loss(logp, logp, torch.tensor([0.0]), torch.ones(1, 2), variant="ppo")


def test_loss_outputs_add_up_to_the_batch():
    a = LossOutput(torch.tensor(0.5, requires_grad=True), 3.0, 0.1, 1.0, 0.0, 2.9)
    b = LossOutput(torch.tensor(-0.25), 2.0, 0.2, 0.0, 1.0, 2.1)
    total = LossOutput.total([a, b])
    assert float(total.loss) == 0.25 and not total.loss.requires_grad
    assert (total.tokens, total.clip_low, total.clip_high, total.ratio_sum) == (5.0, 1.0, 1.0, 5.0)
    assert total.kl_sum == pytest.approx(0.3)
    with pytest.raises(ValueError, match="no micro-batch"):
        LossOutput.total([])

