"""GRPO maths against hand-computed values: advantages, selective log-softmax, KL, clipping, loss variants."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from train.grpo import (
    batched_logprobs,
    enable_activation_checkpointing,
    group_advantages,
    k3_kl,
    policy_loss,
    selective_log_softmax,
    sequence_logprobs,
    shared_prompt,
    token_entropy,
)


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


# ---------------------------------------------------------------- log-probs

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_selective_log_softmax_equals_gather(dtype, temperature):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 5, 37, generator=g) * 4).to(dtype)
    ids = torch.randint(0, 37, (3, 5), generator=g)
    ref = torch.log_softmax(logits.double() / temperature, -1).gather(-1, ids[..., None]).squeeze(-1)
    got = selective_log_softmax(logits, ids, temperature)
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), ref, atol=1e-5)


def test_selective_log_softmax_gradient_matches_reference(monkeypatch):
    import train.grpo as grpo
    monkeypatch.setattr(grpo, "_CHUNK_ELEMENTS", 50)  # force several chunks per row
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 6, 23, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(0, 23, (2, 6), generator=g)
    w = torch.randn(2, 6, generator=g, dtype=torch.float64)
    (selective_log_softmax(logits, ids, 0.8).double() * w).sum().backward()
    got = logits.grad.clone()
    logits.grad = None
    (torch.log_softmax(logits / 0.8, -1).gather(-1, ids[..., None]).squeeze(-1) * w).sum().backward()
    assert torch.allclose(got, logits.grad, atol=1e-6)


def test_selective_log_softmax_shapes_and_entropy():
    logits = torch.zeros(4, 10)
    ids = torch.arange(4)
    assert torch.allclose(selective_log_softmax(logits, ids), torch.full((4,), -math.log(10)))
    assert torch.allclose(token_entropy(logits), torch.full((4,), math.log(10)))
    with pytest.raises(ValueError):
        selective_log_softmax(logits, torch.arange(3))


class _Lookup(torch.nn.Module):
    """A stand-in causal LM: logits depend on the current token and the position only."""

    def __init__(self, vocab=11):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, vocab)
        self.pos = torch.nn.Embedding(64, vocab)

    def forward(self, input_ids, attention_mask, position_ids, use_cache, logits_to_keep):
        from types import SimpleNamespace
        logits = self.emb(input_ids) + self.pos(position_ids)
        return SimpleNamespace(logits=logits[:, -logits_to_keep:])


def test_sequence_logprobs_ignore_left_padding_and_batch_in_micro_batches():
    torch.manual_seed(0)
    m = _Lookup()
    ids = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    lp, ent = sequence_logprobs(m, ids, mask, 2, with_entropy=True)
    assert lp.shape == (2, 2) and ent.shape == (2, 2)
    # Row 0 unpadded = [3,4,5,6]: its completion sits at positions 2..3.
    lp0, _ = sequence_logprobs(m, ids[:1, 2:], mask[:1, 2:], 2)
    assert torch.allclose(lp[0], lp0[0])
    assert torch.allclose(batched_logprobs(m, ids, mask, 2, micro_batch_size=1), lp.detach())


# ---------------------------------------------------------------- shared-prompt log-probs

def _shared_batch(seed=0, B=4, P=9, C=6, pad=3, vocab=300):
    """Rows [pad | one prompt | completions of different lengths], right-padded completions."""
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(3, vocab, (P,), generator=g)
    comp = torch.randint(3, vocab, (B, C), generator=g)
    lengths = [C, 1, C - 2, 3][:B] + [C] * max(0, B - 4)
    cmask = torch.tensor([[1] * n + [0] * (C - n) for n in lengths])
    comp = torch.where(cmask.bool(), comp, torch.zeros_like(comp))
    ids = torch.cat([torch.zeros(B, pad, dtype=torch.long), prompt.expand(B, P), comp], 1)
    mask = torch.cat([torch.zeros(B, pad, dtype=torch.long), torch.ones(B, P, dtype=torch.long), cmask], 1)
    return ids, mask, C


def test_shared_prompt_detects_one_prompt_and_rejects_the_rest():
    ids, mask, C = _shared_batch()
    got = shared_prompt(ids, mask, C)
    assert got is not None and torch.equal(got, ids[0, 3:3 + 9])
    other = ids.clone()
    other[2, 5] += 1  # one row's prompt differs
    assert shared_prompt(other, mask, C) is None
    shifted = mask.clone()
    shifted[1, 3] = 0  # same ids, different padding
    assert shared_prompt(ids, shifted, C) is None
    holed = mask.clone()
    holed[:, 6] = 0  # a hole inside the prompt: not left padding
    assert shared_prompt(ids, holed, C) is None
    gap = mask.clone()
    gap[0, -3] = 0  # a hole inside a completion: not right padding
    assert shared_prompt(ids, gap, C) is None
    assert shared_prompt(ids, mask, ids.shape[1]) is None  # no prompt part


def _tiny_policy(lora: bool, checkpointing: bool):
    from train.config import make_config
    from train.loop import add_lora
    from train.model import tiny_model_and_tokenizer

    model, _ = tiny_model_and_tokenizer(0)
    model = model.double()
    if lora:
        model = add_lora(model, make_config({"lora_rank": 4, "lora_alpha": 8,
                                             "gradient_checkpointing": checkpointing}))
        with torch.no_grad():  # a non-zero adapter, so its gradients flow through the prompt too
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.3, generator=torch.Generator().manual_seed(len(n)))
    elif checkpointing:
        enable_activation_checkpointing(model)
    model.train()
    return model


def _values_and_grads(model, ids, mask, C, share, weights):
    model.zero_grad(set_to_none=True)
    lp, ent = sequence_logprobs(model, ids, mask, C, 0.8, with_entropy=True, share_prompt=share)
    cm = mask[:, -C:].to(lp.dtype)
    (lp * weights * cm).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return lp.detach() * cm, ent * cm, grads


@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_shared_prefix_values_and_gradients_equal_the_full_path(monkeypatch, lora, checkpointing):
    import train.grpo as grpo

    calls = []
    real = grpo._prefix_forward
    monkeypatch.setattr(grpo, "_prefix_forward", lambda *a: calls.append(1) or real(*a))
    model = _tiny_policy(lora, checkpointing)
    ids, mask, C = _shared_batch(seed=1)
    w = torch.randn(ids.shape[0], C, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    full = _values_and_grads(model, ids, mask, C, False, w)
    assert calls == []
    shared = _values_and_grads(model, ids, mask, C, True, w)
    assert calls == [1]  # the prompt ran once for the whole micro-batch
    # float64 model; the log-softmax itself runs in float32, hence ~1e-7 relative agreement.
    assert torch.allclose(shared[0], full[0], atol=1e-6) and torch.allclose(shared[1], full[1], atol=1e-6)
    assert full[2].keys() == shared[2].keys() and len(full[2]) > 0
    if lora:
        assert all("lora_" in n for n in full[2])
    for n, g in full[2].items():
        assert torch.allclose(shared[2][n], g, atol=1e-6 * float(g.abs().max()), rtol=0), n
    # The prompt's own layers get gradient only through its keys/values and last logits: check it is there.
    assert any(g.abs().sum() > 0 for n, g in shared[2].items() if "layers.0." in n)


def test_shared_prefix_single_completion_token_and_fallback_for_different_prompts(monkeypatch):
    import train.grpo as grpo

    model = _tiny_policy(lora=True, checkpointing=False)
    ids, mask, _ = _shared_batch(seed=3)
    one = ids[:, :-5], mask[:, :-5]  # completions of one token: only the prompt's last logits are used
    a, _ = sequence_logprobs(model, *one, 1, share_prompt=False)
    b, _ = sequence_logprobs(model, *one, 1)
    assert torch.allclose(a, b, atol=1e-6)
    other = ids.clone()
    other[1, 4] += 1
    calls = []
    real = grpo._prefix_forward
    monkeypatch.setattr(grpo, "_prefix_forward", lambda *a: calls.append(1) or real(*a))
    lp, _ = sequence_logprobs(model, other, mask, 6)
    lp_full, _ = sequence_logprobs(model, other, mask, 6, share_prompt=False)
    assert calls == [] and torch.equal(lp, lp_full)


def test_batched_logprobs_share_one_prompt_across_micro_batches(monkeypatch):
    import train.grpo as grpo

    model = _tiny_policy(lora=True, checkpointing=False).eval()
    ids, mask, C = _shared_batch(seed=4, B=5)
    calls = []
    real = grpo._prefix_forward
    monkeypatch.setattr(grpo, "_prefix_forward", lambda *a: calls.append(1) or real(*a))
    shared = batched_logprobs(model, ids, mask, C, micro_batch_size=2)
    full = batched_logprobs(model, ids, mask, C, micro_batch_size=2, share_prompt=False)
    assert calls == [1]
    cm = mask[:, -C:]
    assert torch.allclose(shared * cm, full * cm, atol=1e-6)


def test_right_padding_alone_needs_no_mask_and_changes_nothing(monkeypatch):
    """Rows with the same prompt length and right-padded completions run with no mask (sdpa's causal kernel with
    grouped-query heads); real positions get exactly what each row gets alone, unpadded."""
    import train.grpo as grpo

    model = _tiny_policy(lora=False, checkpointing=False).eval()
    seen = []
    model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw.get("attention_mask")), with_kwargs=True)
    g = torch.Generator().manual_seed(5)
    P, C, lengths = 7, 6, [6, 2, 4]
    ids = torch.randint(3, 300, (3, P + C), generator=g)
    mask = torch.tensor([[1] * (P + n) + [0] * (C - n) for n in lengths])
    ids = ids * mask
    with torch.no_grad():
        lp, _ = sequence_logprobs(model, ids, mask, C, 0.9, share_prompt=False)
        assert seen[-1] is None
        for i, n in enumerate(lengths):
            alone, _ = sequence_logprobs(model, ids[i:i + 1, :P + n], mask[i:i + 1, :P + n], n, 0.9)
            assert torch.allclose(lp[i, :n], alone[0], atol=1e-6, rtol=0)  # float64 model, float32 log-softmax
        monkeypatch.setattr(grpo, "_mask_for_full_forward", lambda m: m)  # the explicit mask, as before
        masked, _ = sequence_logprobs(model, ids, mask, C, 0.9, share_prompt=False)
        cm = mask[:, -C:].bool()
        assert torch.allclose(lp[cm], masked[cm], atol=1e-6, rtol=0)
        monkeypatch.undo()
        left = torch.cat([torch.zeros(3, 2, dtype=torch.long), mask], 1)  # left padding still needs the mask
        sequence_logprobs(model, torch.cat([torch.zeros(3, 2, dtype=torch.long), ids], 1), left, C,
                          share_prompt=False)
        assert seen[-1] is not None


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
