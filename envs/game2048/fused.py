"""Fused Numba kernels for the Gymnasium envs: one call per ``env.step`` / per vector step.

The single env and the vector env must not pay several Python -> Numba dispatches per step,
so each does its whole step (slide, spawn, counters, legal mask, autoreset) in one call
built from the game kernels in :mod:`envs.game2048.kernel`; the game rules live only there.

Why the closure: Numba's on-disk cache keys a function on its own bytecode and its closure
values, not on the functions it calls, so a cached kernel here would keep stale copies of
``kernel.py`` code after that file changes. Closing over a digest of ``kernel.py`` makes any
change there a new cache key.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from numba import njit

from envs.game2048 import kernel

__all__ = [
    "REWARD_MODES", "AUTORESET_MODES", "F_SCORE", "F_MOVES", "F_STEPS", "F_ILLEGAL", "F_STREAK",
    "F_MAXEXP", "F_DONE", "F_MASK", "NFIELDS", "env_reset", "env_step", "draw_seed",
    "vec_reset", "vec_step",
]

# Reward modes, by index (the kernels branch on the index).
REWARD_MODES: tuple[str, ...] = ("score", "log_max_tile_gain", "merge_count")
# Autoreset modes of the vector kernel, by index.
AUTORESET_MODES: tuple[str, ...] = ("NextStep", "SameStep", "Disabled")

# Columns of the per-board int64 statistics row the vector kernel keeps.
F_SCORE, F_MOVES, F_STEPS, F_ILLEGAL, F_STREAK, F_MAXEXP, F_DONE, F_MASK = range(8)
NFIELDS = 8


def _kernel_digest() -> int:
    """A 60-bit digest of kernel.py's source (the cache key ingredient, see the module docstring)."""
    source = Path(kernel.__file__).read_bytes()
    return int(hashlib.sha256(source).hexdigest()[:15], 16) | 1  # never 0


_MIX_A = np.uint64(0xD6E8FEB86659FD93)
_S32 = np.uint64(32)
_LOW63 = np.uint64(0x7FFFFFFFFFFFFFFF)


@njit(cache=True, inline="always")
def _count_tiles(b):
    t = 0
    for i in range(b.size):
        if b[i] != 0:
            t += 1
    return t


@njit(cache=True, inline="always")
def _mask_bits(b, lines):
    m = 0
    for d in range(4):
        if kernel.can_move(b, lines, d):
            m |= 1 << d
    return m


@njit(cache=True)
def draw_seed(rng, k):
    """A fresh non-negative 63-bit seed derived from ``rng[k]`` (for seedless resets)."""
    z = rng[k] ^ (rng[k] >> _S32)
    z = z * _MIX_A
    z = z ^ (z >> _S32)
    return np.int64(z & _LOW63)


@njit(cache=True, inline="always")
def _reset_row(boards, rngs, lines, i, seed, stats):
    kernel.reset(boards[i], rngs, i, seed)
    for f in range(NFIELDS):
        stats[i, f] = 0
    stats[i, F_MASK] = _mask_bits(boards[i], lines)
    stats[i, F_MAXEXP] = kernel.max_exponent(boards[i])


