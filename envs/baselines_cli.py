"""``codepolicy baselines``: play a game's reference strategies and print their figures.

envs/cli.py calls :func:`add_baselines` to add the subcommand.
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Sequence

from envs.registry import DEFAULT_GAME

__all__ = ["add_baselines", "run", "format_table"]


def add_baselines(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``baselines`` subcommand to ``subparsers``; its handler is :func:`run`."""
    from envs.play import DEFAULT_MAX_MOVES

    p = subparsers.add_parser(
        "baselines", allow_abbrev=False,
        help="play a game's reference strategies (2048: expectimax, greedy, corner, random, fixed) and compare",
        description="Play every baseline of a game on the same seeded games and print mean score, the "
                    "distribution of the game's progress metric (2048: max tile), the share of games reaching "
                    "each of its milestones (2048: 512, 1024, 2048) and games/s.",
    )
    p.add_argument("--game", default=DEFAULT_GAME, help=f"registered game (default {DEFAULT_GAME})")
    p.add_argument("--games", type=int, default=100, help="games per baseline (default 100)")
    p.add_argument("--seed", type=int, default=0, help="first seed; games use seed .. seed+games-1 (default 0)")
    p.add_argument("--size", type=int, default=None, help="board size (default: the game's own; 2048: 4)")
    p.add_argument("--depth", type=int, default=2,
                   help="search depth of a baseline that searches (2048's expectimax: 1..4, default 2)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="play only these baselines")
    p.add_argument("--max-moves", type=int, default=DEFAULT_MAX_MOVES,
                   help=f"move cap per game (default {DEFAULT_MAX_MOVES})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``codepolicy baselines``: play, then print the table (or JSON)."""
    import envs
    from envs.baselines import names, run_baselines

    if args.games < 1:
        raise ValueError(f"--games must be at least 1, got {args.games}")
    if args.max_moves < 1:
        raise ValueError(f"--max-moves must be at least 1, got {args.max_moves}")
    known = names(args.game)
    unknown = [n for n in args.only or () if n not in known]
    if unknown:
        raise ValueError(f"--only {unknown[0]!r}: game {args.game!r} has no such baseline; known: {', '.join(known)}")
    chosen = [n for n in known if n in args.only] if args.only else list(known)
    options = {} if args.size is None else {"size": args.size}
    spec = envs.get(args.game)
    spec.make(args.seed, **options)  # a bad size is one clear error before anything runs
    searching = [b.name for b in spec.baselines if "depth" in b.params]
    for name in searching:  # a search refuses a depth it cannot do; say so before anything runs
        try:
            spec.baseline(name).strategy(args.seed, options, depth=args.depth)
        except ValueError as exc:
            raise ValueError(f"--depth {args.depth}: {exc}") from None
    summaries = run_baselines(args.game, games=args.games, seed=args.seed, only=chosen, max_moves=args.max_moves,
                              params={"depth": args.depth}, **options)
    if args.json:
        print(json.dumps({"game": args.game, "games": args.games, "seed": args.seed, "options": options,
                          "depth": args.depth, "baselines": [s.as_dict() for s in summaries]}, indent=2))
    else:
        print(format_table(summaries, depth=args.depth, searching=[n for n in searching if n in chosen]))
    return 0


def format_table(summaries: Sequence[Any], depth: int = 2, searching: Sequence[str] = ("expectimax",)) -> str:
    """The text table: one row per baseline, then each one's distribution of the progress metric."""
    metric = next((s.metric for s in summaries if s.metric), "")
    label_metric = metric.replace("_", " ")
    milestones = sorted({t for s in summaries for t in s.reach})
    head = ["baseline", "games", "mean score", "max score", "mean moves"] + (
        [f"mean {label_metric}"] if metric else []) + [f">={_num(t)}" for t in milestones] + ["games/s", "moves/s"]
    rows = []
    for s in summaries:
        label = f"{s.name} (depth {depth})" if s.name in searching else s.name
        rows.append([label, str(s.games), f"{s.mean_score:.1f}", f"{s.max_score:.0f}", f"{s.mean_moves:.1f}"]
                    + ([f"{s.mean_progress:.1f}"] if metric else [])
                    + [f"{100 * s.reach.get(t, 0.0):.0f}%" for t in milestones]
                    + [_rate(s.games_per_second), _rate(s.moves_per_second)])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [head] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if metric:
        lines.append("")
        lines.append(f"{label_metric} at the end (share of games):")
        for s, r in zip(summaries, rows):
            dist = ", ".join(f"{_num(t)}: {100 * c / s.games:.0f}%" for t, c in sorted(s.progress.items()))
            lines.append(f"  {r[0].ljust(widths[0])}  {dist}")
    return "\n".join(lines)


def _num(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() else f"{x:g}"


def _rate(x: float) -> str:
    return f"{x:.1f}" if x < 1000 else f"{x:,.0f}"
