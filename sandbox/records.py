"""The records the sandbox hands downstream: format errors, verdicts, limits, game records.

They are plain frozen dataclasses so they pickle across worker processes and can be
logged as JSON (``dataclasses.asdict``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["FormatError", "Violation", "Verdict", "Limits", "GameRecord", "RecordedGame", "FORMAT_REASONS"]


# Reason codes of FormatError, from "nothing usable" to "almost a program". The format
# reward grades them in this order, so a group keeps a reward spread even when no sample plays.
FORMAT_REASONS = ("empty", "no_code", "no_function", "wrong_signature", "syntax_error", "too_long")


class FormatError(ValueError):
    """A completion has no usable ``def strategy(board)``: ``reason`` is one of FORMAT_REASONS."""

    def __init__(self, reason: str, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.line = line

    def __reduce__(self):  # keep reason/line when pickled to or from a worker
        return (FormatError, (self.reason, self.message, self.line))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FormatError) and (self.reason, self.message, self.line) == (
            other.reason, other.message, other.line)

    def __hash__(self) -> int:
        return hash((self.reason, self.message, self.line))


@dataclass(frozen=True)
class Violation:
    """One broken rule of the static policy, located in the source."""

    rule: str       # rule id, e.g. "no-import"
    category: str   # import, file_access, randomness, loop, escape, state, structure, resource, syntax
    line: int
    col: int
    message: str    # one line: what was found and why it is not allowed

    def __str__(self) -> str:
        return f"line {self.line}:{self.col} [{self.category}/{self.rule}] {self.message}"


@dataclass(frozen=True)
class Verdict:
    """The result of the static check: ``ok`` iff there are no violations."""

    ok: bool
    violations: tuple[Violation, ...] = ()

    @property
    def categories(self) -> frozenset[str]:
        """The violated categories."""
        return frozenset(v.category for v in self.violations)


def _default_max_moves() -> int:
    """The game loop's default move cap, :data:`envs.play.DEFAULT_MAX_MOVES`.

    Read when a ``Limits`` is made, not when this module is imported: importing ``envs``
    loads the game engines, which the light parts of the sandbox (extract, check) never need.
    """
    from envs.play import DEFAULT_MAX_MOVES

    return DEFAULT_MAX_MOVES


@dataclass(frozen=True)
class Limits:
    """Resource limits for running one strategy in a worker."""

    move_seconds: float = 1.0        # wall time one strategy call may take
    game_seconds: float = 10.0       # wall time one whole game may take
    cpu_seconds: int = 60            # RLIMIT_CPU of a worker process (a backstop; the wall limits act first)
    memory_bytes: int = 1 << 30      # RLIMIT_AS of a worker process
    # game ends with outcome "max_moves"; default envs.play.DEFAULT_MAX_MOVES (5000)
    max_moves: int = field(default_factory=_default_max_moves)
    stuck_moves: int = 5             # this many moves in a row that change nothing end the game ("stuck")


# The outcome vocabulary lives with the game loop (envs.outcomes); it is re-exported here on
# first use, so that importing the light parts of the sandbox (extract, check) never loads
# the game engines.
_OUTCOME_NAMES = ("OUTCOMES", "HONEST_OUTCOMES", "BAD_MOVE_OUTCOMES", "RUNTIME_ERROR_OUTCOMES")


def __getattr__(name: str) -> Any:
    """OUTCOMES and its groups, from :mod:`envs.outcomes` (imported on first access)."""
    if name in _OUTCOME_NAMES:
        import envs.outcomes

        return getattr(envs.outcomes, name)
    raise AttributeError(f"module 'sandbox.records' has no attribute {name!r}")


@dataclass(frozen=True)
class GameRecord:
    """What happened in one seeded game played by an untrusted strategy."""

    seed: int
    outcome: str                      # one of envs.outcomes.OUTCOMES
    score: float = 0.0
    moves: int = 0                    # moves that changed the board
    move_histogram: Mapping[str, int] = field(default_factory=dict)  # action name -> times returned
    moved_histogram: Mapping[str, int] = field(default_factory=dict)  # action name -> times it changed the board
    illegal_moves: int = 0            # returned moves that did not change the board
    wall_seconds: float = 0.0
    error: str = ""                   # truncated message for error/violation/timeout/crashed
    metrics: Mapping[str, float] = field(default_factory=dict)       # every metric the game reports (2048: max_tile)
    final_view: Any = None            # the game's view of the final state (2048: tuple of row tuples)


@dataclass(frozen=True)
class RecordedGame:
    """A game's record with every call the strategy answered in it, in order (``run(..., record_calls=True)``).

    Each call is ``(board, answer)``: the board the strategy was asked about, as nested tuples, and
    its answer as the determinism probe compares it (a move's text cut to 24 characters; a value
    that is not a string as ``"<int>"``, an exception as ``"<error:TypeError>"``, a violation as
    ``"<violation>"``). A program that never ran (rejected, failed to load) has no calls.
    """

    record: GameRecord
    calls: tuple[tuple[Any, str], ...] = ()
