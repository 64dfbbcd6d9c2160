"""``codepolicy replay``: watch one game of a strategy, move by move, in the terminal, as a GIF or as a web page.

The input is a program file, a raw model completion (its strategy is extracted), or a run folder
(its best program, ``best/best-1.py``). The game is played through the sandbox on the same seeded
game ``codepolicy play --seed N`` plays first (``sandbox.replay.record_game``), and each move is
redrawn by the engine; the frames are the game's (``GameSpec.replay_frame``; a GIF or a web page needs the
game's ``replay_media``, which 2048 has: ``envs.game2048.render``).
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path
from typing import Any

from codepolicy.files import read_text
from envs.registry import DEFAULT_GAME
from sandbox.text import parse_program, safe_text

__all__ = ["add_commands", "load_strategy_source", "PLAYED"]

# Outcomes of a game a program played to its end (as `codepolicy play` counts them).
PLAYED = ("finished", "won", "max_moves", "stuck")
DEFAULT_DELAY = 0.15  # seconds per frame in a GIF or page


def add_commands(subparsers: Any) -> None:
    """Add the ``replay`` subcommand."""
    p = subparsers.add_parser(
        "replay", help="play one game of a strategy through the sandbox and show every move (terminal, GIF or HTML)",
        description="Play one seeded game with a strategy through the sandbox (the same game as "
                    "`codepolicy play --seed N`) and show each move, the points it scored and the board; "
                    "or write the game as an animated GIF or a self-contained HTML page. SOURCE is a program "
                    "(.py), a raw model completion (the strategy is extracted), or a run folder (its best "
                    "program, best/best-1.py). Exit code 0: the game was played to its end; 1: it ended in a "
                    "violation, error, invalid output, timeout or crash; 2: usage error.")
    p.add_argument("source", metavar="PROGRAM|RUN|COMPLETION", help="a .py program, a run folder or a completion "
                                                                    "text; '-' reads standard input")
    p.add_argument("--game", default=DEFAULT_GAME, help=f"registered game (default {DEFAULT_GAME})")
    p.add_argument("--seed", type=int, default=0, help="game seed (default 0)")
    p.add_argument("--size", type=int, default=None, help="board size (default: the game's own; 2048: 4)")
    p.add_argument("--max-moves", type=int, default=None, help="move cap (default: the sandbox's, 5000)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--gif", metavar="F", help="write the game as an animated GIF to F")
    out.add_argument("--html", metavar="F", help="write the game as one self-contained HTML page to F")
    p.add_argument("--delay", type=float, default=None, metavar="S",
                   help=f"seconds per move: of a GIF frame or the page's playback (default {DEFAULT_DELAY}); "
                        "in the terminal, a pause between moves (default none)")
    p.set_defaults(handler=_run_replay)


def load_strategy_source(path: str) -> tuple[str, str]:
    """(strategy source, what it is) for a program file, a completion text or a run folder.

    A run folder gives its best program; a file that parses as Python is a program; any other text
    is a completion and goes through ``sandbox.extract`` (ValueError with the reason when it holds none).
    """
    from sandbox.extract import extract
    from sandbox.records import FormatError

    folder = Path(path)
    if path != "-" and folder.is_dir():
        from train.monitor import BEST_DIR

        best = folder / BEST_DIR / "best-1.py"
        if not best.is_file():
            raise FileNotFoundError(f"{path}: a folder without {BEST_DIR}/best-1.py: not a run folder, "
                                    "or no step of the run kept a program yet")
        return read_text(best, "best program"), f"the best program of run {path}"
    text = read_text(path, "program, completion or run folder")
    try:
        tree = parse_program(text, "<unknown>")
    except (SyntaxError, ValueError):  # not a program as it stands: a completion holding one?
        tree = None
    if tree is not None and any(isinstance(node, ast.FunctionDef) and node.name == "strategy" for node in tree.body):
        return text, "program"
    try:
        return extract(text), "completion (strategy extracted)"
    except FormatError as exc:
        where = f" (line {exc.line})" if exc.line else ""
        raise ValueError(f"{path}: neither a program nor a completion holding one [{exc.reason}]{where}: "
                         f"{exc.message}") from None


def _summary(replay: Any) -> str:
    r = replay.record
    wasted = sum(not s.changed for s in replay.steps)
    facts = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in r.metrics.items() if k not in ("score", "moves"))
    line = (f"seed {r.seed}: {safe_text(r.outcome)}, score {r.score:.0f}, {facts + ', ' if facts else ''}"
            f"{r.moves} moves ({wasted} wasted)")
    if r.error:  # the program's own words: its exception, its wrong answer
        line += f": {safe_text(r.error)}"
    return line


def _frame(spec: Any, view: Any, score: float) -> str:
    """The game's terminal frame of ``view`` (its ``replay_frame``), or its rows and the score."""
    if spec.replay_frame is not None:
        return spec.replay_frame(view, int(score))
    rows = view if isinstance(view, (list, tuple)) else [view]
    return "\n".join(" ".join(map(str, r)) if isinstance(r, (list, tuple)) else str(r) for r in rows) + \
        f"\nscore: {int(score)}\n"


