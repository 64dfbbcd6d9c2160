"""Static check speed: ``sandbox.check`` calls per second on typical model outputs (target >= 2,000/s).

Run: ``python benchmarks/check_speed.py [--seconds S]``. The corpus mixes what small models
write (see DESIGN.md): short clean programs like the prompt's example, longer ones with helpers
and lambdas, syntax errors, programs with undefined names, and cheats. Peers measured in the same
run: ``ast.parse`` alone (the floor any AST checker pays) and RestrictedPython's
``compile_restricted_exec`` (the runner's second layer, a different static transformer).
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from sandbox import check, extract  # noqa: E402
from sandbox.records import FormatError  # noqa: E402

import envs  # noqa: E402

EXAMPLE = envs.get("2048").example  # the prompt's own example: what small models copy most

HELPERS = '''def strategy(board):
    """Keep the biggest tile in the top-left corner."""
    n = len(board)
    def empty(b):
        return sum(map(lambda row: row.count(0), b))
    def merges(rows):
        return sum(map(lambda r: sum(map(lambda p: 1 if p[0] == p[1] and p[0] else 0, zip(r, r[1:]))), rows))
    cols = list(map(list, zip(*board)))
    scores = {"A": merges(board) + empty(board), "W": merges(cols) + empty(cols)}
    best = max(scores, key=lambda m: scores[m])
    if board[0][0] == max(map(max, board)):
        return best
    elif board[n - 1][0] == 0:
        return "S"
    return "D" if scores["A"] < 2 else "A"
'''

CORPUS = {
    "example-size clean": EXAMPLE,
    "always one move": 'def strategy(board):\n    return "W"\n',
    "15 lines, helpers": HELPERS,
    "syntax error": 'def strategy(board):\n    if board[0][0] = 0:\n        return "A"\n    return "W"\n',
    "undefined name": 'def strategy(board):\n    return best_move(board, depth=3)\n',
    "loop (rejected)": 'def strategy(board):\n    for row in board:\n        if 0 in row:\n            return "A"\n    return "W"\n',
    "import (rejected)": 'import random\n\ndef strategy(board):\n    return random.choice("WASD")\n',
    "escape (rejected)": 'def strategy(board):\n    return ().__class__.__base__.__subclasses__()[0]\n',
}


def _rate(fn, items: list, seconds: float) -> float:
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for item in items:
            fn(item)
        calls += len(items)
    return calls / (time.perf_counter() - start)


def _parse(source: str) -> None:
    try:
        ast.parse(source)
    except SyntaxError:
        pass


def _restricted(source: str) -> None:
    from RestrictedPython import compile_restricted_exec
    compile_restricted_exec(source)


def _extract_check(completion: str) -> None:
    try:
        check(extract(completion))
    except FormatError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Print check calls/s per kind of program and on the whole mix, with the peers beside them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement (default 0.5)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    try:
        import RestrictedPython  # noqa: F401
        has_rp = True
    except ImportError:
        has_rp = False

    rows = []
    for name, source in CORPUS.items():
        rows.append((name, _rate(check, [source], args.seconds), _rate(_parse, [source], args.seconds),
                     _rate(_restricted, [source], args.seconds) if has_rp else float("nan"),
                     "ok" if check(source).ok else "rejected"))
    mix = list(CORPUS.values())
    completions = [f"Here is my strategy:\n```python\n{s}```\nIt keeps the corner." for s in mix]
    mix_check = _rate(check, mix, args.seconds * 2)
    rows.append(("MIX (all of the above)", mix_check, _rate(_parse, mix, args.seconds * 2),
                 _rate(_restricted, mix, args.seconds * 2) if has_rp else float("nan"), ""))
    mix_full = _rate(_extract_check, completions, args.seconds * 2)

    print(f"{'program':<26}{'check/s':>10}{'ast.parse/s':>13}{'RestrictedPy/s':>16}"
          f"{'check/parse':>13}  verdict")
    for name, ours, parse, rp, verdict in rows:
        print(f"{name:<26}{ours:>10,.0f}{parse:>13,.0f}{rp:>16,.0f}{parse / ours:>12.1f}x  {verdict}")
    print(f"\nextract + check on fenced completions (mix): {mix_full:,.0f} calls/s")
    status = "meets" if mix_check >= 2000 else "MISSES"
    print(f"check on the mix: {mix_check:,.0f} calls/s ({status} the 2,000/s target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
