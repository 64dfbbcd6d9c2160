"""score(evaluation, spec) -> Breakdown: every rule's value, the weights, the weighted total, and facts to log."""
from __future__ import annotations

import math

from envs.outcomes import BAD_MOVE_OUTCOMES, HONEST_OUTCOMES, OUTCOMES, VIOLATION
from rewards.records import Breakdown, Evaluation
from rewards.rules import compliant, game_spec
from rewards.spec import RewardSpec

__all__ = ["score", "info"]


def info(ev: Evaluation) -> dict[str, float]:
    """The monitoring facts of one evaluation (Breakdown.info); game figures only from compliant runs.

    The game's progress metric is reported under its own name, best and mean over the games (2048:
    ``max_tile`` and ``mean_max_tile``).
    """
    ran = ev.records if compliant(ev) else ()
    n = len(ran)
    game = game_spec(ev)
    metric = game.progress_metric if game is not None else None
    progress = {}
    if metric:
        values = [game.progress_value(r.metrics) for r in ran]
        progress = {metric: max(values, default=0.0), f"mean_{metric}": sum(values) / n if n else 0.0}
    # "played": the program got past the pre-game stage: every game made at least one move or
    # ended honestly, and none ended by a runtime error before its first move.
    played = n > 0 and all(r.outcome in HONEST_OUTCOMES or r.moves > 0 for r in ran)
    return {
        "format_ok": float(ev.format_error is None and ev.source is not None),
        "compliant": float(compliant(ev)),
        "played": float(played),
        "games": float(n),
        "mean_score": sum(r.score for r in ran) / n if n else 0.0,
        **progress,
        "won_rate": sum(1 for r in ran if r.outcome == "won") / n if n else 0.0,
        "honest_rate": sum(1 for r in ran if r.outcome in HONEST_OUTCOMES) / n if n else 0.0,
        # Runtime errors as the rules grade them: invalid answers and unknown outcomes included.
        "error_rate": sum(1 for r in ran if r.outcome not in HONEST_OUTCOMES
                          and r.outcome not in BAD_MOVE_OUTCOMES) / n if n else 0.0,
        "stuck_rate": sum(1 for r in ran if r.outcome in BAD_MOVE_OUTCOMES) / n if n else 0.0,
        "mean_moves": sum(r.moves for r in ran) / n if n else 0.0,
        "violations": float(len(ev.verdict.violations) if ev.verdict is not None else 0)
        + sum(1 for r in ev.records if r.outcome == VIOLATION),
    }


def _outcome_counts(ev: Evaluation) -> dict[str, float]:
    """outcome_<name> -> games that ended so, for every outcome seen (said which in the breakdown)."""
    counts: dict[str, float] = {}
    for r in ev.records:
        key = f"outcome_{r.outcome if r.outcome in OUTCOMES else 'other'}"
        counts[key] = counts.get(key, 0.0) + 1.0
    return counts


def score(evaluation: Evaluation, spec: RewardSpec) -> Breakdown:
    """Every rule of ``spec`` on ``evaluation``, and total = sum(weight * value).

    A rule with declared bounds is clipped into them, so no rule can swamp the others; a
    non-finite value is a bug in the rule and raises ValueError naming it.
    """
    values: dict[str, float] = {}
    for term in spec.terms:
        value = float(term.rule(evaluation, **term.params))
        if not math.isfinite(value):
            raise ValueError(f"reward rule {term.name!r} returned {value!r} (must be a finite number)")
        if term.rule.bounds is not None:
            value = min(term.rule.bounds[1], max(term.rule.bounds[0], value))
        values[term.name] = value
    weights = {t.name: t.weight for t in spec.terms}
    # Sum in spec order so the total is bit-identical wherever it is computed.
    total = 0.0
    for name, value in values.items():
        total += weights[name] * value
    facts = info(evaluation)
    facts.update(_outcome_counts(evaluation))
    return Breakdown(values=values, weights=weights, total=total, info=facts, source=evaluation.source)
