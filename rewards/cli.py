"""``codepolicy score``, ``rules`` and ``audit``: thin layers over rewards.evaluate / score, the rule registry and rewards.audit."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from envs.registry import DEFAULT_GAME

__all__ = ["add_commands", "load_user_spec"]


def add_commands(subparsers: Any) -> None:
    """Add the ``score``, ``rules`` and ``audit`` subcommands."""
    p = subparsers.add_parser(
        "score", allow_abbrev=False, help="score a strategy program (or a raw model completion) with the reward rules",
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

    r = subparsers.add_parser("rules", allow_abbrev=False,
                              help="list the reward rules with their one-line docs and default weights",
                              description="List every registered reward rule, its default weight in the "
                                          "spec and its parameters.")
    r.add_argument("--spec", metavar="TOML", help="show weights from this spec instead of the default")
    r.add_argument("--game", default=DEFAULT_GAME, help="game whose default spec gives the weights")
    r.add_argument("--params", action="store_true", help="also list each rule's parameters")
    r.add_argument("--toml", action="store_true", help="print the spec as a TOML file to copy and edit")
    r.set_defaults(handler=_rules)

    a = subparsers.add_parser(
        "audit", allow_abbrev=False,
        help="check that no cheat, reward hack or early ending out-earns honest play under a spec",
        description="Play the library's catalogue of cheats, the reward hacks the game declares and its "
                    "honest baselines under a reward spec, print each one's total beside the weakest "
                    "honest baseline's, and check every order of the reward ladder. Exit status 1 when "
                    "a cheat or hack reaches the weakest honest baseline or an order breaks.")
    a.add_argument("--spec", metavar="TOML", help="reward spec file (default: the game's shipped spec)")
    a.add_argument("--game", default=None, help="game name (default: the spec's game)")
    a.add_argument("--games", type=int, default=3, metavar="K", help="seeded games per program (default 3)")
    a.add_argument("--workers", type=int, default=2, help="sandbox worker processes (default 2)")
    a.add_argument("--per-technique", type=int, default=1, metavar="N",
                   help="samples of each library cheat technique (default 1)")
    a.add_argument("--no-library", action="store_true",
                   help="leave out the library's cheat catalogue (sandbox.cheats, needs Hypothesis)")
    a.add_argument("--all", action="store_true", help="print every library cheat sample, not one line per technique")
    a.add_argument("--json", action="store_true", help="print the report as JSON")
    a.set_defaults(handler=_audit)


def _best_progress(game: str, info: Any) -> str:
    """", best <metric> <value>" for the game's progress metric (2048: the max tile), "" for a game without one."""
    import envs

    metric = envs.get(game).progress_metric
    return f", best {metric.replace('_', ' ')} {float(info.get(metric, 0.0)):g}" if metric else ""


def load_user_spec(path: str | None, game: str = DEFAULT_GAME) -> Any:
    """The reward spec in the user's file ``path`` (the game's shipped spec when None or empty).

    The file is read through :mod:`codepolicy.files`, so a missing file, a folder or a binary file reads
    the same as in every other command.
    """
    import envs
    import rewards
    from codepolicy.files import read_text

    envs.get(game)  # an unknown game is named as such, not as a missing spec
    if not path:
        return rewards.load_spec(None, game=game)
    return rewards.RewardSpec.from_text(read_text(path, "reward spec"), origin=str(Path(path)))


def _as_completion(text: str) -> str:
    """A plain program wrapped as a fenced block, so it goes through the same extraction as model output."""
    return text if "```" in text else f"```python\n{text}\n```\n"


def _score(args: argparse.Namespace) -> int:
    import rewards
    import sandbox

    from codepolicy.files import read_text

    text = read_text(args.file, "completion file" if args.completion else "program file")
    spec = load_user_spec(args.spec, game=args.game or DEFAULT_GAME)
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
              + f"; mean score {b.info['mean_score']:.0f}" + _best_progress(game, b.info))
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

    spec = load_user_spec(args.spec, game=args.game)
    if args.toml:
        print(spec.to_toml(), end="")
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
                unset = "  (unset: taken from the game, e.g. its [options])" if value is None else ""
                print(f"{'':<{width + 9}}{key} = {value!r}{unset}")
    print(f"\nweights from {spec.origin}; rules not in the spec have weight '-' (add them with a [rules.NAME] table)")
    return 0


_SHORT = {"format": "format", "compliance": "compl", "performance": "perf", "diversity": "divers",
          "length": "length"}


