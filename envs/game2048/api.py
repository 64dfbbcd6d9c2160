"""2048's game API: ``legal_moves(board)`` and ``slide(board, move)``, helpers a strategy may call.

They are trusted engine functions that the sandbox's runtime hands to a program as builtins
(when the reward spec's ``game_api`` is on), not restricted helper code pasted in front of the
program: a restricted ``slide`` cannot be written without loops or recursion, which the policy
forbids; pasted code would count against the program's size limit and the program could edit or
rebind it. A trusted function checks its arguments instead, and a call costs O(N^2).

Both follow the rules of the Numba kernel (:mod:`envs.game2048.kernel`) exactly, in pure Python
(tests/test_game_api.py proves them equal on random boards of every size, every move): no
Numba dispatch, NumPy or import runs while a strategy is being watched. Every argument is
checked before it is used, lengths before any iteration, so a 10**7-element list is refused in
O(1): a board is a list (or tuple) of N rows, each a list (or tuple) of N ``int`` tiles (``bool``
refused), 0 or a power of two from 2 to ``MAX_TILE``. Anything else raises a TypeError or a
ValueError with a one-line message naming the function and the argument, which the sandbox
reports as the program's own runtime error. Results are fresh lists and ints; nothing is kept
between calls.

``MAX_TILE`` (2**17) is the largest tile a 4x4 board can ever hold; on larger boards a game would
need more than 65,000 moves to build a bigger one (``sandbox.records.Limits`` allows 5,000).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Mapping

__all__ = ["MAX_TILE", "API", "make_legal_moves", "make_slide", "board_cells"]

# The order of envs.game2048.ACTIONS (this module cannot import the package that imports it;
# tests/test_game_api.py checks that the two agree).
_ACTIONS: tuple[str, ...] = ("W", "A", "S", "D")
_MIN_SIZE, _MAX_SIZE = 3, 8
MAX_TILE = 1 << 17
_TILES = frozenset([0] + [1 << e for e in range(1, 18)])


def _size(options: Mapping[str, Any]) -> int:
    """The board size of ``options`` (default 4), checked like the game's own option."""
    size = options.get("size", 4)
    if isinstance(size, bool) or not isinstance(size, int) or not _MIN_SIZE <= size <= _MAX_SIZE:
        raise ValueError(f"2048 board size must be an integer from {_MIN_SIZE} to {_MAX_SIZE}, got {size!r}")
    return size


@lru_cache(maxsize=None)
def _lines(n: int) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """``lines[d][i]``: the flat cells of line ``i`` moving in direction ``d``, nearest that side first.

    The same table as :func:`envs.game2048.kernel.line_table`.
    """
    up = tuple(tuple(j * n + i for j in range(n)) for i in range(n))
    left = tuple(tuple(i * n + j for j in range(n)) for i in range(n))
    down = tuple(tuple((n - 1 - j) * n + i for j in range(n)) for i in range(n))
    right = tuple(tuple(i * n + (n - 1 - j) for j in range(n)) for i in range(n))
    return (up, left, down, right)


def _shown(v: int) -> str:
    # Never render a huge int (slow, and past 4300 digits str() itself raises).
    return str(v) if -10**9 < v < 10**9 else "a huge number"


def board_cells(board: Any, n: int, where: str) -> list[int]:
    """The flat row-major tiles of an N x N ``board``; TypeError/ValueError naming ``where`` otherwise.

    Exact ``list``/``tuple``/``int`` types only: no subclass's ``__len__`` or ``__eq__`` runs, and
    every length is read (in O(1)) before anything is iterated.
    """
    if type(board) is not list and type(board) is not tuple:
        raise TypeError(f"{where}: board must be a list of {n} rows, got {type(board).__name__}")
    if len(board) != n:
        raise ValueError(f"{where}: board must have {n} rows, got {len(board)}")
    cells: list[int] = []
    for r in range(n):
        row = board[r]
        if type(row) is not list and type(row) is not tuple:
            raise TypeError(f"{where}: board[{r}] must be a list of {n} ints, got {type(row).__name__}")
        if len(row) != n:
            raise ValueError(f"{where}: board[{r}] must have {n} cells, got {len(row)}")
        for c in range(n):
            v = row[c]
            if type(v) is not int:
                raise TypeError(f"{where}: board[{r}][{c}] must be an int tile, got {type(v).__name__}")
            if not 0 <= v <= MAX_TILE or v not in _TILES:
                raise ValueError(f"{where}: board[{r}][{c}] = {_shown(v)} is not a tile "
                                 f"(0 or a power of two from 2 to {MAX_TILE})")
            cells.append(v)
    return cells


