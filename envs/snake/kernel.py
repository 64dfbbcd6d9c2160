"""Numba kernels for Snake: reset, step, legality and the batched vector step.

A game lives in two small arrays and one RNG word:

- ``grid``: ``int16[N*N]``, row-major, the board exactly as a strategy sees it: 0 empty, -1 the
  food, and the snake's cells numbered from 1 at the tail to ``L`` (its length) at the head. The
  numbering is the body's order, so a move that does not eat is "every body cell minus one, the
  new head gets ``L``" (the old tail drops to 0), and the neck is the head's neighbour numbered
  ``L - 1``. int16 holds every length of a 16 x 16 board (256).
- ``st``: ``int64[NFIELDS]``, the game's counters (the ``S_*`` columns below): length, head and
  food cells, food eaten, moves, moves since the last meal, status, the hunger limit, and four
  counters only the vector env uses.
- ``rng[k]``: a SplitMix64 state (one ``uint64`` per board), the same generator and the same
  seeding as 2048's kernel (copied here, so that a change to one game's kernel never leaves a
  stale Numba cache in the other): the same seed and options give the same game in any process.

Rules (see ``envs.snake``): actions 0..3 are W, A, S, D (up, left, down, right). A move into the
neck (the reverse of the heading) changes nothing. Otherwise the move is made: into a wall or a
body cell other than the tail it ends the game (the board is left as it was, the head did not
move); onto the food it grows the snake by one (the tail stays) and a new food appears on an
empty cell drawn uniformly; else the tail moves along. After a move that did not eat, a snake
that has made ``hunger`` moves since its last meal (or the start) starves. A snake that fills
the board ends the game too (no cell for the food).
"""
from __future__ import annotations

import numpy as np
from numba import njit

# Action ids, in the order of the action names "W", "A", "S", "D".
UP, LEFT, DOWN, RIGHT = 0, 1, 2, 3

# Columns of the state row ``st``.
S_LEN, S_HEAD, S_FOOD, S_EATEN, S_MOVES, S_SINCE, S_STATUS, S_HUNGER = range(8)
# ...and the vector env's counters: steps taken, steps that changed nothing (all of them, and in a
# row), and "this board ended on the previous call" (NEXT_STEP autoreset).
S_STEPS, S_ILLEGAL, S_STREAK, S_DONE = range(8, 12)
NFIELDS = 12

# Values of st[S_STATUS].
ALIVE, WALL, BODY, STARVED, FULL = range(5)
STATUS_NAMES = ("alive", "wall", "body", "starved", "full")

START_LENGTH = 3

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_MIX_A = np.uint64(0xD6E8FEB86659FD93)
_S30, _S27, _S31, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)
_LOW63 = np.uint64(0x7FFFFFFFFFFFFFFF)


