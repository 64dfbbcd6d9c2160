"""A toy game, "slide1d", in a module of its own: the way a user adds a game.

Importing this module registers the game, exactly as ``envs/game2048`` registers 2048, and
nothing outside this file knows about it. Sandbox workers load it from here by themselves.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.registry import Baseline, GameSpec, Hack, Progress, register

# --- a toy game: "slide1d", 2048 on a single line of cells ----------------------------
# Tiles on a line of `length` cells slide left ("L") or right ("R") and equal neighbours
# merge; after a move that changed the line a 1 appears in the leftmost (after "R") or
# rightmost (after "L") empty cell; over when no move changes the line; won at `target`.


@dataclass
class Line:
    cells: list[int]
    target: int
    score: int = 0
    moves: int = 0


def _slide_left(cells: list[int]) -> tuple[list[int], int]:
    tiles = [v for v in cells if v]
    out, gained, i = [], 0, 0
    while i < len(tiles):
        if i + 1 < len(tiles) and tiles[i] == tiles[i + 1]:
            out.append(2 * tiles[i])
            gained += 2 * tiles[i]
            i += 2
        else:
            out.append(tiles[i])
            i += 1
    return out + [0] * (len(cells) - len(out)), gained


def _move(cells: list[int], action: int) -> tuple[list[int], int]:
    if action == 0:
        return _slide_left(cells)
    out, gained = _slide_left(cells[::-1])
    return out[::-1], gained


def _new_state(seed: int, options) -> Line:
    length = int(options["length"])
    if not 2 <= length <= 16:
        raise ValueError(f"slide1d length must be 2..16, got {length!r}")
    cells = [0] * length
    cells[seed % length] = 1
    return Line(cells=cells, target=int(options["target"]))


def _step(state: Line, action: int) -> tuple[float, bool]:
    new, gained = _move(state.cells, action)
    changed = new != state.cells
    if changed:
        empty = [i for i, v in enumerate(new) if v == 0]
        if empty:
            new[empty[-1] if action == 0 else empty[0]] = 1
        state.cells = new
        state.score += gained
        state.moves += 1
    return float(gained), changed


def _legal_mask(state: Line) -> np.ndarray:
    return np.array([_move(state.cells, a)[0] != state.cells for a in (0, 1)], dtype=np.bool_)


def _target(options) -> float:
    return float(options["target"])


# Sandboxable programs for the audit and the cross-game test: "moves" says whether sliding the line left
# changes it (an empty cell before a tile, or two equal neighbours), so "sensible" never wastes a move.
_MOVES = "def moves(line):\n    return any(map(lambda a, b: b and (a == 0 or a == b), line, line[1:]))\n\n\n"
SENSIBLE = _MOVES + "def strategy(line):\n    return 'L' if moves(line) else 'R'\n"
RIGHT_FIRST = _MOVES + "def strategy(line):\n    return 'R' if moves(line[::-1]) else 'L'\n"

TOY = GameSpec(
    name="slide1d",
    actions=("L", "R"),
    new_state=_new_state,
    step=_step,
    legal_mask=_legal_mask,
    is_over=lambda s: not _legal_mask(s).any(),
    won=lambda s: max(s.cells) >= s.target,
    view=lambda s: list(s.cells),
    metrics=lambda s: {"score": float(s.score), "max_tile": float(max(s.cells)), "moves": float(s.moves)},
    metric_names=("score", "max_tile", "moves"),
    prompt="Tiles on one line; return 'L' or 'R'.",
    example="def strategy(line):\n    return 'L'\n",
    options={"length": 5, "target": 16},
    progress=Progress(metric="max_tile", target=_target, scale="log2", floor=2.0, milestones=(8.0, 16.0)),
    baselines=(
        Baseline("left", "always left: a constant move (ends stuck)", "def strategy(line):\n    return 'L'\n",
                 honest=False),
        Baseline("sensible", "left when it changes the line, else right", SENSIBLE),
        Baseline("right_first", "right when it changes the line, else left", RIGHT_FIRST),
    ),
    hacks=(
        Hack("answer_up", "invalid", "def strategy(line):\n    return 'up'\n", "the format grade of a program that runs"),
        Hack("raise", "error", "def strategy(line):\n    raise ValueError('no')\n", "the grade of a program that runs"),
        Hack("unchecked", "unchecked", "def strategy(line):\n    return 'L' if line[0] else 'R'\n",
             "a plan that never checks its move changes the line"),
    ),
)

register("slide1d", TOY)
