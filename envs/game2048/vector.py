"""A batched 2048 vector env: every board steps (and autoresets) in one Numba call.

``gymnasium.make_vec("codepolicy/2048-v0", num_envs=1024, vectorization_mode="vector_entry_point")``
builds :class:`Game2048VectorEnv`; it follows the gymnasium 1.x ``VectorEnv`` API.
"""
from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.game2048 import fused, lines_for
from envs.game2048.env import check_options
from envs.game2048.fused import F_ILLEGAL, F_MASK, F_MAXEXP, F_MOVES, F_SCORE, NFIELDS
from envs.game2048.render import render_ansi, render_rgb

__all__ = ["Game2048VectorEnv"]

_INFO_KEYS = ("score", "max_tile", "moves", "illegal_moves", "action_mask", "won")
_DIRS = np.arange(4, dtype=np.int64)


class Game2048VectorEnv(VectorEnv):
    """``num_envs`` 2048 boards stepped together; each board behaves like a :class:`Game2048Env`.

    Spaces: ``single_observation_space`` Box uint8 (N, N) of exponents and
    ``single_action_space`` Discrete(4) (0 W up, 1 A left, 2 S down, 3 D right), as in the
    single env; the batched ``observation_space`` is (num_envs, N, N) and ``action_space``
    MultiDiscrete([4] * num_envs). Rewards, termination, truncation, the illegal-move rules
    and the options are those of :class:`Game2048Env`.

    Autoreset (``autoreset_mode``, also in ``metadata["autoreset_mode"]``):
      - ``AutoresetMode.NEXT_STEP`` (default, gymnasium's default): the step that ends an
        episode returns its last observation; the *next* step resets that board instead of
        stepping it (its action is ignored) and returns the new first observation with
        reward 0 and terminated = truncated = False.
      - ``AutoresetMode.SAME_STEP``: the ending step resets the board at once and returns the
        new first observation; the last one is in ``infos["final_obs"]`` (object array,
        None for boards that did not end) and its info in ``infos["final_info"]``, each with
        a ``_final_obs`` / ``_final_info`` bool mask.
      - ``AutoresetMode.DISABLED``: nothing resets by itself; call
        ``reset(options={"reset_mask": bool array})`` for the boards you want to restart.

    Seeds: ``reset(seed=s)`` starts board ``i`` from seed ``s + i`` (a list gives one seed
    per board); autoresets draw the next seed from that board's own RNG, exactly as
    ``Game2048Env.reset()`` without a seed does, so board ``i`` plays the same games as a
    single env reset with seed ``s + i``.

    Infos: a dict of arrays over boards, keys ``score``, ``max_tile``, ``moves``,
    ``illegal_moves``, ``action_mask`` (num_envs, 4), ``won``, each with its ``_key`` mask
    (all True), as gymnasium's vector envs build them.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4,
                "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, size: int = 4, target: int = 2048,
                 max_steps: int | None = None, reward_mode: str = "score",
                 max_illegal: int | None = None, illegal_reward: float = 0.0,
                 render_mode: str | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 max_episode_steps: int | None = None) -> None:
        """Create ``num_envs`` boards; ``max_episode_steps`` is an alias of ``max_steps``."""
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if max_steps is None:
            max_steps = max_episode_steps
        (self.size, self.target, self.max_steps, self._reward_index, self.max_illegal,
         self.illegal_reward) = check_options(size, target, max_steps, reward_mode, max_illegal,
                                              illegal_reward, render_mode)
        try:
            self.autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ValueError(f"unknown autoreset_mode {autoreset_mode!r}; expected one of "
                             f"{[m.value for m in AutoresetMode]}") from None
        self._mode_index = fused.AUTORESET_MODES.index(self.autoreset_mode.value)
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.num_envs = int(num_envs)
        self.reward_mode = reward_mode
        self.render_mode = render_mode
        n, k = self.size, self.num_envs
        self.single_observation_space = gym.spaces.Box(0, n * n + 1, shape=(n, n), dtype=np.uint8)
        self.single_action_space = gym.spaces.Discrete(4)
        self.observation_space = batch_space(self.single_observation_space, k)
        self.action_space = batch_space(self.single_action_space, k)

        self._lines = lines_for(n)
        self._boards = np.zeros((k, n * n), dtype=np.uint8)
        self._obs_view = self._boards.reshape(k, n, n)
        self._rngs = np.zeros(k, dtype=np.uint64)
        self._stats = np.zeros((k, NFIELDS), dtype=np.int64)
        self._rewards = np.zeros(k, dtype=np.float64)
        self._terminated = np.zeros(k, dtype=np.bool_)
        self._truncated = np.zeros(k, dtype=np.bool_)
        self._final_boards = np.zeros((k, n * n), dtype=np.uint8)
        self._final_stats = np.zeros((k, NFIELDS), dtype=np.int64)
        self._ended = np.zeros(k, dtype=np.bool_)
        self._actions = np.zeros(k, dtype=np.int64)
        self._all = np.ones(k, dtype=np.bool_)
        self._all.flags.writeable = False
        self._target_exp = self.target.bit_length() - 1
        self._ever_reset = np.zeros(k, dtype=np.bool_)
        # Step-level bounds for the kernel: 0 means "no limit".
        self._max_steps_k = self.max_steps or 0
        self._max_illegal_k = self.max_illegal or 0

    # --- gymnasium API -------------------------------------------------------------------

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset all boards (or those in ``options["reset_mask"]``) -> (observations, infos)."""
        k = self.num_envs
        which = self._all
        if options and "reset_mask" in options:
            which = np.asarray(options["reset_mask"])
            if which.shape != (k,) or which.dtype != np.bool_:
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({k},), "
                                 f"got {which.dtype} {which.shape}")
        if isinstance(seed, (int, np.integer)):
            self._np_random, self._np_random_seed = seeding.np_random(int(seed))
            seeds = [int(seed) + i for i in range(k)]
        elif seed is None:
            seeds = [None] * k
        else:
            seeds = list(seed)
            if len(seeds) != k:
                raise ValueError(f"reset got {len(seeds)} seeds for {k} boards")
        arr = np.empty(k, dtype=np.int64)
        for i, s in enumerate(seeds):
            if s is None:
                # Never-seeded boards draw from the env's np_random; others from their own RNG (-1).
                arr[i] = -1 if self._ever_reset[i] else int(self.np_random.integers(0, 2**63 - 1))
            elif not isinstance(s, (int, np.integer)) or s < 0:
                raise ValueError(f"seed for board {i} must be a non-negative integer or None, got {s!r}")
            else:
                arr[i] = s
        fused.vec_reset(self._boards, self._rngs, self._lines, arr, which, self._stats)
        self._ever_reset |= which
        self._terminated[which] = False
        self._truncated[which] = False
        return self._obs_view.copy(), self._infos(self._stats)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every board with its action (array of num_envs ids 0..3) -> (obs, rewards, terminated, truncated, infos)."""
        acts = np.asarray(actions)
        if acts.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {acts.shape}")
        if acts.dtype != np.int64:
            if not np.issubdtype(acts.dtype, np.integer):
                raise ValueError(f"actions must be integers 0..3, got dtype {acts.dtype}")
            acts = acts.astype(np.int64)
        # One vectorised range check (cheaper than checking in the loop and raising from Numba).
        if acts.min() < 0 or acts.max() > 3:
            raise ValueError(f"actions must be 0..3 (W, A, S, D), got values {np.unique(acts).tolist()}")
        n_ended = fused.vec_step(self._boards, self._rngs, self._lines, acts, self._mode_index,
                                 self._reward_index, self.illegal_reward, self._max_steps_k,
                                 self._max_illegal_k, self._stats, self._rewards, self._terminated,
                                 self._truncated, self._final_boards, self._final_stats, self._ended)
        infos = self._infos(self._stats)
        if self._mode_index == 1 and n_ended:
            ended = self._ended.copy()
            final_obs = np.full(self.num_envs, None, dtype=object)
            n = self.size
            for i in np.flatnonzero(ended):
                final_obs[i] = self._final_boards[i].reshape(n, n).copy()
            final_info = self._infos(self._final_stats, present=ended)
            infos.update(final_obs=final_obs, _final_obs=ended, final_info=final_info, _final_info=ended)
        return (self._obs_view.copy(), self._rewards.copy(), self._terminated.copy(),
                self._truncated.copy(), infos)

    def render(self) -> tuple[Any, ...] | None:
        """One frame per board ("ansi" text or "rgb_array" image); None without a render_mode."""
        if self.render_mode == "ansi":
            return tuple(render_ansi(b, int(s)) for b, s in zip(self._obs_view, self._stats[:, F_SCORE]))
        if self.render_mode == "rgb_array":
            return tuple(render_rgb(b) for b in self._obs_view)
        return None

    # --- helpers -------------------------------------------------------------------------

    def _infos(self, stats: np.ndarray, present: np.ndarray | None = None) -> dict[str, Any]:
        max_exp = stats[:, F_MAXEXP]
        max_tile = np.where(max_exp > 0, np.left_shift(np.int64(1), max_exp), 0)
        mask = ((stats[:, F_MASK, None] >> _DIRS) & 1).astype(np.bool_)
        present = self._all if present is None else present
        infos: dict[str, Any] = {
            "score": stats[:, F_SCORE].copy(), "max_tile": max_tile, "moves": stats[:, F_MOVES].copy(),
            "illegal_moves": stats[:, F_ILLEGAL].copy(), "action_mask": mask,
            "won": max_exp >= self._target_exp,
        }
        for key in _INFO_KEYS:
            infos["_" + key] = present
        return infos
