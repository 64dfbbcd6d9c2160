"""What a batch of scored completions says, as flat figures: the same code for training steps and evaluations.

Every figure is a mean over the batch unless named otherwise. The game figures come from
``Breakdown.info`` (``rewards.score.info``): they are zero for a program that did not run.
"""
from __future__ import annotations

import statistics
from collections import Counter
from typing import Any, Sequence

__all__ = ["reward_figures", "progress_metric", "progress_counts", "best_index"]

# Figure name -> Breakdown.info key, averaged over the batch.
_RATES = (("format_ok", "format_ok"), ("compliance", "compliant"), ("played", "played"),
          ("won_rate", "won_rate"))


def progress_metric(game: str | None) -> str | None:
    """The name of ``game``'s progress metric (2048: ``max_tile``), None for no game or a game without one."""
    if game is None:
        return None
    import envs

    return envs.get(game).progress_metric


def reward_figures(breakdowns: Sequence[Any], game: str | None = None) -> dict[str, float]:
    """Reward statistics, each rule's mean (``rule/<name>``) and the game facts of a batch of Breakdowns.

    reward_mean / reward_std (sample std) / reward_min / reward_median / reward_max; format_ok,
    compliance, played, won_rate (means); score_mean and score_max (of each completion's mean
    score); score_mean_played (the mean over the completions that played, 0 when none did); and
    for ``game``'s progress metric M (2048: max_tile), ``mean_M`` (mean) and ``M`` (the batch's best).
    """
    if not breakdowns:
        return {}
    totals = [float(b.total) for b in breakdowns]
    infos = [b.info or {} for b in breakdowns]
    figures: dict[str, float] = {
        "reward_mean": statistics.fmean(totals),
        "reward_std": statistics.stdev(totals) if len(totals) > 1 else 0.0,
        "reward_min": min(totals),
        "reward_median": statistics.median(totals),
        "reward_max": max(totals),
    }
    for rule in sorted({k for b in breakdowns for k in b.values}):
        figures[f"rule/{rule}"] = statistics.fmean(float(b.values.get(rule, 0.0)) for b in breakdowns)
    for name, key in _RATES:
        figures[name] = statistics.fmean(float(i.get(key, 0.0) or 0.0) for i in infos)
    metric = progress_metric(game)
    if metric:
        figures[f"mean_{metric}"] = statistics.fmean(float(i.get(f"mean_{metric}", 0.0) or 0.0) for i in infos)
        figures[metric] = max(float(i.get(metric, 0.0) or 0.0) for i in infos)
    scores = [float(i.get("mean_score", 0.0) or 0.0) for i in infos]
    figures["score_mean"] = statistics.fmean(scores)
    figures["score_max"] = max(scores)
    played = [s for s, i in zip(scores, infos) if i.get("played")]
    figures["score_mean_played"] = statistics.fmean(played) if played else 0.0
    return figures


def progress_counts(breakdowns: Sequence[Any], game: str | None) -> dict[str, int]:
    """How many completions reached each best value of ``game``'s progress metric ("0": the program did not
    run); empty for a game without one."""
    metric = progress_metric(game)
    if not metric:
        return {}
    values = Counter(float((b.info or {}).get(metric, 0) or 0) for b in breakdowns)
    return {(f"{v:.0f}" if v.is_integer() else f"{v:g}"): values[v] for v in sorted(values)}


def best_index(breakdowns: Sequence[Any]) -> int | None:
    """Index of the completion with the highest total (the first on ties), None for an empty batch."""
    totals = [float(b.total) for b in breakdowns]
    return max(range(len(totals)), key=lambda k: (totals[k], -k)) if totals else None
