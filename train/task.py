"""The task a run poses, read from its config: the games each program plays, the reward spec, how to sample.

Training (:mod:`train.loop`), its held-out evaluation and ``codepolicy eval`` (:mod:`train.evaluate`) and the
warm start all read the task from here, so a run and its evaluation always pose the same one. The rule that
the prompt template decides whether strategies may call the game's API lives in :func:`with_template_api`.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from train.config import TrainConfig
from train.rollout import SamplingParams

if TYPE_CHECKING:
    from rewards import RewardSpec

__all__ = ["resolve_games", "sampling_params", "with_template_api", "reward_spec"]


def resolve_games(config: TrainConfig) -> int:
    """Games each completion plays: ``config.games_per_completion``, or the reward spec's ``games`` when 0."""
    if config.games_per_completion:
        return config.games_per_completion
    import rewards

    return rewards.load_spec(config.reward_spec or None, game=config.game).games


def sampling_params(config: TrainConfig) -> SamplingParams:
    """How the run samples: length, temperature, top-p, the answer prefill its prompts end with, the fence stop."""
    from train.prompts import answer_prefill

    return SamplingParams(config.max_new_tokens, config.temperature, config.top_p, stop_at_fence=config.stop_at_fence,
                          prefill=answer_prefill(config.prompt_template, config.answer_prefill))


def with_template_api(spec: "RewardSpec", template: str) -> "RewardSpec":
    """``spec`` with the game API switched as the prompt ``template`` says.

    A template that lists the game's functions scores programs with them callable; every other template keeps
    the bare task, where a call to one is refused like any unknown name.
    """
    from train.prompts import uses_api

    return dataclasses.replace(spec, game_api=uses_api(template))


def reward_spec(config: TrainConfig) -> "RewardSpec":
    """The run's reward spec (the game's default when none is named), its game API switched by its template."""
    import rewards

    return with_template_api(rewards.load_spec(config.reward_spec or None, game=config.game), config.prompt_template)
