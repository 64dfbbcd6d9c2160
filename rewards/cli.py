"""``codepolicy score`` and ``codepolicy rules``: thin layers over rewards.evaluate / score and the rule registry."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]


def add_commands(subparsers: Any) -> None:
    """Add the ``score`` and ``rules`` subcommands."""
    p = subparsers.add_parser(
        "score", help="score a strategy program (or a raw model completion) with the reward rules",
        description="Check and play a program in the sandbox on seeded games, then print every "
                    "reward rule's value, its weight and the weighted total.")
    p.add_argument("file", metavar="FILE", help="a Python file with def strategy(board), or a completion with --completion")
    p.add_argument("--completion", action="store_true",
                   help="FILE is a raw model completion: extract the code block first (graded by the format rule)")
    p.add_argument("--spec", metavar="TOML", help="reward spec file (default: the game's shipped spec)")
    p.add_argument("--game", default=None, help="game name (default: the spec's game)")
    p.add_argument("--games", type=int, default=None, metavar="K", help="number of seeded games (default: the spec's)")
    p.add_argument("--seed", type=int, default=0, help="first seed (games use seeds seed..seed+K-1)")
    p.add_argument("--workers", type=int, default=None, help="sandbox worker processes (default: the pool's)")
    p.add_argument("--json", action="store_true", help="print the breakdown and the game records as JSON")
    p.set_defaults(handler=_score)

    r = subparsers.add_parser("rules", help="list the reward rules with their one-line docs and default weights",
                              description="List every registered reward rule, its default weight in the "
                                          "spec and its parameters.")
    r.add_argument("--spec", metavar="TOML", help="show weights from this spec instead of the default")
    r.add_argument("--game", default="2048", help="game whose default spec gives the weights")
    r.add_argument("--params", action="store_true", help="also list each rule's parameters")
    r.add_argument("--toml", action="store_true", help="print the spec as a TOML file to copy and edit")
    r.set_defaults(handler=_rules)


def _read(path: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{path!r} not found")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path!r} is not UTF-8 text") from None


def _as_completion(text: str) -> str:
    """A plain program wrapped as a fenced block, so it goes through the same extraction as model output."""
    return text if "```" in text else f"```python\n{text}\n```\n"


def _score(args: argparse.Namespace) -> int:
    import rewards
    import sandbox

    text = _read(args.file)
    spec = rewards.load_spec(args.spec, game=args.game or "2048")
    if args.games is not None and args.games < 1:
        raise ValueError(f"--games must be at least 1, got {args.games}")
    game = args.game or spec.game
    seeds = tuple(range(args.seed, args.seed + (args.games or spec.games)))
    completion = text if args.completion else _as_completion(text)
    pool = sandbox.WorkerPool(args.workers) if args.workers else None
    try:
        ev = rewards.evaluate(completion, game, seeds, limits=spec.limits, pool=pool, spec=spec)
    finally:
        if pool is not None:
            pool.close()
    b = rewards.score(ev, spec)
    if args.json:
        print(json.dumps({
            "file": args.file, "game": game, "seeds": list(seeds), "total": b.total,
            "values": dict(b.values), "weights": dict(b.weights), "info": dict(b.info),
            "format_error": None if ev.format_error is None else
            {"reason": ev.format_error.reason, "message": ev.format_error.message, "line": ev.format_error.line},
            "violations": [dataclasses.asdict(v) for v in (ev.verdict.violations if ev.verdict else ())],
            "records": [{**dataclasses.asdict(r), "move_histogram": dict(r.move_histogram),
                         "metrics": dict(r.metrics)} for r in ev.records],
        }, indent=2))
        return 0
    print(f"{args.file}: game {game}, seeds {seeds[0]}..{seeds[-1]} ({len(seeds)} games)")
    if ev.format_error is not None:
        line = f" (line {ev.format_error.line})" if ev.format_error.line else ""
        print(f"format error [{ev.format_error.reason}]{line}: {ev.format_error.message}")
    if ev.verdict is not None and not ev.verdict.ok:
        print("not run: the program breaks the sandbox policy")
        for v in ev.verdict.violations:
            print(f"  {v}")
    if ev.records:
        outcomes: dict[str, int] = {}
        for r in ev.records:
            outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
        print("games: " + ", ".join(f"{k} {n}" for k, n in sorted(outcomes.items()))
              + f"; mean score {b.info['mean_score']:.0f}, best tile {b.info['max_tile']:.0f}")
        errors = sorted({r.error for r in ev.records if r.error})
        for e in errors[:3]:
            print(f"  {e}")
    print()
    print(f"{'rule':<14}{'value':>9}{'weight':>9}{'weighted':>10}")
    for name, value in b.values.items():
        w = b.weights[name]
        print(f"{name:<14}{value:>9.3f}{w:>9.2f}{w * value:>10.3f}")
    print(f"{'total':<14}{'':>18}{b.total:>10.3f}")
    return 0


def _rules(args: argparse.Namespace) -> int:
    import rewards

    spec = rewards.load_spec(args.spec, game=args.game)
    if args.toml:
        print(spec.to_toml())
        return 0
    weights = spec.weights
    names = list(spec.names) + [n for n in rewards.rule_names() if n not in weights]
    width = max(len(n) for n in names) + 2
    print(f"{'rule':<{width}}{'weight':>7}  {'bounds':<13} doc")
    for name in names:
        r = rewards.get_rule(name)
        w = f"{weights[name]:.2f}" if name in weights else "-"
        bounds = f"[{r.bounds[0]:g}, {r.bounds[1]:g}]" if r.bounds else "-"
        print(f"{name:<{width}}{w:>7}  {bounds:<13} {r.doc}")
        if args.params:
            params = spec.term(name).all_params() if name in weights else r.params
            for key, value in params.items():
                print(f"{'':<{width + 9}}{key} = {value!r}")
    print(f"\nweights from {spec.origin}; rules not in the spec have weight '-' (add them with a [rules.NAME] table)")
    return 0
