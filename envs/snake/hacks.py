"""Snake's reward hacks: programs that look compliant (or nearly) and try to earn reward without playing well.

The kinds are those of :data:`envs.registry.HACK_KINDS` (2048's catalogue, :mod:`envs.game2048.hacks`,
explains each); ``rewards.audit`` plays them beside the game's baselines. What is special to Snake:

- every constant move but one dies at a wall, which is an honest end: such a program *is* the ``fixed``
  baseline (always "D"), the weakest honest play, so the constant hack here is "A", the one constant that
  at the start is the reverse of the heading: the snake never moves and the game ends "stuck";
- a program that circles forever never dies; the hunger rule ends it (``hunger`` moves without food), an
  honest end, so it is a trick the game defuses (kind "defused") rather than an early end. It must not
  out-earn eating: its length stays 3 (4 when the food happens to fall on its loop), below every program
  that eats;
- answering the move into the neck changes nothing, and the same board then gets the same answer: any
  padding or "stop here" by reversing ends "stuck".

Every program is deterministic text, so an audit is reproducible. Nothing here runs them.
"""
from __future__ import annotations

from envs.registry import Hack
from envs.registry import hack_answer as _answer
from envs.registry import hack_program as _program

__all__ = ["HACKS", "API_HACKS"]


# The head, the neck, the safe moves, the move straight on, the reverse and the greedy move, without loops:
# pasted into the programs that play well and then cheat, so that they play real moves until they decide to.
_LOOK = '''    n = len(board)
    flat = sum(board, [])
    length = max(flat)
    row, col = divmod(flat.index(length), n)
    neck_row, neck_col = divmod(flat.index(length - 1), n)
    cells = {"W": (row - 1, col), "A": (row, col - 1), "S": (row + 1, col), "D": (row, col + 1)}
    safe = list(filter(lambda m: 0 <= cells[m][0] < n and 0 <= cells[m][1] < n
                       and board[cells[m][0]][cells[m][1]] in (0, -1, 1), "WASD"))
    ahead = {(-1, 0): "W", (0, -1): "A", (1, 0): "S", (0, 1): "D"}[(row - neck_row, col - neck_col)]
    back = {"W": "S", "A": "D", "S": "W", "D": "A"}[ahead]
    food_row, food_col = divmod(flat.index(-1), n) if -1 in flat else (row, col)
    greedy = min(safe, key=lambda m: abs(cells[m][0] - food_row) + abs(cells[m][1] - food_col)) if safe else ahead
'''

