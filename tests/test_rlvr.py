"""The RLVR family beside GRPO (train/grpo.py): CISPO, SAPO, RLOO, GDPO, DAPO's overlong shaping and dynamic
sampling, and the sampler-mismatch correction, against hand-computed values on small tensors."""
from __future__ import annotations

import math
import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench_module import load

from train.grpo import gdpo_advantages, group_advantages, overlong_penalty, policy_loss, sampler_correction


def _grad(variant, logp_values, old_values, adv_values, **kw):
    logp = torch.tensor([logp_values], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([old_values], dtype=torch.float64)
    mask = torch.ones_like(old)
    out = policy_loss(logp, old, torch.tensor(adv_values, dtype=torch.float64), mask, variant=variant, **kw)
    out.loss.backward()
    return out, logp.grad[0].tolist()


# ----------------------------------------------------------------------------- CISPO

def test_cispo_keeps_a_gradient_where_the_clipped_surrogate_drops_it():
    # Token ratios 1, 1.5 (above 1 + 0.28), 0.5 (below 1 - 0.2); advantage +2 on all three.
    old = [math.log(0.2)] * 3
    logp = [math.log(0.2), math.log(0.3), math.log(0.1)]
    out, g = _grad("cispo", logp, old, [2.0], eps_high=0.28)
    # loss = -sum_t sg(min(rho_t, 1.28)) * A * logp_t / 3 tokens; d/dlogp_t = -min(rho_t, 1.28) * A / 3.
    assert g == pytest.approx([-1.0 * 2 / 3, -1.28 * 2 / 3, -0.5 * 2 / 3])
    expected = -sum(min(r, 1.28) * 2.0 * lp for r, lp in zip([1.0, 1.5, 0.5], logp)) / 3
    assert float(out.loss.detach()) == pytest.approx(expected)
    assert out.clip_high == 1.0 and out.clip_low == 0.0
    # The clipped surrogate gives the 1.5-ratio token no gradient at all (A > 0, ratio above the band).
    _, g_grpo = _grad("dapo", logp, old, [2.0], eps_high=0.28)
    assert g_grpo[1] == 0.0 and g[1] != 0.0


def test_cispo_at_ratio_one_has_the_grpo_gradient():
    logp = [math.log(0.3), math.log(0.6)]
    _, g_cispo = _grad("cispo", logp, logp, [-1.5])
    _, g_dapo = _grad("dapo", logp, logp, [-1.5])
    assert g_cispo == pytest.approx(g_dapo)


# ----------------------------------------------------------------------------- SAPO

def test_sapo_gate_value_and_gradient_by_hand():
    # One token, ratio rho; loss = -sigmoid(tau (rho - 1)) * 4 / tau * A (one sequence of one token).
    for rho, adv, tau in [(1.0, 1.0, 1.0), (1.5, 1.0, 1.0), (0.6, -2.0, 1.05), (1.3, -0.5, 1.05)]:
        old = math.log(0.25)
        out, g = _grad("sapo", [old + math.log(rho)], [old], [adv], sapo_tau_pos=1.0, sapo_tau_neg=1.05)
        s = 1 / (1 + math.exp(-tau * (rho - 1)))
        assert float(out.loss.detach()) == pytest.approx(-s * 4 / tau * adv)
        # d loss / d logp = d loss / d rho * rho = -4 s (1 - s) * A * rho
        assert g[0] == pytest.approx(-4 * s * (1 - s) * adv * rho)


def test_sapo_at_ratio_one_has_the_grpo_gradient_and_counts_gated_tokens():
    logp = [math.log(0.3), math.log(0.6)]
    _, g_sapo = _grad("sapo", logp, logp, [0.7])
    _, g_grpo = _grad("grpo", logp, logp, [0.7])
    assert g_sapo == pytest.approx(g_grpo)
    # Gated: gradient weight 4 s (1 - s) under 1/2, i.e. |tau (rho - 1)| > 1.7627.
    out, _ = _grad("sapo", [math.log(3.0), math.log(2.5), math.log(0.1)], [math.log(1.0)] * 3, [1.0])
    assert (out.clip_high, out.clip_low) == (1.0, 0.0)  # rho 3 gated (|2| > 1.76), 2.5 not (1.5), 0.1 not (0.9)


# ----------------------------------------------------------------------------- RLOO, GDPO

def test_rloo_is_the_leave_one_out_baseline():
    adv, flat = group_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 5.0, 5.0]), 4, "rloo")
    expected = [1 - 11 / 3, 2 - 10 / 3, 3 - 9 / 3, 6 - 6 / 3, 0, 0, 0, 0]
    assert adv.tolist() == pytest.approx(expected) and flat == 1


