"""Honest 2048 strategies in the answer format a prompt opens, for a warm start's first round.

Every program is a single ``def strategy(board):`` (no helper before it), so it opens with any answer
prefill up to the signature; the API programs go on with ``moves = legal_moves(board)`` and
``return ``, so they also open with the prefills that call the API. Each one plays every game to its
end: it only ever returns a move that changes the board. None of them is strong: they are the first
rung (an honest end), not the ladder.

- with the game API: the first legal move in each of the 24 preference orders; the move that scores
  most (ties to the order W, A, S, D); the move that leaves the most empty cells;
- without it: each of the 24 orders checked by hand (a row slid left changes when some tile has an
  empty or an equal cell on its left), the last move of the order returned unchecked (when three moves
  change nothing, the fourth must, or the game would be over).
"""
from __future__ import annotations

from itertools import permutations

__all__ = ["seed_programs"]

_API_HEAD = "def strategy(board):\n    moves = legal_moves(board)\n    return "

# How to test "sliding this way changes the board" without the API, per move, given `changes(row)`
# (does sliding the row left change it): rows for A, reversed rows for D, columns for W, reversed columns for S.
_LINES = {
    "A": "board",
    "D": "map(lambda row: row[::-1], board)",
    "W": "zip(*board)",
    "S": "map(lambda col: col[::-1], zip(*board))",
}
_CHANGES = "    changes = lambda row: any(map(lambda a, b: b and (a == 0 or a == b), row, row[1:]))\n"


def _api_programs() -> list[str]:
    out = [_API_HEAD + f'min(moves, key="{"".join(order)}".index)\n' for order in permutations("WASD")]
    out.append(_API_HEAD + "max(moves, key=lambda m: slide(board, m)[1])\n")
    out.append(_API_HEAD + "max(moves, key=lambda m: sum(map(lambda row: row.count(0), slide(board, m)[0])))\n")
    return out


def _bare_program(order: tuple[str, ...]) -> str:
    body = "".join(f"    if any(map(changes, {_LINES[m]})):\n        return \"{m}\"\n" for m in order[:-1])
    return f"def strategy(board):\n{_CHANGES}{body}    return \"{order[-1]}\"\n"


def seed_programs(api: bool) -> list[str]:
    """The seed programs' sources: written against the game API when ``api``, else with the checks written out."""
    return _api_programs() if api else [_bare_program(order) for order in permutations("WASD")]
