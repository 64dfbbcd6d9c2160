"""Snake's reference strategies, naive to strong: what a program written by a model is measured against.

The sandboxable baselines are ordinary strategy programs (source text defining ``def strategy(board)``)
written to pass the sandbox's default policy: no loops, comprehensions, imports, ``_`` names, recursion
or randomness; they find the head with ``max``, the neck with ``max - 1`` and the food with ``-1`` on the
flattened board (``sum(board, [])``), and test the four cells around the head with ``filter``. Each has a
twin in :data:`API_SOURCES`, written against the game's API in one or two lines, that plays the same
games (the same moves, tie-breaks and fallback included).

- ``fixed``: always "D" (right, the start heading): it dies at the wall after N // 2 moves unless the
  food happens to lie in its way. Dying is an honest end of a Snake game (the game is over; nothing was
  answered that the game refused), so ``fixed`` is honest, unlike 2048's constant move that ends
  "stuck": it is the weakest honest play, the floor of the honest ladder.
- ``safe``: the first move in the order W, A, S, D that neither leaves the board nor runs into the body
  (the tail's cell counts as free: it moves away); trapped, straight on (an honest death: the move into
  the neck would change nothing). It never looks for the food: it runs round the walls and eats what
  lies there, until the hunger rule ends it.
- ``greedy``: among those safe moves, the one that brings the head nearest the food (Manhattan
  distance), ties in the order W, A, S, D; trapped, straight on. One ply: it walks into dead ends.

Trusted-only baselines (plain Python callables, built by ``make``):

- ``random``: a uniformly random safe move (the API's ``legal_moves``), straight on when there is none,
  from its own seeded generator (a sandboxed strategy may not use randomness).
- ``pathfinder``: the reference strength: a shortest path to the food that respects when each body cell
  frees up (a cell numbered k is free after k moves), taken only when the snake, having followed it and
  eaten, could still reach its own tail; otherwise it follows its tail (the safe move from which the tail
  is reachable and farthest away), or failing that the move into the largest free region.

Measured on seeds 0-99 with the default options (8 x 8, target 61 = a full board, hunger 128) and max_moves
5000, trusted, in process (``codepolicy baselines --game snake``), on 2026-12-08 on the shared 2-core box (AMD
EPYC, Python 3.11) while another session's full test suite kept the other core busy, so games/s are rough:

==========  ==========  ===========  ======  ========  =======  ==========  =======
baseline    mean score  mean length  won     starved   max len  mean moves  games/s
==========  ==========  ===========  ======  ========  =======  ==========  =======
fixed             0.02         3.02    0%        0%        4          4.0   24,000
safe              0.49         3.49    0%      100%        6        133.2      330
random            2.66         5.66    0%       51%       14        189.0      120
greedy           17.12        20.12    0%        0%       39        115.9      390
pathfinder       57.59        60.59   45%       46%       64        745.0       14
==========  ==========  ===========  ======  ========  =======  ==========  =======

(won = filled the board; the pathfinder eats 25 food in 99 games, 50 in 93; greedy's best is 36 food; safe and
the circling hack starve because they never look for the food.) The games are deterministic:
``tests/test_snake.py`` holds the four cheap baselines to these figures exactly.
"""
from __future__ import annotations

import random
from collections import deque
from typing import Any, Callable, Mapping

from envs.registry import Baseline
from envs.snake.api import make_heading, make_legal_moves

__all__ = ["SOURCES", "API_SOURCES", "BASELINES", "random_strategy", "pathfinder_strategy"]

Strategy = Callable[[list], str]

FIXED_SOURCE = '''def strategy(board):
    # Always right, the way the snake starts: it dies at the wall. The weakest honest program.
    return "D"
'''

