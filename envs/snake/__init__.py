"""Snake: the game spec, registered as "snake".

Rules: an N x N board (8 by default, 5..16 supported). The snake starts with length 3 in the middle
of the board (head on row N // 2, column N // 2, body to its left) heading right; the food appears
on an empty cell drawn uniformly by the game's seeded SplitMix64 generator, at the start and after
each meal. Each move advances the head one cell: eating the food grows the snake by one (the tail
stays that move) and scores 1; otherwise the tail moves along. Moving into a wall or into the body
ends the game (the tail's cell is free: the tail moves away that move). Moving back into the neck
(the cell right behind the head) changes nothing: it is not a move, like a 2048 move that changes
nothing, so a strategy that keeps reversing ends "stuck". The game also ends when the snake has made
``hunger`` moves since it last ate (or since the start), and when it fills the board. Eating
``target`` food is a win; play goes on.

Actions: "W" (up, id 0), "A" (left, id 1), "S" (down, id 2), "D" (right, id 3).

View (what a strategy gets, fresh plain lists every call): N rows of N ints: 0 empty, -1 the food,
the snake numbered from 1 at its tail to its length at its head, so a loop-free program finds the
head with ``max`` and the food with ``-1``.

Options and their defaults (measured with the baselines on seeds 0-99, see :mod:`envs.snake.baselines`):

- ``size`` = 8: the board's side. Small enough that a one-ply program meets its own body within a game
  (so reward separates the careful from the greedy: greedy ends at length 20 on average), large enough
  for 61 meals.
- ``target`` = 61 food: the snake fills the 8 x 8 board, the classic win. The strong trusted baseline
  (``pathfinder``) does it in 45 of 100 games and ends at 57.6 food on average; greedy never does
  (17.1 food on average, 36 at best). A lower target is a formality for the pathfinder (25 food: 99 of 100
  games) while it says nothing about the programs in between, which the linear progress term grades
  anyway. Any target from 1 to 253 (the free cells of a 16 x 16 board) is accepted; one above the free
  cells of the board in play is simply out of reach, like 2048's target tile on a small board.
- ``hunger`` = 128 (2 x 8 x 8) moves without food end the game. A snake that follows a cycle through every
  cell reaches any food within N*N - 3 moves, so N*N is the least hunger that never starves a player that
  is careful that way; twice that leaves room for detours. It is what ends a program that circles
  forever: it stops 128 moves after its last meal instead of playing to the move cap. It also makes the
  end of a long game hard: the pathfinder, which chases its tail while the food is walled off, starves in
  46 of 100 games, every one of them at 54 food or more. Set it with the size: 2 * size * size is the rule
  of thumb (an option of its own, not a formula, so that the prompt can state it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from envs.registry import ApiFunction, GameSpec, Progress, register
from envs.snake import api, baselines, hacks, kernel, seeds
from envs.snake.render import render_ansi, render_text

__all__ = ["ACTIONS", "State", "SPEC", "DEFAULT_OPTIONS", "new_state", "check_options"]

ACTIONS: tuple[str, ...] = ("W", "A", "S", "D")
MIN_SIZE, MAX_SIZE = api.MIN_SIZE, api.MAX_SIZE
DEFAULT_OPTIONS: dict[str, int] = {"size": 8, "target": 61, "hunger": 128}
MAX_TARGET = MAX_SIZE * MAX_SIZE - kernel.START_LENGTH
MAX_HUNGER = 1_000_000


def _int_option(name: str, value: Any, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= int(value) <= high:
        raise ValueError(f"snake {name} must be an integer from {low} to {high} ({what}), got {value!r}")
    return int(value)


def check_options(options: Mapping[str, Any]) -> tuple[int, int, int]:
    """``(size, target, hunger)`` of ``options`` over the defaults; ValueError naming a bad one."""
    size = _int_option("size", options.get("size", DEFAULT_OPTIONS["size"]), MIN_SIZE, MAX_SIZE, "the board's side")
    target = _int_option("target", options.get("target", DEFAULT_OPTIONS["target"]), 1, MAX_TARGET,
                         "food to eat to win")
    hunger = _int_option("hunger", options.get("hunger", DEFAULT_OPTIONS["hunger"]), 1, MAX_HUNGER,
                         "moves without food that end the game")
    return size, target, hunger


@dataclass
class State:
    """A live Snake game: the flat board, the counters row, its RNG state and the options."""

    grid: np.ndarray   # int16[size*size]: 0 empty, -1 food, 1..L the snake (tail..head)
    st: np.ndarray     # int64[kernel.NFIELDS]: the kernel's counters (kernel.S_*)
    rng: np.ndarray    # uint64[1] SplitMix64 state
    size: int
    target: int
    hunger: int

    @property
    def status(self) -> str:
        """alive, wall, body, starved or full (how the game ended)."""
        return kernel.STATUS_NAMES[int(self.st[kernel.S_STATUS])]


def new_state(seed: int, options: Mapping[str, Any]) -> State:
    """A fresh game from ``seed`` with options ``size``, ``target`` and ``hunger``."""
    size, target, hunger = check_options(options)
    grid = np.zeros(size * size, dtype=np.int16)
    st = np.zeros(kernel.NFIELDS, dtype=np.int64)
    rng = np.zeros(1, dtype=np.uint64)
    kernel.reset(grid, st, rng, 0, size, int(seed), hunger)
    return State(grid=grid, st=st, rng=rng, size=size, target=target, hunger=hunger)


def _step(state: State, action: int) -> tuple[float, bool]:
    if not 0 <= action < 4:
        raise ValueError(f"snake action id must be 0..3 (W, A, S, D), got {action!r}")
    ate, changed = kernel.step(state.grid, state.st, state.rng, 0, state.size, action)
    return float(ate), bool(changed)


def _legal_mask(state: State) -> np.ndarray:
    bits = kernel.legal_bits(state.grid, state.st, state.size)
    return np.array([(bits >> a) & 1 for a in range(4)], dtype=np.bool_)


def _is_over(state: State) -> bool:
    return int(state.st[kernel.S_STATUS]) != kernel.ALIVE


def _won(state: State) -> bool:
    return int(state.st[kernel.S_EATEN]) >= state.target


def _view(state: State) -> list[list[int]]:
    # Plain Python ints in fresh lists, so a strategy can mutate or keep its copy freely.
    flat = state.grid.tolist()
    n = state.size
    return [flat[r * n:(r + 1) * n] for r in range(n)]


METRIC_NAMES: tuple[str, ...] = ("score", "length", "moves", "since_meal", "starved")


def _metrics(state: State) -> dict[str, float]:
    st = state.st
    return {"score": float(st[kernel.S_EATEN]), "length": float(st[kernel.S_LEN]), "moves": float(st[kernel.S_MOVES]),
            "since_meal": float(st[kernel.S_SINCE]),
            "starved": float(int(st[kernel.S_STATUS]) == kernel.STARVED)}


def _describe(state: State) -> str:
    st = state.st
    return (render_text(_view(state)) + f"\nscore {int(st[kernel.S_EATEN])}, length {int(st[kernel.S_LEN])}, "
            f"{int(st[kernel.S_SINCE])} moves since the last meal, {state.status}")


# A weak example of the answer format (the default templates show it): head for the food's row, then its
# column, without looking at walls, the body or the neck.
EXAMPLE = '''def strategy(board):
    # Head for the food (-1): its row first, then its column. Never checks the body.
    n = len(board)
    flat = sum(board, [])
    row, col = divmod(flat.index(max(flat)), n)
    if -1 not in flat:
        return "W"
    food_row, food_col = divmod(flat.index(-1), n)
    if food_row != row:
        return "W" if food_row < row else "S"
    return "A" if food_col < col else "D"
'''

# The example of the compact "moves" templates: the first move in a fixed order that stays on the board and
# lands on an empty cell, the food or the tail (the tail moves away); trapped, it goes straight on (an honest
# death: the move into the neck would change nothing, and several of those end the game as "stuck"). Copying it
# plays every game to its end; it never looks for the food, so it earns little: the order is a weak plan.
MOVES_EXAMPLE = '''def strategy(board):
    n = len(board)
    flat = sum(board, [])
    row, col = divmod(flat.index(max(flat)), n)
    neck_row, neck_col = divmod(flat.index(max(flat) - 1), n)
    cells = {"W": (row - 1, col), "A": (row, col - 1), "S": (row + 1, col), "D": (row, col + 1)}
    safe = list(filter(lambda m: 0 <= cells[m][0] < n and 0 <= cells[m][1] < n
                       and board[cells[m][0]][cells[m][1]] in (0, -1, 1), "WASD"))
    ahead = {(-1, 0): "W", (0, -1): "A", (1, 0): "S", (0, 1): "D"}[(row - neck_row, col - neck_col)]
    return safe[0] if safe else ahead
'''

# The example of the api templates: the first legal move in the order W, A, S, D; legal_moves is empty when
# every move kills, and then the snake goes straight on (heading never reverses, so the game ends honestly).
API_EXAMPLE = '''def strategy(board):
    moves = legal_moves(board)
    return moves[0] if moves else heading(board)
'''

# str.format fields: size, target, hunger (train.prompts fills them from the options); no other braces.
PROMPT = """You are playing Snake on a {size}x{size} board. Write a Python function `strategy(board)`
that is called once per move and returns the snake's next move.

