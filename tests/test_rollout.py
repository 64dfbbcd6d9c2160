"""Rollout backends on the tiny local model: shapes, EOS cutting, truncation, log-probs, determinism."""
from __future__ import annotations

import pytest
import torch

from train.grpo import batched_logprobs
from train.model import tiny_model_and_tokenizer
from train.rollout import (
    HFBackend,
    LeanBackend,
    Rollout,
    SamplingParams,
    _finish,
    make_backend,
    sample_tokens,
)

PROMPTS = ["def strategy(board):", "board = [[2, 4, 8, 16], [0, 0, 2, 2]]\nmove"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_model_and_tokenizer(0)


def _check_consistent(r: Rollout, n_rows: int, max_new: int) -> None:
    assert r.completion_ids.shape == r.completion_mask.shape == r.logprobs.shape
    assert r.completion_ids.shape[0] == r.prompt_ids.shape[0] == n_rows == len(r.texts)
    assert r.completion_ids.shape[1] <= max_new
    assert torch.equal(r.lengths, r.completion_mask.sum(1).cpu())
    # The mask is a prefix of ones; padding has zero log-prob.
    for i in range(n_rows):
        L = int(r.lengths[i])
        assert r.completion_mask[i, :L].all() and not r.completion_mask[i, L:].any()
        assert (r.logprobs[i, L:] == 0).all()
    assert (r.lengths[r.truncated] == max_new).all()


@pytest.mark.parametrize("backend_cls", [HFBackend, LeanBackend])
def test_backend_shapes_and_logprobs_match_the_trainer(tiny, backend_cls):
    model, tok = tiny
    backend = backend_cls(model, tok)
    sp = SamplingParams(max_new_tokens=10, temperature=0.9)
    r = backend.generate(PROMPTS, 3, sp, seed=0)
    _check_consistent(r, 6, 10)
    # Rows are grouped by prompt: the first 3 rows share prompt 0.
    assert torch.equal(r.prompt_ids[0], r.prompt_ids[2]) and not torch.equal(r.prompt_ids[0], r.prompt_ids[3])
    lp = batched_logprobs(model, r.input_ids, r.attention_mask, r.completion_ids.shape[1], 4, 0.9)
    assert torch.allclose(lp * r.completion_mask, r.logprobs, atol=1e-4)
    assert r.num_tokens == int(r.lengths.sum()) > 0


@pytest.mark.parametrize("backend_cls", [HFBackend, LeanBackend])
def test_eos_cuts_completions_and_clears_truncation(tiny, backend_cls):
    model, tok = tiny
    backend = backend_cls(model, tok)
    # Many "end" tokens so that most completions stop early.
    backend.eos = sorted(set(backend.eos) | set(range(0, len(tok), 3)))
    r = backend.generate(PROMPTS, 4, SamplingParams(max_new_tokens=12), seed=3)
    _check_consistent(r, 8, 12)
    ended = ~r.truncated
    assert ended.any()
    for i in torch.nonzero(ended).flatten().tolist():
        last = int(r.completion_ids[i, int(r.lengths[i]) - 1])
        assert last in backend.eos
        assert r.texts[i] == tok.decode(r.completion_ids[i, : int(r.lengths[i])].tolist(), skip_special_tokens=True)


def test_lean_backend_is_deterministic_and_pads_the_batch_to_a_bucket(tiny):
    model, tok = tiny
    backend = LeanBackend(model, tok, batch_buckets=(4, 8), prompt_bucket=16)
    sp = SamplingParams(max_new_tokens=8)
    a = backend.generate(PROMPTS[:1], 3, sp, seed=5)  # 3 rows -> bucket 4
    b = backend.generate(PROMPTS[:1], 3, sp, seed=5)  # the cache is reused and reset
    c = backend.generate(PROMPTS[:1], 3, sp, seed=6)
    assert a.completion_ids.shape[0] == 3
    assert torch.equal(a.completion_ids, b.completion_ids) and torch.equal(a.logprobs, b.logprobs)
    assert not torch.equal(a.completion_ids, c.completion_ids)
    assert len(backend._caches) == 1


@pytest.mark.parametrize("prompts,n", [(PROMPTS, 3), (PROMPTS[:1], 4), ([PROMPTS[0], PROMPTS[1], PROMPTS[0]], 2)])
def test_lean_shared_prefill_samples_what_the_batched_prefill_samples(tiny, prompts, n):
    model, tok = tiny
    sp = SamplingParams(max_new_tokens=12, temperature=0.9)
    a = LeanBackend(model, tok, share_prompt=False).generate(prompts, n, sp, seed=1)
    shared = LeanBackend(model, tok)
    b = shared.generate(prompts, n, sp, seed=1)
    # Same sampling stream, same logits up to float rounding: the same tokens.
    assert torch.equal(a.completion_ids, b.completion_ids) and torch.equal(a.prompt_ids, b.prompt_ids)
    assert torch.allclose(a.logprobs, b.logprobs, atol=1e-5)
    c = shared.generate(prompts, n, sp, seed=1)  # the reused static cache is reset and refilled
    assert torch.equal(b.completion_ids, c.completion_ids) and torch.equal(b.logprobs, c.logprobs)


def test_hf_shared_prefill_samples_what_plain_generate_samples(tiny):
    model, tok = tiny
    sp = SamplingParams(max_new_tokens=10, temperature=0.9)
    a = HFBackend(model, tok, share_prompt=False).generate(PROMPTS[:1], 4, sp, seed=2)
    b = HFBackend(model, tok).generate(PROMPTS[:1], 4, sp, seed=2)
    assert torch.equal(a.completion_ids, b.completion_ids)
    assert torch.allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_lean_backend_with_eager_attention(tiny):
    model, tok = tiny_model_and_tokenizer(1)
    model.set_attn_implementation("eager")
    r = LeanBackend(model, tok).generate(PROMPTS, 2, SamplingParams(max_new_tokens=6), seed=0)
    lp = batched_logprobs(model, r.input_ids, r.attention_mask, r.completion_ids.shape[1], 4)
    assert torch.allclose(lp * r.completion_mask, r.logprobs, atol=1e-4)


def test_sample_tokens_follows_the_distribution_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(20000, 4)
    g = torch.Generator().manual_seed(0)
    tok, lp = sample_tokens(logits, 1.0, 1.0, g)
    freq = torch.bincount(tok, minlength=4).float() / 20000
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.015)
    assert torch.allclose(lp, torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))[tok])
    # top_p = 0.6 keeps {0, 1}: the top token alone has 0.5 < 0.6.
    tok, lp = sample_tokens(logits, 1.0, 0.6, g)
    assert set(tok.tolist()) == {0, 1}
    # The log-prob stays the unfiltered policy's.
    assert torch.allclose(lp, torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))[tok])
    tok, _ = sample_tokens(logits[:100], 1.0, 0.3, g)
    assert (tok == 0).all()


def test_finish_cuts_after_first_eos(tiny):
    _, tok = tiny
    eos, pad = tok.eos_token_id, tok.pad_token_id
    tokens = torch.tensor([[5, eos, 7, eos], [5, 6, 7, 8], [eos, 9, 9, 9]])
    lps = -torch.ones(3, 4)
    ids, mask, lp, texts, lengths, truncated = _finish(tokens, lps, [eos], pad, tok)
    assert lengths.tolist() == [2, 4, 1]
    assert truncated.tolist() == [False, True, False]
    assert ids[0].tolist() == [5, eos, pad, pad] and ids[2, 1:].eq(pad).all()
    assert lp[0].tolist() == [-1, -1, 0, 0]
    assert texts[2] == ""


def test_make_backend_falls_back_with_a_message(tiny, capsys):
    model, tok = tiny
    assert make_backend("auto", model, tok).name == "lean"
    assert make_backend("hf", model, tok).name == "hf"
    b = make_backend("vllm", model, tok)
    assert b.name == "lean"
    assert "vLLM" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown rollout backend"):
        make_backend("tgi", model, tok)
