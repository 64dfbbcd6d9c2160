"""Honest Snake strategies in the answer format a prompt opens, for a warm start's first round.

Every program is a single ``def strategy(board):`` (no helper before it), so it opens with any answer
prefill up to the signature; the API programs go on with ``moves = legal_moves(board)`` and ``return ``,
so they also open with the prefills that call the API. Each one never dies in one move when it can avoid
it (it answers a safe move whenever there is one), and when every move kills it goes straight on, so it
never answers the move into its neck: every game ends honestly (a death, starvation, a full board or the
move cap). None of them is strong: they are the first rung, not the ladder.

- with the game API: the first legal move in each of the 24 preference orders; the legal move that
  brings the head nearest the food; the legal move after which the snake has the most legal moves;
- without it: the first safe move in each of the 24 orders, checked by hand (on the board, onto an empty
  cell, the food or the tail), and the safe move nearest the food.
"""
from __future__ import annotations

from itertools import permutations

__all__ = ["seed_programs"]

_API_HEAD = "def strategy(board):\n    moves = legal_moves(board)\n    return "

_BARE_LOOK = '''    n = len(board)
    flat = sum(board, [])
    row, col = divmod(flat.index(max(flat)), n)
    neck_row, neck_col = divmod(flat.index(max(flat) - 1), n)
    cells = {"W": (row - 1, col), "A": (row, col - 1), "S": (row + 1, col), "D": (row, col + 1)}
    safe = list(filter(lambda m: 0 <= cells[m][0] < n and 0 <= cells[m][1] < n
                       and board[cells[m][0]][cells[m][1]] in (0, -1, 1), "ORDER"))
    ahead = {(-1, 0): "W", (0, -1): "A", (1, 0): "S", (0, 1): "D"}[(row - neck_row, col - neck_col)]
'''


def _api_programs() -> list[str]:
    out = [_API_HEAD + f'min(moves, key="{"".join(order)}".index) if moves else heading(board)\n'
           for order in permutations("WASD")]
    out.append(_API_HEAD + "min(moves, key=lambda m: (lambda h, f: abs(h[0] - f[0]) + abs(h[1] - f[1]) if f else 0)"
                           "(head(step(board, m)[0]), food(board)), default=heading(board))\n")
    out.append(_API_HEAD + "max(moves, key=lambda m: len(legal_moves(step(board, m)[0])), default=heading(board))\n")
    return out


def _bare_program(order: str) -> str:
    return ("def strategy(board):\n" + _BARE_LOOK.replace("ORDER", order)
            + "    return safe[0] if safe else ahead\n")


def _bare_greedy() -> str:
    return ("def strategy(board):\n" + _BARE_LOOK.replace("ORDER", "WASD")
            + "    if not safe or -1 not in flat:\n        return safe[0] if safe else ahead\n"
              "    food_row, food_col = divmod(flat.index(-1), n)\n"
              "    return min(safe, key=lambda m: abs(cells[m][0] - food_row) + abs(cells[m][1] - food_col))\n")


def seed_programs(api: bool) -> list[str]:
    """The seed programs' sources: written against the game API when ``api``, else with the checks written out."""
    if api:
        return _api_programs()
    return [_bare_program("".join(order)) for order in permutations("WASD")] + [_bare_greedy()]