# The helpers above are inlined (their Numba IR is rebuilt from source in each caller), so
# only the entry points below, which link kernel code into their cached object code, need
# the digest. Each must *use* ``digest`` for it to be in its closure; the closure must hold
# nothing else (a dispatcher in a closure pickles differently in every process, which
# would defeat the cache).
def _build(digest: int):
    @njit(cache=True)
    def env_reset(board, rng, lines, seed):
        """Reset one board from ``seed`` -> (legal-mask bits, max exponent)."""
        if digest == 0:  # keeps ``digest`` in the closure (the cache key); never true
            return -1, -1
        kernel.reset(board, rng, 0, seed)
        return _mask_bits(board, lines), kernel.max_exponent(board)

    @njit(cache=True)
    def env_step(board, rng, lines, action):
        """One env step -> (points gained, changed, merges, legal-mask bits, max exponent).

        Merges are counted as the tiles lost by the slide: a slide keeps every tile except
        that each merge turns two into one.
        """
        if digest == 0:  # see env_reset
            return -1, False, -1, -1, -1
        before = _count_tiles(board)
        gained, changed = kernel.slide(board, lines, action)
        merges = 0
        if changed:
            merges = before - _count_tiles(board)
            kernel.spawn(board, rng, 0)
        return gained, changed, merges, _mask_bits(board, lines), kernel.max_exponent(board)

    @njit(cache=True)
    def vec_reset(boards, rngs, lines, seeds, which, stats):
        """Reset every board ``i`` with ``which[i]`` from ``seeds[i]`` (a negative seed: draw one from its RNG)."""
        if digest == 0:  # see env_reset
            return
        for i in range(boards.shape[0]):
            if which[i]:
                s = seeds[i]
                if s < 0:
                    s = draw_seed(rngs, i)
                _reset_row(boards, rngs, lines, i, s, stats)

    @njit(cache=True)
    def vec_step(boards, rngs, lines, actions, autoreset, reward_mode, illegal_reward,
                 max_steps, max_illegal, stats, rewards, terminated, truncated,
                 final_boards, final_stats, ended):
        """Step every board with its action, autoresetting in mode ``autoreset``; returns boards ended.

        NextStep (0): a board that ended on the previous call is reset instead of stepped
        (its action is ignored, reward 0, not terminated/truncated). SameStep (1): a board
        that ends is reset in this call and its last board and statistics go to
        ``final_boards``/``final_stats`` with ``ended[i]`` set. Disabled (2): no reset.
        """
        if digest == 0:  # see env_reset
            return -1
        n_ended = 0
        for i in range(boards.shape[0]):
            ended[i] = False
            b = boards[i]
            if autoreset == 0 and stats[i, F_DONE] != 0:
                _reset_row(boards, rngs, lines, i, draw_seed(rngs, i), stats)
                rewards[i] = 0.0
                terminated[i] = False
                truncated[i] = False
                continue
            before = _count_tiles(b)
            max_before = stats[i, F_MAXEXP]
            gained, changed = kernel.slide(b, lines, actions[i])
            merges = 0
            if changed:
                merges = before - _count_tiles(b)
                kernel.spawn(b, rngs, i)
                stats[i, F_MOVES] += 1
                stats[i, F_SCORE] += gained
                stats[i, F_STREAK] = 0
            else:
                stats[i, F_ILLEGAL] += 1
                stats[i, F_STREAK] += 1
            stats[i, F_STEPS] += 1
            mask = _mask_bits(b, lines)
            stats[i, F_MASK] = mask
            max_now = kernel.max_exponent(b)
            stats[i, F_MAXEXP] = max_now
            if not changed:
                rewards[i] = illegal_reward
            elif reward_mode == 0:
                rewards[i] = gained
            elif reward_mode == 1:
                rewards[i] = max_now - max_before
            else:
                rewards[i] = merges
            term = mask == 0 or (max_illegal > 0 and stats[i, F_STREAK] >= max_illegal)
            trunc = (not term) and max_steps > 0 and stats[i, F_STEPS] >= max_steps
            terminated[i] = term
            truncated[i] = trunc
            if term or trunc:
                n_ended += 1
                if autoreset == 0:
                    stats[i, F_DONE] = 1
                elif autoreset == 1:
                    ended[i] = True
                    final_boards[i, :] = b
                    for f in range(NFIELDS):
                        final_stats[i, f] = stats[i, f]
                    _reset_row(boards, rngs, lines, i, draw_seed(rngs, i), stats)
                else:
                    stats[i, F_DONE] = 1
        return n_ended

    return env_reset, env_step, vec_reset, vec_step


env_reset, env_step, vec_reset, vec_step = _build(_kernel_digest())
