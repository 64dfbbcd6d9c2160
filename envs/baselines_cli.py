"""``codepolicy baselines``: play the reference strategies and print their figures.

envs/cli.py calls :func:`add_baselines` to add the subcommand.
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Sequence

__all__ = ["add_baselines", "run", "format_table"]


def add_baselines(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``baselines`` subcommand to ``subparsers``; its handler is :func:`run`."""
    from envs.baselines import NAMES
    from envs.play import DEFAULT_MAX_MOVES

    p = subparsers.add_parser(
        "baselines", allow_abbrev=False,
        help="play the reference strategies (expectimax, greedy, corner, random, fixed) and compare",
        description="Play every baseline on the same seeded 2048 games and print mean score, "
                    "max-tile distribution, reach rates (>=512, 1024, 2048) and games/s.",
    )
    p.add_argument("--games", type=int, default=100, help="games per baseline (default 100)")
    p.add_argument("--seed", type=int, default=0, help="first seed; games use seed .. seed+games-1 (default 0)")
    p.add_argument("--size", type=int, default=4, help="board size, 3..8 (default 4)")
    p.add_argument("--depth", type=int, default=2, help="expectimax search depth in moves, 1..4 (default 2)")
    p.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME",
                   help=f"play only these baselines (of: {', '.join(NAMES)})")
    p.add_argument("--max-moves", type=int, default=DEFAULT_MAX_MOVES,
                   help=f"move cap per game (default {DEFAULT_MAX_MOVES})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``codepolicy baselines``: play, then print the table (or JSON)."""
    from envs.baselines import NAMES, run_baselines
    from envs.expectimax import MAX_DEPTH

    if args.games < 1:
        raise ValueError(f"--games must be at least 1, got {args.games}")
    if not 1 <= args.depth <= MAX_DEPTH:
        raise ValueError(f"--depth must be 1..{MAX_DEPTH}, got {args.depth}")
    if args.max_moves < 1:
        raise ValueError(f"--max-moves must be at least 1, got {args.max_moves}")
    names = [n for n in NAMES if n in args.only] if args.only else list(NAMES)
    summaries = run_baselines(games=args.games, seed=args.seed, names=names, depth=args.depth,
                              max_moves=args.max_moves, size=args.size)
    if args.json:
        print(json.dumps({"games": args.games, "seed": args.seed, "size": args.size, "depth": args.depth,
                          "baselines": [s.as_dict() for s in summaries]}, indent=2))
    else:
        print(format_table(summaries, depth=args.depth))
    return 0


def format_table(summaries: Sequence[Any], depth: int = 2) -> str:
    """The text table: one row per baseline, then each one's max-tile distribution."""
    reach_tiles = sorted({t for s in summaries for t in s.reach})
    head = ["baseline", "games", "mean score", "max score", "mean moves"] + [f">={t}" for t in reach_tiles] + [
        "games/s", "moves/s"]
    rows = []
    for s in summaries:
        label = f"expectimax (depth {depth})" if s.name == "expectimax" else s.name
        rows.append([label, str(s.games), f"{s.mean_score:.1f}", f"{s.max_score:.0f}", f"{s.mean_moves:.1f}"]
                    + [f"{100 * s.reach.get(t, 0.0):.0f}%" for t in reach_tiles]
                    + [_rate(s.games_per_second), _rate(s.moves_per_second)])
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [head] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("max tile reached (share of games):")
    for s, r in zip(summaries, rows):
        dist = ", ".join(f"{t}: {100 * c / s.games:.0f}%" for t, c in sorted(s.max_tiles.items()))
        lines.append(f"  {r[0].ljust(widths[0])}  {dist}")
    return "\n".join(lines)


def _rate(x: float) -> str:
    return f"{x:.1f}" if x < 1000 else f"{x:,.0f}"