def _gdpo_direct(rows, weights, group_size, eps=1e-4):
    """GDPO by its definition, in plain Python: per rule z-scores within the group, weighted sum, batch z-score."""
    n = len(rows)
    summed = [0.0] * n
    for start in range(0, n, group_size):
        group = rows[start:start + group_size]
        for k, w in enumerate(weights):
            col = [r[k] for r in group]
            if max(col) == min(col):
                continue
            m, sd = statistics.fmean(col), statistics.stdev(col)
            for i, v in enumerate(col):
                summed[start + i] += w * (v - m) / (sd + eps)
    m, sd = statistics.fmean(summed), statistics.stdev(summed)
    return [(x - m) / (sd + eps) for x in summed]


def test_gdpo_matches_its_definition_and_separates_what_grpo_collides():
    # Two rules, weights 1 and 1. In group 0, rows 0 and 1 have the same total (1.0): GRPO cannot tell them
    # apart. Rule 1 varies less than rule 0 in the group, so GDPO weighs row 1's rule-1 point more.
    rows = [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.5],
            [1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]
    values = torch.tensor(rows)
    adv, flat = gdpo_advantages(values, [1.0, 1.0], 4)
    assert adv.tolist() == pytest.approx(_gdpo_direct(rows, [1.0, 1.0], 4), abs=1e-6) and flat == 0
    grpo, _ = group_advantages(values.sum(1), 4, "group")
    assert grpo[0] == grpo[1] and abs(float(adv[0] - adv[1])) > 0.05


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0.0, 0.5, 1.0, -1.0]), min_size=3, max_size=3), min_size=8, max_size=8),
       st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=3, max_size=3))
def test_gdpo_property_matches_definition_and_zero_for_flat_groups(rows, weights):
    values = torch.tensor(rows)
    adv, flat = gdpo_advantages(values, weights, 4)
    groups_flat = [all(len({r[k] for r in rows[s:s + 4]}) == 1 for k in range(3)) for s in (0, 4)]
    assert flat == sum(groups_flat)
    for g, is_flat in enumerate(groups_flat):
        if is_flat:
            assert adv[4 * g:4 * g + 4].tolist() == [0.0] * 4
    if flat < 2:
        assert adv.tolist() == pytest.approx(_gdpo_direct(rows, weights, 4), abs=1e-5)


# ----------------------------------------------------------------------------- DAPO's overlong shaping

def test_overlong_penalty_by_hand_and_against_trl():
    lengths = torch.tensor([10, 96, 100, 112, 128])
    pen = overlong_penalty(lengths, 128, 32).tolist()
    assert pen == pytest.approx([0.0, 0.0, -4 / 32, -16 / 32, -1.0])
    assert overlong_penalty(lengths, 128, 0).tolist() == [0.0] * 5
    assert overlong_penalty(lengths, 128, 32, factor=0.5).tolist() == pytest.approx([p * 0.5 for p in pen])
    trl_rewards = pytest.importorskip("trl.rewards")
    theirs = trl_rewards.get_soft_overlong_punishment(max_completion_len=128, soft_punish_cache=32)
    assert theirs([[1] * int(n) for n in lengths]) == pytest.approx(pen)


# ----------------------------------------------------------------------------- sampler mismatch (TIS)

def test_sampler_correction_modes_by_hand():
    old = torch.log(torch.tensor([[0.5, 0.2, 0.3], [0.4, 0.4, 0.0 + 1.0]]))
    sampled = torch.log(torch.tensor([[0.5, 0.1, 0.6], [0.1, 0.4, 1.0]]))
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    w, r = sampler_correction(old, sampled, mask, cap=1.5, mode="token_truncate")
    assert r.flatten().tolist() == pytest.approx([1.0, 2.0, 0.5, 4.0, 1.0, 1.0])  # padding: ratio 1
    assert w.flatten().tolist() == pytest.approx([1.0, 1.5, 0.5, 1.5, 1.0, 1.0])
    w, _ = sampler_correction(old, sampled, mask, cap=1.5, mode="token_mask")
    assert w.flatten().tolist() == pytest.approx([1.0, 0.0, 0.5, 0.0, 1.0, 1.0])
    w, r = sampler_correction(old, sampled, mask, cap=3.0, mode="sequence_mask")
    assert r.flatten().tolist() == pytest.approx([1.0, 4.0]) and w.flatten().tolist() == pytest.approx([1.0, 0.0])
    w, _ = sampler_correction(old, sampled, mask, cap=3.0, mode="sequence_truncate")
    assert w.flatten().tolist() == pytest.approx([1.0, 3.0])
    with pytest.raises(ValueError, match="unknown sampler correction"):
        sampler_correction(old, sampled, mask, cap=3.0, mode="per_token")


