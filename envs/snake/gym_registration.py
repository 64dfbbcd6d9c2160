"""Registers Snake with Gymnasium as ``codepolicy/Snake-v0`` (single and vector entry points).

Imported by ``envs.snake`` so that ``import envs`` is enough for ``gymnasium.make("codepolicy/Snake-v0")``
and ``gymnasium.make_vec("codepolicy/Snake-v0", num_envs=..., vectorization_mode="vector_entry_point")``.
The entry points are strings, so the env modules load only when an env is made.
"""
from __future__ import annotations

import gymnasium

GYM_ID = "codepolicy/Snake-v0"

if GYM_ID not in gymnasium.registry:
    gymnasium.register(
        GYM_ID,
        entry_point="envs.snake.env:SnakeEnv",
        vector_entry_point="envs.snake.vector:SnakeVectorEnv",
    )
