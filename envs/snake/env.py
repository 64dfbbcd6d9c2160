"""The Gymnasium environment for Snake: ``gymnasium.make("codepolicy/Snake-v0")``.

Same rules, same kernel and same seeds as the registered game spec ``envs.get("snake")``:
``env.reset(seed=s)`` starts exactly the game ``envs.get("snake").make(s)`` starts.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.snake import DEFAULT_OPTIONS, check_options, kernel
from envs.snake.render import render_ansi, render_rgb

__all__ = ["SnakeEnv", "ACTION_MEANINGS", "check_env_options", "OBS_DTYPE"]

ACTION_MEANINGS = ("up", "left", "down", "right")
OBS_DTYPE = np.int16
"""The observation's dtype: int16, not int8, because the snake's numbers reach size * size (256 on 16 x 16)."""

# One read-only bool array per legal-action bit pattern; info hands out a fresh copy of it.
_MASKS = tuple(np.array([(bits >> d) & 1 for d in range(4)], dtype=np.bool_) for bits in range(16))
for _m in _MASKS:
    _m.flags.writeable = False
del _m


def check_env_options(size: Any, target: Any, hunger: Any, max_steps: Any, max_illegal: Any, illegal_reward: Any,
                      render_mode: Any) -> tuple[int, int, int, int | None, int | None, float]:
    """Validate env arguments -> (size, target, hunger, max_steps, max_illegal, illegal_reward).

    Raises ValueError naming the bad argument; shared by the single and the vector env.
    """
    size, target, hunger = check_options({"size": size, "target": target, "hunger": hunger})
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer))
                                  or max_steps < 1):
        raise ValueError(f"max_steps must be a positive integer or None, got {max_steps!r}")
    if max_illegal is not None and (isinstance(max_illegal, bool) or not isinstance(max_illegal, (int, np.integer))
                                    or max_illegal < 1):
        raise ValueError(f"max_illegal must be a positive integer or None, got {max_illegal!r}")
    try:
        illegal_reward = float(illegal_reward)
    except (TypeError, ValueError):
        raise ValueError(f"illegal_reward must be a number, got {illegal_reward!r}") from None
    if render_mode is not None and render_mode not in SnakeEnv.metadata["render_modes"]:
        raise ValueError(f"unknown render_mode {render_mode!r}; expected one of "
                         f"{SnakeEnv.metadata['render_modes']} or None")
    return (size, target, hunger, None if max_steps is None else int(max_steps),
            None if max_illegal is None else int(max_illegal), illegal_reward)


def info_of(st: np.ndarray, target: int) -> dict[str, Any]:
    """The info dict of a state row (everything but the action mask)."""
    return {"score": int(st[kernel.S_EATEN]), "length": int(st[kernel.S_LEN]), "moves": int(st[kernel.S_MOVES]),
            "since_meal": int(st[kernel.S_SINCE]), "illegal_moves": int(st[kernel.S_ILLEGAL]),
            "status": kernel.STATUS_NAMES[int(st[kernel.S_STATUS])], "won": int(st[kernel.S_EATEN]) >= target}


class SnakeEnv(gym.Env[np.ndarray, np.int64]):
    """Snake on an N x N board (N = 5..16), as a Gymnasium environment.

    Observation: ``int16`` array of shape (N, N), the board a strategy sees: 0 empty, -1 the food, the
    snake numbered from 1 at its tail to its length at its head. Bounds -1..N*N. (int16 rather than
    int8: the numbers reach N*N, 256 on the largest board.)

    Actions: ``Discrete(4)``; 0 = "W" (up), 1 = "A" (left), 2 = "S" (down), 3 = "D" (right), the order of
    the game's action names.

    Reward: the food eaten by the step (0 or 1). A step into the neck changes nothing: it is counted in
    ``illegal_moves`` and earns ``illegal_reward`` (default 0.0).

    Episode end: ``terminated`` when the game is over (the snake hit a wall or its body, starved after
    ``hunger`` moves without food, or filled the board), or after ``max_illegal`` (default None: never)
    steps in a row into the neck; ``truncated`` after ``max_steps`` steps (default None: never). Eating
    ``target`` food does not end the episode; ``info["won"]`` reports it.

    Info (from reset and step): ``score`` (food eaten), ``length``, ``moves`` (steps that changed the
    state), ``since_meal``, ``illegal_moves``, ``status`` ("alive", "wall", "body", "starved" or "full"),
    ``won`` and ``action_mask`` (bool array of 4, fresh per call: every action but the reverse while the
    game is on).

    Seeding: ``reset(seed=s)`` plays the same game as ``envs.get("snake").make(s)``; a later ``reset()``
    without a seed draws the next seed from the game's own RNG, so a seeded sequence of episodes is
    reproducible (the vector env follows the same rule).

    Render modes: "ansi" (a text grid plus the score) and "rgb_array" (a uint8 image drawn with numpy).
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 8}

    def __init__(self, size: int = DEFAULT_OPTIONS["size"], target: int = DEFAULT_OPTIONS["target"],
                 hunger: int = DEFAULT_OPTIONS["hunger"], max_steps: int | None = None, max_illegal: int | None = None,
                 illegal_reward: float = 0.0, render_mode: str | None = None) -> None:
        """Create an env; every argument is validated (ValueError naming the bad one)."""
        (self.size, self.target, self.hunger, self.max_steps, self.max_illegal,
         self.illegal_reward) = check_env_options(size, target, hunger, max_steps, max_illegal, illegal_reward,
                                                  render_mode)
        self.render_mode = render_mode
        n = self.size
        self.observation_space = spaces.Box(-1, n * n, shape=(n, n), dtype=OBS_DTYPE)
        self.action_space = spaces.Discrete(4)
        self._grid = np.zeros(n * n, dtype=np.int16)
        self._view = self._grid.reshape(n, n)  # a view: copied out as the observation
        self._st = np.zeros(kernel.NFIELDS, dtype=np.int64)
        self._rng = np.zeros(1, dtype=np.uint64)
        self._ever_reset = False

    def _info(self) -> dict[str, Any]:
        info = info_of(self._st, self.target)
        info["action_mask"] = _MASKS[kernel.legal_bits(self._grid, self._st, self.size)].copy()
        return info

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a game: from ``seed`` if given, else from a seed drawn as the class docstring says."""
        super().reset(seed=seed)
        if seed is None:
            if self._ever_reset:
                seed = int(kernel.draw_seed(self._rng, 0))
            else:
                seed = int(self.np_random.integers(0, 2**63 - 1))
        self._ever_reset = True
        kernel.reset(self._grid, self._st, self._rng, 0, self.size, int(seed), self.hunger)
        return self._view.copy(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` (0..3) -> (observation, reward, terminated, truncated, info)."""
        a = int(action)
        if a < 0 or a > 3:
            raise ValueError(f"snake action must be 0..3 (W, A, S, D), got {action!r}")
        st = self._st
        ate, changed = kernel.step(self._grid, st, self._rng, 0, self.size, a)
        st[kernel.S_STEPS] += 1
        if changed:
            st[kernel.S_STREAK] = 0
            reward = float(ate)
        else:
            st[kernel.S_ILLEGAL] += 1
            st[kernel.S_STREAK] += 1
            reward = self.illegal_reward
        terminated = bool(st[kernel.S_STATUS] != kernel.ALIVE
                          or (self.max_illegal is not None and st[kernel.S_STREAK] >= self.max_illegal))
        truncated = not terminated and self.max_steps is not None and int(st[kernel.S_STEPS]) >= self.max_steps
        return self._view.copy(), reward, terminated, bool(truncated), self._info()

    def render(self) -> str | np.ndarray | None:
        """The current board as text ("ansi") or as an RGB image ("rgb_array"); None without a render_mode."""
        if self.render_mode == "ansi":
            return render_ansi(self._view, int(self._st[kernel.S_EATEN]))
        if self.render_mode == "rgb_array":
            return render_rgb(self._view)
        return None

    @property
    def board(self) -> np.ndarray:
        """A copy of the current board, shape (N, N)."""
        return self._view.copy()

    @property
    def score(self) -> int:
        """The food eaten so far."""
        return int(self._st[kernel.S_EATEN])
