"""Playing seeded games with a *trusted* strategy function, in this process.

For our own code only (baselines, benchmarks, ``codepolicy play --trusted``): the strategy
runs unguarded. Untrusted programs go through ``sandbox.run``, which reports the same
figures as :class:`sandbox.records.GameRecord`; the dicts here have the same keys.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from envs.registry import get

__all__ = ["play_trusted", "play_one"]


def play_one(strategy_fn: Callable[[Any], Any], game: str = "2048", seed: int = 0, max_moves: int = 10000,
             stuck_moves: int = 5, **options: Any) -> dict[str, Any]:
    """Play one seeded game of ``game`` with ``strategy_fn``; see :func:`play_trusted` for the result."""
    return play_trusted(strategy_fn, game=game, seeds=(seed,), max_moves=max_moves,
                        stuck_moves=stuck_moves, **options)[0]


def play_trusted(strategy_fn: Callable[[Any], Any], game: str = "2048", seeds: Iterable[int] = (0,),
                 max_moves: int = 10000, stuck_moves: int = 5, **options: Any) -> list[dict[str, Any]]:
    """Play one game per seed with ``strategy_fn(view) -> action name``; one dict per game.

    Works for any registered game (it only uses the game's spec). Each dict has the keys of
    ``sandbox.records.GameRecord``: ``seed``, ``outcome``, ``score``, ``max_tile``,
    ``moves`` (moves that changed the state), ``move_histogram`` ({action name: times
    returned}), ``illegal_moves`` (returned moves that changed nothing), ``wall_seconds``,
    ``error`` and ``metrics`` (every metric the game reports).

    Outcomes: "finished" (no move left), "won" (goal reached, then finished or hit the cap),
    "max_moves" (``max_moves`` state-changing moves made), "stuck" (``stuck_moves`` moves in
    a row changed nothing), "invalid_output" (returned something that is not an action
    name), "error" (the strategy raised; ``error`` holds the message). ``options`` are the
    game's options (2048: size, target); an unknown game or option raises ValueError/
    UnknownGameError naming it.
    """
    spec = get(game)
    if not isinstance(max_moves, int) or max_moves < 1:
        raise ValueError(f"max_moves must be a positive integer, got {max_moves!r}")
    if not isinstance(stuck_moves, int) or stuck_moves < 1:
        raise ValueError(f"stuck_moves must be a positive integer, got {stuck_moves!r}")
    action_ids = {name: i for i, name in enumerate(spec.actions)}
    results = []
    for seed in seeds:
        state = spec.make(int(seed), **options)
        histogram = dict.fromkeys(spec.actions, 0)
        moves = illegal = streak = 0
        outcome, error = "finished", ""
        start = time.perf_counter()
        while not spec.is_over(state):
            if moves >= max_moves:
                outcome = "max_moves"
                break
            try:
                move = strategy_fn(spec.view(state))
            except Exception as exc:  # a trusted strategy can still have bugs: report, don't crash the batch
                outcome, error = "error", f"{type(exc).__name__}: {exc}"[:500]
                break
            action = action_ids.get(move) if isinstance(move, str) else None
            if action is None:
                outcome, error = "invalid_output", f"returned {move!r}; expected one of {list(spec.actions)}"[:500]
                break
            histogram[move] += 1
            _, changed = spec.step(state, action)
            if changed:
                moves += 1
                streak = 0
            else:
                illegal += 1
                streak += 1
                if streak >= stuck_moves:
                    outcome = "stuck"
                    break
        wall = time.perf_counter() - start
        if outcome in ("finished", "max_moves") and spec.won(state):
            outcome = "won"
        metrics = spec.metrics(state)
        results.append({
            "seed": int(seed), "outcome": outcome, "score": float(metrics.get("score", 0.0)),
            "max_tile": int(metrics.get("max_tile", 0)), "moves": moves, "move_histogram": histogram,
            "illegal_moves": illegal, "wall_seconds": wall, "error": error, "metrics": metrics,
        })
    return results
