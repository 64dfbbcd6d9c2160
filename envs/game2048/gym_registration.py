"""Registers 2048 with Gymnasium as ``codepolicy/2048-v0`` (single and vector entry points).

Imported by ``envs.game2048`` so that ``import envs`` is enough for
``gymnasium.make("codepolicy/2048-v0")`` and
``gymnasium.make_vec("codepolicy/2048-v0", num_envs=..., vectorization_mode="vector_entry_point")``.
The entry points are strings, so the env modules (and their Numba kernels) load only when
an env is made.
"""
from __future__ import annotations

import gymnasium

GYM_ID = "codepolicy/2048-v0"

if GYM_ID not in gymnasium.registry:
    gymnasium.register(
        GYM_ID,
        entry_point="envs.game2048.env:Game2048Env",
        vector_entry_point="envs.game2048.vector:Game2048VectorEnv",
    )
