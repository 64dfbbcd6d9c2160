"""train.logprobs: selective log-softmax, entropy, micro-batches, and the shared-prompt path against the full one."""
from __future__ import annotations

import math

import pytest
import torch

from train.compat import enable_activation_checkpointing
from train.logprobs import (
    batched_logprobs,
    micro_batches,
    selective_log_softmax,
    sequence_logprobs,
    shared_prompt,
    token_entropy,
)

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
    import train.logprobs as logprobs
    monkeypatch.setattr(logprobs, "_CHUNK_ELEMENTS", 50)  # force several chunks per row
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
    from train.policy import add_lora
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
    import train.logprobs as logprobs

    calls = []
    real = logprobs._prefix_forward
    monkeypatch.setattr(logprobs, "_prefix_forward", lambda *a: calls.append(1) or real(*a))
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
    import train.logprobs as logprobs

    model = _tiny_policy(lora=True, checkpointing=False)
    ids, mask, _ = _shared_batch(seed=3)
    one = ids[:, :-5], mask[:, :-5]  # completions of one token: only the prompt's last logits are used
    a, _ = sequence_logprobs(model, *one, 1, share_prompt=False)
    b, _ = sequence_logprobs(model, *one, 1)
    assert torch.allclose(a, b, atol=1e-6)
    other = ids.clone()
    other[1, 4] += 1
    calls = []
    real = logprobs._prefix_forward
    monkeypatch.setattr(logprobs, "_prefix_forward", lambda *a: calls.append(1) or real(*a))
    lp, _ = sequence_logprobs(model, other, mask, 6)
    lp_full, _ = sequence_logprobs(model, other, mask, 6, share_prompt=False)
    assert calls == [] and torch.equal(lp, lp_full)


def test_batched_logprobs_share_one_prompt_across_micro_batches(monkeypatch):
    import train.logprobs as logprobs

    model = _tiny_policy(lora=True, checkpointing=False).eval()
    ids, mask, C = _shared_batch(seed=4, B=5)
    calls = []
    real = logprobs._prefix_forward
    monkeypatch.setattr(logprobs, "_prefix_forward", lambda *a: calls.append(1) or real(*a))
    shared = batched_logprobs(model, ids, mask, C, micro_batch_size=2)
    full = batched_logprobs(model, ids, mask, C, micro_batch_size=2, share_prompt=False)
    assert calls == [1]
    cm = mask[:, -C:]
    assert torch.allclose(shared * cm, full * cm, atol=1e-6)


def test_right_padding_alone_needs_no_mask_and_changes_nothing(monkeypatch):
    """Rows with the same prompt length and right-padded completions run with no mask (sdpa's causal kernel with
    grouped-query heads); real positions get exactly what each row gets alone, unpadded."""
    import train.logprobs as logprobs

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
        monkeypatch.setattr(logprobs, "_mask_for_full_forward", lambda m: m)  # the explicit mask, as before
        masked, _ = sequence_logprobs(model, ids, mask, C, 0.9, share_prompt=False)
        cm = mask[:, -C:].bool()
        assert torch.allclose(lp[cm], masked[cm], atol=1e-6, rtol=0)
        monkeypatch.undo()
        left = torch.cat([torch.zeros(3, 2, dtype=torch.long), mask], 1)  # left padding still needs the mask
        sequence_logprobs(model, torch.cat([torch.zeros(3, 2, dtype=torch.long), ids], 1), left, C,
                          share_prompt=False)
        assert seen[-1] is not None




# ---------------------------------------------------------------- cutting a batch

def test_micro_batches_never_straddle_two_prompts_and_drop_all_padding_columns():
    # Prompt (3 columns, left-padded) | completion (3 columns, right-padded).
    p1, p2 = [0, 5, 6], [7, 8, 9]
    comp = [[11, 12, 0], [11, 0, 0], [11, 12, 13]]
    rows = [p1 + comp[0], p1 + comp[1], p1 + comp[1], p2 + comp[2], p2 + comp[0], p2 + comp[1], p2 + comp[1],
            p1 + comp[1], p1 + comp[1]]
    ids = torch.tensor(rows)
    mask = (ids != 0).long()
    spans = lambda size: [(b.start, b.stop) for b in micro_batches(ids, mask, 3, size)]  # noqa: E731
    assert spans(2) == [(0, 2), (2, 3), (3, 5), (5, 7), (7, 9)]
    assert spans(9) == [(0, 3), (3, 7), (7, 9)]
    assert [b.run for b in micro_batches(ids, mask, 3, 2)] == [0, 0, 1, 1, 2]
    first = micro_batches(ids, mask, 3, 2)[0]
    # The leading pad column of p1 and the trailing all-pad completion column are gone.
    assert first.input_ids.tolist() == [[5, 6, 11, 12], [5, 6, 11, 0]] and first.width == 2
    only_short = micro_batches(ids, mask, 3, 2)[4]
    assert only_short.width == 1 and only_short.completion_mask.tolist() == [[1], [1]]
    assert micro_batches(ids, mask, 3, 2)[2].input_ids.shape == (2, 6)  # p2 has no padding, comp[2] fills 3


@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_batched_logprobs_equal_row_by_row_whatever_the_micro_batch_size(size):
    model = _tiny_policy(lora=False, checkpointing=False).eval()
    ids, mask, C = _shared_batch(B=5)
    ids, mask = torch.cat([ids, ids[:2] + 1]), torch.cat([mask, mask[:2]])  # a second prompt after the first
    got = batched_logprobs(model, ids, mask, C, micro_batch_size=size)
    for i in range(ids.shape[0]):
        alone, _ = sequence_logprobs(model, ids[i:i + 1], mask[i:i + 1], C, share_prompt=False)
        assert torch.allclose(got[i] * mask[i, -C:], alone[0].detach() * mask[i, -C:], atol=1e-10)
