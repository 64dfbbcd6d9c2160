"""2048: the game spec, registered as "2048", and pure helpers on plain list boards.

Rules (the original game): an N x N board (4 by default, 3..8 supported); after every move
that changed the board a new tile appears on an empty cell chosen uniformly (2 with p=0.9,
4 with p=0.1); tiles slide towards the side moved to and equal neighbours merge, each tile
at most once per move, the pair nearest that side first; every merge adds the new tile's
value to the score; a move that changes nothing is not a move (no spawn); the game is over
when no move changes the board. Reaching the target tile (2048 by default) is a win; play
may continue.

Actions: "W" (up, id 0), "A" (left, id 1), "S" (down, id 2), "D" (right, id 3).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np

from pathlib import Path

from envs.game2048 import api, baselines, hacks, kernel, render, seeds
from envs.registry import ApiFunction, GameSpec, Progress, register

__all__ = ["ACTIONS", "State", "SPEC", "slide", "is_over", "to_exponents", "to_tiles", "new_state"]

ACTIONS: tuple[str, ...] = ("W", "A", "S", "D")
MIN_SIZE, MAX_SIZE = 3, 8


@lru_cache(maxsize=None)
def lines_for(size: int) -> np.ndarray:
    """The kernel's direction/line index table for a board of ``size`` (cached per size)."""
    return kernel.line_table(size)


