"""The sandbox's subcommands: ``check`` (static policy check) and ``play`` (games through the sandbox).

Each ``_add_<command>(sub)`` adds one subcommand; :func:`add_commands` calls them all. Every
text that came from the program or the input (file names, error messages, violations, answers,
boards) is printed through :func:`~sandbox.text.safe_text`; JSON output is exact and ASCII.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from envs.registry import DEFAULT_GAME
from sandbox.text import safe_text


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the sandbox's subcommands to the ``codepolicy`` parser."""
    _add_check(sub)
    add_play = globals().get("_add_play")  # `play` is added by its own function, defined below
    if add_play is not None:
        add_play(sub)


# -- check ------------------------------------------------------------------------------------

def _add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", allow_abbrev=False, help="check a strategy program against the static policy",
        description="Check a strategy program (or, with --completion, a raw model completion) against "
                    "the static policy. Exit code 0: compliant; 1: rejected; 2: usage error.")
    p.add_argument("file", metavar="FILE", help="the program to check; '-' reads standard input")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.add_argument("--completion", action="store_true",
                   help="FILE is a model completion: extract the strategy code block first")
    p.set_defaults(handler=_run_check)


def _read_input(path: str, args: argparse.Namespace) -> str:
    """The program (or completion) text: UTF-8, as the sandbox runs it; one-line errors from codepolicy.files."""
    from codepolicy.files import read_text

    return read_text(path, "completion file" if args.completion else "program file")


def _run_check(args: argparse.Namespace) -> int:
    from sandbox.check import check
    from sandbox.extract import extract
    from sandbox.policy import DEFAULT_POLICY
    from sandbox.records import FormatError

    name = "<stdin>" if args.file == "-" else args.file
    text = _read_input(args.file, args)
    # The checker is given the file's own bytes (UTF-8 decodes and encodes back to the same bytes).
    source: str | bytes = text.encode("utf-8")
    if args.completion:
        try:
            source = extract(text)
        except FormatError as exc:
            if args.json:
                print(json.dumps({"file": name, "ok": False, "format_error": {
                    "reason": exc.reason, "message": exc.message, "line": exc.line}, "violations": []}))
            else:
                where = f":{exc.line}" if exc.line else ""
                print(f"{safe_text(name)}{where}: format error [{exc.reason}] {safe_text(exc.message)}")
                print(f"{safe_text(name)}: rejected (no usable strategy function)")
            return 1
    verdict = check(source, DEFAULT_POLICY)
    if args.json:
        out = {"file": name, "ok": verdict.ok, "format_error": None,
               "violations": [dict(asdict(v), explanation=DEFAULT_POLICY.explain(v.rule))
                              for v in verdict.violations]}
        if args.completion:
            out["source"] = source
        print(json.dumps(out))
    else:
        for v in verdict.violations:  # a violation's message quotes the program's names
            print(f"{safe_text(name)}:{v.line}:{v.col}: {v.rule} ({v.category}) {safe_text(v.message)}")
            print(f"    rule: {DEFAULT_POLICY.explain(v.rule)}")
        count = len(verdict.violations)
        print(f"{safe_text(name)}: " + ("compliant" if verdict.ok else
                                        f"rejected ({count} violation{'s' if count != 1 else ''})"))
    return 0 if verdict.ok else 1


# -- play -------------------------------------------------------------------------------------
# `_add_play(sub)` (codepolicy play FILE) goes here; add_commands picks it up when it exists.

# Outcomes of a game that ran as a program should (the rest mean the program failed).
_PLAYED = ("finished", "won", "max_moves", "stuck")