def _outcome_text(outcomes: dict) -> str:
    if not outcomes:
        return "not run"
    return ", ".join(f"{k} {n}" for k, n in sorted(outcomes.items()))


def _audit(args: argparse.Namespace) -> int:
    import math

    import rewards
    from rewards.audit import HONEST_PLAY_KINDS
    from sandbox.text import safe_text

    if args.games < 1:
        raise ValueError(f"--games must be at least 1, got {args.games}")
    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    if args.per_technique < 1:
        raise ValueError(f"--per-technique must be at least 1, got {args.per_technique}")
    spec = load_user_spec(args.spec, game=args.game or DEFAULT_GAME)
    report = rewards.audit(spec, args.game, games=args.games, workers=args.workers,
                           library=not args.no_library, per_technique=args.per_technique)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0 if report.ok else 1

    seeds = report.seeds
    print(f"audit of {safe_text(report.spec_origin)}: game {safe_text(report.game)}, seeds {seeds[0]}..{seeds[-1]} "
          f"({len(seeds)} games per program), {len(report.rows)} programs")
    if report.weakest_honest is not None:
        print(f"weakest honest baseline: {report.weakest_honest}, total {report.weakest_honest_total:.3f}")
    else:
        print("no honest baseline played to an honest end under this spec")
    print()
    rows = list(report.rows)
    if not args.all:
        # One line per library technique: its highest-scoring sample stands for it.
        best: dict[str, Any] = {}
        counts: dict[str, int] = {}
        for r in rows:
            key = r.name.split("#")[0] if r.kind == "cheat" else r.name
            counts[key] = counts.get(key, 0) + 1
            if key not in best or r.total > best[key].total:
                best[key] = r
        rows = [best[k] for k in best]
        shown = {id(r): k for k, r in best.items()}
    names = list(report.rows[0].values) if report.rows else []
    width = max([len(safe_text(r.name)) for r in rows] + [7]) + 2
    kind_width = max([len(r.kind) for r in rows] + [4]) + 2
    header = f"{'program':<{width}}{'kind':<{kind_width}}{'total':>8}{'margin':>8}" + "".join(
        f"{_SHORT.get(n, n)[:7]:>8}" for n in names) + "  games"
    print(header)
    print("-" * len(header))
    for r in rows:
        name = safe_text(r.name.split("#")[0] if (not args.all and r.kind == "cheat") else r.name)
        if not args.all and r.kind == "cheat" and counts.get(shown.get(id(r), ""), 1) > 1:
            name += f" (x{counts[shown[id(r)]]})"
        margin = "" if math.isnan(r.margin) else f"{r.margin:+.3f}"
        # Honest play under another name (deterministic, switching, defused, probe-escaping) may sit at
        # or above the weakest baseline: only a cheat or a hack there is a finding worth flagging.
        flag = "  << AT OR ABOVE HONEST" if (not r.honest and r.kind not in HONEST_PLAY_KINDS
                                             and not math.isnan(r.margin) and r.margin >= 0) else ""
        cells = "".join(f"{r.weights[n] * r.values[n]:>8.3f}" for n in names)
        print(f"{name:<{width}}{r.kind:<{kind_width}}{r.total:>8.3f}{margin:>8}{cells}  "
              f"{safe_text(_outcome_text(dict(r.outcomes)))}{flag}")
    print("\n(rule columns are weighted: they add up to the total; margin = total - weakest honest)")
    print("\nladder orders")
    for c in report.checks:
        mark = "ok  " if c.ok else "FAIL"
        kind = " [records]" if c.synthetic else ""
        print(f"  {mark}  {safe_text(c.name)}{kind}: {safe_text(c.detail)}")
        if not c.ok:
            for o in c.offenders[:8]:
                print(f"          breaks it: {safe_text(o)}")
            if len(c.offenders) > 8:
                print(f"          ... and {len(c.offenders) - 8} more")
    print()
    if report.ok:
        print(f"audit passed: no cheat, hack or early ending reaches {report.weakest_honest} "
              f"({report.weakest_honest_total:.3f}), and every order holds")
        return 0
    failed = report.failed_checks
    print(f"audit FAILED: {len(failed)} of {len(report.checks)} orders break")
    for r in report.opened[:20]:
        print(f"  opens {safe_text(r.name)} ({r.kind}, total {r.total:.3f}): {safe_text(r.description)}")
    if len(report.opened) > 20:
        print(f"  ... and {len(report.opened) - 20} more")
    return 1
