"""Every registered game through the whole pipeline: play, check, score, audit, prompt and one training step.

The registry promises that a game is a folder: whatever a game declares on its ``GameSpec`` (its baselines,
its API, its hacks, its default reward spec, its progress metric) is all the rest of codepolicy needs. This
file holds every registered game to that promise: the shipped games (``import envs`` registers each folder
under ``envs/``) and the toy game of ``tests/toy_game.py``, registered from outside the package as a user
would. A new game is tested here without a line of this file changing.
"""
from __future__ import annotations

import dataclasses

import pytest

import envs
import rewards
from envs.outcomes import HONEST_OUTCOMES
from envs.play import play_trusted
from envs.registry import register
from sandbox import Limits, check, game_policy

from toy_game import TOY  # noqa: E402  (importing it registers "slide1d")

register("slide1d", TOY)  # again, in case another test module removed it
GAMES = envs.names()


def fence(source: str) -> str:
    return f"```python\n{source}```"


@pytest.fixture(scope="module")
def pool():
    from sandbox import WorkerPool

    with WorkerPool(2) as p:
        yield p


def _honest(spec):
    return [b for b in spec.baselines if b.sandboxable and b.honest]


@pytest.mark.parametrize("game", GAMES)
def test_every_game_declares_what_the_pipeline_reads(game):
    spec = envs.get(game)
    assert spec.progress is not None and spec.progress.metric in spec.metric_names
    assert _honest(spec), "an honest sandboxable baseline: the floor of the audit"
    rewards.default_spec(game)  # the game's own TOML, or the built-in rules: never an error
    assert rewards.default_spec(game).game == game


@pytest.mark.parametrize("game", GAMES)
def test_baselines_play_honest_games_in_and_out_of_the_sandbox(game, pool):
    spec = envs.get(game)
    for b in _honest(spec):
        trusted = play_trusted(b.strategy(0), game=game, seeds=[0, 1], max_moves=300)
        assert all(r["outcome"] in HONEST_OUTCOMES for r in trusted), (b.name, trusted)
        limits = dataclasses.replace(rewards.default_spec(game).limits or Limits(), max_moves=300)
        sandboxed = pool.run(b.source, game=game, seeds=[0, 1], limits=limits)
        assert [r.outcome for r in sandboxed] == [r["outcome"] for r in trusted]
        assert [r.score for r in sandboxed] == [r["score"] for r in trusted]


@pytest.mark.parametrize("game", GAMES)
def test_baselines_pass_the_check_with_and_without_the_api(game):
    spec = envs.get(game)
    for b in spec.baselines:
        if b.source:
            assert check(b.source, game_policy(game, False)).ok, b.name
        if b.api_source:
            assert check(b.api_source, game_policy(game, True)).ok, b.name
            assert not check(b.api_source, game_policy(game, False)).ok  # the API switched off refuses it


@pytest.mark.parametrize("game", GAMES)
def test_scores_order_honest_play_above_a_constant_move_and_a_broken_program(game, pool):
    spec = envs.get(game)
    reward = rewards.default_spec(game)
    honest = _honest(spec)[0]
    broken = "def strategy(board):\n    raise ValueError('no')\n"
    completions = [fence(honest.source), fence(broken), "no code here"]
    totals = [b.total for b in rewards.evaluate_group(completions, game=game, seeds=[0, 1], spec=reward, pool=pool)]
    assert totals[0] > totals[1] > totals[2], totals


@pytest.mark.parametrize("game", GAMES)
def test_the_audit_plays_every_declared_program(game, pool):
    """A shipped game's own spec passes its audit; any game's spec keeps the orders that hold for any records.

    A game that ships its spec (``reward_spec``) was tuned so that every hack it declares stays under honest
    play: its audit must pass. A game on the built-in rules (the toy) must at least be auditable: every
    baseline and hack it declares is played, and the synthetic-record orders hold.
    """
    spec = envs.get(game)
    report = rewards.audit(game=game, games=3, pool=pool, library=False)  # the seeds `codepolicy audit` plays
    played = {r.name for r in report.rows}
    assert {f"baseline:{b.name}" for b in spec.baselines if b.sandboxable} <= played
    assert {f"hack:{h.name}" for h in spec.hacks + (spec.api_hacks if spec.api else ())} <= played
    assert all(c.ok for c in report.checks if c.synthetic), [c for c in report.checks if c.synthetic and not c.ok]
    if spec.reward_spec is not None:
        assert report.ok, [c for c in report.checks if not c.ok]


@pytest.mark.parametrize("game", GAMES)
def test_prompts_build_for_every_template_the_game_supports(game):
    from train.prompts import TEMPLATES, prompt_text, uses_api

    spec = envs.get(game)
    for template, parts in TEMPLATES.items():
        if uses_api(template) and not (spec.api and spec.api_example):
            continue
        if "moves_example" in parts and not spec.moves_example:
            continue
        text = prompt_text(game, template=template)
        assert "strategy" in text and all(a in text for a in spec.actions), template


@pytest.mark.parametrize("game", GAMES)
def test_one_training_step_on_the_tiny_model(game, tmp_path):
    pytest.importorskip("torch")
    from train.config import make_config
    from train.loop import default_reward_fn, train
    from train.model import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer(0)
    template = "api" if envs.get(game).api else "compact"
    config = make_config({"game": game, "steps": 1, "group_size": 2, "prompts_per_step": 1, "max_new_tokens": 8,
                          "lora_rank": 2, "lora_alpha": 4, "save_interval": 0, "games_per_completion": 1,
                          "prompt_template": template, "output_dir": str(tmp_path / "run"),
                          "gradient_checkpointing": False})
    summary = train(config, default_reward_fn(config), model, tok, progress=False)
    assert summary.steps_done == 1
    metric = envs.get(game).progress_metric
    assert "reward_mean" in summary.history[-1] and metric in summary.history[-1]