def _add_play(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "play", allow_abbrev=False, help="play games with a strategy program (through the sandbox)",
        description="Play seeded games with a strategy program: through the sandbox by default (static "
                    "check, restricted worker processes, limits), or in this process with --trusted. "
                    "Exit code 0: every game played to its end (finished, won, max_moves or stuck); "
                    "1: some game ended in a violation, error, invalid output, timeout or crash; "
                    "2: usage error.")
    p.add_argument("file", metavar="FILE", help="the program defining strategy(board); '-' reads standard input")
    p.add_argument("--games", type=int, default=10, help="number of games (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first game; games use SEED..SEED+N-1")
    p.add_argument("--game", default=DEFAULT_GAME, help=f"registered game (default {DEFAULT_GAME})")
    p.add_argument("--size", type=int, default=None, help="board size, for games that have one (2048: 3..8)")
    p.add_argument("--max-moves", type=int, default=None, help="move cap per game")
    p.add_argument("--move-seconds", type=float, default=None, help="wall time one move may take (sandbox)")
    p.add_argument("--game-seconds", type=float, default=None, help="wall time one game may take (sandbox)")
    p.add_argument("--workers", type=int, default=None, help="sandbox worker processes (default: cores)")
    p.add_argument("--completion", action="store_true",
                   help="FILE is a model completion: extract the strategy code block first")
    p.add_argument("--trusted", action="store_true",
                   help="run the program in this process, without any sandbox (only for code you trust)")
    p.add_argument("--json", action="store_true", help="print the games and the summary as JSON")
    p.add_argument("--show", action="store_true", help="print the final board of every game")
    p.set_defaults(handler=_run_play)


def _play_source(args: argparse.Namespace) -> str:
    data = _read_input(args.file, args)
    if not args.completion:
        return data
    from sandbox.extract import extract
    from sandbox.records import FormatError

    try:
        return extract(data)
    except FormatError as exc:
        where = f" (line {exc.line})" if exc.line else ""
        raise ValueError(f"{args.file}: no usable strategy in the completion [{exc.reason}]{where}: "
                         f"{exc.message}") from None


def _play_limits(args: argparse.Namespace):
    from sandbox.records import Limits

    changes = {}
    for name in ("max_moves", "move_seconds", "game_seconds"):
        value = getattr(args, name)
        if value is not None:
            if value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
            changes[name] = value
    return Limits(**changes)


def _play_trusted(source: str, args: argparse.Namespace, seeds: list[int], options: dict,
                  limits) -> list[dict]:
    from envs.play import play_trusted

    namespace: dict = {"__name__": "strategy_module"}
    try:
        exec(compile(source, args.file, "exec"), namespace)  # --trusted: the user vouches for it
    except SyntaxError as exc:
        raise ValueError(f"{args.file}: line {exc.lineno}: syntax error: {exc.msg}") from None
    fn = namespace.get("strategy")
    if not callable(fn):
        raise ValueError(f"{args.file}: defines no function strategy(board)")
    last: list = [None]

    def watched(view):
        last[0] = view  # play_trusted returns no board: --show prints the last one the program saw
        return fn(view)

    games = []
    for seed in seeds:
        last[0] = None
        (game,) = play_trusted(watched, game=args.game, seeds=[seed], max_moves=limits.max_moves,
                               stuck_moves=limits.stuck_moves, **options)
        games.append({**game, "final_view": last[0]})
    return games


def _render_view(view) -> str:
    # With --trusted the board is the one the program was handed, and it may have written in it.
    if isinstance(view, (list, tuple)) and view and all(isinstance(r, (list, tuple)) for r in view):
        cells = [[safe_text(v) if v else "." for v in row] for row in view]
        width = max((len(c) for row in cells for c in row), default=1)
        return "\n".join(" ".join(c.rjust(width) for c in row) for row in cells)
    try:
        return safe_text(repr(view))
    except Exception:  # noqa: BLE001 - a hostile __repr__
        return safe_text(view)


def _json_value(value):
    """``json.dumps``'s fallback for what is not JSON: a sequence as a list, anything else as safe text."""
    try:
        return list(value)
    except Exception:  # noqa: BLE001 - not iterable, or a hostile __iter__
        return safe_text(value)


