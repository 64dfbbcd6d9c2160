"""Snake's game API: helpers a strategy may call, trusted engine functions like 2048's.

- ``legal_moves(board)``: the moves that do not end the game at once (no wall, no body, not the
  reverse into the neck), in the order W, A, S, D. Empty when every move kills the snake: a
  strategy then still has to answer a move that changes the state (``heading(board)`` is one),
  or it wastes answers into its neck and ends "stuck".
- ``step(board, move)``: ``(board after the move, ate, alive)`` without the new food (it appears
  where the game's generator says, which no strategy can know). The reverse into the neck
  changes nothing: the same board, ``False``, ``True``. A deadly move leaves the board as it was:
  the same board, ``False``, ``False``.
- ``head(board)``, ``food(board)``: ``(row, col)`` of the head and of the food (None when none).
- ``heading(board)``: the move that goes straight on (from the neck through the head): never the
  reverse, so it always changes the state.

Like 2048's API (see :mod:`envs.game2048.api`), these are handed to a program as builtins by the
sandbox when the reward spec's ``game_api`` is on. They follow the kernel's rules exactly
(:mod:`envs.snake.kernel`; tests/test_snake.py proves it on random reachable games), in pure Python:
no Numba dispatch, NumPy or import runs while a strategy is being watched. Every argument is checked
before it is used, lengths before any iteration, so a 10**7-element list is refused in O(1). A board is
a list (or tuple) of N rows, each a list (or tuple) of N ``int`` cells (``bool`` refused) from -1 to
N*N, holding one snake of at least 3 cells numbered 1 (tail) to its length (head), each number once,
each cell next to the one numbered one more, and at most one food (-1). Anything else raises a
TypeError or ValueError with a one-line message naming the function and the argument, which the
sandbox reports as the program's own runtime error. Results are fresh lists, tuples and ints;
nothing is kept between calls. A call costs O(N^2).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

__all__ = ["API", "MIN_SIZE", "MAX_SIZE", "board_cells", "make_legal_moves", "make_step", "make_head", "make_food",
           "make_heading"]

# The order of envs.snake.ACTIONS (this module cannot import the package that imports it;
# tests/test_snake.py checks that the two agree).
_ACTIONS: tuple[str, ...] = ("W", "A", "S", "D")
_DELTAS: tuple[tuple[int, int], ...] = ((-1, 0), (0, -1), (1, 0), (0, 1))
MIN_SIZE, MAX_SIZE = 5, 16
_MIN_LENGTH = 3


def _size(options: Mapping[str, Any]) -> int:
    """The board size of ``options`` (default 8), checked like the game's own option."""
    size = options.get("size", 8)
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"snake board size must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    return size


def _shown(v: int) -> str:
    # Never render a huge int (slow, and past 4300 digits str() itself raises).
    return str(v) if -10**9 < v < 10**9 else "a huge number"


