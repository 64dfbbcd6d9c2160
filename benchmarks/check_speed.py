"""Static check speed: ``sandbox.check`` calls per second on typical model outputs (target >= 2,000/s),
and its time on the worst programs we can build at the size limit.

Run: ``python benchmarks/check_speed.py [--seconds S] [--before OLD_CHECK_PY]``. The corpus mixes
what small models write: short clean programs like the prompt's example, longer ones with
helpers and lambdas, syntax errors, programs with undefined names, and cheats. Peers measured in
the same run: ``ast.parse`` alone (the floor any AST checker pays) and RestrictedPython's
``compile_restricted_exec`` (the runner's second layer, a different static transformer).

The adversarial table times one check of each hostile program (alias chains written last link
first, lambdas that call their argument, deep nesting, many functions, many callbacks), each just
under ``max_source_bytes``, against ``ast.parse`` of the same text; with ``--before`` it also times
another ``check.py`` (e.g. a copy of an older version, imported by path) and prints the ratio.
The memo is bypassed for these timings; its hit cost is printed on its own line.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
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


LIMIT = 20_000  # the default policy's max_source_bytes


def _ident(i: int) -> str:
    """A short distinct identifier (a, b, ..., Z, ba, bb, ...): the most bindings per byte."""
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, len(letters))
        out = letters[r] + out
    return "v" + out


def _fill(head: str, line, tail: str) -> str:
    """``head`` + ``line(i)`` for i = 0, 1, ... + ``tail``, as many lines as fit under the size limit."""
    parts, size, i = [head], len(head) + len(tail), 0
    while True:
        text = line(i)
        if size + len(text) >= LIMIT - 50:
            break
        parts.append(text)
        size += len(text)
        i += 1
    parts.append(tail)
    return "".join(parts)


def _alias_chain() -> str:
    # `vz = vy`, ..., `vb = va`, `va = print`: each link names the next one down, so a fixed-point
    # pass over the bindings in source order learns one link per pass.
    n = 0
    while True:
        body = "".join(f" {_ident(i + 1)}={_ident(i)}\n" for i in range(n, -1, -1))
        if len(body) > LIMIT - 200:
            break
        n += 100
    n -= 100
    links = "".join(f" {_ident(i + 1)}={_ident(i)}\n" for i in range(n, -1, -1))
    return ("def g(file=0):\n return 'W'\ndef strategy(board):\n" + links + f" va=print\n"
            " return g(file=1)\n")


def _lambda_calls() -> str:
    # Each lambda calls a value it is given and escapes into a list: every unknown call may reach
    # every escaping lambda (quadratic if joined pairwise).
    return _fill("def strategy(board):\n fs=[", lambda i: "lambda a:a(),", "]\n return 'W'\n")


def _deep_nesting() -> str:
    # Functions nested as deep as the depth limit allows, the innermost reading outer names
    # (each read walks the scope chain).
    depth = 90
    head = "".join(" " * i + f"def f{i}(x{i}):\n" for i in range(depth))
    pad = " " * depth
    return _fill(head + pad + "return (", lambda i: f"x{i % 7},", ")\n" + "def strategy(board):\n return 'W'\n")


def _many_functions() -> str:
    # A chain of helpers each calling the one before and passing it on as a value.
    return _fill("def f0(a):\n return a\n", lambda i: f"def f{i + 1}(a):\n return f{i}(f{i})\n",
                 "def strategy(board):\n return 'W'\n")


def _many_callbacks() -> str:
    # Helpers handing their parameter to map/sorted (a call of an unknown value each), all escaping.
    return _fill("def strategy(board):\n return 'W'\n",
                 lambda i: f"def h{i}(g,x=h{i - 1 if i else 0}):\n return sorted(map(g,[g]),key=g)\n" if i else
                 "def h0(g):\n return g\n", "")


def _module_constants() -> str:
    # Module constants each computed from the one before.
    return _fill("C0 = 1\n", lambda i: f"C{i + 1} = C{i} + 1\n", "def strategy(board):\n return 'W'\n")


ADVERSARIAL = {
    "print alias chain (reversed)": _alias_chain,
    "lambda a: a() x N": _lambda_calls,
    "90 nested defs": _deep_nesting,
    "helper chain f(f)": _many_functions,
    "callbacks of params": _many_callbacks,
    "computed constants": _module_constants,
}


def _once(fn, source: str) -> float:
    start = time.perf_counter()
    fn(source)
    return time.perf_counter() - start


def _load_check(path: str):
    spec = importlib.util.spec_from_file_location("check_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.check


def adversarial(before: str | None) -> None:
    """Print one check of each hostile program, after (this checkout) and before (``--before``), and the ratio."""
    from sandbox.check import _uncached_check
    from sandbox.policy import DEFAULT_POLICY

    after = lambda s: _uncached_check(s, DEFAULT_POLICY)  # noqa: E731 - the memo would time a dict lookup
    old = _load_check(before) if before else None
    print(f"\n{'adversarial program':<30}{'bytes':>7}{'parse ms':>10}{'after ms':>10}"
          + (f"{'before ms':>11}{'before/after':>14}" if old else "") + "  verdict")
    for name, build in ADVERSARIAL.items():
        source = build()
        parse = min(_once(_parse, source) for _ in range(3))
        new = min(_once(after, source) for _ in range(3))
        verdict = after(source)
        shown = "ok" if verdict.ok else ",".join(sorted({v.rule for v in verdict.violations}))
        line = f"{name:<30}{len(source.encode()):>7}{parse * 1e3:>10.1f}{new * 1e3:>10.1f}"
        if old:
            was = _once(old, source)  # once: the old one can take seconds
            line += f"{was * 1e3:>11.1f}{was / new:>13.1f}x"
        print(line + "  " + shown)
    source = _alias_chain()
    check(source)
    hit = min(_once(check, source) for _ in range(5))
    print(f"memo hit (the same source and policy again): {hit * 1e6:.1f} us")


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


def _fresh(source: str) -> object:
    """One check without the memo: the corpus repeats its programs, the rates must not be memo hits."""
    from sandbox.check import _uncached_check
    from sandbox.policy import DEFAULT_POLICY

    return _uncached_check(source, DEFAULT_POLICY)


def _extract_check(completion: str) -> None:
    try:
        _fresh(extract(completion))
    except FormatError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Print check calls/s per kind of program and on the whole mix, with the peers beside them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement (default 0.5)")
    parser.add_argument("--before", default=None,
                        help="path of another check.py to time on the adversarial programs beside this one")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    try:
        import RestrictedPython  # noqa: F401
        has_rp = True
    except ImportError:
        has_rp = False

    rows = []
    for name, source in CORPUS.items():
        rows.append((name, _rate(_fresh, [source], args.seconds), _rate(_parse, [source], args.seconds),
                     _rate(_restricted, [source], args.seconds) if has_rp else float("nan"),
                     "ok" if check(source).ok else "rejected"))
    mix = list(CORPUS.values())
    completions = [f"Here is my strategy:\n```python\n{s}```\nIt keeps the corner." for s in mix]
    mix_check = _rate(_fresh, mix, args.seconds * 2)
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
    adversarial(args.before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
