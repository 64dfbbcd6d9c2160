"""Reference strategies for 2048: what a program written by a model is measured against.

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
- :func:`envs.expectimax.expectimax_strategy` ``(depth)``: the Numba expectimax, the
  reference strength.

:func:`run_baselines` plays them all on the same seeds and :func:`summarize` turns the
games into the figures ``codepolicy baselines`` prints.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import envs
from envs.game2048 import ACTIONS, slide
from envs.play import DEFAULT_MAX_MOVES, play_trusted

__all__ = [
    "SOURCES", "API_SOURCES", "NAMES", "TRUSTED_ONLY", "REACH_TILES", "Strategy", "BaselineSummary",
    "load", "random_strategy", "make", "play_games", "summarize", "run_baselines",
]

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

TRUSTED_ONLY: tuple[str, ...] = ("random", "expectimax")
"""Baselines that are trusted Python (seeded RNG, Numba) and cannot run in the sandbox."""

NAMES: tuple[str, ...] = ("expectimax", "greedy", "corner", "random", "fixed")
"""Every baseline, strongest first (the order the rewards must reproduce)."""

REACH_TILES: tuple[int, ...] = (512, 1024, 2048)
"""Tiles whose reach rate (share of games with max tile >= it) the summary reports."""


def load(name: str) -> Strategy:
    """The ``strategy`` function of ``SOURCES[name]``, exec'd in a fresh namespace (trusted)."""
    try:
        source = SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown sandboxable baseline {name!r}; expected one of {sorted(SOURCES)}") from None
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<baseline {name}>", "exec"), namespace)
    return namespace["strategy"]


def random_strategy(seed: int) -> Strategy:
    """A strategy that picks uniformly among the moves that change the board, seeded by ``seed``."""
    rng = random.Random(seed)

    def strategy(board: list) -> str:
        moving = [m for m in ACTIONS if slide(board, m)[2]]
        return rng.choice(moving) if moving else ACTIONS[0]

    return strategy


def make(name: str, seed: int = 0, depth: int = 2) -> Strategy:
    """A ready strategy callable for baseline ``name`` (``seed`` for random, ``depth`` for expectimax)."""
    if name in SOURCES:
        return load(name)
    if name == "random":
        return random_strategy(seed)
    if name == "expectimax":
        from envs.expectimax import expectimax_strategy  # Numba compile only when asked for

        return expectimax_strategy(depth)
    raise ValueError(f"unknown baseline {name!r}; expected one of {list(NAMES)}")


def play_games(strategy: Strategy, seeds: Iterable[int], *, max_moves: int = DEFAULT_MAX_MOVES,
               stuck_moves: int = 5, **options: Any) -> list[dict[str, Any]]:
    """Play one 2048 game per seed with a trusted strategy -> one dict per game.

    The games are played by :func:`envs.play.play_trusted`, the loop everything else uses,
    so the dicts have the keys of ``sandbox.records.GameRecord`` (seed, outcome, score,
    max_tile, moves, move_histogram, illegal_moves, wall_seconds, error, metrics).
    ``stuck_moves`` moves in a row that change nothing end a game (outcome "stuck"), and
    ``max_moves`` (default :data:`envs.play.DEFAULT_MAX_MOVES`) moves one (outcome "max_moves").
    """
    return play_trusted(strategy, game="2048", seeds=[int(s) for s in seeds], max_moves=max_moves,
                        stuck_moves=stuck_moves, **options)


@dataclass(frozen=True)
class BaselineSummary:
    """Figures of one baseline over a set of games."""

    name: str
    games: int
    mean_score: float
    max_score: float
    mean_moves: float
    max_tiles: Mapping[int, int] = field(default_factory=dict)   # max tile -> number of games
    reach: Mapping[int, float] = field(default_factory=dict)     # tile -> share of games reaching it
    games_per_second: float = 0.0
    moves_per_second: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tile keys as strings)."""
        return {"name": self.name, "games": self.games, "mean_score": self.mean_score,
                "max_score": self.max_score, "mean_moves": self.mean_moves,
                "max_tiles": {str(k): v for k, v in sorted(self.max_tiles.items())},
                "reach": {str(k): v for k, v in sorted(self.reach.items())},
                "games_per_second": self.games_per_second, "moves_per_second": self.moves_per_second}


def summarize(name: str, games: Sequence[Mapping[str, Any]], seconds: float,
              reach_tiles: Sequence[int] = REACH_TILES) -> BaselineSummary:
    """Mean score, max-tile distribution, reach rates and speed of ``games`` played in ``seconds``."""
    if not games:
        raise ValueError(f"baseline {name!r}: no games to summarize")
    n = len(games)
    tiles: dict[int, int] = {}
    for g in games:
        tiles[int(g["max_tile"])] = tiles.get(int(g["max_tile"]), 0) + 1
    moves = sum(int(g["moves"]) for g in games)
    return BaselineSummary(
        name=name, games=n,
        mean_score=sum(float(g["score"]) for g in games) / n,
        max_score=max(float(g["score"]) for g in games),
        mean_moves=moves / n,
        max_tiles=dict(sorted(tiles.items())),
        reach={t: sum(int(g["max_tile"]) >= t for g in games) / n for t in reach_tiles},
        games_per_second=n / seconds if seconds > 0 else float("inf"),
        moves_per_second=moves / seconds if seconds > 0 else float("inf"),
    )


def run_baselines(games: int = 100, seed: int = 0, names: Sequence[str] = NAMES, depth: int = 2,
                  max_moves: int = DEFAULT_MAX_MOVES, **options: Any) -> list[BaselineSummary]:
    """Play ``games`` games (seeds ``seed`` .. ``seed+games-1``, the same for all) per baseline."""
    if games < 1:
        raise ValueError(f"--games must be at least 1, got {games}")
    envs.get("2048").make(seed, **options)  # a bad size, target or option fails here, naming it
    seeds = range(seed, seed + games)
    out = []
    for name in names:
        strategy = make(name, seed=seed, depth=depth)
        if name == "expectimax":
            strategy(_warm_board(options.get("size", 4)))  # keep the Numba compile out of the timing
        start = time.perf_counter()
        played = play_games(strategy, seeds, max_moves=max_moves, **options)
        out.append(summarize(name, played, time.perf_counter() - start))
    return out


def _warm_board(size: int) -> list[list[int]]:
    board = [[0] * size for _ in range(size)]
    board[0][0] = 2
    return board