def test_sampler_weights_scale_the_policy_term_not_the_kl():
    logp = torch.log(torch.tensor([[0.5, 0.25]])).requires_grad_()
    ref = torch.log(torch.tensor([[0.4, 0.3]]))
    mask = torch.ones(1, 2)
    plain = policy_loss(logp, logp.detach(), torch.tensor([1.0]), mask, variant="dapo", beta=0.1, ref_logp=ref)
    halved = policy_loss(logp, logp.detach(), torch.tensor([1.0]), mask, variant="dapo", beta=0.1, ref_logp=ref,
                         is_weights=torch.full((1, 2), 0.5))
    kl = plain.kl_sum / 2 * 0.1
    assert float(halved.loss.detach()) - kl == pytest.approx(0.5 * (float(plain.loss.detach()) - kl))


# ----------------------------------------------------------------------------- in the loop

def _loop_config(tmp_path, **kw):
    from train.config import make_config

    base = dict(steps=3, group_size=4, prompts_per_step=2, max_new_tokens=8, lr=1e-2, lora_rank=4, lora_alpha=8,
                save_interval=0, output_dir=str(tmp_path / "run"), games_per_completion=2, grad_accum=1,
                gradient_checkpointing=False, rollout_backend="lean")
    return make_config(base | kw)


def _seed_parity_reward(completions, seeds):
    """Groups whose first game seed is even are flat (no signal); odd ones rank their completions 0, 1, 2, ..."""
    from rewards.records import Breakdown

    informative = seeds[0] % 2 == 1
    return [Breakdown(values={"rank": float(i if informative else 1), "fmt": 1.0}, weights={"rank": 1.0, "fmt": 0.5},
                      total=float(i if informative else 1) + 0.5) for i in range(len(completions))]


def _informative(config, step, rounds):
    from train.loop import step_plan

    return [[s[0] % 2 == 1 for s in step_plan(config, step, 1, round=r).game_seeds] for r in range(rounds + 1)]


def test_dynamic_sampling_trains_on_informative_groups_within_its_bound(tmp_path):
    from train.loop import train
    from train.model import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer(0)
    cfg = _loop_config(tmp_path, steps=4, dynamic_sampling_rounds=2)
    summary = train(cfg, _seed_parity_reward, model, tok, prompts=["def strategy(board):"], progress=False)
    for step, h in enumerate(summary.history):
        found, rounds = 0, 0
        for r, flags in enumerate(_informative(cfg, step, 2)):
            found += sum(flags)
            rounds = r
            if found >= 2:
                break
        assert h["dynamic_rounds"] == rounds and h["groups_sampled"] == 2 * (rounds + 1)
        assert h["zero_variance_groups"] == max(0, 2 - found)  # filled with flat groups only when rounds ran out
        fresh = _informative(cfg, step, 0)[0]
        assert h["sampled_zero_variance_frac"] == (len(fresh) - sum(fresh)) / len(fresh)  # before the selection


def test_dynamic_sampling_never_loops_forever():
    import tempfile
    from pathlib import Path

    from rewards.records import Breakdown
    from train.loop import train
    from train.model import tiny_model_and_tokenizer

    def flat(texts, seeds):
        return [Breakdown(values={"x": 1.0}, weights={"x": 1.0}, total=1.0) for _ in texts]
    model, tok = tiny_model_and_tokenizer(0)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _loop_config(Path(tmp), steps=2, dynamic_sampling_rounds=3)
        summary = train(cfg, flat, model, tok, prompts=["def strategy(board):"], progress=False)
    assert [h["dynamic_rounds"] for h in summary.history] == [3, 3]
    assert all(h["zero_variance_frac"] == 1.0 and h["groups_sampled"] == 8 for h in summary.history)
    assert all(h["sampled_zero_variance_frac"] == 1.0 for h in summary.history)


