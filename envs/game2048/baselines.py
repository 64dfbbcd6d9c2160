"""2048's reference strategies: what a program written by a model is measured against.

The sandboxable baselines are ordinary strategy programs, kept as source text in
:data:`SOURCES` (name -> source defining ``def strategy(board)``) so that they can be run
through the sandbox exactly like a model's completion. They are written to pass the
sandbox's static policy: no loops, comprehensions, imports, ``_`` names, recursion or
randomness; they iterate with ``map``/``filter``/``max`` and lambdas, and they find out which
moves change the board by sliding in pure Python (a strategy has no other way to know).

- ``fixed``: always "A" (left). It gets stuck as soon as left changes nothing, which is
  the point: it is the floor every reward must rank last.
- ``corner``: keeps the largest tile in the top-left corner: the first move in the order
  A, W, D, S that changes the board and leaves the largest tile there, else the first move
  in that order that changes the board.
- ``greedy``: one ply: the move that changes the board and maximises points merged plus
  empty cells afterwards (weighted), ties broken in the order A, W, D, S.

:data:`API_SOURCES` holds ``corner`` and ``greedy`` again, each one line written against the
game's API (``legal_moves``, ``slide``); they play the same games as the long versions.

Trusted-only baselines (plain Python callables, not in :data:`SOURCES`):

- :func:`random_strategy` ``(seed)``: a uniformly random move among those that change the
  board, from its own seeded generator (a sandboxed strategy may not use randomness).
- :func:`envs.game2048.expectimax.expectimax_strategy` ``(depth)``: the Numba expectimax, the
  reference strength.

:data:`BASELINES` declares them all on the game's spec, naive to strong; :mod:`envs.baselines`
plays any game's baselines on the same seeds (``codepolicy baselines``).
"""
from __future__ import annotations

import random
from typing import Any, Callable, Mapping

from envs.game2048.api import make_legal_moves
from envs.registry import Baseline

__all__ = ["SOURCES", "API_SOURCES", "BASELINES", "random_strategy"]

Strategy = Callable[[list], str]

# The pure-Python slide shared by the sandboxable sources, as text: each source must be one
# self-contained program, so the helper is pasted into every strategy that needs it.
# A line is slid left by dropping zeros, then marking the tiles that start a merging pair:
# tile i merges with i+1 when they are equal and i is an even distance from the start of
# its run of equal tiles ([2,2,2] merges the first two, [2,2,2,2] both pairs).
_SLIDE_HELPERS = '''
    n = len(board)

    def slide_line(line):
        tiles = list(filter(lambda v: v != 0, line))
        k = len(tiles)
        starts = list(map(lambda i: max(filter(lambda j: j == 0 or tiles[j - 1] != tiles[j], range(i + 1))), range(k)))
        heads = list(map(lambda i: i + 1 < k and tiles[i] == tiles[i + 1] and (i - starts[i]) % 2 == 0, range(k)))
        kept = list(filter(lambda i: not (i > 0 and heads[i - 1]), range(k)))
        merged = list(map(lambda i: tiles[i] * 2 if heads[i] else tiles[i], kept))
        gained = sum(map(lambda i: tiles[i] * 2 if heads[i] else 0, range(k)))
        return merged + list(map(lambda j: 0, range(n - len(merged)))), gained

    def transpose(rows):
        return list(map(lambda c: list(map(lambda r: r[c], rows)), range(n)))

    def mirror(rows):
        return list(map(lambda r: list(reversed(r)), rows))

    def slide(rows, move):
        # Turn the board so that the move becomes "left", slide, and turn it back.
        if move == "A":
            turned = rows
        elif move == "D":
            turned = mirror(rows)
        elif move == "W":
            turned = transpose(rows)
        else:
            turned = mirror(transpose(rows))
        done = list(map(slide_line, turned))
        out = list(map(lambda pair: pair[0], done))
        gained = sum(map(lambda pair: pair[1], done))
        if move == "D":
            out = mirror(out)
        elif move == "W":
            out = transpose(out)
        elif move == "S":
            out = transpose(mirror(out))
        return out, gained
'''

