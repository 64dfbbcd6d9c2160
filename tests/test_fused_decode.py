"""The fused CPU decoder: its kernels against plain arithmetic, its logits against the model's own forward.

Every architecture it claims (Llama, Mistral, Qwen2 with projection biases, Qwen3 with per-head q/k norms)
is built tiny and random here, with a LoRA adapter whose B matrices are non-zero, so the merged weights
differ from the frozen ones and an unmerged-vs-merged mistake cannot hide.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from train.cpu_kernels import matmul_rows, shared_prefix_attention
from train.fused_decode import FusedDecoder, padded_rows, unsupported
from train.logprobs import batched_logprobs
from train.model import tiny_model_and_tokenizer
from train.rollout import LeanBackend, SamplingParams, make_backend


# ----------------------------------------------------------------------------- kernels

@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 70), st.integers(1, 90), st.integers(0, 2**31 - 1))
def test_matmul_rows_is_x_times_w_transposed(blocks, k, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((8 * blocks, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    out = np.full((8 * blocks, n), np.nan, dtype=np.float32)
    matmul_rows(x, w, out, False)
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    np.testing.assert_allclose(out, exact, rtol=1e-4, atol=1e-4)
    matmul_rows(x, w, out, True)  # accumulate: a residual connection
    np.testing.assert_allclose(out, 2 * exact, rtol=1e-4, atol=2e-4)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 9), st.sampled_from([(1, 8), (3, 16), (12, 64)]), st.integers(0, 2**31 - 1))
def test_norm_and_rotation_kernels_equal_the_model_modules(rows, shape, seed):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm, apply_rotary_pos_emb

    from train.cpu_kernels import rms_norm_rows, rotate_heads

    heads, head_dim = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, heads * head_dim, generator=gen) * 3
    norm = LlamaRMSNorm(heads * head_dim, eps=1e-5)
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.3, generator=gen)
        out = torch.empty_like(x)
        rms_norm_rows(x.numpy(), norm.weight.numpy(), 1e-5, out.numpy())
        assert torch.allclose(out, norm(x), atol=1e-5, rtol=1e-5)
    angles = torch.rand(rows, head_dim // 2, generator=gen) * 100
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    heads_x = x.reshape(rows, heads, head_dim)
    ref, _ = apply_rotary_pos_emb(heads_x, heads_x, cos, sin, unsqueeze_dim=1)
    mine = x.clone()
    rotate_heads(mine.numpy(), heads, head_dim, cos.numpy(), sin.numpy())
    assert torch.allclose(mine.reshape(rows, heads, head_dim), ref, atol=1e-4)


def _reference_attention(q, pk, pv, plen, ok, ov, own_len, row_prompt, scale):
    B, H, D = q.shape
    Hkv = pk.shape[1]
    g = H // Hkv
    out = np.zeros((B, H, D))
    for b in range(B):
        p = row_prompt[b]
        for h in range(H):
            kv = h // g
            keys = np.concatenate([pk[p, kv, :plen[p]], ok[b, kv, :own_len]]).astype(np.float64)
            vals = np.concatenate([pv[p, kv, :plen[p]], ov[b, kv, :own_len]]).astype(np.float64)
            s = keys @ q[b, h].astype(np.float64) * scale
            w = np.exp(s - s.max())
            out[b, h] = (w / w.sum()) @ vals
    return out


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=3), st.integers(1, 6), st.sampled_from([(4, 2), (6, 3), (2, 2)]),
       st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_shared_prefix_attention_is_softmax_attention(prompt_lens, rows_per_prompt, heads, own_len, seed):
    from train.fused_decode import _attention_tasks

    rng = np.random.default_rng(seed)
    H, Hkv = heads
    D, P, T = 8, max(prompt_lens), 6
    row_prompt = [i for i in range(len(prompt_lens)) for _ in range(rows_per_prompt)]
    B = len(row_prompt)
    q = rng.standard_normal((B, H, D)).astype(np.float32)
    pk, pv = (rng.standard_normal((len(prompt_lens), Hkv, P, D)).astype(np.float32) for _ in range(2))
    ok, ov = (rng.standard_normal((B, Hkv, T, D)).astype(np.float32) for _ in range(2))
    plen = np.array(prompt_lens, dtype=np.int64)
    out = np.full((B, H, D), np.nan, dtype=np.float32)
    shared_prefix_attention(q, pk, pv, plen, ok, ov, own_len, _attention_tasks(row_prompt, Hkv), 0.3, out)
    ref = _reference_attention(q, pk, pv, plen, ok, ov, own_len, row_prompt, 0.3)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_attention_tasks_cover_every_row_and_head_once():
    from train.fused_decode import _attention_tasks

    tasks = _attention_tasks([0, 0, 0, 0, 0, 1, 1, 0], 3)
    seen = sorted((r, int(h)) for p, h, a, b in tasks for r in range(a, b))
    assert seen == sorted((r, h) for r in range(8) for h in range(3))
    rows = [0, 0, 0, 0, 0, 1, 1, 0]
    assert all(rows[r] == p for p, _, a, b in tasks for r in range(a, b))


# ----------------------------------------------------------------------------- the decoder vs the model

def _tiny(kind: str, seed: int = 0):
    """A tiny random model of the named family (the tiny tokenizer's vocabulary) with a non-zero LoRA adapter."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    model, tok = tiny_model_and_tokenizer(seed)
    if kind != "llama":
        extra = {"qwen2": {"use_sliding_window": False}, "qwen3": {"use_sliding_window": False, "head_dim": 16},
                 "mistral": {"sliding_window": None}}[kind]
        config = AutoConfig.for_model(kind, vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=4096, tie_word_embeddings=True, **extra)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config).eval()
    policy = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
            elif "bias" in name:
                p.normal_(0, 0.1)  # Qwen2's projection biases start at zero
    return policy, tok


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2", "qwen3"])
def test_fused_logits_equal_the_model_forward(kind):
    policy, _ = _tiny(kind)
    assert unsupported(policy) is None
    dec = FusedDecoder(policy)
    assert dec.refresh() and not dec.refresh()  # built once, then kept while nothing changed
    prompts = [[5, 9, 33, 7, 81, 2, 40], [11, 3, 3, 60]]
    rows = [0, 0, 0, 1, 1]  # three samples of prompt 0, two of prompt 1
    B = padded_rows(len(rows))
    row_prompt = rows + [0] * (B - len(rows))
    first = dec.prefill(prompts)
    dec.start(row_prompt, 4)
    gen = torch.Generator().manual_seed(0)
    seqs = [list(prompts[p]) for p in row_prompt]
    logits = first[row_prompt]
    for t in range(4):
        # The model's own forward over each whole sequence gives the same next-token logits.
        for i in range(len(rows)):
            ref = policy(input_ids=torch.tensor([seqs[i]])).logits[0, -1]
            assert torch.allclose(logits[i], ref, atol=2e-4), (kind, t, i, (logits[i] - ref).abs().max())
        tok = torch.randint(0, 300, (B,), generator=gen)
        for i in range(B):
            seqs[i].append(int(tok[i]))
        pos = torch.tensor([len(s) - 1 for s in seqs])
        logits = dec.step(tok, pos, t)