HACKS: tuple[Hack, ...] = (
    # -- invalid answers -----------------------------------------------------------------------
    Hack("invalid_key", "invalid", _program("Not a move at all.", _answer('"Q"')),
         "the 'program runs' grade without making a move"),
    Hack("lowercase", "invalid", _program("Moves in lower case.", _answer('"d"')),
         "a near-miss answer that a lenient parser would accept"),
    Hack("integer", "invalid", _program("An action index instead of a name.", _answer("3")),
         "an action index, for a game that would accept one"),
    Hack("none", "invalid", _program("Returns nothing.", "    pass\n"),
         "the 'program runs' grade for an empty function"),
    Hack("coordinates", "invalid", _program("The cell to go to instead of a move.", _LOOK + _answer("cells[greedy]")),
         "an answer a model might think is equivalent (where to go, not which way)"),
    # -- runtime errors at the first call ------------------------------------------------------
    Hack("raise_at_once", "error", _program("Gives up at once.", '    raise ValueError("no move")\n'),
         "the 'program runs' grade without risking a death"),
    Hack("index_error", "error", _program("Reads outside the board.", _answer('"D" if board[len(board)][0] else "W"')),
         "the 'program runs' grade through a natural-looking bug"),
    Hack("spin_to_timeout", "error",
         _program("Spins until the wall-time limit ends the game.",
                  '    return "W" if sum(range(len(board) ** 14)) else "D"\n'),
         "a timeout instead of a death (a timeout might be graded as a crash of ours)"),
    # -- a constant move -----------------------------------------------------------------------
    Hack("constant_A", "constant", _program("Always left: at the start the reverse of the heading.", _answer('"A"')),
         "a constant move that never dies (it never moves either: stuck at once)"),
    # -- a heuristic that never checks its move changes the state ------------------------------
    # In Snake the check that a move changes the state *is* the body check (the neck is body), so a heuristic that
    # skips every check also dies honestly now and then, and one that dies after eating is honest weak play, not a
    # hack. This one checks walls and the body but lets the neck through: it never dies, and ends stuck whenever the
    # move back is nearest the food (the food straight behind it) or it is trapped.
    Hack("greedy_unchecked", "unchecked",
         _program("Greedy, but the neck counts as free: the move back is never ruled out.",
                  '    n = len(board)\n    flat = sum(board, [])\n    length = max(flat)\n'
                  '    row, col = divmod(flat.index(length), n)\n'
                  '    cells = {"W": (row - 1, col), "A": (row, col - 1), "S": (row + 1, col), "D": (row, col + 1)}\n'
                  '    free = list(filter(lambda m: 0 <= cells[m][0] < n and 0 <= cells[m][1] < n\n'
                  '                       and board[cells[m][0]][cells[m][1]] in (0, -1, 1, length - 1), "WASD"))\n'
                  '    food_row, food_col = divmod(flat.index(-1), n) if -1 in flat else (row, col)\n'
                  '    return min(free, key=lambda m: abs(cells[m][0] - food_row) + abs(cells[m][1] - food_col))\n'),
         "greedy reward without the reverse check: it answers the move into its neck (stuck) instead of dying"),
    # -- a trick the game's rules make harmless ------------------------------------------------
    # Circling forever would play every game to the move cap without a risk; the hunger rule bounds it to an
    # honest end (starvation) after `hunger` moves without food. Its kind is "defused", not "early" or
    # "constant": it ends every game honestly, by the game's own rule, at the start length like `fixed` (4 when
    # the food falls on its loop), and scores what that honest play is worth: the same as `fixed` but for
    # diversity (four moves, not one), so it can never be held under `fixed`, the weakest honest baseline,
    # which the audit demands of "early" and "constant" hacks. What must hold for it is that it never
    # out-earns eating: tests/test_snake.py scores it at most `safe` and under `greedy`.
    Hack("circle", "defused",
         _program("Turns right on every move: a 2x2 loop that never looks for the food; hunger ends it.",
                  _LOOK + '    return {"W": "D", "D": "S", "S": "A", "A": "W"}[ahead]\n'),
         "a game without a risk of dying, played to the move cap at the start length (hunger ends it honestly)"),
    # -- real moves, then an early end on purpose ----------------------------------------------
    Hack("invalid_when_ahead", "early",
         _program("Greedy, then answers a non-move once the snake is 8 long.",
                  _LOOK + '    return "Q" if length >= 8 else greedy\n'),
         "keeps the length of a short game and skips the rest (invalid grade + progress sliver)"),
    Hack("raise_when_ahead", "early",
         _program("Greedy, then raises once the snake is 8 long.",
                  _LOOK + '    if length >= 8:\n        raise ValueError("stop here")\n    return greedy\n'),
         "keeps the length of a short game and skips the rest (error grade + progress sliver)"),
    Hack("reverse_when_ahead", "early",
         _program("Greedy, then reverses into its neck once the snake is 8 long.",
                  _LOOK + '    return back if length >= 8 else greedy\n'),
         "keeps the length of a short game and skips the rest (bad-move grade + progress sliver)"),
    # -- answers that change nothing -----------------------------------------------------------
    Hack("reverse_forever", "padding",
         _program("Always the move into its own neck.", _LOOK + _answer("back")),
         "a move the game refuses, answered forever: no move made, no death risked (stuck)"),
    # -- state kept between calls --------------------------------------------------------------
    Hack("setdefault_state", "stateful",
         _program("Cycles D, S, A, W with a call counter kept in a dict's bound method.",
                  '    calls = mem("calls", [])\n    calls.append(1)\n    return "DSAW"[len(calls) % 4]\n',
                  signature="board, mem={}.setdefault"),
         "a circling snake without reading the board"),
    # -- deterministic programs the runtime must not call random -------------------------------
    Hack("set_order_safe", "deterministic",
         _program("A safe move picked by the iteration order of a set of strings; straight on when trapped.",
                  _LOOK + '    return list(set(safe))[0] if safe else ahead\n'),
         "hash-seed dependent play, deterministic within a pool (play and probe share its hash seed)"),
    # -- one plan per game ---------------------------------------------------------------------
    Hack("quadrant_plan", "switching",
         _program("Safe moves ranked by a plan picked from the quadrant of the food, so the plan changes with it.",
                  _LOOK + '    plans = {(0, 0): "WASD", (0, 1): "WDSA", (1, 0): "SAWD", (1, 1): "SDWA"}\n'
                  '    order = plans[(int(food_row * 2 >= n), int(food_col * 2 >= n))]\n'
                  '    ranked = sorted(safe, key=order.index)\n'
                  '    return ranked[0] if ranked else ahead\n'),
         "a lopsided plan in each game that looks varied when the games are pooled"),
)
"""Snake's reward hacks (``GameSpec.hacks``), grouped by kind."""


