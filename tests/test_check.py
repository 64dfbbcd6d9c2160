"""sandbox.check and sandbox.policy: clean strategies pass, every cheat is rejected with its category."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import DEFAULT_POLICY, Policy, Verdict, Violation, check
from sandbox.policy import CATEGORIES, RULES

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def src(text: str) -> str:
    return textwrap.dedent(text).strip("\n") + "\n"


# -- clean programs --------------------------------------------------------------------------

CLEAN = [
    '''
    def strategy(board):
        # Prefer left, then up, then right; down only when nothing else is possible.
        if board[0][0] == 0 or board[0][0] == board[0][1]:
            return "A"
        return "W" if board[1][0] == board[0][0] else "D"
    ''',
    '''
    """A corner strategy."""

    def strategy(board: list[list[int]]) -> str:
        """Keep the biggest tile in the top-left corner."""
        n = len(board)
        def empty(b):
            return sum(map(lambda row: row.count(0), b))
        def merges(rows):
            return sum(map(lambda r: sum(map(lambda p: 1 if p[0] == p[1] and p[0] else 0,
                                             zip(r, r[1:]))), rows))
        cols = list(map(list, zip(*board)))
        scores = {"A": merges(board) + empty(board), "W": merges(cols) + empty(cols)}
        best = max(scores, key=lambda m: scores[m])
        if board[0][0] == max(map(max, board)):
            return best
        elif board[n - 1][0] == 0:
            return "S"
        return "D" if scores["A"] < 2 else "A"
    ''',
    '''
    def strategy(board):
        flat = sum(board, [])
        dir = "W"
        time = 3
        id_ = 0
        a, (b, c) = 1, (2, 3)
        q, _ = divmod(len(flat), 4)
        if (k := flat.count(0)) > 8:
            dir = "A"
        try:
            v = board[4][4]
        except (IndexError, KeyError) as e:
            v = -1
        except Exception:
            v = 0
        moves = sorted("WASD", key=lambda m: ("WASD".index(m) * 7 + k) % 4, reverse=True)
        label = f"{k:>3}" + "{} {}".format(q, v) + "%d" % a + "".join(map(str, flat)) + "{}{}".format(*map(str, [1, 2]))
        print(label, moves)
        return moves[0] if isinstance(moves[0], str) and abs(-q) >= 0 else dir
    ''',
    '''
    def strategy(board):
        rows = [] if False else list(map(list, board))
        rows.sort(key=sum)
        rows.reverse()
        d = dict(zip("WASD", range(4)))
        d.update({"W": d.get("W", 0) + 1})
        s = set(map(len, rows)) | {4}
        total = sum(filter(lambda x: x > 0, sum(rows, [])))
        big = pow(2, 11) + 2 ** 16 + (1 << 10) + 10 ** 9 + round(total / 3.0, 2)
        pad = [0] * 16 + ["-"] * 40
        t = tuple(reversed(range(0, 16, 2)))
        match len(board):
            case 4:
                size = "four"
            case [x, *rest]:
                size = "seq"
            case {"k": v, **others}:
                size = "map"
            case 3 | 5:
                size = "odd"
            case _:
                size = "other"
        assert size
        del pad[0]
        return "WASD"[int(any(map(bool, s))) + int(all(t)) % 2]
    ''',
    '''
    def strategy(board):
        def score(move, weigh=2, *rest, scale=1.0, **kw):
            return weigh * "WASD".index(move) * scale
        def apply(fn, x):
            return fn(x)
        order = ("W", "A", "S", "D")
        best = max(order, key=lambda m: apply(score, m))
        return best if best in order else order[0]
    ''',
    # Module-level helpers and immutable constants (41 of 373 sampled programs were
    # refused only for these), in-place item operators, match, annotations, format specs, and
    # variables named like RestrictedPython's reserved names.
    '''
    SIZE = 4
    ORDER: tuple = ("W", "A", "S", "D")
    LOW, HIGH = -1, 2048

    def empty(board, weight=SIZE, low=LOW):
        """Empty cells, weighted."""
        return sum(map(lambda row: row.count(0), board)) * weight + low

    def strategy(board):
        counts = dict.fromkeys("WASD", 0)
        counts["A"] += empty(board)
        row = board[0]
        row[1] *= 2
        row[0:2] += []
        board[3][3] -= 1
        order: str = "WASD"
        printed = "{:.2f}|{0[0]:>5}".format(1.5, board) if False else "{0[0]}".format(board)
        print(printed, "{r[1]:,}".format(r=row), "{a}".format_map({"a": HIGH}), "{:{w}}".format(3, w=5))
        match board[0]:
            case [0, *rest] if len(rest) == 3:
                pick = ORDER[1]
            case [first, _, _, _]:
                pick = order[first % SIZE]
            case {"k": v, **others}:
                pick = "S"
            case None:
                pick = "D"
            case _:
                pick = "W"
        return max(counts, key=counts.get) if counts["A"] > HIGH else pick
    ''',
    '''
    def _corner_score(_row, _weight=2):
        return _row[0] * _weight if type(_row) is list else 0

    def strategy(board):
        _best = max(map(_corner_score, board))
        return "W" if type(_best) == int and _best > 4 else "A"
    ''',
]


@pytest.mark.parametrize("program", CLEAN, ids=range(len(CLEAN)))
def test_clean_programs_pass(program):
    verdict = check(src(program))
    assert verdict.ok, "\n".join(map(str, verdict.violations))
    assert verdict == Verdict(True, ())


# -- cheats: (category, program) ---------------------------------------------------------------

def body(*lines: str) -> str:
    """A strategy whose body is ``lines`` followed by a return."""
    return "def strategy(board):\n" + "".join(f"    {line}\n" for line in lines) + "    return 'W'\n"


CHEATS = [
    # import
    ("import", body("import os")),
    ("import", body("from random import choice")),
    ("import", "import math\n" + body()),
    ("import", body("m = __import__('os')")),
    ("import", body("t = __builtins__['__import__']('os')")),
    ("import", body("m = importlib.import_module('os')")),
    # file_access
    ("file_access", body("f = open('/etc/passwd')")),
    ("file_access", body("f = open")),
    ("file_access", "def strategy(board, o=open):\n    return 'W'\n"),
    ("file_access", body("g = lambda p=open: p('x')")),
    ("file_access", body("os.system('ls')")),
    ("file_access", body("sys.exit(0)")),
    ("file_access", body("p = pathlib.Path('x')")),
    ("file_access", body("s = socket.socket()")),
    ("file_access", body("subprocess.run(['ls'])")),
    ("file_access", body("print('x', file=None)")),
    ("file_access", body("kw = {}", "print('x', **kw)")),
    ("file_access", body("p = print", "q = p", "q('x', **{'sep': ''})")),
    ("file_access", body("def h(x, out=print):", "    out(x, file=None)", "    return x")),
    ("file_access", body("if (p := print):", "    p('x', file=None)")),
    ("file_access", body("x = io.StringIO()")),
    ("file_access", body("ｏｐｅｎ('x')")),
    ("file_access", body("def h(b):", "    return open")),
    # randomness
    ("randomness", body("r = random.random()")),
    ("randomness", body("r = hash(str(board))")),
    ("randomness", body("r = id(board) % 4")),
    ("randomness", body("r = time.time()")),
    ("randomness", body("r = datetime.now()")),
    ("randomness", body("r = uuid.uuid4()")),
    ("randomness", body("r = secrets.choice('WASD')")),
    ("randomness", body("r = str(strategy)[-3:]")),
    ("randomness", body("r = f'{map(abs, [1])}'")),
    ("randomness", body("r = '%s' % (lambda: 0)")),
    ("randomness", body("h = hash", "r = h('x')")),
    ("randomness", body("r = str([abs, lambda: 1])")),
    ("randomness", body("r = '{}'.format(lambda: 0)")),
    ("randomness", body("r = '%s' % (lambda: 0,)")),
    ("randomness", body("r = str(board.copy)")),
    ("randomness", body("r = str((zip(board[0], board[1]),))")),
    ("randomness", body("f = lambda: 0", "r = str({0: f})")),
    # loop
    ("loop", body("for r in board:", "    pass")),
    ("loop", body("while True:", "    pass")),
    ("loop", body("x = [c for c in board]")),
    ("loop", body("x = {c: 1 for c in 'ab'}")),
    ("loop", body("x = {c for c in 'ab'}")),
    ("loop", body("x = sum(c for c in board[0])")),
    ("loop", src('''
        def strategy(board):
            return strategy(board)
        ''')),
    ("loop", body("def h(n):", "    return h(n - 1) if n else 0")),
    ("loop", body("def a(n):", "    return b(n)", "def b(n):", "    return a(n)")),
    ("loop", body("f = lambda n: f(n - 1) if n else 0")),
    ("loop", body("f = lambda g, n: g(g, n - 1) if n else 0", "f(f, 10)")),
    ("loop", body("(lambda g: g(g))(lambda g: g(g))")),
    ("loop", body("Y = lambda f: (lambda x: x(x))(lambda x: f(lambda v: x(x)(v)))")),
    ("loop", body("def h(r):", "    return list(map(h, r))")),
    ("loop", body("def h(r):", "    g = h", "    return g(r)")),
    ("loop", body("def h(r):", "    fs = [h]", "    return fs[0](r)")),
    ("loop", body("x = list(iter(lambda: 1, 0))")),
    ("loop", body("x = next(iter(board))")),
    # escape
    ("escape", body("x = eval('1')")),
    ("escape", body("exec('x = 1')")),
    ("escape", body("c = compile('1', 'f', 'eval')")),
    ("escape", body("x = getattr(board, 'copy')")),
    ("escape", body("setattr(strategy, 'n', 1)")),
    ("escape", body("x = hasattr(board, 'x')")),
    ("escape", body("g = globals()")),
    ("escape", body("v = vars()")),
    ("escape", body("d = dir(board)")),
    ("escape", body("t = type('X', (), {})")),
    ("escape", body("t = type")),
    ("escape", body("o = object()")),
    ("escape", body("breakpoint()")),
    ("escape", body("x = input()")),
    ("escape", body("exit()")),
    ("escape", body("m = memoryview(b'x')")),
    ("escape", body("c = board.__class__")),
    ("escape", body("c = ().__class__.__base__.__subclasses__()")),
    ("escape", body("x = __secret")),
    ("escape", body("_getattr_ = len")),
    ("escape", body("__x = 1")),
    ("escape", body("x = '{0.__class__}'.format(board)")),
    ("escape", body("x = '{0.x}'.format(board)")),
    ("escape", body("x = '{0:{1.y}}'.format(board, 1)")),
    ("escape", body("x = ('{0.' + 'x}').format(board)")),
    ("escape", body("x = str.format('{0.x}', board)")),
    # format_map is allowed on a literal template now; a field reaching an attribute is not.
    ("escape", body("x = '{x.y}'.format_map({'x': board})")),
    ("escape", body("x = '{0[0].x}'.format(board)")),
    ("randomness", body("x = format(strategy, '')")),
    ("escape", body("x = ｅｖａｌ('1')")),
    ("escape", body("x = board.__ｃlass__")),
    ("loop", body("def apply(fn, x):", "    return fn(x)", "f = lambda m: apply(f, m)")),
    ("loop", body("def apply(fn, x):", "    return fn(x)", "g = lambda m: apply(max(g, g, key=len), m)")),
    # Names the runtime does not have: a NameError there, nothing they could reach.
    ("attribute", body("try:", "    pass", "except BaseException:", "    pass")),
    ("attribute", body("try:", "    pass", "except (ValueError, KeyboardInterrupt):", "    pass")),
    ("attribute", body("raise SystemExit")),
    # `type(x)` is the class of a value; the class of a class (`type` itself) or more arguments build classes.
    ("escape", body("t = type(int)")),
    ("escape", body("t = type(type(board))")),
    ("escape", body("t = type(board, 1)")),
    ("escape", body("t = type(*board)")),
    ("escape", body("t = [type][0](board)")),
    ("attribute", body("t = bin(4)")),
    ("escape", body("x = board.copy.mro")),
    ("escape", body("x = (lambda: 0).gi_frame")),
    ("escape", body("x = board.f_back")),
    ("escape", body("x = board.co_consts")),
    # An unknown attribute that reaches nothing internal is a milder category.
    ("attribute", body("n = board.size")),
    ("attribute", body("n = 'W'.lenght()")),
    ("escape", body("f = lambda **kw: kw", "f(__class__=1)")),
    # state
    ("state", body("global G")),
    ("state", body("x = 0", "def h():", "    nonlocal x")),
    ("state", "def strategy(board, memo={}):\n    memo['n'] = 1\n    return 'W'\n"),
    ("state", "def strategy(board, memo=[]):\n    memo.append(1)\n    return 'W'\n"),
    # A list default that is only read is fine; one that is changed, returned or handed on is state.
    ("state", body("def h(x, seen=[]):", "    seen += [x]", "    return 1")),
    ("state", body("def h(x, seen=[1]):", "    return len(list(seen)) + x", "def g(x, seen=[1]):", "    return h(x, seen)")),
    ("state", body("def h(x, seen={1}):", "    alias = seen", "    return alias")),
    ("state", body("f = lambda x, seen=[]: seen.append(x) or seen")),
    ("state", "def strategy(board, *, seen=set()):\n    return 'W'\n"),
    ("state", body("strategy.count = 1")),
    ("state", body("del strategy.count")),
    ("state", body("h = lambda: 0", "h.calls = 2")),
    # Defaults evaluated once that hide a mutable object.
    ("state", "def strategy(board, mem={}.setdefault):\n    return 'W'\n"),
    ("state", "def strategy(board, tag=f'{(m := [])}'):\n    return 'W'\n"),
    ("state", body("f = lambda x, seen=[]: seen")),
    ("state", body("def h(*, seen=list()):", "    return seen")),
    ("state", body("def h(x=(1, [])):", "    return x")),
    ("state", body("def h(x=lambda: 0):", "    return x")),
    ("state", body("def h(x=board[0]):", "    return x")),
    # structure
    # Module-level constants and helpers are allowed now; mutable or computed values,
    # calls and other statements are not.
    ("structure", "x = [1]\n" + body()),
    ("structure", "def h():\n    return 1\nx = h()\n" + body()),
    ("structure", "x = sorted('ab')\n" + body()),
    ("structure", "len = lambda s: 0\nx = len('ab')\n" + body()),
    ("structure", "x = y = {}\n" + body()),
    ("structure", "x: list = []\n" + body()),
    ("structure", "def h():\n    return int\ndef strategy(board: h()) -> str:\n    return 'W'\n"),
    ("structure", "def strategy(board: (x := int)) -> str:\n    return 'W'\n"),
    ("structure", "def strategy(board) -> (lambda: str):\n    return 'W'\n"),
    ("structure", "x: print('hi') = 4\n" + body()),
    # Private names are the program's own (allowed); the runtime's names are not.
    ("escape", body("_active_ = 1")),
    ("escape", body("x = _reentered_")),
    ("escape", "def _print(board):\n    return 1\n" + body()),
    ("structure", body() + "print(strategy([[0]]))\n"),
    ("structure", "if True:\n" + textwrap.indent(body(), "    ")),
    ("structure", "def move(board):\n    return 'W'\n"),
    ("structure", ""),
    ("structure", body("class A:", "    pass")),
    ("structure", "@staticmethod\n" + body()),
    ("structure", body("@h", "def g():", "    pass")),
    ("structure", "async def strategy(board):\n    return 'W'\n"),
    ("structure", body("def g():", "    yield 1")),
    ("structure", body("async def g():", "    await g()")),
    ("structure", body("with board as b:", "    pass")),
    ("structure", body("match board:", "    case list(x):", "        pass")),
    ("structure", body("match board:", "    case board.count:", "        pass")),
    ("structure", body("try:", "    pass", "except* ValueError:", "    pass")),
    # resource
    ("resource", body("x = 9 ** 9 ** 9")),
    ("resource", body("x = 10 ** 1000000")),
    ("resource", body("x = 2 ** 5000")),
    ("resource", body("x = board[0][0] ** 1000")),
    ("resource", body("x = pow(9, 9 ** 9)")),
    ("resource", body("x = pow(base=2, exp=10 ** 6)")),
    ("resource", body("p = pow", "x = p(9, 9 ** 9)")),
    ("resource", body("x = pow(*(9, 99999))")),
    ("resource", body("x = 1 << 10 ** 9")),
    ("resource", body("x = [0] * 10 ** 9")),
    ("resource", body("x = 'a' * 10 ** 8")),
    ("resource", body("x = 10 ** 6 * [1, 2]")),
    ("resource", body("x = ('a' * 10000) * 10000")),
    ("resource", body("x = ([0] * len(board)) * 10 ** 9")),
    ("resource", body("x = list(range(10 ** 9))")),
    ("resource", body("x = sum(range(3, 10 ** 12, 1))")),
    ("resource", body("x = 'a'.ljust(10 ** 9)")),
    ("resource", body(f"x = '{'a' * 12000}'")),
    ("resource", body("x = " + "9" * 2000)),
    ("resource", body("x *= 0", "x **= 10 ** 6")),
    # In-place repeats and shifts are bounded like the binary forms.
    ("resource", body("r = [0]", "r *= 10 ** 8")),
    ("resource", body("r = 'ab'", "r *= 200000")),
    ("resource", body("r = 1", "r <<= 10 ** 6")),
    # Format widths allocate: "{:>999999999}" is a gigabyte of padding.
    ("resource", body("x = '{:>999999999}'.format(1)")),
    ("resource", body("x = format(1, '999999999')")),
    ("resource", body("x = '%999999999d' % 1")),
    ("resource", body("x = f'{1:>999999999}'")),
    # Recursion through values handed to higher-order builtins, defaults and keys.
    ("loop", src('''
        def search(f, board, depth):
            if depth <= 0:
                return 0
            return sum(map(f, [f] * 2, [board, board], [depth - 1] * 2))

        def strategy(board):
            search(search, board, 2)
            return "W"
        ''')),
    ("loop", body("f = lambda g, n: sum(map(g, [g], [n - 1])) if n > 0 else 0", "f(f, 3)")),
    ("loop", body("def score(x, key=None):", "    return max([x], key=key) if key else x", "score(1, score)")),
    ("loop", body("def h(x, key=None):", "    return sorted([x], **{'key': key})", "h(1, h)")),
    ("loop", body("def h(xs, fs):", "    return list(filter(fs[0], xs))", "h([1], [h])")),
    ("loop", body("def h(g, x):", "    return list(map(list, map(map, [g], [[g]], [[x]])))", "h(h, 1)")),
    ("loop", src('''
        def strategy(board):
            work = [board]
            drive(work)
            return "W"

        def drive(work, step=strategy):
            return list(map(step, work))
        ''')),
]


@pytest.mark.parametrize("category,program", CHEATS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CHEATS)])
def test_cheats_are_rejected_with_their_category(category, program):
    verdict = check(program)
    assert not verdict.ok
    assert category in verdict.categories, "\n".join(map(str, verdict.violations))
    for v in verdict.violations:
        assert v.category == RULES[v.rule].category
        assert v.line >= 1 and v.col >= 1 and v.message


def test_every_category_has_cheats_here():
    assert {c for c, _ in CHEATS} == set(CATEGORIES) - {"syntax"}


# -- properties --------------------------------------------------------------------------------

# Cheat snippets (one statement each) and where they can be spliced into a clean program.
SNIPPETS = {
    "import": ["import os", "m = __import__('sys')"],
    "file_access": ["f = open('x')", "p = open", "os.listdir('.')"],
    "randomness": ["r = hash(board)", "r = id(board)", "r = random.random()"],
    "loop": ["for c in board: pass", "x = [c for c in board]", "k = list(iter(int, 1))"],
    "escape": ["x = board.__class__", "x = eval('1')", "x = getattr(board, 'copy')",
               "x = '{0.__class__}'.format(board)"],
    "state": ["strategy.n = 1", "global G"],
    "resource": ["x = 9 ** 9 ** 9", "x = [0] * 10 ** 9"],
}
SITES = [
    "def strategy(board):\n    {s}\n    return 'W'\n",
    "def strategy(board):\n    def helper(b):\n        {s}\n        return b\n    return 'WASD'[len(helper(board)) % 4]\n",
    "def strategy(board):\n    if board[0][0]:\n        {s}\n    else:\n        pass\n    return 'A'\n",
    "def strategy(board):\n    try:\n        {s}\n    except Exception:\n        pass\n    return 'S'\n",
]


@FAST
@given(st.sampled_from(sorted(SNIPPETS)), st.data())
def test_spliced_cheats_are_rejected_wherever_they_go(category, data):
    snippet = data.draw(st.sampled_from(SNIPPETS[category]))
    site = data.draw(st.sampled_from(SITES))
    program = site.format(s=snippet)
    assert category in check(program).categories, program


_FULLWIDTH = {c: chr(ord(c) - ord("a") + ord("ａ")) for c in "abcdefghijklmnopqrstuvwxyz"}


@FAST
@given(st.sampled_from(["eval", "open", "exec", "getattr", "hash", "globals", "compile", "vars"]), st.data())
def test_nfkc_lookalikes_are_the_name_they_look_like(name, data):
    mask = data.draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    spelled = "".join(_FULLWIDTH[c] if m else c for c, m in zip(name, mask))
    plain = check(body(f"x = {name}"))
    disguised = check(body(f"x = {spelled}"))
    assert not disguised.ok
    assert disguised.categories == plain.categories
    assert [v.rule for v in disguised.violations] == [v.rule for v in plain.violations]


@FAST
@given(st.lists(st.sampled_from(CLEAN), min_size=1, max_size=1), st.sampled_from(["dir", "time", "id", "hash",
                                                                                      "open", "type", "random"]))
def test_locals_may_shadow_forbidden_names(programs, name):
    # A local variable that happens to be called `dir` or `time` is not the builtin or module.
    program = body(f"{name} = 3", f"y = {name} + 1")
    assert check(program).ok, check(program).violations
    assert check(src(programs[0])).ok


@FAST
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises_and_reports_sorted_unique(text):
    verdict = check(text)
    assert isinstance(verdict, Verdict)
    assert verdict.ok == (not verdict.violations)
    keys = [(v.line, v.col, v.rule) for v in verdict.violations]
    assert keys == sorted(set(keys))
    assert all(isinstance(v, Violation) and v.category in CATEGORIES for v in verdict.violations)


# -- hostile input -------------------------------------------------------------------------------

@pytest.mark.parametrize("source,rule", [
    (b"def strategy(board):\n    return '\xff'\n", "syntax-error"),
    ("def strategy(board):\n    return 'W'\0\n", "syntax-error"),
    ("def strategy(board):\n    return '\ud800'\n", "syntax-error"),
    (None, "syntax-error"),
    (12, "syntax-error"),
    ("def strategy(board):\n    return (\n", "syntax-error"),
    ("x = " + "9" * 5000, "syntax-error"),  # beyond int's digit limit: ast.parse raises ValueError
    ("x" * 10_000_000, "too-long"),
    (b"x" * 10_000_000, "too-long"),
    ("é" * 15_000, "too-long"),  # 15k characters, 30k bytes
    ("-" * 10_000 + "1", "too-deep"),
    ("(" * 10_000 + ")" * 10_000, "syntax-error"),
    ("x = " + "+".join(["a"] * 5_000), "too-deep"),
    ("def strategy(board):\n    return " + "not " * 400 + "0\n", "too-deep"),
    ("x = " + "lambda: " * 300 + "0\n", "too-deep"),
])
def test_hostile_input_is_a_violation_not_an_exception(source, rule):
    verdict = check(source)
    assert not verdict.ok
    assert rule in {v.rule for v in verdict.violations}, verdict.violations


def test_deep_but_legal_nesting_is_fine():
    assert check("def strategy(board):\n    return 'WASD'[len(" + "[" * 150 + "]" * 150 + ")]\n").ok


def test_bytes_are_accepted_like_text():
    program = src(CLEAN[0])
    assert check(program.encode()) == check(program)


def test_syntax_errors_carry_their_line():
    verdict = check("def strategy(board):\n    x = 1\n    return 'W\n")
    assert [(v.rule, v.category, v.line) for v in verdict.violations] == [("syntax-error", "syntax", 3)]


def test_violations_are_sorted_and_deduplicated():
    program = body("x = open", "y = eval('1') + open('f').read()", "z = open")
    verdict = check(program)
    places = [(v.line, v.col) for v in verdict.violations]
    assert places == sorted(places)
    assert len({(v.line, v.col, v.rule) for v in verdict.violations}) == len(verdict.violations)
    assert [v.line for v in verdict.violations if v.rule == "no-file-access"] == [2, 3, 4]


# -- the policy is data --------------------------------------------------------------------------

LOOPY = body("t = 0", "for row in board:", "    t += sum(row)", "x = [c for c in board[0] if c]",
             "y = {k: v for k, v in zip('ab', 'cd')}")


def test_relaxing_loops_and_comprehensions_lets_them_through():
    assert {"no-loop", "no-comprehension"} <= {v.rule for v in check(LOOPY).violations}
    loops = dataclasses.replace(DEFAULT_POLICY, allow_loops=True)
    assert {v.rule for v in check(LOOPY, loops).violations} == {"no-comprehension"}
    both = dataclasses.replace(loops, allow_comprehensions=True)
    assert check(LOOPY, both).ok, check(LOOPY, both).violations
    assert "no-loop" not in both.describe() and "`for`" not in both.describe()
    # Relaxing loops does not relax anything else.
    assert not check(body("for r in board:", "    x = open"), loops).ok


def test_comprehension_scopes_resolve_names():
    policy = dataclasses.replace(DEFAULT_POLICY, allow_comprehensions=True)
    assert check(body("x = [open for open in board]"), policy).ok
    assert "file_access" in check(body("x = [open for c in board]"), policy).categories
    assert check(body("x = [(y := c) for c in board]", "z = y"), policy).ok


def test_other_switches():
    recursive = body("def h(n):", "    return h(n - 1) if n else 0")
    assert check(recursive, dataclasses.replace(DEFAULT_POLICY, allow_recursion=True)).ok
    # Module-level helpers and constants are on by default; each has a switch.
    helpers = "def helper(b):\n    return 'W'\n" + body()
    assert check(helpers).ok
    assert [v.rule for v in check(helpers, dataclasses.replace(DEFAULT_POLICY, allow_module_helpers=False))
            .violations] == ["module-level-code"]
    constant = "N: int = 4\nA, B = 1, -2\n" + body()
    assert check(constant).ok
    no_constants = dataclasses.replace(DEFAULT_POLICY, allow_module_constants=False)
    assert {v.rule for v in check(constant, no_constants).violations} == {"module-level-code"}
    assert "helper functions" in DEFAULT_POLICY.describe() and "SIZE = 4" in DEFAULT_POLICY.describe()
    closed = dataclasses.replace(no_constants, allow_module_helpers=False)
    assert "put helper functions and constants inside `strategy`" in closed.explain("module-level-code")
    # A bare `except:` is allowed by default (nothing a strategy can receive needs BaseException).
    bare = body("try:", "    pass", "except:", "    pass")
    assert check(bare).ok
    strict = dataclasses.replace(DEFAULT_POLICY, allow_bare_except=False)
    assert [v.category for v in check(bare, strict).violations] == ["attribute"]
    # The program's own private names are allowed by default (the runtime takes them too).
    private = "def _score(board):\n    return 1\n" + body("_x = _score(board)")
    assert check(private).ok and "private-name" not in {r.id for r in DEFAULT_POLICY.active_rules()}
    no_private = dataclasses.replace(DEFAULT_POLICY, allow_private_names=False)
    assert {v.rule for v in check(private, no_private).violations} == {"private-name"}
    named = "def play(board):\n    return 'W'\n"
    assert check(named, dataclasses.replace(DEFAULT_POLICY, strategy_name="play")).ok


def test_tightening_and_extending_the_allowlists():
    no_print = dataclasses.replace(DEFAULT_POLICY, allowed_builtins=DEFAULT_POLICY.allowed_builtins - {"print"})
    assert check(body("print(1)")).ok
    assert [v.rule for v in check(body("print(1)"), no_print).violations] == ["builtin-not-allowed"]
    # A builtin the runtime never gives cannot be allowed: the policy is refused when it is built, in one line.
    with pytest.raises(ValueError, match="builtin 'bin' cannot be allowed") as info:
        dataclasses.replace(DEFAULT_POLICY, allowed_builtins=DEFAULT_POLICY.allowed_builtins | {"bin"})
    assert "\n" not in str(info.value) and not check(body("x = bin(4)")).ok
    no_lambda = dataclasses.replace(DEFAULT_POLICY, allowed_nodes=DEFAULT_POLICY.allowed_nodes - {"Lambda"})
    assert not check(body("x = (lambda: 1)()"), no_lambda).ok
    no_sort = dataclasses.replace(DEFAULT_POLICY, allowed_methods=DEFAULT_POLICY.allowed_methods - {"sort"})
    # An attribute outside the allowlist is `unknown-attribute` (category attribute).
    assert [v.rule for v in check(body("board.sort()"), no_sort).violations] == ["unknown-attribute"]
    small = dataclasses.replace(DEFAULT_POLICY, max_pow_exponent=4, max_source_bytes=200)
    assert "no-big-number" in {v.rule for v in check(body("x = 2 ** 5"), small).violations}
    assert [v.rule for v in check(body(*["x = 1"] * 30), small).violations] == ["too-long"]


def test_policy_is_frozen_and_hashable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_POLICY.allow_loops = True  # type: ignore[misc]
    assert hash(DEFAULT_POLICY) == hash(Policy())
    assert Policy() == DEFAULT_POLICY


def test_rules_registry_and_describe():
    assert len(RULES) == len(DEFAULT_POLICY.rules)
    for rule in DEFAULT_POLICY.rules:
        assert rule.category in CATEGORIES
        text = DEFAULT_POLICY.explain(rule.id)
        assert text and "\n" not in text and "{" not in text.replace("{{", "").replace("{0", "")
    text = DEFAULT_POLICY.describe()
    lines = text.splitlines()
    assert all(line.startswith("- ") for line in lines)
    for word in ("import", "open", "random", "for", "recursion", "eval", "`_`", "global", "class",
                 "len, list, map, max, min", "exponents at most 100"):
        assert word in text, word
    assert "syntax-error" not in text and "checker" not in text


def test_every_rule_can_fire():
    fired = set()
    for _, program in CHEATS:
        fired |= {v.rule for v in check(program).violations}
    fired |= {v.rule for v in check("-" * 10_000 + "1").violations}
    fired |= {v.rule for v in check("x" * 30_000).violations}
    fired |= {v.rule for v in check("def (").violations}
    fired |= {v.rule for v in check(src(CLEAN[1]), dataclasses.replace(DEFAULT_POLICY, max_check_steps=50)).violations}
    fired |= {v.rule for v in check(body("_x = 1"), dataclasses.replace(DEFAULT_POLICY, allow_private_names=False))
              .violations}
    withheld = dataclasses.replace(DEFAULT_POLICY, withheld_api_names=frozenset({"legal_moves"}))
    fired |= {v.rule for v in check(body("x = legal_moves(board)"), withheld).violations}
    assert set(RULES) - fired <= {"check-error"}, set(RULES) - fired


# -- the command line ------------------------------------------------------------------------------

def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codepolicy", "check", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_cli_check(tmp_path, capsys):
    from codepolicy.cli import main

    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(src(CLEAN[0]))
    bad.write_text(body("x = eval('1')", "for r in board:", "    pass"))
    assert main(["check", str(good)]) == 0
    assert "compliant" in capsys.readouterr().out
    assert main(["check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:2:9: no-dynamic-code (escape)" in out and "no-loop (loop)" in out
    assert DEFAULT_POLICY.explain("no-loop") in out and "rejected (2 violations)" in out
    assert main(["check", str(bad), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and [v["rule"] for v in data["violations"]] == ["no-dynamic-code", "no-loop"]
    assert data["violations"][0]["explanation"] == DEFAULT_POLICY.explain("no-dynamic-code")
    assert main(["check", str(tmp_path / "missing.py")]) == 2
    assert "missing.py" in capsys.readouterr().err
    assert main(["check", str(tmp_path)]) == 2


def test_cli_completion_and_stdin(tmp_path, capsys):
    from codepolicy.cli import main

    completion = tmp_path / "c.txt"
    completion.write_text("Sure!\n```python\n" + src(CLEAN[0]) + "```\nThat is all.")
    assert main(["check", "--completion", str(completion)]) == 0
    assert main(["check", "--completion", "--json", str(completion)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["source"].startswith("def strategy")
    completion.write_text("I would go left.")
    assert main(["check", "--completion", str(completion)]) == 1
    assert "no_code" in capsys.readouterr().out
    run = _cli("-", stdin=body("x = open"))
    assert run.returncode == 1 and "<stdin>:2:9: no-file-access" in run.stdout
    assert _cli("-", stdin=src(CLEAN[1])).returncode == 0


def test_import_sandbox_is_light():
    code = ("import sys, sandbox; assert 'sandbox.runner' not in sys.modules; "
            "assert 'torch' not in sys.modules; assert callable(sandbox.check); "
            "print(sorted(set(sandbox.__all__) - set(dir(sandbox))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("expr", [
    "str(list(map(lambda r: r.copy, board)))",          # a container of bound methods, built by map
    "str([*map(lambda r: r.copy, board)])",
    "str(sorted(zip(board, map(lambda r: r.copy, board))))",
    "'{}'.format(tuple(filter(None, [lambda: 0])))",
])
def test_addresses_through_built_containers_are_randomness(expr):
    verdict = check(f"def strategy(board):\n    t = {expr}\n    return 'W'\n")
    assert "randomness" in verdict.categories, verdict.violations


@pytest.mark.parametrize("expr", [
    "str(list(map(lambda r: r[0], board)))", "str(sorted(board, key=len))", "str(list(filter(None, board)))",
])
def test_text_of_built_containers_of_values_is_fine(expr):
    assert check(f"def strategy(board):\n    t = {expr}\n    return 'W'\n").ok


# -- annotations, the memo and the work bound ------------------------------------------------------

_TYPE_NAMES = st.sampled_from(["int", "str", "list", "bool", "float", "None", "'str'", "dict", "tuple"])
_CODE = st.sampled_from(["helper()", "(x := int)", "(lambda: int)", "[t for t in 'ab']", "print('x')",
                         "(yield)", "int if True else str", "not int", "-1", "{int: str}", "*args"])


@st.composite
def _annotations(draw, depth: int = 2) -> str:
    """Type expressions (names, generics, unions, strings) with, sometimes, a piece of code inside."""
    if depth <= 0 or draw(st.integers(0, 2)) == 0:
        return draw(st.one_of(_TYPE_NAMES, _CODE) if draw(st.integers(0, 4)) == 0 else _TYPE_NAMES)
    form = draw(st.sampled_from(["generic", "union", "pair"]))
    a, b = draw(_annotations(depth - 1)), draw(_annotations(depth - 1))
    if form == "generic":
        return f"list[{a}]"
    if form == "union":
        return f"{a} | {b}"
    return f"dict[{a}, {b}]"


@FAST
@given(_annotations(), _annotations(), st.sampled_from(["module", "nested"]))
def test_what_check_accepts_in_an_annotation_compiles_and_loads(param, returns, where):
    import warnings

    from sandbox.restricted import LoadError, compile_strategy, load_strategy

    if where == "module":
        source = f"def helper():\n    return int\n\ndef strategy(board: {param}) -> {returns}:\n    return 'W'\n"
    else:
        source = body(f"def inner(x: {param}) -> {returns}:", "    return x")
    try:
        compile(source, "<annotated>", "exec")
    except SyntaxError:
        assert not check(source).ok  # code Python itself refuses in an annotation is never accepted
        return
    verdict = check(source)
    code = any(piece in param + returns for piece in ("helper()", ":=", "lambda", " for ", "print(", "yield", " if ",
                                             "not ", "-1", "{", "*args"))
    assert verdict.ok != code, (source, verdict.violations)
    if verdict.ok:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            compile_strategy(source)
            try:
                load_strategy(source)
            except LoadError as exc:  # a runtime error is the program's own; a violation would be ours
                assert exc.outcome != "violation", exc.message
    else:
        assert {v.rule for v in verdict.violations} <= {"annotation-not-type", "no-generator", "module-level-code",
                                                        "no-comprehension"}


def test_check_is_memoised_per_source_and_policy():
    program = src(CLEAN[1])
    first = check(program)
    assert check(program) is first                      # the second call is the memo's answer
    assert check(program, Policy()) is first            # an equal policy shares it
    other = dataclasses.replace(DEFAULT_POLICY, max_depth=150)
    assert check(program, other) == first and check(program, other) is not first
    unhashable = dataclasses.replace(DEFAULT_POLICY, allowed_builtins=set(DEFAULT_POLICY.allowed_builtins))
    assert check(program, unhashable) == first          # no memo for it, the same verdict
    assert check(program.encode()) == first


@pytest.mark.parametrize("steps", [1, 30, 200, 2_000])
def test_exhausting_the_work_bound_is_a_resource_violation(steps):
    policy = dataclasses.replace(DEFAULT_POLICY, max_check_steps=steps)
    verdict = check(src(CLEAN[1]), policy)
    if not verdict.ok:
        assert [(v.rule, v.category) for v in verdict.violations] == [("too-complex", "resource")]
    assert not check(src(CLEAN[1]), dataclasses.replace(DEFAULT_POLICY, max_check_steps=1)).ok


def _reversed_alias_chain(n: int) -> str:
    links = "".join(f"    p{i + 1} = p{i}\n" for i in range(n - 1, -1, -1))
    return "def g(file=0):\n    return 'W'\ndef strategy(board):\n" + links + "    p0 = print\n    return g(file=1)\n"


def _escaping_lambdas(n: int) -> str:
    return "def strategy(board):\n    fs = [" + "lambda a: a(), " * n + "]\n    return 'W'\n"


@pytest.mark.parametrize("build", [_reversed_alias_chain, _escaping_lambdas])
def test_checker_work_grows_linearly_on_adversarial_input(build):
    # Work counted in the checker's own steps, not time: doubling the program at most doubles the
    # steps (plus a constant), where the old fixed-point / pairwise passes squared them.
    from sandbox.check import _Checker

    def steps(n: int) -> int:
        checker = _Checker(DEFAULT_POLICY)
        checker.run(__import__("ast").parse(build(n)))
        return checker.steps

    small, large = steps(200), steps(800)
    assert large <= 4 * small + 100, (small, large)


def test_print_alias_chains_in_any_order_are_followed():
    assert "file_access" in check(_reversed_alias_chain(50).replace("g(file=1)", "p50('x', file=None)")).categories
    assert check(_reversed_alias_chain(50)).ok


@pytest.mark.parametrize("program", [
    # Constructs honest programs use that the policy allows: each runs in the sandbox (the
    # clean-program grammar draws them too).
    body("s = frozenset(board[0])", "c = chr(ord('W'))", "w = board[0][slice(0, 2)]", "t = format(1.5, '.2f')",
         "tpl = '{} {}'", "u = tpl.format(1, 2)", "try:", "    x = board[9]", "except:", "    x = 0"),
    "def score(board, weights=[1, 2, 3, 4]):\n    return sum(map(lambda r: sum(map(lambda a, b: a * b, r, weights)), board))\n"
    + body("x = score(board)"),
    "SIZE = 4\nLAST = SIZE - 1\nBIG = 2 ** 10\nLOW = -float('inf')\nscore = lambda b: sum(map(sum, b))\n"
    + body("x = board[LAST][LAST] < BIG and LOW < score(board)") + "handler = strategy\n",
])
def test_harmless_constructs_pass(program):
    assert check(program).ok, check(program).violations


def test_recursion_messages_name_the_path():
    message = check(CHEATS_BY_KEY["map_self"]).violations[0].message
    assert "`search`" in message and "`map`" in message and "used as a value" in message


CHEATS_BY_KEY = {"map_self": src('''
    def search(f, board, depth):
        return 0 if depth <= 0 else sum(map(f, [f] * 2, [board, board], [depth - 1] * 2))

    def strategy(board):
        search(search, board, 2)
        return "W"
    ''')}