@njit(cache=True, inline="always")
def _next(rng: np.ndarray, k: int) -> np.uint64:
    """SplitMix64 step of ``rng[k]`` (the same generator as 2048's kernel)."""
    s = rng[k] + _GOLDEN
    rng[k] = s
    z = (s ^ (s >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True)
def seed_rng(rng: np.ndarray, k: int, seed: int) -> None:
    """Put ``rng[k]`` in the state that ``seed`` defines (seeds are mixed, so 0, 1, 2 differ fully)."""
    rng[k] = np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _MIX2 + _GOLDEN
    _next(rng, k)


@njit(cache=True)
def draw_seed(rng: np.ndarray, k: int) -> np.int64:
    """A fresh non-negative 63-bit seed derived from ``rng[k]`` (for seedless resets)."""
    z = rng[k] ^ (rng[k] >> _S32)
    z = z * _MIX_A
    z = z ^ (z >> _S32)
    return np.int64(z & _LOW63)


@njit(cache=True)
def spawn(grid: np.ndarray, rng: np.ndarray, k: int) -> int:
    """Put the food on an empty cell drawn uniformly from ``rng[k]``; its index, or -1 when no cell is empty."""
    empty = 0
    for i in range(grid.size):
        if grid[i] == 0:
            empty += 1
    if empty == 0:
        return -1
    r = _next(rng, k)
    # Lemire's multiply-shift maps the high 32 bits onto [0, empty) without a division.
    pick = ((r >> _S32) * np.uint64(empty)) >> _S32
    seen = np.uint64(0)
    for i in range(grid.size):
        if grid[i] == 0:
            if seen == pick:
                grid[i] = -1
                return i
            seen += np.uint64(1)
    return -1


@njit(cache=True)
def reset(grid: np.ndarray, st: np.ndarray, rng: np.ndarray, k: int, n: int, seed: int, hunger: int) -> None:
    """A fresh game: a snake of length 3 in the middle heading right, the food, counters at 0."""
    for i in range(grid.size):
        grid[i] = 0
    for f in range(st.size):
        st[f] = 0
    seed_rng(rng, k, seed)
    r = n // 2
    c = n // 2
    for j in range(START_LENGTH):
        grid[r * n + c - (START_LENGTH - 1) + j] = j + 1
    st[S_LEN] = START_LENGTH
    st[S_HEAD] = r * n + c
    st[S_HUNGER] = hunger
    st[S_STATUS] = ALIVE
    st[S_FOOD] = spawn(grid, rng, k)
    if st[S_FOOD] < 0:  # no board this small is allowed; kept for completeness
        st[S_STATUS] = FULL


@njit(cache=True, inline="always")
def _target(head: int, n: int, a: int) -> int:
    """The cell the head moves to with action ``a``, or -1 off the board."""
    r = head // n
    c = head - r * n
    if a == UP:
        r -= 1
    elif a == LEFT:
        c -= 1
    elif a == DOWN:
        r += 1
    else:
        c += 1
    if r < 0 or r >= n or c < 0 or c >= n:
        return -1
    return r * n + c


@njit(cache=True)
def step(grid: np.ndarray, st: np.ndarray, rng: np.ndarray, k: int, n: int, a: int) -> tuple[int, bool]:
    """Make move ``a`` in place -> (food eaten by it: 0 or 1, whether the state changed)."""
    if st[S_STATUS] != ALIVE:
        return 0, False
    length = st[S_LEN]
    t = _target(st[S_HEAD], n, a)
    if t >= 0 and grid[t] == length - 1:
        return 0, False  # into the neck: not a move
    st[S_MOVES] += 1
    if t < 0:
        st[S_STATUS] = WALL
        return 0, True
    v = grid[t]
    if v > 1:  # the body; the tail (1) moves away this move, so it is free
        st[S_STATUS] = BODY
        return 0, True
    st[S_HEAD] = t
    if v == -1:
        length += 1
        st[S_LEN] = length
        grid[t] = length
        st[S_EATEN] += 1
        st[S_SINCE] = 0
        food = spawn(grid, rng, k)
        st[S_FOOD] = food
        if food < 0:
            st[S_STATUS] = FULL
        return 1, True
    for i in range(grid.size):
        if grid[i] > 0:
            grid[i] -= 1
    grid[t] = length
    st[S_SINCE] += 1
    if st[S_SINCE] >= st[S_HUNGER]:
        st[S_STATUS] = STARVED
    return 0, True


@njit(cache=True)
def legal_bits(grid: np.ndarray, st: np.ndarray, n: int) -> int:
    """Bit ``a`` set when action ``a`` changes the state: every action but the reverse while the game is on."""
    if st[S_STATUS] != ALIVE:
        return 0
    bits = 0
    length = st[S_LEN]
    for a in range(4):
        t = _target(st[S_HEAD], n, a)
        if t < 0 or grid[t] != length - 1:
            bits |= 1 << a
    return bits


# ---------------------------------------------------------------------------------------
# Batched kernels for the vector env: one call steps (and autoresets) every board.

AUTORESET_MODES: tuple[str, ...] = ("NextStep", "SameStep", "Disabled")


@njit(cache=True)
def vec_reset(grids: np.ndarray, sts: np.ndarray, rngs: np.ndarray, n: int, seeds: np.ndarray,
              which: np.ndarray, hunger: int) -> None:
    """Reset every board ``i`` with ``which[i]`` from ``seeds[i]`` (a negative seed: draw one from its RNG)."""
    for i in range(grids.shape[0]):
        if which[i]:
            s = seeds[i]
            if s < 0:
                s = draw_seed(rngs, i)
            reset(grids[i], sts[i], rngs, i, n, s, hunger)


@njit(cache=True)
def vec_step(grids: np.ndarray, sts: np.ndarray, rngs: np.ndarray, n: int, actions: np.ndarray, autoreset: int,
             illegal_reward: float, max_steps: int, max_illegal: int, hunger: int, rewards: np.ndarray,
             terminated: np.ndarray, truncated: np.ndarray, final_grids: np.ndarray, final_sts: np.ndarray,
             ended: np.ndarray) -> int:
    """Step every board with its action, autoresetting in mode ``autoreset``; returns the number of boards that ended.

    NextStep (0): a board that ended on the previous call is reset instead of stepped (its action is
    ignored, reward 0, not terminated/truncated). SameStep (1): a board that ends is reset in this call
    and its last grid and state go to ``final_grids``/``final_sts`` with ``ended[i]`` set. Disabled (2):
    no reset. ``max_steps``/``max_illegal`` of 0 mean no limit.
    """
    n_ended = 0
    for i in range(grids.shape[0]):
        ended[i] = False
        st = sts[i]
        if autoreset == 0 and st[S_DONE] != 0:
            reset(grids[i], st, rngs, i, n, draw_seed(rngs, i), hunger)
            rewards[i] = 0.0
            terminated[i] = False
            truncated[i] = False
            continue
        ate, changed = step(grids[i], st, rngs, i, n, actions[i])
        st[S_STEPS] += 1
        if changed:
            st[S_STREAK] = 0
            rewards[i] = ate
        else:
            st[S_ILLEGAL] += 1
            st[S_STREAK] += 1
            rewards[i] = illegal_reward
        term = st[S_STATUS] != ALIVE or (max_illegal > 0 and st[S_STREAK] >= max_illegal)
        trunc = (not term) and max_steps > 0 and st[S_STEPS] >= max_steps
        terminated[i] = term
        truncated[i] = trunc
        if term or trunc:
            n_ended += 1
            if autoreset == 1:
                ended[i] = True
                final_grids[i, :] = grids[i]
                final_sts[i, :] = st
                reset(grids[i], st, rngs, i, n, draw_seed(rngs, i), hunger)
            else:
                st[S_DONE] = 1
    return n_ended


@njit(cache=True)
def legal_bits_batch(grids: np.ndarray, sts: np.ndarray, n: int, out: np.ndarray) -> None:
    """``out[i]``: the legal-action bits of board ``i``."""
    for i in range(grids.shape[0]):
        out[i] = legal_bits(grids[i], sts[i], n)
