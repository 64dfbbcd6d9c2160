"""Rollout backends on the tiny local model: shapes, EOS cutting, truncation, log-probs, determinism."""
from __future__ import annotations

import pytest
import torch

from train.logprobs import batched_logprobs
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
    backend = LeanBackend(model, tok, batch_buckets=(4, 8), prompt_bucket=16, fused=False)
    sp = SamplingParams(max_new_tokens=8)
    a = backend.generate(PROMPTS[:1], 3, sp, seed=5)  # 3 rows -> bucket 4
    b = backend.generate(PROMPTS[:1], 3, sp, seed=5)  # the cache is reused and reset
    c = backend.generate(PROMPTS[:1], 3, sp, seed=6)
    assert a.completion_ids.shape[0] == 3
    assert torch.equal(a.completion_ids, b.completion_ids) and torch.equal(a.logprobs, b.logprobs)
    assert not torch.equal(a.completion_ids, c.completion_ids)
    assert backend._cache is not None and backend._cache_shape == (4, 16 + 8)


@pytest.mark.parametrize("prompts,n", [(PROMPTS, 3), (PROMPTS[:1], 4), ([PROMPTS[0], PROMPTS[1], PROMPTS[0]], 2)])
def test_lean_shared_prefill_samples_what_the_batched_prefill_samples(tiny, prompts, n):
    model, tok = tiny
    sp = SamplingParams(max_new_tokens=12, temperature=0.9)
    a = LeanBackend(model, tok, share_prompt=False, fused=False).generate(prompts, n, sp, seed=1)
    shared = LeanBackend(model, tok, fused=False)
    b = shared.generate(prompts, n, sp, seed=1)
    # Same sampling stream, same logits up to float rounding: the same tokens.
    assert torch.equal(a.completion_ids, b.completion_ids) and torch.equal(a.prompt_ids, b.prompt_ids)
    assert torch.allclose(a.logprobs, b.logprobs, atol=1e-5)
    c = shared.generate(prompts, n, sp, seed=1)  # the reused static cache is reset and refilled
    assert torch.equal(b.completion_ids, c.completion_ids) and torch.equal(b.logprobs, c.logprobs)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("prompts,n", [(PROMPTS, 3), ([PROMPTS[0]] * 4, 2)])
def test_lean_share_of_a_batch_samples_what_the_whole_batch_samples(tiny, prompts, n, fused):
    # A rank samples its prompts' rows with stream=(first row, batch rows): the same tokens as one call.
    model, tok = tiny
    sp = SamplingParams(max_new_tokens=10, temperature=0.9)
    backend = LeanBackend(model, tok, fused=fused)
    assert backend.fused == fused
    whole = backend.generate(prompts, n, sp, seed=3)
    half, rows = len(prompts) // 2, len(prompts) * n
    parts = [backend.generate(prompts[:half], n, sp, seed=3, stream=(0, rows)),
             backend.generate(prompts[half:], n, sp, seed=3, stream=(half * n, rows))]
    assert [t for p in parts for t in p.texts] == whole.texts
    assert torch.allclose(torch.cat([p.logprobs.sum(1) for p in parts]), whole.logprobs.sum(1), atol=1e-4)
    # Without the stream both halves would start the seed's stream at their own first row.
    alone = backend.generate(prompts[half:], n, sp, seed=3)
    assert alone.texts != whole.texts[half * n:]


