"""The Gymnasium environment for 2048: ``gymnasium.make("codepolicy/2048-v0")``.

Same rules, same kernels and same seeds as the registered game spec ``envs.get("2048")``:
``env.reset(seed=s)`` starts exactly the game ``envs.get("2048").make(s)`` starts.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.game2048 import _check_size, _check_target, fused, lines_for
from envs.game2048.render import render_ansi, render_rgb

__all__ = ["Game2048Env", "REWARD_MODES", "ACTION_MEANINGS", "check_options"]

REWARD_MODES = fused.REWARD_MODES
ACTION_MEANINGS = ("up", "left", "down", "right")

# One read-only bool array per legal-mask bit pattern; info hands out a fresh copy of it, as
# Gymnasium asks (users keep what they are given, so two calls must never share an object).
_MASKS = tuple(np.array([(bits >> d) & 1 for d in range(4)], dtype=np.bool_) for bits in range(16))
for _m in _MASKS:
    _m.flags.writeable = False
del _m


def check_options(size: Any, target: Any, max_steps: Any, reward_mode: Any, max_illegal: Any,
                  illegal_reward: Any, render_mode: Any) -> tuple[int, int, int | None, int, int | None, float]:
    """Validate env arguments -> (size, target, max_steps, reward-mode index, max_illegal, illegal_reward).

    Raises ValueError naming the bad argument; shared by the single and the vector env.
    """
    size = _check_size(size)
    target = _check_target(target)
    if max_steps is not None and (not isinstance(max_steps, (int, np.integer)) or max_steps < 1):
        raise ValueError(f"max_steps must be a positive integer or None, got {max_steps!r}")
    if reward_mode not in REWARD_MODES:
        raise ValueError(f"unknown reward_mode {reward_mode!r}; expected one of {list(REWARD_MODES)}")
    if max_illegal is not None and (not isinstance(max_illegal, (int, np.integer)) or max_illegal < 1):
        raise ValueError(f"max_illegal must be a positive integer or None, got {max_illegal!r}")
    try:
        illegal_reward = float(illegal_reward)
    except (TypeError, ValueError):
        raise ValueError(f"illegal_reward must be a number, got {illegal_reward!r}") from None
    if render_mode is not None and render_mode not in Game2048Env.metadata["render_modes"]:
        raise ValueError(f"unknown render_mode {render_mode!r}; expected one of "
                         f"{Game2048Env.metadata['render_modes']} or None")
    return (size, target, None if max_steps is None else int(max_steps), REWARD_MODES.index(reward_mode),
            None if max_illegal is None else int(max_illegal), illegal_reward)


class Game2048Env(gym.Env[np.ndarray, np.int64]):
    """2048 on an N x N board (N = 3..8), as a Gymnasium environment.

    Observation: ``uint8`` array of shape (N, N), the log2 exponent of each tile
    (0 = empty, 1 = tile 2, 11 = tile 2048); row 0 is the top row. Bounds 0..N*N+1, the
    largest exponent an N x N board can hold.

    Actions: ``Discrete(4)``; 0 = "W" (up), 1 = "A" (left), 2 = "S" (down), 3 = "D" (right),
    the order of the game's action names.

    Reward (``reward_mode``), for a move that changes the board:
      - "score" (default): points merged by the step, the sum of the new tiles' values,
        i.e. exactly what the game score gains;
      - "log_max_tile_gain": how much log2 of the largest tile grew (0 or 1, rarely more);
      - "merge_count": how many merges the step made.
    A move that changes nothing (illegal) is not a move: no tile spawns, it is counted
    in ``illegal_moves`` and it earns ``illegal_reward`` (default 0.0) in every mode.

    Episode end: ``terminated`` when no move can change the board, or when ``max_illegal``
    (default None: never) illegal moves were made in a row; ``truncated`` when ``max_steps``
    steps (legal or not; default None: never) were taken. Reaching ``target`` does not end
    the episode; ``info["won"]`` reports it.

    Info (from reset and step): ``score`` (int, game score so far), ``max_tile`` (int),
    ``moves`` (legal moves so far), ``illegal_moves`` (illegal steps so far),
    ``action_mask`` (bool array of 4, fresh per call: which actions change the board), ``won``.

    Seeding: ``reset(seed=s)`` plays the same game as ``envs.get("2048").make(s)``. A later
    ``reset()`` without a seed draws the next seed from the game's own RNG, so a seeded
    sequence of episodes is reproducible (the vector env follows the same rule).

    Render modes: "ansi" (aligned text grid plus score) and "rgb_array" (a uint8 image of
    the board drawn with numpy in the classic colours).
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, size: int = 4, target: int = 2048, max_steps: int | None = None,
                 reward_mode: str = "score", max_illegal: int | None = None,
                 illegal_reward: float = 0.0, render_mode: str | None = None) -> None:
        """Create an env; every argument is validated (ValueError naming the bad one)."""
        (self.size, self.target, self.max_steps, self._reward_index, self.max_illegal,
         self.illegal_reward) = check_options(size, target, max_steps, reward_mode, max_illegal,
                                              illegal_reward, render_mode)
        self.reward_mode = reward_mode
        self.render_mode = render_mode
        n = self.size
        self.observation_space = spaces.Box(0, n * n + 1, shape=(n, n), dtype=np.uint8)
        self.action_space = spaces.Discrete(4)
        self._lines = lines_for(n)
        self._board = np.zeros(n * n, dtype=np.uint8)
        self._view = self._board.reshape(n, n)  # a view: copied out as the observation
        self._rng = np.zeros(1, dtype=np.uint64)
        self._target_exp = self.target.bit_length() - 1
        self._ever_reset = False
        self._clear(0, 0)

    def _clear(self, mask: int, max_exp: int) -> None:
        self._score = 0
        self._moves = 0
        self._steps = 0
        self._illegal = 0
        self._streak = 0
        self._mask = mask
        self._max_exp = max_exp

    def _info(self) -> dict[str, Any]:
        e = self._max_exp
        return {"score": self._score, "max_tile": 1 << e if e else 0, "moves": self._moves,
                "illegal_moves": self._illegal, "action_mask": _MASKS[self._mask].copy(),
                "won": e >= self._target_exp}

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a game: from ``seed`` if given, else from a seed drawn as the class docstring says."""
        super().reset(seed=seed)
        if seed is None:
            if self._ever_reset:
                seed = int(fused.draw_seed(self._rng, 0))
            else:
                seed = int(self.np_random.integers(0, 2**63 - 1))
        self._ever_reset = True
        mask, max_exp = fused.env_reset(self._board, self._rng, self._lines, int(seed))
        self._clear(mask, max_exp)
        return self._view.copy(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` (0..3) -> (observation, reward, terminated, truncated, info)."""
        a = int(action)
        if a < 0 or a > 3:
            raise ValueError(f"2048 action must be 0..3 (W, A, S, D), got {action!r}")
        gained, changed, merges, mask, max_exp = fused.env_step(self._board, self._rng, self._lines, a)
        self._steps += 1
        if changed:
            self._score += gained
            self._moves += 1
            self._streak = 0
            ri = self._reward_index
            reward = float(gained if ri == 0 else (max_exp - self._max_exp if ri == 1 else merges))
        else:
            self._illegal += 1
            self._streak += 1
            reward = self.illegal_reward
        self._mask = mask
        self._max_exp = max_exp
        terminated = mask == 0 or (self.max_illegal is not None and self._streak >= self.max_illegal)
        truncated = not terminated and self.max_steps is not None and self._steps >= self.max_steps
        return self._view.copy(), reward, terminated, truncated, self._info()

    def render(self) -> str | np.ndarray | None:
        """The current board as text ("ansi") or as an RGB image ("rgb_array"); None without a render_mode."""
        if self.render_mode == "ansi":
            return render_ansi(self._view, self._score)
        if self.render_mode == "rgb_array":
            return render_rgb(self._view)
        return None

    # --- read-only accessors, handy for tests and tools -------------------------------

    @property
    def board(self) -> np.ndarray:
        """A copy of the current exponent board, shape (N, N)."""
        return self._view.copy()

    @property
    def score(self) -> int:
        """The game score so far."""
        return self._score

    @property
    def action_mask(self) -> np.ndarray:
        """Read-only bool array: which actions change the board now."""
        return _MASKS[self._mask]

