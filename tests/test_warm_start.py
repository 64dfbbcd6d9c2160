"""The warm start: honest seed programs, the keep rule, the supervised update, and rounds inside a run."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import envs
import rewards
from rewards.records import Breakdown
from train.checkpoint import load_latest, save_checkpoint, training_state
from train.config import TRAIN_SEED_LIMIT, make_config
from train.loop import step_plan, train
from train.model import tiny_model_and_tokenizer
from train.monitor import read_metrics, read_warm_start
from train.prompts import PREFILLS, answer_prefill
from train.warm_start import keeps, round_plan, seed_answers, sft_batch, sft_update

SEEDS = [2**31 + k for k in range(2)]


@pytest.mark.parametrize("api", [True, False])
def test_every_seed_program_passes_the_check_and_ends_its_games_honestly(api):
    sources = envs.get("2048").seed_programs(api)
    assert len(set(sources)) == len(sources) >= 24
    spec = dataclasses.replace(rewards.load_spec(None, game="2048"), game_api=api)
    answers = [f"```python\n{s}```" for s in sources]
    for k in range(0, len(answers), 8):
        for b in rewards.evaluate_group(answers[k:k + 8], game="2048", seeds=SEEDS, spec=spec):
            assert keeps(b, 0.0), (b.source, b.info)


def test_seed_answers_open_with_the_prefill():
    api = seed_answers("2048", PREFILLS["return"], True)
    assert len(api) == len(envs.get("2048").seed_programs(True)) and all(a.startswith(PREFILLS["return"]) for a in api)
    bare = seed_answers("2048", PREFILLS["signature"], False)
    assert len(bare) == 24 and all("legal_moves" not in a for a in bare)
    assert seed_answers("2048", PREFILLS["moves"], False) == []  # bare programs never open with an API call


def _bd(total=0.5, compliant=1.0, honest=1.0, games=2, source="def strategy(board):\n    return 'W'\n"):
    return Breakdown(values={}, weights={}, total=total, source=source,
                     info={"compliant": compliant, "honest_rate": honest, "games": games})


def test_the_keep_rule():
    assert keeps(_bd(), 0.0)
    assert not keeps(_bd(honest=0.5), 0.0)          # a stuck game or an error: not worth imitating
    assert not keeps(_bd(compliant=0.0), 0.0)
    assert not keeps(_bd(games=0), 0.0)
    assert not keeps(_bd(source=None), 0.0)
    assert not keeps(_bd(total=0.1), 0.2) and keeps(_bd(total=0.2), 0.2)


def test_round_plans_come_from_the_seed_alone_and_differ_from_grpo_steps():
    cfg = make_config({"seed": 3, "games_per_completion": 3})
    assert round_plan(cfg, 1) == round_plan(cfg, 1) and round_plan(cfg, 0) != round_plan(cfg, 1)
    assert all(0 <= s < TRAIN_SEED_LIMIT for s in round_plan(cfg, 0).game_seeds)
    assert round_plan(cfg, 0).sampling_seed != step_plan(cfg, 0, 1).sampling_seed


def test_the_supervised_update_makes_the_kept_answers_likelier():
    from train.logprobs import batched_logprobs
    from train.policy import add_lora

    model, tok = tiny_model_and_tokenizer(0)
    cfg = make_config({"lora_rank": 4, "lora_alpha": 8, "warm_start_lr": 1e-2, "warm_start_epochs": 8})
    policy = add_lora(model, cfg)
    completions = [a[len("```python\n"):] for a in seed_answers("2048", "```python\n", True)[:4]]
    ids, mask, width = sft_batch(tok, "write a strategy\n```python\n", completions, tok.eos_token_id, tok.pad_token_id)
    assert (ids[:, -width:][mask[:, -width:].bool()] == tok.eos_token_id).sum() == 4  # each ends with EOS

    def nll() -> float:
        lp = batched_logprobs(policy, ids, mask, width, 8)
        return float(-(lp * mask[:, -width:]).sum() / mask[:, -width:].sum())

    before = nll()
    sft_update(policy, ids, mask, width, cfg, torch.Generator().manual_seed(0))
    assert nll() < before - 0.3


def _run_config(tmp_path, **kw):
    base = dict(steps=1, group_size=4, prompts_per_step=1, max_new_tokens=8, lora_rank=4, lora_alpha=8,
                save_interval=0, output_dir=str(tmp_path / "run"), games_per_completion=1,
                prompt_template="api", answer_prefill="return", warm_start_rounds=2, warm_start_samples=4,
                warm_start_min_kept=3)
    return make_config(base | kw)


def test_warm_start_rounds_run_log_checkpoint_and_resume(tmp_path):
    from train.prompts import build_prompt

    model, tok = tiny_model_and_tokenizer(0)
    cfg = _run_config(tmp_path)
    prompt = build_prompt("2048", tok, template="api", prefill=answer_prefill("api", "return"))
    summary = train(cfg, None, model, tok, prompts=[prompt], progress=False)
    assert summary.steps_done == 1 and not summary.interrupted
    run = tmp_path / "run"
    rounds = read_warm_start(run)
    assert [r["warm_start_round"] for r in rounds] == [0, 1]
    # The random tiny model writes nothing that plays: round 0 is filled up with seed programs, round 1 needs none.
    assert rounds[0]["warm/seeded"] == 3 and rounds[0]["warm/kept_total"] >= 3 and rounds[1]["warm/seeded"] == 0
    assert all(r["warm/sft_loss"] > 0 for r in rounds)
    assert [r["step"] for r in read_metrics(run)] == [0]  # the GRPO curve is untouched by warm-start records

    # A run stopped after round 1 of 2 resumes at round 2 with the answers kept so far.
    state = load_latest(run)
    assert "warm_start_rounds_done" not in state  # the final checkpoint is past the warm start
    model, tok = tiny_model_and_tokenizer(0)
    cfg2 = _run_config(tmp_path / "b")
    from train.policy import add_lora, make_optimizer

    policy = add_lora(model, cfg2)
    opt, sched = make_optimizer(policy, cfg2)
    kept = [a for a in seed_answers("2048", answer_prefill("api", "return"), True)[:3]]
    save_checkpoint(tmp_path / "b" / "run", training_state(policy, opt, sched, cfg2, 0)
                    | {"warm_start_rounds_done": 1, "warm_start_kept": kept})
    model, tok = tiny_model_and_tokenizer(0)
    train(cfg2, None, model, tok, prompts=[prompt], progress=False, resume=True)
    resumed = read_warm_start(tmp_path / "b" / "run")
    assert [r["warm_start_round"] for r in resumed] == [1]
    assert resumed[0]["warm/seeded"] == 0 and resumed[0]["warm/kept_total"] >= 3
    lines = [json.loads(x) for x in (tmp_path / "b" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("warm_start_round" in x for x in lines) and any("step" in x for x in lines)