def test_rlvr_options_resume_bit_for_bit(tmp_path):
    import os
    import signal

    from train.loop import train
    from train.model import tiny_model_and_tokenizer

    kw = dict(steps=4, dynamic_sampling_rounds=2, advantage_scale="gdpo", loss_variant="cispo", overlong_buffer=4,
              sampler_correction="token_truncate", sampler_correction_cap=2.0, num_iterations=2, kl_beta=0.05)
    model, tok = tiny_model_and_tokenizer(0)
    full = train(_loop_config(tmp_path / "a", **kw), _seed_parity_reward, model, tok,
                 prompts=["def strategy(board):"], progress=False)
    assert all(k in full.history[-1] for k in ("sampler_ratio_mean", "sampler_ratio_max", "overlong_penalty_mean"))
    calls = {"n": 0}

    def interrupting(texts, seeds):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return _seed_parity_reward(texts, seeds)

    cfg = _loop_config(tmp_path / "b", **kw)
    model, tok = tiny_model_and_tokenizer(0)
    part = train(cfg, interrupting, model, tok, prompts=["def strategy(board):"], progress=False)
    assert part.interrupted
    model, tok = tiny_model_and_tokenizer(0)
    rest = train(cfg, _seed_parity_reward, model, tok, prompts=["def strategy(board):"], progress=False, resume=True)
    got = [h["loss"] for h in part.history] + [h["loss"] for h in rest.history]
    assert got == [h["loss"] for h in full.history]


def test_sampler_correction_refused_without_sampler_logprobs(tmp_path):
    from train.loop import train
    from train.model import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer(0)
    cfg = _loop_config(tmp_path, steps=1, rollout_backend="hf", sampler_correction="sequence_mask")
    with pytest.raises(ValueError, match="needs the sampler's log-probs"):
        train(cfg, _seed_parity_reward, model, tok, prompts=["def strategy(board):"], progress=False)


def test_config_names_every_variant_and_checks_the_overlong_buffer():
    from train.config import make_config

    for v in ("grpo", "dr_grpo", "dapo", "gspo", "cispo", "sapo"):
        assert make_config({"loss_variant": v}).loss_variant == v
    for a in ("group", "batch", "none", "rloo", "gdpo"):
        assert make_config({"advantage_scale": a}).advantage_scale == a
    with pytest.raises(ValueError, match="overlong_buffer"):
        make_config({"overlong_buffer": 500, "max_new_tokens": 128})
    with pytest.raises(ValueError, match="sampler_correction"):
        make_config({"sampler_correction": "tis"})


# ----------------------------------------------------------------------------- the comparison benchmark

@given(st.integers(1, 500), st.data())
@settings(max_examples=200, deadline=None)
def test_wilson_interval_holds_the_share_and_narrows_with_more_trials(n, data):
    compare = load("rlvr_compare")
    k = data.draw(st.integers(0, n))
    lo, hi = compare.wilson(k / n, n)
    assert 0.0 <= lo <= k / n + 1e-12 and k / n - 1e-12 <= hi <= 1.0
    lo4, hi4 = compare.wilson(k / n, 4 * n)
    assert hi4 - lo4 < hi - lo


def test_comparison_runs_each_variant_and_rereads_finished_runs(tmp_path):
    import json

    compare = load("rlvr_compare")
    argv = ["--model", "tiny-random", "--steps", "1", "--eval-samples", "2", "--variants", "grpo,dapo",
            "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out.json")]
    assert compare.main(argv) == 0
    first = json.loads((tmp_path / "out.json").read_text())
    assert set(first["variants"]) == {"grpo", "dapo"}
    for r in first["variants"].values():
        assert r["steps_done"] == 1 and not r["resumed"]
        assert set(r["held_out"]) >= {"format_ok", "compliance", "played", "reward_mean"}
        assert set(r["held_out_95"]) == {"format_ok", "compliance", "played", "reward_mean"}
    assert first["variants"]["dapo"]["dynamic_rounds_mean"] is not None  # DAPO's settings reached the run
    # A second call re-reads the finished runs (no new steps) and reports the same figures.
    assert compare.main(argv) == 0
    second = json.loads((tmp_path / "out.json").read_text())
    for name, r in second["variants"].items():
        assert r["resumed"] and r["held_out"] == first["variants"][name]["held_out"]
        assert r["train_seconds"] == first["variants"][name]["train_seconds"]
    with pytest.raises(SystemExit, match="unknown variant"):
        compare.main(["--variants", "grpo,nope"])