def _print_moves(spec: Any, replay: Any, delay: float) -> None:
    names = {"W": "up", "A": "left", "S": "down", "D": "right"} if tuple(spec.actions) == ("W", "A", "S", "D") else {}
    print("start")
    print(_frame(spec, replay.start, 0), end="")
    total = len(replay.steps)
    for k, step in enumerate(replay.steps, 1):
        if delay > 0:
            sys.stdout.flush()
            time.sleep(delay)
        wasted = "" if step.changed else " (wasted: nothing moved)"
        name = f" ({names[step.move]})" if step.move in names else ""
        print(f"\nmove {k}/{total}: {step.move}{name} +{step.points:.0f}{wasted}")
        print(_frame(spec, step.board, step.score), end="")


def _run_replay(args: argparse.Namespace) -> int:
    from sandbox.records import Limits
    from sandbox.replay import record_game

    if args.delay is not None and args.delay < 0:
        raise ValueError(f"--delay must be >= 0, got {args.delay}")
    if args.max_moves is not None and args.max_moves < 1:
        raise ValueError(f"--max-moves must be at least 1, got {args.max_moves}")
    import envs

    options = {} if args.size is None else {"size": args.size}
    spec = envs.get(args.game)
    spec.make(args.seed, **options)  # a bad size is one clear error before anything runs
    if (args.gif or args.html) and not spec.replay_media:
        raise ValueError(f"game {args.game!r} draws no GIF or web page (no replay_media); replay it in the terminal")
    for target in (args.gif, args.html):
        if target and not Path(target).resolve().parent.is_dir():
            raise FileNotFoundError(f"{target}: its folder does not exist")
    source, kind = load_strategy_source(args.source)
    limits = Limits(max_moves=args.max_moves) if args.max_moves else None
    replay = record_game(source, args.seed, args.game, options, limits)
    name = "<stdin>" if args.source == "-" else args.source
    print(f"replay of {safe_text(name)} ({safe_text(kind)}), seed {args.seed}, through the sandbox")
    delay = DEFAULT_DELAY if args.delay is None else args.delay
    if args.gif or args.html:
        boards, moves, points = replay.boards, replay.moves, [s.points for s in replay.steps]
        import importlib

        media = importlib.import_module(spec.replay_media)
        if args.gif:
            frames = media.write_gif(args.gif, boards, moves, points, delay=delay)
            target = args.gif
        else:
            page = media.replay_html(boards, moves, points, delay=delay,
                                     title=f"{args.game} replay: seed {args.seed}, score {replay.record.score:.0f}",
                                     subtitle=f"{Path(name).name} ({kind}); played through the codepolicy sandbox",
                                     ending=_summary(replay), source=source)
            Path(args.html).write_text(page, encoding="utf-8")
            frames, target = len(boards), args.html
        print(f"wrote {safe_text(target)}: {frames} frames, {Path(target).stat().st_size / 1024:.0f} KB")
    else:
        _print_moves(spec, replay, args.delay or 0.0)
        print()
    print(_summary(replay))
    return 0 if replay.record.outcome in PLAYED else 1
