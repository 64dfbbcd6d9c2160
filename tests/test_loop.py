"""The GRPO loop end to end on the tiny local model with toy rewards: runs, logs, checkpoints, resumes, learns."""
from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards import load_spec
from rewards.records import Breakdown
from train.config import HELD_OUT_SEED_BASE, held_out_seeds, make_config
from train.loop import step_plan, train
from train.policy import add_lora
from train.model import tiny_model_and_tokenizer

PROMPTS = ["def strategy(board):", "board = [[2, 4, 8, 16], [0, 0, 2, 2]]\nmove"]


def _config(tmp_path, **kw):
    base = dict(steps=3, group_size=4, prompts_per_step=2, max_new_tokens=8, lr=1e-2, lora_rank=4,
                lora_alpha=8, save_interval=2, output_dir=str(tmp_path / "run"), games_per_completion=2,
                grad_accum=1, gradient_checkpointing=False)
    return make_config(base | kw)


def _low_id_reward(tok):
    """Toy reward: the share of the completion's tokens whose id is below 128."""
    def reward_fn(completions, seeds):
        out = []
        for text in completions:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            r = sum(i < 128 for i in ids) / max(len(ids), 1)
            out.append(Breakdown(values={"low": r}, weights={"low": 1.0}, total=r,
                                 info={"compliant": 1.0, "max_tile": 2.0 ** (1 + len(ids) % 5), "mean_score": r},
                                 source=f"def strategy(board):\n    return 'W'  # {len(ids)}\n"))
        return out
    return reward_fn


def test_three_steps_run_log_and_checkpoint(tmp_path):
    model, tok = tiny_model_and_tokenizer(0)
    cfg = _config(tmp_path, gradient_checkpointing=True, grad_accum=4, eval_interval=3, eval_samples=4)
    summary = train(cfg, _low_id_reward(tok), model, tok, prompts=PROMPTS, progress=False)
    run = tmp_path / "run"
    assert summary.steps_done == 3 and not summary.interrupted
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [0, 1, 2]
    for key in ("reward_mean", "reward_std", "reward_min", "reward_max", "rule/low", "zero_variance_frac",
                "compliance", "max_tile", "score_mean", "kl", "clip_frac", "entropy", "completion_len_mean",
                "truncation_rate", "rollout_tokens_per_s", "train_tokens_per_s", "step_seconds",
                "peak_memory_gb", "loss", "grad_norm", "lr", "eval/reward_mean"):
        assert key in lines[-1], key
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002", "step-00000003"]
    assert (run / "config.toml").is_file() and (run / "curves.png").is_file()
    assert summary.best and (run / "best" / "best-1.py").is_file()


def test_equal_rewards_leave_the_weights_unchanged(tmp_path):
    model, tok = tiny_model_and_tokenizer(0)
    flat = lambda texts, seeds: [Breakdown(values={}, weights={}, total=1.0) for _ in texts]  # noqa: E731
    cfg = _config(tmp_path, steps=2, save_interval=0, kl_beta=0.0)
    summary = train(cfg, flat, model, tok, prompts=PROMPTS, progress=False)
    assert all(h["zero_variance_frac"] == 1.0 and h["grad_norm"] == 0.0 for h in summary.history)
    assert all(h["kl"] is None for h in summary.history)  # kl_beta = 0: no reference pass, no KL figure
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and all(torch.equal(p, torch.zeros_like(p)) for p in lora_b)


def test_reference_is_the_base_model_with_the_adapter_disabled():
    model, tok = tiny_model_and_tokenizer(0)
    ids = tok(PROMPTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        base = model(ids).logits.clone()
    policy = add_lora(model, make_config({"lora_rank": 4}))
    with torch.no_grad():  # make the adapter do something
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
        with policy.disable_adapter():
            ref = policy(ids).logits
        adapted = policy(ids).logits
    assert torch.equal(ref, base)
    assert not torch.allclose(adapted, base)
    # One copy of the weights: the base parameters are the policy's own, not a clone.
    assert sum(p.numel() for p in policy.parameters()) < 1.2 * sum(
        p.numel() for n, p in policy.named_parameters() if "lora_" not in n)


def test_step_plan_depends_only_on_seed_and_step():
    cfg = make_config({"prompts_per_step": 3, "games_per_completion": 2})
    assert step_plan(cfg, 4, 5) == step_plan(cfg, 4, 5)
    assert step_plan(cfg, 4, 5) != step_plan(cfg, 5, 5)
    plan = step_plan(cfg, 0, 5)
    assert len(plan.prompt_indices) == 3 and all(len(s) == 2 for s in plan.game_seeds)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 10**6), st.integers(0, 8))