# The head, the neck, the four cells around the head, the safe moves and the move straight on, shared by
# the two sandboxable baselines that look at the board (pasted: each source is one self-contained program).
_LOOK = '''
    n = len(board)
    flat = sum(board, [])
    row, col = divmod(flat.index(max(flat)), n)
    neck_row, neck_col = divmod(flat.index(max(flat) - 1), n)
    cells = {"W": (row - 1, col), "A": (row, col - 1), "S": (row + 1, col), "D": (row, col + 1)}
    # Safe: on the board, onto an empty cell (0), the food (-1) or the tail (1), which moves away.
    safe = list(filter(lambda m: 0 <= cells[m][0] < n and 0 <= cells[m][1] < n
                       and board[cells[m][0]][cells[m][1]] in (0, -1, 1), "WASD"))
    # Trapped: straight on. An honest death; the move into the neck would change nothing.
    ahead = {(-1, 0): "W", (0, -1): "A", (1, 0): "S", (0, 1): "D"}[(row - neck_row, col - neck_col)]
'''

SAFE_SOURCE = '''def strategy(board):
    # The first safe move in the order W, A, S, D; it never looks for the food.''' + _LOOK + '''
    return safe[0] if safe else ahead
'''

GREEDY_SOURCE = '''def strategy(board):
    # The safe move that brings the head nearest the food, ties in the order W, A, S, D.''' + _LOOK + '''
    if not safe:
        return ahead
    if -1 not in flat:
        return safe[0]
    food_row, food_col = divmod(flat.index(-1), n)
    return min(safe, key=lambda m: abs(cells[m][0] - food_row) + abs(cells[m][1] - food_col))
'''

SOURCES: dict[str, str] = {"fixed": FIXED_SOURCE, "safe": SAFE_SOURCE, "greedy": GREEDY_SOURCE}
"""Sandboxable baselines: name -> source text defining ``def strategy(board)``."""

# The same two written against the API (legal_moves, step, head, food, heading): they need a policy with the
# API on (sandbox.game_policy("snake")) and play exactly the games of SAFE_SOURCE and GREEDY_SOURCE.
SAFE_API_SOURCE = '''def strategy(board):
    moves = legal_moves(board)
    return moves[0] if moves else heading(board)
'''

GREEDY_API_SOURCE = '''def strategy(board):
    return min(legal_moves(board), key=lambda m: (lambda h, f: abs(h[0] - f[0]) + abs(h[1] - f[1]) if f else 0)(head(step(board, m)[0]), food(board)), default=heading(board))
'''

API_SOURCES: dict[str, str] = {"safe": SAFE_API_SOURCE, "greedy": GREEDY_API_SOURCE}
"""Baselines written against the game's API: name -> source (the games of ``SOURCES[name]``)."""


def _size(options: Mapping[str, Any] | None) -> int:
    return int((options or {}).get("size", 8))


def random_strategy(seed: int, options: Mapping[str, Any] | None = None) -> Strategy:
    """A uniformly random safe move (straight on when none is safe), from a generator seeded by ``seed``."""
    rng = random.Random(seed)
    built: dict[int, tuple[Callable[[Any], list[str]], Callable[[Any], str]]] = {}

    def strategy(board: list) -> str:
        n = len(board)
        if n not in built:
            built[n] = (make_legal_moves({"size": n}), make_heading({"size": n}))
        legal, heading = built[n]
        moves = legal(board)
        return rng.choice(moves) if moves else heading(board)

    return strategy


# ------------------------------------------------------------------ the pathfinder

_MOVES = ("W", "A", "S", "D")
_DELTAS = ((-1, 0), (0, -1), (1, 0), (0, 1))


def _neighbours(n: int) -> list[list[tuple[int, int]]]:
    """``out[i]``: (action id, cell) of each on-board neighbour of flat cell ``i``."""
    out = []
    for i in range(n * n):
        r, c = divmod(i, n)
        out.append([(a, (r + dr) * n + c + dc) for a, (dr, dc) in enumerate(_DELTAS)
                    if 0 <= r + dr < n and 0 <= c + dc < n])
    return out


