"""Numba expectimax for 2048: the reference strength baselines and rewards are measured against.

The search alternates *max* nodes (the player picks one of the four moves) and *chance*
nodes (a 2 with p=0.9 or a 4 with p=0.1 lands on an empty cell chosen uniformly), on the
kernel's flat exponent boards through :func:`envs.game2048.kernel.slide`. ``depth`` is the
number of moves looked ahead: depth 1 picks the move whose board scores best right after the
slide, depth 2 also averages over every spawn and the best reply to it, and so on.

A leaf is scored by a heuristic summed over every row and column (read in both directions
via the kernel's line table):

- empty cells (room to move) and adjacent equal tiles (merges waiting to happen);
- monotonicity: the penalty of the cheaper direction in which the line is not sorted,
  measured on ``exponent ** 4`` so that disorder among big tiles costs much more;
- a penalty growing with the tiles' size (``exponent ** 3.5``), which rewards merging;
- a bonus for the largest tile sitting in a corner.

Each line also gets a constant ``LINE_BASE`` for being alive: a board on which no move is
possible loses it, so dying costs ``2 * N * LINE_BASE`` on top of whatever the board looks
like. (The penalties grow without bound with the tiles, so a dead board cannot simply score
0: late in a game every live board would score below it.) Branches whose probability falls under ``MIN_PROB`` are cut to a
heuristic leaf: they cannot change the average much and dominate the node count.

Weights follow the usual 2048 AI heuristics (empty cells, merges, monotonicity, size
penalty); they were checked by measuring games, not tuned per seed.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from numba import njit

from envs.game2048 import ACTIONS, lines_for, to_exponents
from envs.game2048.kernel import slide

__all__ = ["expectimax_move", "expectimax_strategy", "heuristic", "MAX_DEPTH"]

MAX_DEPTH = 4
"""Deepest search allowed; depth 4 already takes seconds per move on crowded boards."""

LINE_BASE = 200_000.0   # per line, for being alive: what a dead board loses
EMPTY_W = 270.0
MERGE_W = 700.0
MONO_W = 47.0
SIZE_W = 11.0
CORNER_W = 1_000.0      # per exponent of the largest tile when it sits in a corner
MIN_PROB = 1e-4

# Per-exponent powers used by the heuristic (exponents go up to 17 on a 4x4 board, more on
# larger ones; 31 covers every board up to 8x8 with room to spare).
_POW4 = np.array([float(e) ** 4 for e in range(32)])
_POW35 = np.array([float(e) ** 3.5 for e in range(32)])


@njit(cache=True)
def _line_score(b: np.ndarray, line: np.ndarray, n: int, pow4: np.ndarray, pow35: np.ndarray) -> float:
    """Heuristic of one line read from position 0 to n-1."""
    empty = 0
    merges = 0
    prev = 0
    run = 0
    size = 0.0
    for j in range(n):
        v = b[line[j]]
        size += pow35[v]
        if v == 0:
            empty += 1
        elif v == prev:
            run += 1
        else:
            if run > 0:
                merges += 1 + run
            run = 0
            prev = v
    if run > 0:
        merges += 1 + run
    mono_up = 0.0
    mono_down = 0.0
    for j in range(n - 1):
        a = pow4[b[line[j]]]
        c = pow4[b[line[j + 1]]]
        if a > c:
            mono_down += a - c
        else:
            mono_up += c - a
    return (LINE_BASE + EMPTY_W * empty + MERGE_W * merges
            - MONO_W * min(mono_up, mono_down) - SIZE_W * size)


@njit(cache=True)
def _heuristic(b: np.ndarray, lines: np.ndarray, pow4: np.ndarray, pow35: np.ndarray) -> float:
    n = lines.shape[1]
    total = 0.0
    # Rows (LEFT) and columns (UP); monotonicity already looks both ways along a line.
    for d in range(2):
        for i in range(n):
            total += _line_score(b, lines[d, i], n, pow4, pow35)
    top = 0
    for k in range(b.size):
        if b[k] > top:
            top = b[k]
    last = n - 1
    if b[0] == top or b[last] == top or b[last * n] == top or b[last * n + last] == top:
        total += CORNER_W * top
    return total


def heuristic(board: np.ndarray, size: int) -> float:
    """The leaf heuristic of a flat exponent board (higher is better)."""
    return float(_heuristic(np.ascontiguousarray(board, dtype=np.uint8), lines_for(size), _POW4, _POW35))


@njit(cache=True)
def _chance(b: np.ndarray, lines: np.ndarray, depth: int, prob: float, scratch: np.ndarray,
            pow4: np.ndarray, pow35: np.ndarray) -> float:
    """Expected value of board ``b`` before the spawn, with ``depth`` moves left after it.

    ``b`` is modified and restored; ``scratch[depth]`` holds the board after each reply, so
    the search allocates nothing.
    """
    empty = 0
    for k in range(b.size):
        if b[k] == 0:
            empty += 1
    if empty == 0:  # cannot happen after a move that changed the board; kept for safety
        return _heuristic(b, lines, pow4, pow35)
    total = 0.0
    after = scratch[depth]
    for k in range(b.size):
        if b[k] != 0:
            continue
        for tile in range(1, 3):
            p = 0.9 if tile == 1 else 0.1
            b[k] = tile
            best = -np.inf
            for d in range(4):
                after[:] = b
                gained, changed = slide(after, lines, d)
                if not changed:
                    continue
                p_next = prob * p / empty
                if depth <= 1 or p_next < MIN_PROB:
                    v = _heuristic(after, lines, pow4, pow35)
                else:
                    v = _chance(after, lines, depth - 1, p_next, scratch, pow4, pow35)
                if v > best:
                    best = v
            if best == -np.inf:  # no move changes the board: the game is lost here
                best = _heuristic(b, lines, pow4, pow35) - 2 * lines.shape[1] * LINE_BASE
            total += p * best
        b[k] = 0
    return total / empty


@njit(cache=True)
def _root(b: np.ndarray, lines: np.ndarray, depth: int, scratch: np.ndarray,
          pow4: np.ndarray, pow35: np.ndarray) -> int:
    best_d = -1
    best = -np.inf
    after = scratch[depth]
    for d in range(4):
        after[:] = b
        gained, changed = slide(after, lines, d)
        if not changed:
            continue
        if depth <= 1:
            v = _heuristic(after, lines, pow4, pow35)
        else:
            v = _chance(after, lines, depth - 1, 1.0, scratch, pow4, pow35)
        if v > best:
            best = v
            best_d = d
    return best_d


def expectimax_move(board_exponents: np.ndarray, size: int, depth: int = 2) -> int:
    """The best action id (0..3 = W, A, S, D) for a flat exponent board; -1 when no move changes it."""
    if not 1 <= int(depth) <= MAX_DEPTH:
        raise ValueError(f"expectimax depth must be 1..{MAX_DEPTH}, got {depth!r}")
    b = np.array(board_exponents, dtype=np.uint8).reshape(-1)
    if b.size != size * size:
        raise ValueError(f"board has {b.size} cells; a {size}x{size} board needs {size * size}")
    scratch = np.empty((int(depth) + 1, b.size), dtype=np.uint8)
    return int(_root(b, lines_for(size), int(depth), scratch, _POW4, _POW35))


def expectimax_strategy(depth: int = 2) -> Callable[[list], str]:
    """A strategy function ``strategy(board) -> str`` on list boards using expectimax (trusted)."""
    if not 1 <= int(depth) <= MAX_DEPTH:
        raise ValueError(f"expectimax depth must be 1..{MAX_DEPTH}, got {depth!r}")
    depth = int(depth)

    def strategy(board: list) -> str:
        action = expectimax_move(to_exponents(board), len(board), depth)
        return ACTIONS[action] if action >= 0 else ACTIONS[0]

    strategy.__name__ = f"expectimax_depth{depth}"
    return strategy