FIXED_SOURCE = '''def strategy(board):
    # Always left, whatever the board: the weakest honest program.
    return "A"
'''

CORNER_SOURCE = '''def strategy(board):
    # Keep the largest tile in the top-left corner, trying moves in the order A, W, D, S.''' + _SLIDE_HELPERS + '''
    order = ["A", "W", "D", "S"]
    results = list(map(lambda m: (m, slide(board, m)[0]), order))
    moving = list(filter(lambda r: r[1] != board, results))
    if not moving:
        return "A"
    cornered = list(filter(lambda r: r[1][0][0] == max(map(max, r[1])), moving))
    if cornered:
        return cornered[0][0]
    return moving[0][0]
'''

GREEDY_SOURCE = '''def strategy(board):
    # One ply: the move that merges most points and leaves most empty cells (ties: A, W, D, S).''' + _SLIDE_HELPERS + '''
    order = ["A", "W", "D", "S"]
    results = list(map(lambda m: (m,) + slide(board, m), order))
    moving = list(filter(lambda r: r[1] != board, results))
    if not moving:
        return "A"

    def value(r):
        empty = sum(map(lambda row: len(list(filter(lambda v: v == 0, row))), r[1]))
        return r[2] + 4 * empty

    return max(moving, key=value)[0]
'''

SOURCES: dict[str, str] = {
    "fixed": FIXED_SOURCE,
    "corner": CORNER_SOURCE,
    "greedy": GREEDY_SOURCE,
}
"""Sandboxable baselines: name -> source text defining ``def strategy(board)``."""

# The same two baselines written against the game's API (envs.game2048.api: legal_moves, slide),
# one line each: they need a policy with the API on (rewards.RewardSpec.policy, sandbox.game_policy)
# and play exactly the games of CORNER_SOURCE and GREEDY_SOURCE (the tie-breaks A, W, D, S included).
CORNER_API_SOURCE = '''def strategy(board):
    return (lambda ms: (list(filter(lambda m: (lambda b: b[0][0] == max(map(max, b)))(slide(board, m)[0]), ms)) + ms + ["A"])[0])(sorted(legal_moves(board), key="AWDS".index))
'''

GREEDY_API_SOURCE = '''def strategy(board):
    return max(sorted(legal_moves(board), key="AWDS".index), key=lambda m: (lambda r: r[1] + 4 * sum(map(lambda row: row.count(0), r[0])))(slide(board, m)), default="A")
'''

API_SOURCES: dict[str, str] = {
    "corner": CORNER_API_SOURCE,
    "greedy": GREEDY_API_SOURCE,
}
"""Baselines written against the game's API: name -> source (the games of ``SOURCES[name]``)."""

def random_strategy(seed: int, options: Mapping[str, Any] | None = None) -> Strategy:
    """A strategy that picks uniformly among the moves that change the board, seeded by ``seed`` (trusted)."""
    rng = random.Random(seed)

    def strategy(board: list) -> str:
        moving = make_legal_moves({"size": len(board)})(board)
        return rng.choice(moving) if moving else "W"

    return strategy


def _expectimax(seed: int, options: Mapping[str, Any], depth: int = 2) -> Strategy:
    from envs.game2048.expectimax import expectimax_strategy  # Numba compile only when asked for

    return expectimax_strategy(depth)


BASELINES: tuple[Baseline, ...] = (
    Baseline("fixed", "always left: a constant legal move (ends stuck)", FIXED_SOURCE, honest=False),
    Baseline("random", "a uniformly random move among those that change the board (seeded, trusted only)",
             make=random_strategy),
    Baseline("corner", "keeps the largest tile top-left, answers only moves that change the board", CORNER_SOURCE,
             CORNER_API_SOURCE),
    Baseline("greedy", "one ply: the board-changing move that merges most and leaves most empty cells",
             GREEDY_SOURCE, GREEDY_API_SOURCE),
    Baseline("expectimax", "a Numba expectimax search (depth 2 by default): the reference strength, trusted only",
             make=_expectimax, params=("depth",)),
)
"""2048's baselines, naive to strong (``GameSpec.baselines``)."""
