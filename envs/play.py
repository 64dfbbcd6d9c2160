"""The one game loop: a seeded game of any registered game, played by a strategy's answers.

:func:`play_game` is the loop everything uses: trusted play in this process
(:func:`play_trusted`, baselines, benchmarks) and untrusted play in a sandbox worker, which
passes in an ``ask`` function that runs the strategy under its guards. So a program and a
seed give the same record in and out of the sandbox; only what ``ask`` reports differs
(the sandbox can also say "violation", "timeout" or "crashed"). Outcome names come from
:mod:`envs.outcomes`.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping

from envs.outcomes import OUTCOMES
from envs.registry import DEFAULT_GAME, get

__all__ = ["play_game", "play_trusted", "play_one", "describe_answer", "ANSWER_CHARS", "DEFAULT_MAX_MOVES"]

ANSWER_CHARS = 24   # characters of a wrong answer quoted in the error text
# The default move cap of every game loop (play_game, play_trusted, the baselines) and of
# sandbox.records.Limits (2048's default reward spec, envs/game2048/rewards.toml, sets the same): enough for 4096 with a good
# strategy, so reaching it is an honest "max_moves", while it still bounds a game's time. The
# expectimax baseline (depth 2) never needs more than 3,803 moves on seeds 0-99.
DEFAULT_MAX_MOVES = 5000

# ask(view) -> ("ok", the strategy's return value) or (outcome, message) when it gave none.
Ask = Callable[[Any], "tuple[str, Any]"]


def describe_answer(value: Any, actions: Iterable[str]) -> str:
    """Why ``value`` is not a move, without running any method of it (it may be hostile)."""
    if type(value) is str:
        return f"returned {value[:ANSWER_CHARS]!r}, which is not one of {list(actions)}"
    return f"returned a value of type {type(value).__name__}, not a str (one of {list(actions)})"


def play_game(spec: Any, ask: Ask, seed: int, options: Mapping[str, Any] | None = None, *,
              max_moves: int = DEFAULT_MAX_MOVES, stuck_moves: int = 5) -> dict[str, Any]:
    """Play one seeded game of ``spec`` with ``ask`` -> the record as plain data.

    The keys are those of ``sandbox.records.GameRecord``: ``seed``, ``outcome``, ``score``,
    ``moves`` (answers that changed the state), ``move_histogram`` (action ->
    times answered), ``moved_histogram`` (action -> times it changed the state),
    ``illegal_moves`` (answers that changed nothing), ``wall_seconds``, ``error``,
    ``metrics`` (every metric the game reports) and ``final_view``.

    The game ends "finished" when no move is left, "max_moves" after ``max_moves`` state
    changes, "stuck" after ``stuck_moves`` answers in a row that changed nothing,
    "invalid_output" on an answer that is not an action name, or with whatever outcome
    ``ask`` reports instead of an answer. "finished" and "max_moves" become "won" when the
    game's goal was reached; "stuck" never does (a game abandoned after the goal is still
    abandoned, so quitting never pays).
    """
    actions = tuple(spec.actions)
    action_ids = {a: i for i, a in enumerate(actions)}
    answered = dict.fromkeys(actions, 0)
    moved = dict.fromkeys(actions, 0)
    moves = illegal = streak = 0
    outcome, error = "", ""
    start = time.perf_counter()
    state = spec.make(int(seed), **dict(options or {}))
    while True:
        if spec.is_over(state):
            outcome = "finished"
            break
        if moves >= max_moves:
            outcome = "max_moves"
            break
        status, value = ask(spec.view(state))
        if status != "ok":
            outcome = status if status in OUTCOMES else "error"
            error = str(value)
            break
        if type(value) is not str or value not in action_ids:
            outcome, error = "invalid_output", describe_answer(value, actions)
            break
        answered[value] += 1
        _, changed = spec.step(state, action_ids[value])
        if changed:
            moves += 1
            moved[value] += 1
            streak = 0
        else:
            illegal += 1
            streak += 1
            if streak >= stuck_moves:
                outcome, error = "stuck", f"{streak} moves in a row did not change the board"
                break
    if outcome in ("finished", "max_moves") and spec.won(state):
        outcome = "won"
    metrics = {k: float(v) for k, v in spec.metrics(state).items()}
    return {
        "seed": int(seed), "outcome": outcome, "score": metrics.get("score", 0.0),
        "moves": moves, "move_histogram": answered,
        "moved_histogram": moved, "illegal_moves": illegal, "wall_seconds": time.perf_counter() - start,
        "error": error, "metrics": metrics, "final_view": spec.view(state),
    }


def play_one(strategy_fn: Callable[[Any], Any], game: str = DEFAULT_GAME, seed: int = 0,
             max_moves: int = DEFAULT_MAX_MOVES, stuck_moves: int = 5, **options: Any) -> dict[str, Any]:
    """Play one seeded game of ``game`` with ``strategy_fn``; see :func:`play_trusted` for the result."""
    return play_trusted(strategy_fn, game=game, seeds=(seed,), max_moves=max_moves,
                        stuck_moves=stuck_moves, **options)[0]


def play_trusted(strategy_fn: Callable[[Any], Any], game: str = DEFAULT_GAME, seeds: Iterable[int] = (0,),
                 max_moves: int = DEFAULT_MAX_MOVES, stuck_moves: int = 5, **options: Any) -> list[dict[str, Any]]:
    """Play one game per seed with a *trusted* ``strategy_fn(view) -> action name``; one dict per game.

    For our own code only (baselines, benchmarks, ``codepolicy play --trusted``): the strategy
    runs unguarded in this process. Untrusted programs go through ``sandbox.run``, which plays
    the same loop (:func:`play_game`) and so reports the same record. A strategy that raises
    ends its game with outcome "error" (the message in ``error``); it does not stop the batch.
    ``options`` are the game's options (2048: size, target); an unknown game or option raises
    ValueError/UnknownGameError naming it.
    """
    spec = get(game)
    if not isinstance(max_moves, int) or max_moves < 1:
        raise ValueError(f"max_moves must be a positive integer, got {max_moves!r}")
    if not isinstance(stuck_moves, int) or stuck_moves < 1:
        raise ValueError(f"stuck_moves must be a positive integer, got {stuck_moves!r}")

    def ask(view: Any) -> tuple[str, Any]:
        try:
            return "ok", strategy_fn(view)
        except Exception as exc:  # a trusted strategy can still have bugs: report, don't crash the batch
            return "error", f"{type(exc).__name__}: {exc}"[:500]

    return [play_game(spec, ask, int(seed), options, max_moves=max_moves, stuck_moves=stuck_moves)
            for seed in seeds]
