"""The GPU runs of the paths the CPU tests stand in for: marked ``gpu``, skipped without CUDA.

``benchmarks/gpu_suite.py`` runs them (``pytest -m gpu``). ``CODEPOLICY_TEST_DEVICE=cpu python -m
pytest -m gpu tests/test_gpu.py`` runs the same tests on the CPU (the compile with ``aot_eager``
instead of inductor and CUDA graphs), to check the tests themselves on a machine without a GPU.
"""
from __future__ import annotations

import math
import os

import pytest
import torch

from train.config import make_config
from train.loop import train
from train.policy import add_lora
from train.model import tiny_model_and_tokenizer
from train.rollout import LeanBackend, SamplingParams

DEVICE = os.environ.get("CODEPOLICY_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "")
# On the GPU the lean backend's own default (inductor + CUDA graphs); on a CPU dry run a backend
# that needs no C compiler.
COMPILE_BACKEND = None if DEVICE == "cuda" else "aot_eager"

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not DEVICE, reason="needs a CUDA GPU")]

PROMPTS = ["def strategy(board):", "board = [[2, 4, 8, 16], [0, 0, 2, 2]]\nmove"]


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _policy(dtype: torch.dtype = torch.float32):
    model, tok = tiny_model_and_tokenizer(0)
    policy = add_lora(model.to(DEVICE, dtype), make_config({"lora_rank": 4, "lora_alpha": 8,
                                                            "gradient_checkpointing": False}))
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                # Drawn on the CPU, so the adapter is the same on any device.
                p.copy_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))))
    return policy.eval(), tok


def test_compiled_decode_matches_eager_and_compiles_once(fresh_dynamo):
    from torch._dynamo.utils import counters

    counters.clear()
    policy, tok = _policy()
    sp = SamplingParams(max_new_tokens=12, temperature=0.9)
    compiled = LeanBackend(policy, tok, compile=True, compile_backend=COMPILE_BACKEND)
    for _ in range(2):
        ref = LeanBackend(policy, tok, compile=False).generate(PROMPTS[:1], 8, sp, seed=3)
        got = compiled.generate(PROMPTS[:1], 8, sp, seed=3)
        assert compiled._compiled is not None, "the compile fell back to eager"
        assert torch.equal(ref.completion_ids.cpu(), got.completion_ids.cpu())
        assert torch.allclose(ref.logprobs.cpu(), got.logprobs.cpu(), atol=1e-4)
        with torch.no_grad():  # an in-place update of the adapter, as the optimizer makes
            for n, p in policy.named_parameters():
                if "lora_B" in n:
                    p.add_(0.1)
    assert counters["stats"]["unique_graphs"] == 1  # the weights changed, the graph did not
    if DEVICE == "cuda":
        before = torch.cuda.memory_allocated()
        compiled.close()
        assert torch.cuda.memory_allocated() < before  # the static cache is freed
    else:
        compiled.close()
    assert compiled._cache is None


def test_bf16_grpo_steps(tmp_path, fresh_dynamo):
    model, tok = tiny_model_and_tokenizer(0)
    model = model.to(DEVICE, torch.bfloat16)

    def reward_fn(completions, seeds):
        from rewards.records import Breakdown

        out = []
        for text in completions:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            r = sum(i < 128 for i in ids) / max(len(ids), 1)
            out.append(Breakdown(values={"low": r}, weights={"low": 1.0}, total=r, info={"compliant": 1.0}))
        return out

    cfg = make_config(dict(steps=2, group_size=4, prompts_per_step=2, max_new_tokens=8, lr=1e-2, lora_rank=4,
                           lora_alpha=8, save_interval=0, output_dir=str(tmp_path / "run"), games_per_completion=1,
                           grad_accum=1, gradient_checkpointing=False, kl_beta=0.04, rollout_backend="lean",
                           rollout_compile_backend=COMPILE_BACKEND or ""))
    summary = train(cfg, reward_fn, model, tok, prompts=PROMPTS, progress=False)
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert lora and all(p.dtype == torch.float32 for p in lora.values())
    assert any(p.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)
    for h in summary.history:
        assert all(math.isfinite(h[k]) for k in ("loss", "kl", "grad_norm", "logprob_gap"))
        # Sampler (compiled decode) vs trainer in bf16. CPU: about 1e-4 per token; the GPU figure is
        # what the GPU suite reports (it was never measured when this bound was set, hence its slack).
        assert h["logprob_gap"] < 5e-2, h["logprob_gap"]