- `board` is a list of {size} rows, each a list of {size} ints: 0 is an empty cell, -1 is the food, and
  the snake's cells are numbered from 1 at its tail to its length at its head, so the head is the
  largest number and the cell numbered one less is right behind it. board[0] is the top row,
  board[r][0] the leftmost cell of row r.
- Return exactly one of the strings "W" (up), "A" (left), "S" (down), "D" (right).
- Each move the head moves one cell that way. Eating the food makes the snake one cell longer and a
  new food appears on a random empty cell; otherwise the tail moves along too. Moving into a wall or
  into the snake's body ends the game (the tail's cell is free, since the tail moves away). Moving
  back into the cell right behind the head changes nothing; several such moves in a row end the
  game. The game also ends after {hunger} moves without eating.
- Goal: eat as much food as you can; {target} pieces win the game.
"""


# Progress is the snake's length, linear from the start (3) to the length that eats the target (64, a full 8x8
# board, by default); the score term counts food up to a full board of the size in play, so with a lower target
# eating past it still earns; an honest game that never ate (length 3) is graded down. The milestones are 10, 20,
# ..., 50 food and the full 8x8 board.
def _target_length(options: Mapping[str, Any]) -> float:
    _, target, _ = check_options(options)
    return float(kernel.START_LENGTH + target)


def _full_board_score(options: Mapping[str, Any], goal: float | None = None) -> float:
    # Whatever the goal (the game's target or one a reward spec sets): every free cell eaten.
    size, _, _ = check_options(options)
    return float(size * size - kernel.START_LENGTH)


PROGRESS = Progress(metric="length", target=_target_length, scale="linear", start=float(kernel.START_LENGTH),
                    floor=float(kernel.START_LENGTH + 1), score_scale=_full_board_score,
                    milestones=(13.0, 23.0, 33.0, 43.0, 53.0, 64.0))

SPEC = register("snake", GameSpec(
    name="snake",
    actions=ACTIONS,
    new_state=new_state,
    step=_step,
    legal_mask=_legal_mask,
    is_over=_is_over,
    won=_won,
    view=_view,
    metrics=_metrics,
    metric_names=METRIC_NAMES,
    prompt=PROMPT,
    example=EXAMPLE,
    options=dict(DEFAULT_OPTIONS),
    gym_id="codepolicy/Snake-v0",
    describe=_describe,
    api=tuple(ApiFunction(name, signature, doc, make) for name, signature, doc, make in api.API),
    seed_programs=seeds.seed_programs,
    progress=PROGRESS,
    reward_spec=str(Path(__file__).with_name("rewards.toml")),
    baselines=baselines.BASELINES,
    hacks=hacks.HACKS,
    api_hacks=hacks.API_HACKS,
    moves_example=MOVES_EXAMPLE,
    api_example=API_EXAMPLE,
    replay_frame=render_ansi,
    moves_example_note=("Example of the answer format: the strategy plays the first move, in a fixed order, that "
                        "keeps the head on the board and off the body. The order is a weak plan, and it never "
                        "looks for the food"),
    api_example_note=("Example of the answer format: the strategy plays the first move, in the order W, A, S, D, "
                      "that does not end the game at once. The order is a weak plan, and it never looks for the "
                      "food"),
))
from envs.snake import gym_registration  # noqa: E402,F401  (gymnasium.make("codepolicy/Snake-v0"))