def test_training_games_are_never_held_out_games(seed, step, games):
    cfg = make_config({"seed": seed, "games_per_completion": games, "prompts_per_step": 3})
    plan = step_plan(cfg, step, 2)
    drawn = {s for group in plan.game_seeds for s in group}
    assert drawn and all(0 <= s < HELD_OUT_SEED_BASE for s in drawn)
    expected = games or load_spec(None, game="2048").games  # 0: the reward spec's games
    assert all(len(group) == expected for group in plan.game_seeds)


def test_a_step_with_an_evaluation_is_logged_whatever_the_log_interval(tmp_path):
    model, tok = tiny_model_and_tokenizer(0)
    seen = []

    def reward_fn(completions, *, seeds):
        seen.append(tuple(seeds))
        return _low_id_reward(tok)(completions, seeds)

    cfg = _config(tmp_path, steps=3, log_interval=2, eval_interval=2, eval_samples=4, save_interval=0)
    summary = train(cfg, reward_fn, model, tok, prompts=PROMPTS, progress=False)
    steps = {h["step"]: h for h in summary.history}
    assert sorted(steps) == [0, 1, 2]  # 0 and 2 by the interval, 1 for its evaluation
    assert "eval/reward_mean" in steps[1] and "eval/reward_mean" not in steps[0]
    assert tuple(held_out_seeds(2)) in seen  # the evaluation played the held-out games


def test_ctrl_c_saves_and_resume_reproduces_the_uninterrupted_run(tmp_path):
    kw = dict(steps=4, save_interval=0, num_iterations=2, kl_beta=0.05, schedule="cosine", lora_dropout=0.1,
              loss_variant="dapo", clip_eps_high=0.28, grad_accum=3)  # 8 rows, 2 prompts: micro-batches 3, 1, 3, 1
    model, tok = tiny_model_and_tokenizer(0)
    full = train(_config(tmp_path / "a", **kw), _low_id_reward(tok), model, tok, prompts=PROMPTS,
                 progress=False)

    reward = _low_id_reward(tok)
    calls = {"n": 0}

    def interrupting(texts, seeds):
        calls["n"] += 1
        if calls["n"] == 5:  # step 2's first group: Ctrl-C arrives mid-step
            os.kill(os.getpid(), signal.SIGINT)
        return reward(texts, seeds)

    cfg = _config(tmp_path / "b", **kw)
    model, tok = tiny_model_and_tokenizer(0)
    part = train(cfg, interrupting, model, tok, prompts=PROMPTS, progress=False)
    assert part.interrupted and part.steps_done == 2
    assert (tmp_path / "b" / "run" / "checkpoints" / "step-00000002").is_dir()

    model, tok = tiny_model_and_tokenizer(0)
    rest = train(cfg, reward, model, tok, prompts=PROMPTS, progress=False, resume=True)
    assert rest.steps_done == 4 and not rest.interrupted
    got = [h["loss"] for h in part.history] + [h["loss"] for h in rest.history]
    want = [h["loss"] for h in full.history]
    assert got == want  # bit for bit
    assert [h["reward_mean"] for h in rest.history] == [h["reward_mean"] for h in full.history[2:]]


def test_reward_rises_on_a_toy_task(tmp_path):
    model, tok = tiny_model_and_tokenizer(0)
    with torch.no_grad():  # sharper logits than the default init: a policy with somewhere to go
        model.model.embed_tokens.weight.mul_(8.0)
    # One prompt, so the step-to-step reward moves with the policy, not with the prompt mix.
    cfg = _config(tmp_path, steps=12, group_size=8, prompts_per_step=4, max_new_tokens=12, lr=1e-2,
                  lora_rank=8, lora_alpha=16, save_interval=0)
    summary = train(cfg, _low_id_reward(tok), model, tok, prompts=["You are playing 2048"],
                    progress=False)
    r = [h["reward_mean"] for h in summary.history]
    first, last = sum(r[:3]) / 3, sum(r[-3:]) / 3
    assert last > first + 0.3, r  # measured: ~0.05 -> ~1.0