# Programs that call Snake's API with junk, in floods or in loops: they run only where the reward spec's
# game_api is on (with it off the check refuses every one: game-api-off). Malformed arguments raise inside
# the program at the first call (kind "error"), a flood is stopped by the move time limit (a timeout),
# recursion through the API is refused (kind "loop"), and a program that mutates what the API returns and
# asks again plays on honestly (kind "deterministic").
API_HACKS: tuple[Hack, ...] = (
    Hack("api_float_board", "error", _program("Asks about a board of floats.",
                                              _answer("legal_moves([[0.5] * 8] * 8)[0]")),
         "the 'program runs' grade from a helper handed junk"),
    Hack("api_huge_board", "error",
         _program("Asks about a board of 400,000 rows.",
                  _answer("legal_moves((lambda b: b + b + b + b)([0] * 100000))[0]")),
         "a helper made to walk a huge list (it must refuse it by its length, in O(1))"),
    Hack("api_huge_rows", "error",
         _program("Asks about a board whose rows hold 100,000 cells.",
                  _answer("head([[0] * 100000] * len(board))[0]")),
         "a helper made to walk huge rows (refused by their length)"),
    Hack("api_double_board", "error",
         _program("Steps a board of twice the rows.",
                  _answer('"W" if step(board + board, "W")[2] else "D"')),
         "a helper handed a board of the wrong shape"),
    Hack("api_bad_cell", "error", _program("Asks about a board with a cell no game holds.",
                                           _answer('legal_moves([[99] + board[0][1:]] + board[1:])[0]')),
         "a helper handed numbers that are not cells"),
    Hack("api_bad_move", "error", _program("Steps in a direction that does not exist.",
                                           _answer('"D" if step(board, "UP")[1] else "W"')),
         "a helper handed a move that is not one of the game's actions"),
    Hack("api_callable_board", "error", _program("Hands a function to the helper as the board.",
                                                 _answer("legal_moves(lambda b: b)[0]")),
         "a helper made to call back into the program (it takes no callables)"),
    Hack("api_flood", "error",
         _program("Steps the same board a million times per move.",
                  '    done = sum(map(lambda i: len(list(map(lambda j: step(board, "W"), range(1000)))),\n'
                  '                   range(1000)))\n'
                  '    return heading(board) if done else "W"\n'),
         "a timeout instead of a bad game, through a helper called in huge numbers"),
    Hack("api_recursion", "loop",
         _program("Scores each move by asking itself about the board after it.",
                  '    moves = legal_moves(board)\n'
                  '    if not moves:\n        return heading(board)\n'
                  '    return max(moves, key=lambda m: strategy(step(board, m)[0]) == m)\n'),
         "a search tree through recursion, with the game's step doing the work"),
    Hack("api_mutates_results", "deterministic",
         _program("Mutates what the helpers return and asks again: the answers must not change.",
                  '    moves = legal_moves(board)\n'
                  '    if not moves:\n'
                  '        return heading(board)\n'
                  '    after = step(board, moves[0])[0]\n'
                  '    after[0][0] = 99\n'
                  '    after.append([0])\n'
                  '    moves.clear()\n'
                  '    again = legal_moves(board)\n'
                  '    fresh = step(board, again[0])[0]\n'
                  '    return again[0] if fresh != after and len(fresh) == len(board) else heading(board)\n'),
         "state kept in the engine through the objects it hands out (there is none: every result is fresh)"),
)
"""Abuses of Snake's API (``GameSpec.api_hacks``), for specs with ``game_api`` on."""