def _direction(move: Any, where: str) -> int:
    """The action id of ``move``; TypeError/ValueError naming ``where`` otherwise."""
    if type(move) is not str:
        raise TypeError(f"{where}: move must be one of {', '.join(_ACTIONS)} (a str), got {type(move).__name__}")
    if move not in _ACTIONS:  # str equality compares lengths first: a huge string costs O(1)
        raise ValueError(f"{where}: move must be one of {', '.join(_ACTIONS)}, got {move[:8]!r}")
    return _ACTIONS.index(move)


def _can_move(cells: list[int], lines: tuple[tuple[int, ...], ...]) -> bool:
    """Whether sliding along ``lines`` changes ``cells``: a tile after a gap, or two equal neighbours."""
    for line in lines:
        gap = False
        prev = 0
        for idx in line:
            v = cells[idx]
            if v == 0:
                gap = True
                prev = 0
            elif gap or v == prev:
                return True
            else:
                prev = v
    return False


def _slide(cells: list[int], lines: tuple[tuple[int, ...], ...]) -> tuple[list[int], int]:
    """``cells`` after sliding along ``lines`` (a fresh list) and the points merged.

    The kernel's line rule: tiles move towards position 0; a tile equal to the last one written
    (and not itself made by a merge) merges into it, so [2, 2, 2, 2] gives [4, 4, 0, 0]. Reads
    come from the untouched input, which is what the in-place kernel reads too (it only writes
    at or before the position it reads).
    """
    out = list(cells)
    gained = 0
    for line in lines:
        w = 0
        last = 0
        for idx in line:
            v = cells[idx]
            if v == 0:
                continue
            if v == last:
                out[line[w - 1]] = v * 2
                gained += v * 2
                last = 0
            else:
                out[line[w]] = v
                last = v
                w += 1
        for j in range(w, len(line)):
            out[line[j]] = 0
    return out, gained


def make_legal_moves(options: Mapping[str, Any]) -> Callable[[Any], list[str]]:
    """``legal_moves(board)`` for boards of the size in ``options``."""
    n = _size(options)
    table = _lines(n)

    def legal_moves(board: Any) -> list[str]:
        """The moves that change ``board``, in the order W, A, S, D (a fresh list)."""
        cells = board_cells(board, n, "legal_moves")
        return [a for a, lines in zip(_ACTIONS, table) if _can_move(cells, lines)]

    return legal_moves


def make_slide(options: Mapping[str, Any]) -> Callable[[Any, Any], tuple[list[list[int]], int]]:
    """``slide(board, move)`` for boards of the size in ``options``."""
    n = _size(options)
    table = _lines(n)

    def slide(board: Any, move: Any) -> tuple[list[list[int]], int]:
        """``(board after move, points)``: fresh lists, before the new tile appears."""
        cells = board_cells(board, n, "slide")
        out, gained = _slide(cells, table[_direction(move, "slide")])
        return [out[r * n:(r + 1) * n] for r in range(n)], gained

    return slide


API: tuple[tuple[str, str, str, Callable[[Mapping[str, Any]], Callable[..., Any]]], ...] = (
    ("legal_moves", "legal_moves(board)", "the moves that change the board, in the order W, A, S, D",
     make_legal_moves),
    ("slide", "slide(board, move)",
     "(the board after the move, before the new tile appears, the points it scores)", make_slide),
)
"""(name, signature, one-line doc, make) of each function; envs.game2048 declares them on its spec."""