def test_one_prompt_runs_once_per_micro_batch_in_the_loop(tmp_path, monkeypatch):
    import train.logprobs as logprobs

    calls = []
    real = logprobs._prefix_forward
    monkeypatch.setattr(logprobs, "_prefix_forward", lambda *a: calls.append(1) or real(*a))
    model, tok = tiny_model_and_tokenizer(0)
    cfg = _config(tmp_path, steps=1, save_interval=0, grad_accum=2, kl_beta=0.05, num_iterations=2)
    summary = train(cfg, _low_id_reward(tok), model, tok, prompts=PROMPTS[:1], progress=False)
    # Reference pass 1 + old-policy pass 1 + 2 iterations x 2 micro-batches (8 rows of one prompt).
    assert len(calls) == 6
    assert summary.history[0]["kl"] >= 0.0  # measured when the KL term is on
    assert summary.steps_done == 1 and math.isfinite(summary.history[0]["loss"])


# ---------------------------------------------------------------- CPU stand-ins for the GPU runs

@pytest.fixture
def one_thread():
    """Tiny tensors gain nothing from a second thread, and on a busy 2-core machine OpenMP's spinning made
    these bf16 steps 20-50x slower (measured: a 12-token rollout 0.06 s on 1 thread, 1.4-3.4 s on 2)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_bf16_grpo_steps_on_cpu_eager_and_compiled_agree(tmp_path, one_thread):
    """The GPU recipe on the CPU: bf16 weights under autocast, fp32 LoRA, KL to the reference, two updates per
    batch, evaluation at a smaller batch; the decode step eager, then compiled (aot_eager) for the whole run."""
    from torch._dynamo.utils import counters

    kw = dict(steps=2, save_interval=0, kl_beta=0.04, num_iterations=2, grad_accum=2, rollout_backend="lean",
              eval_interval=1, eval_samples=4)
    runs = {}
    for compile_backend in ("", "aot_eager"):
        torch._dynamo.reset()
        counters.clear()
        model, tok = tiny_model_and_tokenizer(0)
        model = model.to(torch.bfloat16)
        cfg = _config(tmp_path / (compile_backend or "eager"), rollout_compile_backend=compile_backend, **kw)
        summary = train(cfg, _low_id_reward(tok), model, tok, prompts=PROMPTS, progress=False)
        lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
        assert lora and all(p.dtype == torch.float32 for p in lora.values())  # adapter in fp32 over bf16 weights
        assert any(p.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)  # the update moved the adapter
        for h in summary.history:
            assert all(math.isfinite(h[k]) for k in ("loss", "kl", "grad_norm", "entropy", "logprob_gap"))
            assert h["grad_norm"] > 0 and h["kl"] >= 0
            # Sampler vs trainer log-probs in bf16: measured 7e-5 and 9e-5 per token (fp32: ~2e-7).
            assert h["logprob_gap"] < 1e-3, h["logprob_gap"]
        runs[compile_backend] = summary.history
        if compile_backend:
            # One graph for the whole run: the LoRA updates, the reference pass (adapter disabled), train/eval
            # switches and the smaller evaluation batch (run in the reserved cache) never recompiled it.
            assert counters["stats"]["unique_graphs"] == 1
        torch._dynamo.reset()
    for a, b in zip(runs[""], runs["aot_eager"]):
        for k in ("loss", "kl", "grad_norm", "logprob_gap", "reward_mean", "eval/reward_mean"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7), k  # measured: identical


def test_float16_is_refused_for_training(tmp_path):
    model, tok = tiny_model_and_tokenizer(0)
    with pytest.raises(ValueError, match="float16.*bfloat16.*float32"):
        train(_config(tmp_path), _low_id_reward(tok), model.half(), tok, prompts=PROMPTS, progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_default_reward_fn_makes_the_pool_the_config_asks_for():
    from rewards import GroupRewardFn
    from sandbox import WorkerPool
    from train.loop import default_reward_fn

    shared = default_reward_fn(make_config({}))
    assert isinstance(shared, GroupRewardFn) and shared.pool is None  # the sandbox's shared local pool
    own = default_reward_fn(make_config({"reward_workers": 1}))
    try:
        assert isinstance(own.pool, WorkerPool) and own.pool.workers == 1
        good = "```python\ndef strategy(board):\n    return 'A'\n```"
        assert own([good, good], seeds=[0]) == shared([good, good], seeds=[0])  # same rewards on either pool
    finally:
        own.pool.close()
    with pytest.raises(ValueError, match="reward_pool"):
        make_config({"reward_pool": "gpu"})
