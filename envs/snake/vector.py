"""A batched Snake vector env: every board steps (and autoresets) in one Numba call.

``gymnasium.make_vec("codepolicy/Snake-v0", num_envs=1024, vectorization_mode="vector_entry_point")``
builds :class:`SnakeVectorEnv`; it follows the gymnasium 1.x ``VectorEnv`` API and mirrors 2048's
(:class:`envs.game2048.vector.Game2048VectorEnv`).
"""
from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.snake import DEFAULT_OPTIONS, kernel
from envs.snake.env import OBS_DTYPE, SnakeEnv, check_env_options
from envs.snake.render import render_ansi, render_rgb

__all__ = ["SnakeVectorEnv"]

_INFO_KEYS = ("score", "length", "moves", "since_meal", "illegal_moves", "status", "action_mask", "won")
_DIRS = np.arange(4, dtype=np.int64)
_STATUS = np.array(kernel.STATUS_NAMES, dtype=object)


class SnakeVectorEnv(VectorEnv):
    """``num_envs`` Snake boards stepped together; each board behaves like a :class:`SnakeEnv`.

    Spaces: ``single_observation_space`` Box int16 (N, N) and ``single_action_space`` Discrete(4)
    (0 W up, 1 A left, 2 S down, 3 D right), as in the single env; the batched ``observation_space`` is
    (num_envs, N, N) and ``action_space`` MultiDiscrete([4] * num_envs). Rewards, termination,
    truncation, the illegal-move rules and the options are those of :class:`SnakeEnv`.

    Autoreset (``autoreset_mode``, also in ``metadata["autoreset_mode"]``): ``NEXT_STEP`` (default): the
    step after an episode's end resets that board (its action is ignored; reward 0, not terminated or
    truncated); ``SAME_STEP``: the ending step resets at once, the last observation and info go to
    ``infos["final_obs"]`` / ``infos["final_info"]`` with ``_final_obs`` / ``_final_info`` masks;
    ``DISABLED``: nothing resets by itself (``reset(options={"reset_mask": ...})``).

    Seeds: ``reset(seed=s)`` starts board ``i`` from seed ``s + i`` (a list gives one seed per board);
    autoresets draw the next seed from that board's own RNG, as ``SnakeEnv.reset()`` without a seed does,
    so board ``i`` plays the same games as a single env reset with seed ``s + i``.

    Infos: a dict of arrays over boards, keys ``score``, ``length``, ``moves``, ``since_meal``,
    ``illegal_moves``, ``status``, ``action_mask`` (num_envs, 4) and ``won``, each with its ``_key``
    mask.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 8, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, size: int = DEFAULT_OPTIONS["size"], target: int = DEFAULT_OPTIONS["target"],
                 hunger: int = DEFAULT_OPTIONS["hunger"], max_steps: int | None = None,
                 max_illegal: int | None = None, illegal_reward: float = 0.0, render_mode: str | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 max_episode_steps: int | None = None) -> None:
        """Create ``num_envs`` boards; ``max_episode_steps`` is an alias of ``max_steps``."""
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if max_steps is None:
            max_steps = max_episode_steps
        (self.size, self.target, self.hunger, self.max_steps, self.max_illegal,
         self.illegal_reward) = check_env_options(size, target, hunger, max_steps, max_illegal, illegal_reward,
                                                  render_mode)
        try:
            self.autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ValueError(f"unknown autoreset_mode {autoreset_mode!r}; expected one of "
                             f"{[m.value for m in AutoresetMode]}") from None
        self._mode_index = kernel.AUTORESET_MODES.index(self.autoreset_mode.value)
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        n, k = self.size, self.num_envs
        self.single_observation_space = gym.spaces.Box(-1, n * n, shape=(n, n), dtype=OBS_DTYPE)
        self.single_action_space = gym.spaces.Discrete(4)
        self.observation_space = batch_space(self.single_observation_space, k)
        self.action_space = batch_space(self.single_action_space, k)
        self._grids = np.zeros((k, n * n), dtype=np.int16)
        self._obs_view = self._grids.reshape(k, n, n)
        self._sts = np.zeros((k, kernel.NFIELDS), dtype=np.int64)
        self._rngs = np.zeros(k, dtype=np.uint64)
        self._rewards = np.zeros(k, dtype=np.float64)
        self._terminated = np.zeros(k, dtype=np.bool_)
        self._truncated = np.zeros(k, dtype=np.bool_)
        self._final_grids = np.zeros((k, n * n), dtype=np.int16)
        self._final_sts = np.zeros((k, kernel.NFIELDS), dtype=np.int64)
        self._ended = np.zeros(k, dtype=np.bool_)
        self._bits = np.zeros(k, dtype=np.int64)
        self._all = np.ones(k, dtype=np.bool_)
        self._all.flags.writeable = False
        self._ever_reset = np.zeros(k, dtype=np.bool_)
        self._max_steps_k = self.max_steps or 0  # 0: no limit, for the kernel
        self._max_illegal_k = self.max_illegal or 0

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
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            self._np_random, self._np_random_seed = seeding.np_random(int(seed))
            seeds: list[Any] = [int(seed) + i for i in range(k)]
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
            elif isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
                raise ValueError(f"seed for board {i} must be a non-negative integer or None, got {s!r}")
            else:
                arr[i] = s
        kernel.vec_reset(self._grids, self._sts, self._rngs, self.size, arr, which, self.hunger)
        self._ever_reset |= which
        self._terminated[which] = False
        self._truncated[which] = False
        return self._obs_view.copy(), self._infos(self._grids, self._sts)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every board with its action (num_envs ids 0..3) -> (obs, rewards, terminated, truncated, infos)."""
        acts = np.asarray(actions)
        if acts.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {acts.shape}")
        if acts.dtype != np.int64:
            if not np.issubdtype(acts.dtype, np.integer):
                raise ValueError(f"actions must be integers 0..3, got dtype {acts.dtype}")
            acts = acts.astype(np.int64)
        if acts.min() < 0 or acts.max() > 3:
            raise ValueError(f"actions must be 0..3 (W, A, S, D), got values {np.unique(acts).tolist()}")
        n_ended = kernel.vec_step(self._grids, self._sts, self._rngs, self.size, acts, self._mode_index,
                                  self.illegal_reward, self._max_steps_k, self._max_illegal_k, self.hunger,
                                  self._rewards, self._terminated, self._truncated, self._final_grids,
                                  self._final_sts, self._ended)
        infos = self._infos(self._grids, self._sts)
        if self._mode_index == 1 and n_ended:
            ended = self._ended.copy()
            final_obs = np.full(self.num_envs, None, dtype=object)
            n = self.size
            for i in np.flatnonzero(ended):
                final_obs[i] = self._final_grids[i].reshape(n, n).copy()
            final_info = self._infos(self._final_grids, self._final_sts, present=ended)
            infos.update(final_obs=final_obs, _final_obs=ended, final_info=final_info, _final_info=ended)
        return (self._obs_view.copy(), self._rewards.copy(), self._terminated.copy(), self._truncated.copy(), infos)

    def render(self) -> tuple[Any, ...] | None:
        """One frame per board ("ansi" text or "rgb_array" image); None without a render_mode."""
        if self.render_mode == "ansi":
            return tuple(render_ansi(b, int(s)) for b, s in zip(self._obs_view, self._sts[:, kernel.S_EATEN]))
        if self.render_mode == "rgb_array":
            return tuple(render_rgb(b) for b in self._obs_view)
        return None

    def _infos(self, grids: np.ndarray, sts: np.ndarray, present: np.ndarray | None = None) -> dict[str, Any]:
        bits = np.zeros(sts.shape[0], dtype=np.int64)
        kernel.legal_bits_batch(grids, sts, self.size, bits)
        present = self._all if present is None else present
        eaten = sts[:, kernel.S_EATEN].copy()
        infos: dict[str, Any] = {
            "score": eaten, "length": sts[:, kernel.S_LEN].copy(), "moves": sts[:, kernel.S_MOVES].copy(),
            "since_meal": sts[:, kernel.S_SINCE].copy(), "illegal_moves": sts[:, kernel.S_ILLEGAL].copy(),
            "status": _STATUS[sts[:, kernel.S_STATUS]], "action_mask": ((bits[:, None] >> _DIRS) & 1).astype(np.bool_),
            "won": eaten >= self.target,
        }
        for key in _INFO_KEYS:
            infos["_" + key] = present
        return infos

    def single_env(self) -> SnakeEnv:
        """A single env with the same options (for comparisons and debugging)."""
        return SnakeEnv(size=self.size, target=self.target, hunger=self.hunger, max_steps=self.max_steps,
                        max_illegal=self.max_illegal, illegal_reward=self.illegal_reward,
                        render_mode=self.render_mode)