def board_cells(board: Any, n: int, where: str) -> tuple[list[int], list[int], int]:
    """``(cells, body, food)`` of an N x N snake ``board``; TypeError/ValueError naming ``where`` otherwise.

    ``cells`` is the flat row-major board, ``body[k]`` the flat cell of the snake's cell numbered
    ``k + 1`` (tail first, head last), ``food`` the food's flat cell or -1. Exact ``list``/``tuple``/``int``
    types only (no subclass's ``__len__`` or ``__eq__`` runs), every length read in O(1) before anything
    is iterated.
    """
    if type(board) is not list and type(board) is not tuple:
        raise TypeError(f"{where}: board must be a list of {n} rows, got {type(board).__name__}")
    if len(board) != n:
        raise ValueError(f"{where}: board must have {n} rows, got {len(board)}")
    top = n * n
    cells: list[int] = []
    at = [-1] * (top + 1)  # at[v]: the flat cell holding body number v
    food = -1
    for r in range(n):
        row = board[r]
        if type(row) is not list and type(row) is not tuple:
            raise TypeError(f"{where}: board[{r}] must be a list of {n} ints, got {type(row).__name__}")
        if len(row) != n:
            raise ValueError(f"{where}: board[{r}] must have {n} cells, got {len(row)}")
        for c in range(n):
            v = row[c]
            if type(v) is not int:
                raise TypeError(f"{where}: board[{r}][{c}] must be an int, got {type(v).__name__}")
            if not -1 <= v <= top:
                raise ValueError(f"{where}: board[{r}][{c}] = {_shown(v)} is not a cell "
                                 f"(-1 the food, 0 empty, 1 to {top} the snake)")
            i = r * n + c
            if v > 0:
                if at[v] >= 0:
                    raise ValueError(f"{where}: snake cell number {v} appears twice")
                at[v] = i
            elif v < 0:
                if food >= 0:
                    raise ValueError(f"{where}: board has more than one food cell (-1)")
                food = i
            cells.append(v)
    length = 0
    while length < top and at[length + 1] >= 0:
        length += 1
    if length < _MIN_LENGTH:
        raise ValueError(f"{where}: board must hold a snake of at least {_MIN_LENGTH} cells numbered 1 (tail) "
                         f"up to its length (head), got {length} numbered from 1")
    if any(at[v] >= 0 for v in range(length + 1, top + 1)):
        raise ValueError(f"{where}: snake numbers must run 1, 2, ... without a gap; number {length + 1} is missing")
    body = at[1:length + 1]
    for k in range(length - 1):
        a, b = body[k], body[k + 1]
        if abs(a // n - b // n) + abs(a % n - b % n) != 1:
            raise ValueError(f"{where}: snake cells {k + 1} and {k + 2} are not neighbours")
    return cells, body, food


def _direction(move: Any, where: str) -> int:
    """The action id of ``move``; TypeError/ValueError naming ``where`` otherwise."""
    if type(move) is not str:
        raise TypeError(f"{where}: move must be one of {', '.join(_ACTIONS)} (a str), got {type(move).__name__}")
    if move not in _ACTIONS:  # str equality compares lengths first: a huge string costs O(1)
        raise ValueError(f"{where}: move must be one of {', '.join(_ACTIONS)}, got {move[:8]!r}")
    return _ACTIONS.index(move)


def _target(head: int, n: int, a: int) -> int:
    """The cell the head moves to with action ``a``, or -1 off the board."""
    dr, dc = _DELTAS[a]
    r, c = head // n + dr, head % n + dc
    return r * n + c if 0 <= r < n and 0 <= c < n else -1


def _safe(cells: list[int], body: list[int], n: int, a: int) -> bool:
    """Whether action ``a`` keeps the snake alive and changes the state: on the board, and onto an empty
    cell, the food or the tail (which moves away; the neck, numbered length - 1 >= 2, is excluded too)."""
    t = _target(body[-1], n, a)
    return t >= 0 and cells[t] <= 1


def _rows(cells: list[int], n: int) -> list[list[int]]:
    return [cells[r * n:(r + 1) * n] for r in range(n)]


def make_legal_moves(options: Mapping[str, Any]) -> Callable[[Any], list[str]]:
    """``legal_moves(board)`` for boards of the size in ``options``."""
    n = _size(options)

    def legal_moves(board: Any) -> list[str]:
        """The moves that do not end the game at once, in the order W, A, S, D (a fresh list; may be empty)."""
        cells, body, _ = board_cells(board, n, "legal_moves")
        return [m for a, m in enumerate(_ACTIONS) if _safe(cells, body, n, a)]

    return legal_moves


def make_step(options: Mapping[str, Any]) -> Callable[[Any, Any], tuple[list[list[int]], bool, bool]]:
    """``step(board, move)`` for boards of the size in ``options``."""
    n = _size(options)

    def step(board: Any, move: Any) -> tuple[list[list[int]], bool, bool]:
        """``(board after the move, ate, alive)``: fresh lists, before the new food appears."""
        cells, body, _ = board_cells(board, n, "step")
        a = _direction(move, "step")
        length = len(body)
        t = _target(body[-1], n, a)
        if t >= 0 and cells[t] == length - 1:
            return _rows(cells, n), False, True  # into the neck: not a move
        if t < 0 or cells[t] > 1:
            return _rows(cells, n), False, False  # the wall or the body: the board stays as it was
        out = list(cells)
        if cells[t] == -1:
            out[t] = length + 1
            return _rows(out, n), True, True
        for i in body:
            out[i] -= 1
        out[t] = length
        return _rows(out, n), False, True

    return step


def make_head(options: Mapping[str, Any]) -> Callable[[Any], tuple[int, int]]:
    """``head(board)`` for boards of the size in ``options``."""
    n = _size(options)

    def head(board: Any) -> tuple[int, int]:
        """``(row, col)`` of the snake's head (its largest number)."""
        _, body, _ = board_cells(board, n, "head")
        return divmod(body[-1], n)

    return head


def make_food(options: Mapping[str, Any]) -> Callable[[Any], tuple[int, int] | None]:
    """``food(board)`` for boards of the size in ``options``."""
    n = _size(options)

    def food(board: Any) -> tuple[int, int] | None:
        """``(row, col)`` of the food (-1), or None when the board has none."""
        _, _, at = board_cells(board, n, "food")
        return divmod(at, n) if at >= 0 else None

    return food


def make_heading(options: Mapping[str, Any]) -> Callable[[Any], str]:
    """``heading(board)`` for boards of the size in ``options``."""
    n = _size(options)

    def heading(board: Any) -> str:
        """The move that goes straight on, from the neck through the head (never the reverse)."""
        _, body, _ = board_cells(board, n, "heading")
        dr = body[-1] // n - body[-2] // n
        dc = body[-1] % n - body[-2] % n
        return _ACTIONS[_DELTAS.index((dr, dc))]

    return heading


API: tuple[tuple[str, str, str, Callable[[Mapping[str, Any]], Callable[..., Any]]], ...] = (
    ("legal_moves", "legal_moves(board)",
     "the moves that neither hit a wall or the body nor reverse into the neck, in the order W, A, S, D "
     "(empty when every move kills)", make_legal_moves),
    ("step", "step(board, move)",
     "(the board after the move, before the new food appears, whether it ate, whether the snake is alive)",
     make_step),
    ("head", "head(board)", "(row, col) of the snake's head", make_head),
    ("food", "food(board)", "(row, col) of the food, or None", make_food),
    ("heading", "heading(board)", "the move that goes straight on (never the reverse)", make_heading),
)
"""(name, signature, one-line doc, make) of each function; envs.snake declares them on its spec."""
