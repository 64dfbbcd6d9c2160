"""Numba kernels for 2048: slide, spawn, legality and game over, single-board and batched.

A board is a flat ``uint8`` array of ``N*N`` tile *exponents* (0 = empty, 1 = tile 2,
11 = tile 2048), row-major. Every direction is handled by one line kernel through an index
table ``lines[d, i, j]``: the cell of line ``i`` at position ``j`` when moving in direction
``d``, position 0 being the side moved towards. So one code path serves all four moves and
every size from 3 to 8.

Randomness comes from a SplitMix64 state (one ``uint64`` per board) that lives next to the
board: the same seed and the same moves give the same game in any process, and the kernels
never touch a global RNG.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# Action ids, in the order of the action names "W", "A", "S", "D".
UP, LEFT, DOWN, RIGHT = 0, 1, 2, 3

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)
_S30, _S27, _S31, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)
_TEN = np.uint64(10)


def line_table(n: int) -> np.ndarray:
    """Index table ``lines[d, i, j]`` for an ``n`` x ``n`` board (see the module docstring)."""
    lines = np.empty((4, n, n), dtype=np.int64)
    for i in range(n):
        for j in range(n):
            lines[UP, i, j] = j * n + i
            lines[LEFT, i, j] = i * n + j
            lines[DOWN, i, j] = (n - 1 - j) * n + i
            lines[RIGHT, i, j] = i * n + (n - 1 - j)
    return lines


@njit(cache=True, inline="always")
def _next(rng: np.ndarray, k: int) -> np.uint64:
    """SplitMix64 step of ``rng[k]``: fast, 64-bit, and passes BigCrush."""
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


@njit(cache=True, inline="always")
def _slide_line(b: np.ndarray, line: np.ndarray, n: int) -> tuple[int, bool]:
    """Slide and merge one line in place towards position 0 -> (points gained, changed).

    Each tile merges at most once: after a merge, ``last`` is cleared so the merged tile
    cannot take a third one ([2,2,2,2] -> [4,4,0,0]).
    """
    gained = 0
    changed = False
    w = 0      # next write position
    last = 0   # exponent at w-1 still free to merge, 0 if none
    for j in range(n):
        v = b[line[j]]
        if v == 0:
            continue
        if v == last:
            b[line[w - 1]] = v + 1
            gained += 1 << (v + 1)
            last = 0
            changed = True
        else:
            if w != j:
                changed = True
            b[line[w]] = v
            last = v
            w += 1
    for j in range(w, n):
        b[line[j]] = 0
    return gained, changed


@njit(cache=True)
def slide(b: np.ndarray, lines: np.ndarray, d: int) -> tuple[int, bool]:
    """Move board ``b`` in direction ``d`` in place (no spawn) -> (points gained, changed)."""
    n = lines.shape[1]
    gained = 0
    changed = False
    for i in range(n):
        g, c = _slide_line(b, lines[d, i], n)
        gained += g
        changed |= c
    return gained, changed


@njit(cache=True, inline="always")
def _line_can_move(b: np.ndarray, line: np.ndarray, n: int) -> bool:
    """Whether sliding this line towards position 0 would change it."""
    seen_empty = False
    prev = 0
    for j in range(n):
        v = b[line[j]]
        if v == 0:
            seen_empty = True
            prev = 0
        else:
            if seen_empty or v == prev:
                return True
            prev = v
    return False


@njit(cache=True)
def can_move(b: np.ndarray, lines: np.ndarray, d: int) -> bool:
    """Whether moving in direction ``d`` would change board ``b``."""
    n = lines.shape[1]
    for i in range(n):
        if _line_can_move(b, lines[d, i], n):
            return True
    return False


@njit(cache=True)
def legal_mask(b: np.ndarray, lines: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out[d]`` with whether direction ``d`` changes the board."""
    for d in range(4):
        out[d] = can_move(b, lines, d)


@njit(cache=True)
def is_over(b: np.ndarray, n: int) -> bool:
    """True when no move changes the board: no tile can slide into an empty cell or merge.

    An empty board is over too (nothing can move), though play never produces one.
    """
    empty = False
    tile = False
    for r in range(n):
        for c in range(n):
            v = b[r * n + c]
            if v == 0:
                empty = True
            else:
                tile = True
                if c + 1 < n and b[r * n + c + 1] == v:
                    return False
                if r + 1 < n and b[(r + 1) * n + c] == v:
                    return False
            if empty and tile:
                return False
    return True


@njit(cache=True)
def spawn(b: np.ndarray, rng: np.ndarray, k: int) -> None:
    """Put a 2 (p=0.9) or a 4 (p=0.1) on an empty cell chosen uniformly, drawing from ``rng[k]``."""
    empty = 0
    for i in range(b.size):
        if b[i] == 0:
            empty += 1
    if empty == 0:
        return
    r = _next(rng, k)
    # Lemire's multiply-shift maps the high 32 bits onto [0, empty) without a division.
    pick = ((r >> _S32) * np.uint64(empty)) >> _S32
    four = ((r & _LOW32) * _TEN) >> _S32 == 0
    seen = np.uint64(0)
    for i in range(b.size):
        if b[i] == 0:
            if seen == pick:
                b[i] = 2 if four else 1
                return
            seen += np.uint64(1)


