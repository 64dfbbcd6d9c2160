"""Play any game's baselines (``GameSpec.baselines``) on the same seeded games and summarise them.

A game declares its reference strategies, naive to strong, as :class:`envs.registry.Baseline`
records (2048's are in :mod:`envs.game2048.baselines`); this module plays them with the one game
loop (:func:`envs.play.play_trusted`), trusted and in this process, and turns the games into the
figures ``codepolicy baselines`` prints: mean score, the distribution of the game's progress metric
(2048: the max tile) and the share of games reaching each of its milestones (2048: 512, 1024, 2048).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import envs
from envs.play import DEFAULT_MAX_MOVES, play_trusted
from envs.registry import DEFAULT_GAME

__all__ = ["Strategy", "BaselineSummary", "names", "sources", "make", "play_games", "summarize", "run_baselines"]

Strategy = Callable[[Any], str]


def names(game: str = DEFAULT_GAME) -> tuple[str, ...]:
    """The game's baselines, strongest first (the order the rewards must reproduce)."""
    return tuple(b.name for b in reversed(envs.get(game).baselines))


def sources(game: str = DEFAULT_GAME, api: bool = False) -> dict[str, str]:
    """The game's sandboxable baselines: name -> program (``api``: the versions written against its API)."""
    out = {}
    for b in envs.get(game).baselines:
        text = b.api_source if api else b.source
        if text:
            out[b.name] = text
    return out


def make(name: str, game: str = DEFAULT_GAME, seed: int = 0, options: Mapping[str, Any] | None = None,
         **params: Any) -> Strategy:
    """A ready trusted callable of baseline ``name`` of ``game`` (``seed`` for a random one, ``params`` such as
    2048's expectimax ``depth``); ValueError naming the known baselines otherwise."""
    return envs.get(game).baseline(name).strategy(seed, options, **params)


def play_games(strategy: Strategy, seeds: Iterable[int], *, game: str = DEFAULT_GAME, max_moves: int = DEFAULT_MAX_MOVES,
               stuck_moves: int = 5, **options: Any) -> list[dict[str, Any]]:
    """Play one game of ``game`` per seed with a trusted strategy -> one dict per game.

    The games are played by :func:`envs.play.play_trusted`, the loop everything else uses, so the
    dicts have the keys of ``sandbox.records.GameRecord`` (seed, outcome, score, moves,
    move_histogram, illegal_moves, wall_seconds, error, metrics, ...). ``stuck_moves`` moves in a
    row that change nothing end a game (outcome "stuck"), and ``max_moves`` moves one (outcome
    "max_moves").
    """
    return play_trusted(strategy, game=game, seeds=[int(s) for s in seeds], max_moves=max_moves,
                        stuck_moves=stuck_moves, **options)


@dataclass(frozen=True)
class BaselineSummary:
    """Figures of one baseline over a set of games; ``metric`` is the game's progress metric."""

    name: str
    games: int
    mean_score: float
    max_score: float
    mean_moves: float
    metric: str = ""
    mean_progress: float = 0.0
    progress: Mapping[float, int] = field(default_factory=dict)  # value of the metric at the end -> games
    reach: Mapping[float, float] = field(default_factory=dict)   # milestone -> share of games reaching it
    games_per_second: float = 0.0
    moves_per_second: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (metric values as string keys)."""
        return {"name": self.name, "games": self.games, "mean_score": self.mean_score,
                "max_score": self.max_score, "mean_moves": self.mean_moves, "metric": self.metric,
                f"mean_{self.metric or 'progress'}": self.mean_progress,
                f"{self.metric or 'progress'}_counts": {_key(k): v for k, v in sorted(self.progress.items())},
                "reach": {_key(k): v for k, v in sorted(self.reach.items())},
                "games_per_second": self.games_per_second, "moves_per_second": self.moves_per_second}


def _key(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def summarize(name: str, games: Sequence[Mapping[str, Any]], seconds: float, game: str = DEFAULT_GAME) -> BaselineSummary:
    """Mean score, the distribution of the game's progress metric, its milestones' reach rates and speed."""
    if not games:
        raise ValueError(f"baseline {name!r}: no games to summarize")
    spec = envs.get(game)
    n = len(games)
    values = [spec.progress_value(g.get("metrics") or {}) for g in games]
    counts: dict[float, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    milestones = spec.progress.milestones if spec.progress is not None else ()
    moves = sum(int(g["moves"]) for g in games)
    return BaselineSummary(
        name=name, games=n,
        mean_score=sum(float(g["score"]) for g in games) / n,
        max_score=max(float(g["score"]) for g in games),
        mean_moves=moves / n,
        metric=spec.progress_metric or "",
        mean_progress=sum(values) / n,
        progress=dict(sorted(counts.items())),
        reach={t: sum(v >= t for v in values) / n for t in milestones},
        games_per_second=n / seconds if seconds > 0 else float("inf"),
        moves_per_second=moves / seconds if seconds > 0 else float("inf"),
    )


def run_baselines(game: str = DEFAULT_GAME, games: int = 100, seed: int = 0, only: Sequence[str] | None = None,
                  max_moves: int = DEFAULT_MAX_MOVES, params: Mapping[str, Any] | None = None,
                  **options: Any) -> list[BaselineSummary]:
    """Play ``games`` games (seeds ``seed`` .. ``seed+games-1``, the same for all) per baseline of ``game``.

    ``only`` picks baselines (default: all, strongest first); ``params`` go to the baselines that take them
    (2048's expectimax: ``depth``); ``options`` are the game's options.
    """
    if games < 1:
        raise ValueError(f"--games must be at least 1, got {games}")
    spec = envs.get(game)
    spec.make(seed, **options)  # a bad option fails here, naming it
    seeds = range(seed, seed + games)
    out = []
    for name in only if only is not None else names(game):
        # A first call keeps a compile (Numba) out of the timing; the games get a fresh strategy, so a
        # seeded random baseline plays them from its seed.
        make(name, game, seed, options, **dict(params or {}))(spec.view(spec.make(seed, **options)))
        strategy = make(name, game, seed, options, **dict(params or {}))
        start = time.perf_counter()
        played = play_games(strategy, seeds, game=game, max_moves=max_moves, **options)
        out.append(summarize(name, played, time.perf_counter() - start, game))
    return out