def test_hf_shared_prefill_samples_what_plain_generate_samples(tiny):
    model, tok = tiny
    sp = SamplingParams(max_new_tokens=10, temperature=0.9)
    a = HFBackend(model, tok, share_prompt=False).generate(PROMPTS[:1], 4, sp, seed=2)
    b = HFBackend(model, tok).generate(PROMPTS[:1], 4, sp, seed=2)
    assert torch.equal(a.completion_ids, b.completion_ids)
    assert torch.allclose(a.logprobs, b.logprobs, atol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_lean_backend_with_eager_attention(tiny, fused):
    model, tok = tiny_model_and_tokenizer(1)
    model.set_attn_implementation("eager")
    r = LeanBackend(model, tok, fused=fused).generate(PROMPTS, 2, SamplingParams(max_new_tokens=6), seed=0)
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
    done = _finish(tokens, lps, [eos], pad, tok)
    ids, mask, lp, texts, lengths, truncated = (done.ids, done.mask, done.logprobs, done.texts, done.lengths,
                                                done.truncated)
    assert done.ends == ["eos", "length", "eos"]
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


# ---------------------------------------------------------------- CPU stand-ins for the GPU code paths

def _policy(seed=0, rank=4):
    """The tiny model wrapped in a non-zero LoRA adapter (what the compiled step runs in training)."""
    from train.config import make_config
    from train.policy import add_lora

    model, tok = tiny_model_and_tokenizer(seed)
    policy = add_lora(model, make_config({"lora_rank": rank, "lora_alpha": 2 * rank,
                                          "gradient_checkpointing": False}))
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2, generator=torch.Generator().manual_seed(len(n)))
    return policy.eval(), tok