@njit(cache=True)
def reset(b: np.ndarray, rng: np.ndarray, k: int, seed: int) -> None:
    """Empty the board, seed ``rng[k]`` and spawn the two starting tiles."""
    b[:] = 0
    seed_rng(rng, k, seed)
    spawn(b, rng, k)
    spawn(b, rng, k)


@njit(cache=True)
def step(b: np.ndarray, rng: np.ndarray, k: int, lines: np.ndarray, d: int) -> tuple[int, bool]:
    """One move: slide in direction ``d`` and, if the board changed, spawn -> (gained, changed)."""
    gained, changed = slide(b, lines, d)
    if changed:
        spawn(b, rng, k)
    return gained, changed


@njit(cache=True)
def max_exponent(b: np.ndarray) -> int:
    """The largest exponent on the board (0 for an empty board)."""
    m = 0
    for i in range(b.size):
        if b[i] > m:
            m = b[i]
    return m


# ---------------------------------------------------------------------------------------
# 4x4 bitboards: the batched kernels' fast path for the standard board. A board packs into
# one uint64 (cell i in bits 4i..4i+3, exponents up to 15 = tile 32768); a move is four
# 16-bit row-table lookups, with a nibble transpose for up and down. The array kernels
# above stay the reference and take over whenever a merge would pass tile 32768.

_U4, _U12, _U16, _U24, _U60 = np.uint64(4), np.uint64(12), np.uint64(16), np.uint64(24), np.uint64(60)
_ROW = np.uint64(0xFFFF)
_NIBBLE_LOW_BITS = np.uint64(0x1111111111111111)