def test_refresh_follows_every_weight_change_and_the_adapter_switch():
    policy, _ = _tiny("llama")
    dec = FusedDecoder(policy)
    dec.refresh()
    prompt = [[5, 9, 33, 7]]
    before = dec.prefill(prompt)
    lora_b = next(p for n, p in policy.named_parameters() if "lora_B" in n)
    with torch.no_grad():
        lora_b.add_(0.5)  # what an optimizer step does: an in-place update
    assert dec.refresh()
    after = dec.prefill(prompt)
    assert not torch.allclose(before, after)
    assert torch.allclose(after[0], policy(input_ids=torch.tensor(prompt)).logits[0, -1], atol=2e-4)
    with policy.disable_adapter():  # the reference model: the frozen weights alone
        assert dec.refresh()
        base = dec.prefill(prompt)
        assert torch.allclose(base[0], policy(input_ids=torch.tensor(prompt)).logits[0, -1], atol=2e-4)
    assert dec.refresh()  # back to the adapter's weights


def test_models_the_fused_decoder_cannot_run_say_why_and_fall_back():
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    model, tok = tiny_model_and_tokenizer(0)
    assert "bfloat16" in unsupported(model.to(torch.bfloat16))
    model, tok = tiny_model_and_tokenizer(0)
    dora = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", use_dora=True, task_type="CAUSAL_LM"))
    assert "DoRA" in unsupported(dora)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2)).eval()
    assert "gpt2" in unsupported(gpt2)
    # The lean backend then decodes with the transformers forward; asking for the fused path is an error.
    model, tok = tiny_model_and_tokenizer(0)
    assert LeanBackend(dora, tok).fused is False
    with pytest.raises(ValueError, match="fused CPU decoder cannot run this model.*DoRA"):
        LeanBackend(dora, tok, fused=True)


def test_fused_rollouts_record_the_trainer_logprobs_at_any_batch():
    policy, tok = _tiny("llama")
    backend = make_backend("lean", policy, tok)
    assert backend.fused
    prompts = ["def strategy(board):", "board = [[2, 4, 8, 16], [0, 0, 2, 2]]\nmove"]
    for n in (1, 3, 5):  # 2, 6 and 10 rows: padded to 8 and 16
        r = backend.generate(prompts, n, SamplingParams(max_new_tokens=9, temperature=0.8), seed=n)
        assert r.completion_ids.shape[0] == 2 * n
        lp = batched_logprobs(policy, r.input_ids, r.attention_mask, r.completion_ids.shape[1], 4, 0.8)
        assert torch.allclose(lp * r.completion_mask, r.logprobs, atol=1e-4)
        assert r.num_tokens > 0