@pytest.fixture
def fresh_dynamo():
    """Compiled code is cached per code object across instances: start and end each compile test clean."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class _CountingBackend:
    """A torch.compile backend: aot_eager (no C compiler needed), counting graphs and recording their sdpa calls."""

    def __init__(self):
        self.graphs = 0
        self.sdpa_heads: list[tuple[int, int]] = []  # (query heads, key heads) of each sdpa call in a graph

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        for node in gm.graph.nodes:
            if node.op == "call_function" and "scaled_dot_product_attention" in str(node.target):
                q, k = (a.meta["example_value"] for a in node.args[:2])
                self.sdpa_heads.append((q.shape[1], k.shape[1]))
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)


def test_compiled_decode_matches_eager_and_never_recompiles(fresh_dynamo, capfd):
    policy, tok = _policy()
    sp = SamplingParams(max_new_tokens=10, temperature=0.9)
    eager = LeanBackend(policy, tok, compile=False, pack_gqa=False, fused=False)  # transformers' own attention path
    counting = _CountingBackend()
    comp = LeanBackend(policy, tok, compile=True, compile_backend=counting)
    a = eager.generate(PROMPTS[:1], 4, sp, seed=7)
    b = comp.generate(PROMPTS[:1], 4, sp, seed=7)
    assert counting.graphs == 1  # one graph: no graph break in peft's LoRA layers
    # Grouped-query heads packed in the compiled graph: sdpa sees the 2 KV heads, never 4 copies of them.
    assert counting.sdpa_heads and all(h == (2, 2) for h in counting.sdpa_heads)
    assert torch.equal(a.completion_ids, b.completion_ids)
    assert torch.allclose(a.logprobs, b.logprobs, atol=1e-5)  # measured: equal to the last bit

    # An optimizer step on the LoRA weights (in place, as AdamW does): the same graph, the new weights.
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=0.05)
    policy.train()
    loss = policy(input_ids=b.input_ids, attention_mask=b.attention_mask).logits.float().logsumexp(-1).mean()
    loss.backward()
    opt.step()
    policy.eval()
    a2 = eager.generate(PROMPTS[:1], 4, sp, seed=7)
    b2 = comp.generate(PROMPTS[:1], 4, sp, seed=7)
    assert counting.graphs == 1  # no recompile
    assert not torch.allclose(a2.logprobs, a.logprobs)  # the weights did change what is sampled
    assert torch.equal(a2.completion_ids, b2.completion_ids) and torch.allclose(a2.logprobs, b2.logprobs, atol=1e-5)

    # A smaller rollout runs in the same cache at the same shape: still no recompile, still the same samples.
    c = comp.generate(PROMPTS[:1], 2, SamplingParams(max_new_tokens=6, temperature=0.9), seed=3)
    c_ref = LeanBackend(policy, tok, compile=False, fused=False).generate(PROMPTS[:1], 2,
                                                             SamplingParams(max_new_tokens=6, temperature=0.9), seed=3)
    assert counting.graphs == 1 and comp._cache_shape == (4, 64 + 10)
    assert torch.equal(c.completion_ids, c_ref.completion_ids) and torch.allclose(c.logprobs, c_ref.logprobs, atol=1e-5)

    # A larger one grows the cache, which needs a new graph: past dynamo's recompile limit (1 here), one line
    # (dynamo's own several-line warning is held back) and eager decoding.
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    dynamo_log = logging.getLogger("torch._dynamo.convert_frame")
    dynamo_log.addHandler(handler)
    torch._dynamo.config.recompile_limit, old = 1, torch._dynamo.config.recompile_limit
    try:
        d = comp.generate(PROMPTS, 4, sp, seed=9)
    finally:
        torch._dynamo.config.recompile_limit = old
        dynamo_log.removeHandler(handler)
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "decoding eagerly" in err and "recompile" in err.lower(), err
    assert not [r for r in records if r.levelno >= logging.WARNING]
    assert comp._compiled is None and comp._cache_shape == (8, 74)
    d_ref = LeanBackend(policy, tok, compile=False, fused=False).generate(PROMPTS, 4, sp, seed=9)
    assert torch.equal(d.completion_ids, d_ref.completion_ids) and torch.allclose(d.logprobs, d_ref.logprobs, atol=1e-5)
    comp.close()
    assert comp._cache is None


def test_a_failing_compile_falls_back_to_eager_with_one_line(fresh_dynamo, capfd):
    policy, tok = _policy()

    def broken(gm, example_inputs):
        raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable.")

    sp = SamplingParams(max_new_tokens=8)
    r = LeanBackend(policy, tok, compile=True, compile_backend=broken).generate(PROMPTS, 2, sp, seed=1)
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "C compiler" in err and "decoding eagerly" in err, err
    ref = LeanBackend(policy, tok, compile=False, fused=False).generate(PROMPTS, 2, sp, seed=1)
    assert torch.equal(r.completion_ids, ref.completion_ids) and torch.allclose(r.logprobs, ref.logprobs)
    # An unknown backend name fails at construction: the same one line, an eager backend.
    b = LeanBackend(policy, tok, compile=True, compile_backend="no-such-backend")
    assert b._compiled is None and "decoding eagerly" in capfd.readouterr().err


def test_make_backend_compiles_on_cpu_only_when_a_backend_is_named(tiny):
    model, tok = tiny
    assert make_backend("lean", model, tok).compile is False  # CPU, default: eager
    assert make_backend("lean", model, tok, compile=False, compile_backend="aot_eager").compile is False
    named = make_backend("lean", model, tok, compile_backend="aot_eager")
    assert named.compile is True and named._cudagraphs is False  # CUDA graphs need CUDA tensors


def test_one_static_cache_grows_to_the_largest_shape_and_close_frees_it(tiny):
    model, tok = tiny
    backend = LeanBackend(model, tok, batch_buckets=(2, 4, 8), prompt_bucket=16, fused=False)
    shapes = []
    for prompts, n, new in [(PROMPTS[:1], 2, 4), (PROMPTS, 3, 4), (PROMPTS[:1], 1, 24), (PROMPTS[:1], 2, 4)]:
        r = backend.generate(prompts, n, SamplingParams(max_new_tokens=new), seed=0)
        assert r.completion_ids.shape[0] == len(prompts) * n
        shapes.append(backend._cache_shape)
    # One cache at a time, grown only when a rollout does not fit: batch 8 for 6 rows and the second prompt's
    # 32-token bucket + 4, then 16 + 24 slots; the last rollout fits.
    assert shapes == [(2, 20), (8, 36), (8, 40), (8, 40)]
    backend.close()
    assert backend._cache is None and backend._cache_shape == (0, 0)
    backend.generate(PROMPTS[:1], 2, SamplingParams(max_new_tokens=4), seed=0)  # usable again after close
    backend.close()
    reserved = LeanBackend(model, tok, batch_buckets=(2, 4, 8), prompt_bucket=16, fused=False)
    reserved.reserve(rows=6, prompt_tokens=20, new_tokens=12)
    reserved.generate(PROMPTS[:1], 2, SamplingParams(max_new_tokens=4), seed=0)
    assert reserved._cache_shape == (8, 32 + 12)  # the run's largest shape from the first rollout on


@pytest.mark.parametrize("share", [True, False])
def test_a_larger_cache_samples_what_a_fitted_one_samples(tiny, share):
    model, tok = tiny
    sp = SamplingParams(max_new_tokens=10, temperature=0.9)
    fitted = LeanBackend(model, tok, share_prompt=share, fused=False).generate(PROMPTS, 2, sp, seed=4)
    big = LeanBackend(model, tok, share_prompt=share, fused=False)
    big.reserve(rows=64, prompt_tokens=200, new_tokens=40)  # 16x the rows, 4x the slots
    padded = big.generate(PROMPTS, 2, sp, seed=4)
    assert big._cache_shape == (64, 256 + 40)
    # Padding rows draw no random numbers and unused slots are masked: the same tokens.
    assert torch.equal(fitted.completion_ids, padded.completion_ids)
    assert torch.allclose(fitted.logprobs, padded.logprobs, atol=1e-5)


def test_packed_gqa_decode_equals_the_stock_attention(tiny, monkeypatch):
    model, tok = tiny
    sp = SamplingParams(max_new_tokens=8, temperature=0.9)
    stock = LeanBackend(model, tok, pack_gqa=False, fused=False).generate(PROMPTS, 3, sp, seed=2)
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, *a, **kw):
        calls.append((q.shape[1], q.shape[2], k.shape[1]))
        return real(q, k, v, *a, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    packed = LeanBackend(model, tok, fused=False).generate(PROMPTS, 3, sp, seed=2)
    assert torch.equal(stock.completion_ids, packed.completion_ids)
    assert torch.allclose(stock.logprobs, packed.logprobs, atol=1e-5)
    # Decode calls: the 4 query heads ride as 2 rows on each of the 2 KV heads, which are never copied.
    decode = [c for c in calls if c[1] == 2 and c[0] == 2]
    assert decode and all(k == 2 for _, _, k in calls)
    assert model.config._attn_implementation == "sdpa"  # restored after the rollout


class _SyncCounter(torch.Tensor):
    """Records every operation that would wait for a GPU (a copy to the host, a Python number from a tensor)."""

    syncs: list[str] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name in ("cpu", "item", "tolist", "numpy", "__int__", "__float__", "__bool__", "__index__"):
            cls.syncs.append(name)
        out = super().__torch_function__(func, types, args, kwargs or {})
        return out.as_subclass(torch.Tensor) if name == "cpu" else out


def test_finish_copies_the_batch_to_the_host_once(tiny):
    _, tok = tiny
    eos, pad = tok.eos_token_id, tok.pad_token_id
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(5, 300, (16, 12), generator=g)
    tokens[::3, 4] = eos
    _SyncCounter.syncs = []
    out = _finish(tokens.as_subclass(_SyncCounter), torch.zeros(16, 12).as_subclass(_SyncCounter), [eos], pad, tok)
    assert _SyncCounter.syncs == ["cpu"]
    plain = _finish(tokens, torch.zeros(16, 12), [eos], pad, tok)
    assert out.texts == plain.texts and out.ends == plain.ends
    assert torch.equal(out.lengths, plain.lengths) and torch.equal(out.truncated, plain.truncated)
    assert out.lengths.device.type == "cpu" and out.lengths.tolist()[:4] == [5, 12, 12, 5]


# ---------------------------------------------------------------- vLLM call building (no vLLM needed)

def test_vllm_max_lora_rank_rounds_up_to_an_accepted_value():
    from train.rollout import vllm_max_lora_rank

    newest = (1, 8, 16, 32, 64, 128, 256, 320, 512)
    assert [vllm_max_lora_rank(r, newest) for r in (1, 2, 8, 9, 24, 100, 300, 512)] == \
        [1, 8, 8, 16, 32, 128, 320, 512]
    assert vllm_max_lora_rank(1) >= 1 and vllm_max_lora_rank(12) == 16  # without vLLM: the list all accept
    with pytest.raises(ValueError, match="lora_rank"):
        vllm_max_lora_rank(513, newest)


def test_vllm_engine_kwargs_name_the_trainer_dtype_and_processed_logprobs():
    from train.rollout import vllm_engine_kwargs

    kw = vllm_engine_kwargs("/models/smollm2", lora_rank=12, dtype=torch.bfloat16,
                            engine_fields={"model", "dtype", "logprobs_mode"})
    assert kw["dtype"] == "bfloat16" and kw["max_lora_rank"] == 16 and kw["enable_lora"] and kw["max_loras"] == 1
    assert kw["logprobs_mode"] == "processed_logprobs"
    old = vllm_engine_kwargs("/m", lora_rank=4, dtype=torch.float32, engine_fields={"model", "dtype"})
    assert "logprobs_mode" not in old and old["dtype"] == "float32" and old["max_lora_rank"] == 8


def test_vllm_logprobs_are_used_only_when_they_are_the_policy():
    from train.rollout import vllm_logprobs_are_policy, vllm_sampling_kwargs

    hot, nucleus, plain = SamplingParams(64, 0.7, 1.0), SamplingParams(64, 0.7, 0.9), SamplingParams(64, 1.0, 1.0)
    # Processed: after temperature and top-p; raw: before temperature.
    assert vllm_logprobs_are_policy(hot, processed=True) and not vllm_logprobs_are_policy(nucleus, processed=True)
    assert not vllm_logprobs_are_policy(hot, processed=False) and vllm_logprobs_are_policy(plain, processed=False)
    kw = vllm_sampling_kwargs(8, hot, 5, logprobs=True)
    assert kw == dict(n=8, temperature=0.7, top_p=1.0, max_tokens=64, seed=5, logprobs=0)
    assert "logprobs" not in vllm_sampling_kwargs(8, nucleus, 5, logprobs=False)


def test_vllm_seeds_are_distinct_per_row_and_split_invariant():
    from train.rollout import vllm_prompt_seeds

    # vLLM seeds a request's n samples seed + 0 .. n - 1: rows must not share a seed across prompts.
    seeds = vllm_prompt_seeds(11, prompts=4, n=8)
    rows = [s + j for s in seeds for j in range(8)]
    assert len(set(rows)) == 32
    # A rank that samples prompts 2-3 (rows 16-31) seeds them as the whole batch does.
    assert vllm_prompt_seeds(11, prompts=2, n=8, first_row=16) == seeds[2:]


@pytest.mark.slow
def test_inductor_compiled_decode_on_cpu_matches_eager(fresh_dynamo):
    """The real compiler (C++ codegen on the CPU; triton on a GPU): measured 65 s to compile on a busy 2-core box."""
    from torch._dynamo.utils import counters

    policy, tok = _policy()
    sp = SamplingParams(max_new_tokens=12, temperature=0.9)
    comp = LeanBackend(policy, tok, compile=True, compile_backend="inductor")
    for step in range(2):
        ref = LeanBackend(policy, tok, compile=False, fused=False).generate(PROMPTS[:1], 4, sp, seed=3)
        got = comp.generate(PROMPTS[:1], 4, sp, seed=3)
        assert comp._compiled is not None  # no fallback
        assert torch.equal(ref.completion_ids, got.completion_ids)
        assert torch.allclose(ref.logprobs, got.logprobs, atol=1e-5)  # measured: 1e-6
        with torch.no_grad():  # an in-place update of the adapter, as the optimizer makes
            for n, p in policy.named_parameters():
                if "lora_B" in n:
                    p.add_(0.1)
    assert counters["stats"]["unique_graphs"] == 1
    comp.close()