@njit(cache=True)
def _build_row_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Left/right results and points of every 16-bit row, computed with the reference line kernel."""
    left = np.zeros(65536, np.uint16)
    right = np.zeros(65536, np.uint16)
    points = np.zeros(65536, np.uint32)  # the same for both directions; uint32 keeps the table in cache
    row = np.zeros(4, np.uint8)
    forward = np.array([0, 1, 2, 3], np.int64)
    backward = np.array([3, 2, 1, 0], np.int64)
    for key in range(65536):
        for table, order in ((left, forward), (right, backward)):
            for j in range(4):
                row[j] = (key >> (4 * j)) & 15
            g, _ = _slide_line(row, order, 4)
            packed = 0
            for j in range(4):
                packed |= np.int64(row[j]) << (4 * j)
            table[key] = packed & 0xFFFF  # rows holding a 15 never use the tables
            points[key] = g
    return left, right, points


_LEFT, _RIGHT, _POINTS = _build_row_tables()


@njit(cache=True, inline="always")
def _pack(b: np.ndarray) -> tuple[np.uint64, bool]:
    """The bitboard of ``b`` and whether it may take the fast path (every exponent below 15)."""
    x = np.uint64(0)
    top = 0
    for i in range(16):
        x |= np.uint64(b[i]) << np.uint64(4 * i)
        top = max(top, b[i])
    return x, top < 15


@njit(cache=True, inline="always")
def _has_15(x: np.uint64) -> bool:
    """Whether a nibble holds 15 (tile 32768): the next merge there would not fit in 4 bits."""
    return (x & (x >> np.uint64(1)) & (x >> np.uint64(2)) & (x >> np.uint64(3)) & _NIBBLE_LOW_BITS) != 0


@njit(cache=True, inline="always")
def _unpack(x: np.uint64, b: np.ndarray) -> None:
    for i in range(16):
        b[i] = (x >> np.uint64(4 * i)) & np.uint64(15)


@njit(cache=True, inline="always")
def _transpose(x: np.uint64) -> np.uint64:
    """Transpose the 4x4 nibble matrix (rows become columns) with three masked swaps."""
    a = (x & np.uint64(0xF0F00F0FF0F00F0F)) | ((x & np.uint64(0x0000F0F00000F0F0)) << _U12) \
        | ((x & np.uint64(0x0F0F00000F0F0000)) >> _U12)
    return (a & np.uint64(0xFF00FF0000FF00FF)) | ((a & np.uint64(0x00FF00FF00000000)) >> _U24) \
        | ((a & np.uint64(0x00000000FF00FF00)) << _U24)


@njit(cache=True, inline="always")
def _rows(x: np.uint64, table: np.ndarray, points: np.ndarray) -> tuple[np.uint64, int]:
    out = np.uint64(0)
    gained = 0
    for r in range(4):
        shift = np.uint64(16 * r)
        row = (x >> shift) & _ROW
        out |= np.uint64(table[row]) << shift
        gained += np.int64(points[row])
    return out, gained


@njit(cache=True, inline="always")
def _move4(x: np.uint64, d: int, left: np.ndarray, right: np.ndarray,
           points: np.ndarray) -> tuple[np.uint64, int]:
    """Move bitboard ``x`` (no nibble at 15) in direction ``d`` -> (result, points)."""
    if d == LEFT:
        return _rows(x, left, points)
    if d == RIGHT:
        return _rows(x, right, points)
    y, g = _rows(_transpose(x), left if d == UP else right, points)
    return _transpose(y), g


@njit(cache=True, inline="always")
def _spawn4(x: np.uint64, rngs: np.ndarray, k: int) -> np.uint64:
    """:func:`spawn` on a bitboard, drawing the same random numbers in the same way."""
    t = x | (x >> np.uint64(1))
    t = (t | (t >> np.uint64(2))) & _NIBBLE_LOW_BITS  # bit 4i set iff cell i is occupied
    occupied = int((t * _NIBBLE_LOW_BITS) >> _U60)  # nibble sum; 16 wraps to 0
    if occupied == 0 and t != np.uint64(0):
        return x  # full board
    empty = 16 - occupied
    r = _next(rngs, k)
    pick = ((r >> _S32) * np.uint64(empty)) >> _S32
    four = ((r & _LOW32) * _TEN) >> _S32 == 0
    e = ~t & _NIBBLE_LOW_BITS
    for _ in range(int(pick)):
        e &= e - np.uint64(1)
    return x | ((e & (~e + np.uint64(1))) * np.uint64(2 if four else 1))


@njit(cache=True, inline="always")
def _over4(x: np.uint64, left: np.ndarray, right: np.ndarray, points: np.ndarray) -> bool:
    for d in range(4):
        y, _ = _move4(x, d, left, right, points)
        if y != x:
            return False
    return True


# ---------------------------------------------------------------------------------------
# Batched kernels: one call steps every board, so Python overhead is paid once per batch.


@njit(cache=True)
def reset_batch(boards: np.ndarray, rngs: np.ndarray, seeds: np.ndarray) -> None:
    """Reset board ``i`` from ``seeds[i]`` for every row of ``boards``."""
    for i in range(boards.shape[0]):
        reset(boards[i], rngs, i, seeds[i])


@njit(cache=True)
def _step_batch(boards, rngs, lines, actions, gained, changed, over, left, right, points):
    n = lines.shape[1]
    for i in range(boards.shape[0]):
        b = boards[i]
        if n == 4:
            x, fast = _pack(b)
            if fast:
                y, g = _move4(x, actions[i], left, right, points)
                c = y != x
                if c:
                    y = _spawn4(y, rngs, i)
                    _unpack(y, b)
                gained[i] = g
                changed[i] = c
                # _over4 needs no nibble at 15; a fresh 32768 is rare enough for the array kernel
                over[i] = is_over(b, n) if _has_15(y) else _over4(y, left, right, points)
                continue
        g, c = step(b, rngs, i, lines, actions[i])
        gained[i] = g
        changed[i] = c
        over[i] = is_over(b, n)


def step_batch(boards: np.ndarray, rngs: np.ndarray, lines: np.ndarray, actions: np.ndarray,
               gained: np.ndarray, changed: np.ndarray, over: np.ndarray) -> None:
    """Step every board with its action; fill points gained, changed and game-over flags."""
    _step_batch(boards, rngs, lines, actions, gained, changed, over, _LEFT, _RIGHT, _POINTS)


# 24 permutations of the 4 directions: trying directions in a uniformly random order and
# taking the first that changes the board picks uniformly among the legal moves, and an
# illegal slide leaves the board untouched, so no copy and no legality pass is needed.
_PERMS = np.array([[a, b, c, d] for a in range(4) for b in range(4) for c in range(4)
                   for d in range(4) if len({a, b, c, d}) == 4], dtype=np.int64)


@njit(cache=True)
def _random_play_batch(boards, rngs, lines, steps, seeds, perms, left, right, points):
    n = lines.shape[1]
    moves = 0
    for i in range(boards.shape[0]):
        b = boards[i]
        x, fast = _pack(b) if n == 4 else (np.uint64(0), False)
        for _ in range(steps):
            r = _next(rngs, i)
            p = perms[((r >> _S32) * np.uint64(24)) >> _S32]
            moved = False
            for t in range(4):
                if fast:
                    y, g = _move4(x, p[t], left, right, points)
                    if y != x:
                        x = _spawn4(y, rngs, i)
                        moved = True
                        if _has_15(x):  # tile 32768: the rest of this game on the array kernel
                            _unpack(x, b)
                            fast = False
                        break
                else:
                    g, c = slide(b, lines, p[t])
                    if c:
                        spawn(b, rngs, i)
                        moved = True
                        break
            if moved:
                moves += 1
            else:
                seeds[i] += boards.shape[0]
                reset(b, rngs, i, seeds[i])
                if n == 4:
                    x, fast = _pack(b)
        if fast:
            _unpack(x, b)
    return moves


def random_play_batch(boards: np.ndarray, rngs: np.ndarray, lines: np.ndarray, steps: int,
                      seeds: np.ndarray) -> int:
    """Make ``steps`` random legal moves on every board (reset from ``seeds[i] + B`` when over).

    Returns the number of moves made; used by the speed benchmark and by the random baseline.
    """
    return _random_play_batch(boards, rngs, lines, steps, seeds, _PERMS, _LEFT, _RIGHT, _POINTS)