def _check_size(size: Any) -> int:
    if not isinstance(size, (int, np.integer)) or not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise ValueError(f"2048 board size must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    return int(size)


def _check_target(target: Any) -> int:
    t = int(target) if isinstance(target, (int, np.integer)) else -1
    if t < 4 or t & (t - 1):
        raise ValueError(f"2048 target must be a power of two >= 4, got {target!r}")
    return t


@dataclass
class State:
    """A live 2048 game: flat exponent board, its RNG state, score and move count."""

    board: np.ndarray      # uint8[size*size] exponents
    rng: np.ndarray        # uint64[1] SplitMix64 state
    size: int
    target: int
    score: int = 0
    moves: int = 0


def new_state(seed: int, options: Mapping[str, Any]) -> State:
    """A fresh game from ``seed`` with options ``size`` and ``target``."""
    size = _check_size(options.get("size", 4))
    target = _check_target(options.get("target", 2048))
    board = np.zeros(size * size, dtype=np.uint8)
    rng = np.zeros(1, dtype=np.uint64)
    kernel.reset(board, rng, 0, int(seed))
    return State(board=board, rng=rng, size=size, target=target)


def _step(state: State, action: int) -> tuple[float, bool]:
    if not 0 <= action < 4:
        raise ValueError(f"2048 action id must be 0..3 (W, A, S, D), got {action!r}")
    gained, changed = kernel.step(state.board, state.rng, 0, lines_for(state.size), action)
    if changed:
        state.score += gained
        state.moves += 1
    return float(gained), bool(changed)


def _legal_mask(state: State) -> np.ndarray:
    out = np.zeros(4, dtype=np.bool_)
    kernel.legal_mask(state.board, lines_for(state.size), out)
    return out


def _is_over(state: State) -> bool:
    return bool(kernel.is_over(state.board, state.size))


def _max_tile(state: State) -> int:
    e = int(kernel.max_exponent(state.board))
    return 1 << e if e else 0


def _won(state: State) -> bool:
    return _max_tile(state) >= state.target


def _view(state: State) -> list[list[int]]:
    # Plain Python ints in fresh lists, so a strategy can mutate or keep its copy freely.
    flat = [1 << e if e else 0 for e in state.board.tolist()]
    n = state.size
    return [flat[r * n:(r + 1) * n] for r in range(n)]


def _metrics(state: State) -> dict[str, float]:
    return {"score": float(state.score), "max_tile": float(_max_tile(state)), "moves": float(state.moves)}


def render_text(board: Sequence[Sequence[int]]) -> str:
    """An aligned text grid of tile values ('.' for empty)."""
    cells = [[str(v) if v else "." for v in row] for row in board]
    width = max(len(c) for row in cells for c in row)
    return "\n".join(" ".join(c.rjust(width) for c in row) for row in cells)


def _describe(state: State) -> str:
    return render_text(_view(state))


# --- pure helpers on list-of-lists boards ----------------------------------------------


def to_exponents(board: Sequence[Sequence[int]]) -> np.ndarray:
    """Flat uint8 exponents of a square list-of-lists board; ValueError naming what is wrong."""
    if not isinstance(board, (list, tuple)) or not board:
        raise ValueError(f"board must be a non-empty list of rows, got {type(board).__name__}")
    n = len(board)
    if not MIN_SIZE <= n <= MAX_SIZE:
        raise ValueError(f"board has {n} rows; 2048 boards are {MIN_SIZE}x{MIN_SIZE} to {MAX_SIZE}x{MAX_SIZE}")
    out = np.zeros(n * n, dtype=np.uint8)
    for r, row in enumerate(board):
        if not isinstance(row, (list, tuple)) or len(row) != n:
            raise ValueError(f"board row {r} has {len(row) if isinstance(row, (list, tuple)) else 'no'} "
                             f"cells; a {n}x{n} board needs {n}")
        for c, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or (v != 0 and (v < 2 or v & (v - 1))):
                raise ValueError(f"board[{r}][{c}] = {v!r} is not a tile: use 0 (empty) or a power of two >= 2")
            out[r * n + c] = int(v).bit_length() - 1 if v else 0
    return out


def to_tiles(exponents: np.ndarray, size: int) -> list[list[int]]:
    """The list-of-lists tile values of a flat exponent board."""
    flat = [1 << int(e) if e else 0 for e in exponents]
    return [flat[r * size:(r + 1) * size] for r in range(size)]


def slide(board: Sequence[Sequence[int]], move: str) -> tuple[list[list[int]], int, bool]:
    """Slide ``board`` (list of lists of tiles) in ``move`` without spawning -> (new_board, gained, changed)."""
    if move not in ACTIONS:
        raise ValueError(f"unknown move {move!r}; expected one of {list(ACTIONS)}")
    b = to_exponents(board)
    n = len(board)
    gained, changed = kernel.slide(b, lines_for(n), ACTIONS.index(move))
    return to_tiles(b, n), int(gained), bool(changed)


def is_over(board: Sequence[Sequence[int]]) -> bool:
    """True when no move changes ``board`` (list of lists of tiles)."""
    b = to_exponents(board)
    return bool(kernel.is_over(b, len(board)))


EXAMPLE = '''def strategy(board):
    # Prefer left, then up, then right; down only when nothing else is possible.
    if board[0][0] == 0 or board[0][0] == board[0][1]:
        return "A"
    return "W" if board[1][0] == board[0][0] else "D"
'''

PROMPT = """You are playing 2048 on a {size}x{size} board. Write a Python function `strategy(board)`
that is called once per move and returns the next move.

- `board` is a list of {size} rows, each a list of {size} ints: 0 is an empty cell, other values
  are tiles (2, 4, 8, ...). board[0] is the top row, board[r][0] the leftmost cell of row r.
- Return exactly one of the strings "W" (up), "A" (left), "S" (down), "D" (right).
- Tiles slide as far as they can; two equal tiles that meet merge into one tile of double value,
  and that value is added to the score. After every move that changes the board a new 2 or 4
  appears on a random empty cell. A move that changes nothing is wasted; several wasted moves in
  a row end the game. The game ends when no move changes the board.
- Goal: reach the {target} tile and score as many points as possible.
"""

# An example that only plays moves that change the board, for the compact templates: a row slid left
# changes when some tile has an empty or an equal cell on its left (a gap before a tile always shows as a
# 0 right before a tile). Rows checked reversed are "D", columns (zip(*board)) are "W"; "S" comes last and
# is returned unchecked: the game ends as soon as no move changes the board, so when A, D and W change
# nothing, S does. The order A, D, W opens with opposite moves and never keeps a corner: weak on purpose (a
# corner order such as A, W, D, S earns more). Short on purpose too: with its code fence it is 117 SmolLM2
# tokens, and the cpu preset samples at most 128.
MOVES_EXAMPLE = '''def moves(row):
    # Does sliding this row left change it?
    return any(map(lambda a, b: b and (a == 0 or a == b), row, row[1:]))


def strategy(board):
    if any(map(moves, board)):
        return "A"
    if any(map(lambda row: moves(row[::-1]), board)):
        return "D"
    if any(map(moves, zip(*board))):
        return "W"
    return "S"
'''

# The API example of the api templates, weak on purpose like the moves example: the first legal move in
# the order W, A, S, D. Copying it plays every game to its end.
API_EXAMPLE = '''def strategy(board):
    moves = legal_moves(board)
    return moves[0]
'''

# Progress is the max tile on a log2 scale (each doubling one equal step) towards the target tile; the
# score that builds the target from 2s, (log2(target) - 1) * target (20,480 for 2048), is full marks for
# the score term; an honest game that ends under 64 is graded down.
def _target_tile(options: Mapping[str, Any]) -> float:
    return float(_check_target(options.get("target", 2048)))


def _target_score(options: Mapping[str, Any], goal: float) -> float:
    return max(1.0, (math.log2(max(goal, 2.0)) - 1) * goal)


PROGRESS = Progress(metric="max_tile", target=_target_tile, scale="log2", floor=64.0, score_scale=_target_score,
                    milestones=(512.0, 1024.0, 2048.0))

SPEC = register("2048", GameSpec(
    name="2048",
    actions=ACTIONS,
    new_state=new_state,
    step=_step,
    legal_mask=_legal_mask,
    is_over=_is_over,
    won=_won,
    view=_view,
    metrics=_metrics,
    metric_names=("score", "max_tile", "moves"),
    prompt=PROMPT,
    example=EXAMPLE,
    options={"size": 4, "target": 2048},
    gym_id="codepolicy/2048-v0",
    describe=_describe,
    api=tuple(ApiFunction(name, signature, doc, make) for name, signature, doc, make in api.API),
    seed_programs=seeds.seed_programs,
    progress=PROGRESS,
    reward_spec=str(Path(__file__).with_name("rewards.toml")),
    baselines=baselines.BASELINES,
    hacks=hacks.HACKS,
    api_hacks=hacks.API_HACKS,
    replay_frame=render.replay_frame,
    replay_media="envs.game2048.render",
    moves_example=MOVES_EXAMPLE,
    api_example=API_EXAMPLE,
    moves_example_note=("Example of the answer format. `moves(row)` says whether sliding a row to the left changes "
                        "it; the strategy plays the first move, in a fixed order, that changes the board. The order "
                        "is a weak plan"),
    api_example_note=("Example of the answer format: the strategy plays the first move, in a fixed order, that "
                      "changes the board. The order is a weak plan"),
))
from envs.game2048 import gym_registration  # noqa: E402,F401  (gymnasium.make("codepolicy/2048-v0"))
