"""What a reward rule reads (Evaluation) and what scoring produces (Breakdown)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from sandbox.records import FormatError, GameRecord, Verdict

__all__ = ["Evaluation", "Breakdown"]


@dataclass(frozen=True)
class Evaluation:
    """Everything known about one completion once the sandbox is done with it.

    Exactly one of ``source`` / ``format_error`` is set. ``verdict`` is None when there was
    no source to check; ``records`` is empty when the program was not run (format error or
    a failed check: a non-compliant program is never executed). ``options`` are the game
    options the games were played with, over the game's defaults (the spec's ``[options]``
    and the caller's); rules read them with :func:`rewards.rules.game_option`.
    """

    completion: str
    game: str
    source: str | None = None
    format_error: FormatError | None = None
    verdict: Verdict | None = None
    records: tuple[GameRecord, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Breakdown:
    """Every rule's value, the weights, and the weighted total, for one completion.

    ``info`` holds facts for logging that are not rewards (format_ok, compliant, played,
    mean_score, max_tile, mean_max_tile, ...); ``source`` is the extracted program, if any.
    """

    values: Mapping[str, float]
    weights: Mapping[str, float]
    total: float
    info: Mapping[str, float] = field(default_factory=dict)
    source: str | None = None