def _search(nbrs: list[list[tuple[int, int]]], number: list[int], start: int) -> tuple[list[int], list[int]]:
    """Breadth-first search from ``start`` that knows when the body moves away.

    ``number[i]`` is the body number of cell ``i`` (0 for a free cell or the food): the cell numbered k
    is free from the k-th move on (the tail, 1, on the first), provided nothing is eaten on the way.
    Returns ``(dist, parent)``: the move count at which each cell is first reached (-1: never) and the
    cell it is reached from.
    """
    size = len(number)
    dist = [-1] * size
    parent = [-1] * size
    dist[start] = 0
    queue = deque([start])
    while queue:
        i = queue.popleft()
        d = dist[i] + 1
        for _, j in nbrs[i]:
            if dist[j] < 0 and number[j] <= d:
                dist[j] = d
                parent[j] = i
                queue.append(j)
    return dist, parent


def _numbers(body: list[int], size: int) -> list[int]:
    number = [0] * size
    for k, cell in enumerate(body):
        number[cell] = k + 1
    return number


def _tail_reachable(nbrs: list[list[tuple[int, int]]], body: list[int], size: int) -> tuple[bool, int, int]:
    """``(tail reachable from the head, moves to reach it, cells reachable)`` for the snake ``body`` (tail first)."""
    dist, _ = _search(nbrs, _numbers(body, size), body[-1])
    reach = sum(1 for d in dist if d > 0)
    return dist[body[0]] > 0, dist[body[0]], reach


def _advance(body: list[int], cell: int, eats: bool) -> list[int]:
    """The body (tail first) after the head moves to ``cell``."""
    return body + [cell] if eats else body[1:] + [cell]


def pathfinder_strategy(seed: int = 0, options: Mapping[str, Any] | None = None) -> Strategy:
    """The strong trusted baseline (see the module docstring); ``seed`` and ``options`` are not used."""
    tables: dict[int, list[list[tuple[int, int]]]] = {}

    def strategy(board: list) -> str:
        n = len(board)
        if n not in tables:
            tables[n] = _neighbours(n)
        nbrs = tables[n]
        size = n * n
        flat = [v for row in board for v in row]
        length = max(flat)
        body = [0] * length
        food = -1
        for i, v in enumerate(flat):
            if v > 0:
                body[v - 1] = i
            elif v < 0:
                food = i
        head, neck = body[-1], body[-2]
        safe = [(a, j) for a, j in nbrs[head] if j != neck and flat[j] <= 1]
        if not safe:
            for a, j in nbrs[head]:
                if j == neck:
                    return _MOVES[(a + 2) % 4]  # straight on: the opposite of the move into the neck
        # 1. The shortest path to the food, if the snake can still reach its tail after eating there.
        if food >= 0:
            dist, parent = _search(nbrs, _numbers(body, size), head)
            if dist[food] > 0:
                path = [food]
                while parent[path[-1]] != head:
                    path.append(parent[path[-1]])
                path.reverse()
                after = body
                for k, cell in enumerate(path):
                    after = _advance(after, cell, k == len(path) - 1)
                if len(after) >= size or _tail_reachable(nbrs, after, size)[0]:
                    return next(_MOVES[a] for a, j in safe if j == path[0])
        # 2. Follow the tail: the safe move from which the tail stays reachable and is farthest away.
        best, best_key = safe[0][0], None
        for a, j in safe:
            after = _advance(body, j, j == food)
            reachable, far, room = _tail_reachable(nbrs, after, size)
            key = (reachable, far if reachable else room)
            if best_key is None or key > best_key:
                best, best_key = a, key
        return _MOVES[best]

    return strategy


BASELINES: tuple[Baseline, ...] = (
    Baseline("fixed", "always right, the start heading: dies at the wall (an honest end)", FIXED_SOURCE),
    Baseline("safe", "the first safe move in the order W, A, S, D: runs round the walls, never looks for the food",
             SAFE_SOURCE, SAFE_API_SOURCE),
    Baseline("random", "a uniformly random safe move, straight on when trapped (seeded, trusted only)",
             make=random_strategy),
    Baseline("greedy", "the safe move that brings the head nearest the food (one ply)", GREEDY_SOURCE,
             GREEDY_API_SOURCE),
    Baseline("pathfinder", "a shortest path to the food when the tail stays reachable, else it follows its tail "
                           "(trusted only): the reference strength", make=pathfinder_strategy),
)
"""Snake's baselines, naive to strong (``GameSpec.baselines``)."""
