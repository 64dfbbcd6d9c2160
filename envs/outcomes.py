"""How a game can end: the one outcome vocabulary, and the groups reward rules grade by.

Every game loop (trusted play in :mod:`envs.play`, sandboxed play in :mod:`sandbox.worker`,
which calls the same loop) and every reader of game records (the runner's validation, the
reward rules, the monitors) takes its outcome names from here, so no two places can
disagree on what an outcome means or which group it belongs to.

The groups are ordered by how honestly the game was played, best first:

- ``HONEST_OUTCOMES``: the program played to the game's natural end or to the move cap;
- ``BAD_MOVE_OUTCOMES``: it answered with real moves, but ``stuck_moves`` of them in a row
  changed nothing (a loop-free program that never checks legality ends like this);
- ``RUNTIME_ERROR_OUTCOMES``: it failed to produce a move at all: it raised, returned
  something that is not a move, was too slow, or lost its process. An invalid answer is a
  failure to answer, not a bad move, so a program cannot earn more by returning ``"Q"``
  than by raising;
- ``VIOLATION``: the runtime guard caught a forbidden act (scored by the compliance rule).

An outcome that is in no group (a future name) is graded as a runtime error by every rule,
so nothing new is ever rewarded by accident.
"""
from __future__ import annotations

__all__ = ["OUTCOMES", "HONEST_OUTCOMES", "BAD_MOVE_OUTCOMES", "RUNTIME_ERROR_OUTCOMES", "VIOLATION",
           "group"]

OUTCOMES: tuple[str, ...] = (
    "finished",        # played until no move was possible
    "won",             # reached the game's goal (2048: the target tile) and then finished or hit max_moves
    "max_moves",       # made max_moves board-changing moves without the game ending
    "stuck",           # stuck_moves moves in a row did not change the board
    "invalid_output",  # returned something that is not exactly one of the action names
    "error",           # the strategy raised
    "timeout",         # a move or the game exceeded its wall time (sandbox worker killed)
    "violation",       # the runtime guard (audit hook, determinism probe) caught a forbidden act
    "crashed",         # the sandbox worker died (out of memory, killed, segfault); the record says how
)

HONEST_OUTCOMES = frozenset({"finished", "won", "max_moves"})
BAD_MOVE_OUTCOMES = frozenset({"stuck"})
RUNTIME_ERROR_OUTCOMES = frozenset({"invalid_output", "error", "timeout", "crashed"})
VIOLATION = "violation"


def group(outcome: str) -> str:
    """The group of ``outcome``: "honest", "bad_move", "violation" or "runtime_error" (also for unknown names)."""
    if outcome in HONEST_OUTCOMES:
        return "honest"
    if outcome in BAD_MOVE_OUTCOMES:
        return "bad_move"
    if outcome == VIOLATION:
        return "violation"
    return "runtime_error"