def _fmt_metric(value: float) -> str:
    """A game metric as printed: whole numbers without a fraction."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def _play_summary(games: list[dict], seconds: float, spec) -> dict:
    """Outcomes, scores, the best value of the game's progress metric (``best_<metric>``) and speed."""
    import statistics

    outcomes: dict[str, int] = {}
    for g in games:
        outcomes[g["outcome"]] = outcomes.get(g["outcome"], 0) + 1
    scores = [float(g.get("score", 0.0)) for g in games]
    moves = sum(int(g.get("moves", 0)) for g in games)
    return {
        "games": len(games), "outcomes": outcomes,
        "mean_score": statistics.fmean(scores) if scores else 0.0,
        "median_score": statistics.median(scores) if scores else 0.0,
        "best_score": max(scores, default=0.0),
        **({f"best_{spec.progress_metric}": max((spec.progress_value(g.get("metrics") or {}) for g in games),
                                                 default=0.0)} if spec.progress_metric else {}),
        "won_rate": outcomes.get("won", 0) / len(games) if games else 0.0,
        "moves": moves, "seconds": seconds,
        "games_per_second": len(games) / seconds if seconds > 0 else 0.0,
        "moves_per_second": moves / seconds if seconds > 0 else 0.0,
    }


def _run_play(args: argparse.Namespace) -> int:
    import time

    import envs

    if args.games < 1:
        raise ValueError(f"--games must be at least 1, got {args.games}")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    spec = envs.get(args.game)
    options = {} if args.size is None else {"size": args.size}
    spec.make(args.seed, **options)  # a bad game option is one clear error before anything runs
    source = _play_source(args)
    limits = _play_limits(args)
    seeds = list(range(args.seed, args.seed + args.games))
    start = time.perf_counter()
    if args.trusted:
        games = _play_trusted(source, args, seeds, options, limits)
    else:
        from sandbox.runner import WorkerPool

        with WorkerPool(workers=args.workers or min(len(seeds), max(1, _cores()))) as pool:
            records = pool.run(source, game=args.game, seeds=seeds, limits=limits, options=options)
        games = [asdict(r) for r in records]
    seconds = time.perf_counter() - start
    summary = _play_summary(games, seconds, spec)
    metric = spec.progress_metric
    if args.json:
        print(json.dumps({"file": args.file, "game": args.game, "options": options,
                          "mode": "trusted" if args.trusted else "sandbox", "games": games,
                          "summary": summary}, default=_json_value))
    else:
        label = (metric or "").replace("_", " ")
        print(f"{'seed':>6}  {'outcome':14} {'score':>8} {label:>8} {'moves':>6} {'wasted':>6} "
              f"{'seconds':>8}  error")
        for g in games:
            # The error quotes the program: its exception's message, its wrong answer.
            print(f"{g['seed']:>6}  {safe_text(g['outcome']):14} {g.get('score', 0):>8.0f} "
                  f"{_fmt_metric(spec.progress_value(g.get('metrics') or {})) if metric else '':>8} {g.get('moves', 0):>6} {g.get('illegal_moves', 0):>6} "
                  f"{g.get('wall_seconds', 0):>8.3f}  {safe_text(g.get('error', ''))}")
            if args.show and g.get("final_view") is not None:
                label = "last board the program saw" if args.trusted else "final board"
                print(f"        {label}:")
                print("\n".join("        " + line for line in _render_view(g["final_view"]).splitlines()))
        counts = ", ".join(f"{safe_text(k)} {v}" for k, v in sorted(summary["outcomes"].items()))
        mode = "trusted, in-process" if args.trusted else "sandbox"
        print(f"{summary['games']} games ({mode}): {counts}; mean score {summary['mean_score']:.1f}, "
              f"median {summary['median_score']:.0f}, best {summary['best_score']:.0f}; "
              + (f"best {label} {_fmt_metric(summary['best_' + metric])}; " if metric else "")
              + f"won {summary['won_rate']:.0%}; {summary['moves']} moves in "
              f"{seconds:.2f}s ({summary['games_per_second']:.1f} games/s, "
              f"{summary['moves_per_second']:.0f} moves/s)")
    return 0 if all(g["outcome"] in _PLAYED for g in games) else 1


def _cores() -> int:
    import os

    return os.cpu_count() or 1
