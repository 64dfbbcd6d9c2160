"""``codepolicy replay``: watch one game of a strategy, move by move, in the terminal, as a GIF or as a web page.

The input is a program file, a raw model completion (its strategy is extracted), or a run folder
(its best program, ``best/best-1.py``). The game is played through the sandbox on the same seeded
game ``codepolicy play --seed N`` plays first (``sandbox.replay.record_game``), and each move is
redrawn by the engine; the renderer is the game's (``envs.game2048.render``).
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path
from typing import Any

from codepolicy.files import read_text
from sandbox.text import parse_program, safe_text

__all__ = ["add_commands", "load_strategy_source", "PLAYED"]

# Outcomes of a game a program played to its end (as `codepolicy play` counts them).
PLAYED = ("finished", "won", "max_moves", "stuck")
DEFAULT_DELAY = 0.15  # seconds per frame in a GIF or page


def add_commands(subparsers: Any) -> None:
    """Add the ``replay`` subcommand."""
    p = subparsers.add_parser(
        "replay", help="play one game of a strategy through the sandbox and show every move (terminal, GIF or HTML)",
        description="Play one seeded 2048 game with a strategy through the sandbox (the same game as "
                    "`codepolicy play --seed N`) and show each move, the points it scored and the board; "
                    "or write the game as an animated GIF or a self-contained HTML page. SOURCE is a program "
                    "(.py), a raw model completion (the strategy is extracted), or a run folder (its best "
                    "program, best/best-1.py). Exit code 0: the game was played to its end; 1: it ended in a "
                    "violation, error, invalid output, timeout or crash; 2: usage error.")
    p.add_argument("source", metavar="PROGRAM|RUN|COMPLETION", help="a .py program, a run folder or a completion "
                                                                    "text; '-' reads standard input")
    p.add_argument("--seed", type=int, default=0, help="game seed (default 0)")
    p.add_argument("--size", type=int, default=None, help="board size (3..8, default 4)")
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
    line = (f"seed {r.seed}: {safe_text(r.outcome)}, score {r.score:.0f}, max tile {r.max_tile}, "
            f"{r.moves} moves ({wasted} wasted)")
    if r.error:  # the program's own words: its exception, its wrong answer
        line += f": {safe_text(r.error)}"
    return line


def _print_moves(replay: Any, delay: float) -> None:
    from envs.game2048.render import MOVE_NAMES, board_exponents, render_ansi

    print("start")
    print(render_ansi(board_exponents(replay.start), score=0), end="")
    total = len(replay.steps)
    for k, step in enumerate(replay.steps, 1):
        if delay > 0:
            sys.stdout.flush()
            time.sleep(delay)
        wasted = "" if step.changed else " (wasted: nothing moved)"
        print(f"\nmove {k}/{total}: {step.move} ({MOVE_NAMES.get(step.move, '?')}) +{step.points:.0f}{wasted}")
        print(render_ansi(board_exponents(step.board), score=int(step.score)), end="")


def _run_replay(args: argparse.Namespace) -> int:
    from sandbox.records import Limits
    from sandbox.replay import record_game

    if args.delay is not None and args.delay < 0:
        raise ValueError(f"--delay must be >= 0, got {args.delay}")
    if args.max_moves is not None and args.max_moves < 1:
        raise ValueError(f"--max-moves must be at least 1, got {args.max_moves}")
    import envs

    options = {} if args.size is None else {"size": args.size}
    envs.get("2048").make(args.seed, **options)  # a bad size is one clear error before anything runs
    for target in (args.gif, args.html):
        if target and not Path(target).resolve().parent.is_dir():
            raise FileNotFoundError(f"{target}: its folder does not exist")
    source, kind = load_strategy_source(args.source)
    limits = Limits(max_moves=args.max_moves) if args.max_moves else None
    replay = record_game(source, args.seed, "2048", options, limits)
    name = "<stdin>" if args.source == "-" else args.source
    print(f"replay of {safe_text(name)} ({safe_text(kind)}), seed {args.seed}, through the sandbox")
    delay = DEFAULT_DELAY if args.delay is None else args.delay
    if args.gif or args.html:
        boards, moves, points = replay.boards, replay.moves, [s.points for s in replay.steps]
        if args.gif:
            from envs.game2048.render import write_gif

            frames = write_gif(args.gif, boards, moves, points, delay=delay)
            target = args.gif
        else:
            from envs.game2048.render import replay_html

            page = replay_html(boards, moves, points, delay=delay,
                               title=f"2048 replay: seed {args.seed}, score {replay.record.score:.0f}",
                               subtitle=f"{Path(name).name} ({kind}); played through the codepolicy sandbox",
                               ending=_summary(replay), source=source)
            Path(args.html).write_text(page, encoding="utf-8")
            frames, target = len(boards), args.html
        print(f"wrote {safe_text(target)}: {frames} frames, {Path(target).stat().st_size / 1024:.0f} KB")
    else:
        _print_moves(replay, args.delay or 0.0)
        print()
    print(_summary(replay))
    return 0 if replay.record.outcome in PLAYED else 1
