"""sandbox.restricted: the RestrictedPython layer runs what sandbox.check accepts, with Python's semantics.

* Every syntax the policy allows has a visitor in :class:`StrategyTransformer` (nothing falls
  through to RestrictedPython's "not allowed"), and every refusal RestrictedPython can raise is
  either supported here or refused by the check with the same category (the sweep below).
* Rewritten constructs keep Python's semantics: generated clean programs answer the same move
  restricted and plain; ``x[i] += v`` evaluates its parts once, in Python's order, in place.
* The builtins iterate snapshots of lists in any program that can grow one, so a callback that
  appends cannot loop (re-entry and annotations: tests/test_reentry.py).
* The ``str.format`` rule and the internal attribute names are shared with the check: static and
  runtime agree on every template and every attribute.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import textwrap
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alarm import time_limit

from sandbox.check import check
from sandbox.policy import (
    COMPREHENSION_NODES,
    DEFAULT_POLICY,
    INTERNAL_ATTRIBUTES,
    LOOP_NODES,
    format_problem,
    is_internal_attribute,
    is_private_name,
)
from sandbox.restricted import (
    GUARD,
    RUNTIME_NAMES,
    SAFE_BUILTIN_NAMES,
    LoadError,
    SandboxViolation,
    StrategyTransformer,
    _guarded_getattr,
    load_strategy,
    make_builtins,
    restricted_globals,
    set_allowed_attributes,
)
from sandbox.strategies import clean_strategies

BOARD = [[0, 2, 4, 8], [16, 32, 64, 128], [256, 512, 1024, 2048], [0, 0, 2, 2]]
TILES = (0, 0, 0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
boards = st.lists(st.lists(st.sampled_from(TILES), min_size=4, max_size=4), min_size=4, max_size=4)


def src(text: str) -> str:
    return textwrap.dedent(text).strip("\n") + "\n"


def call_armed(fn, *args):
    """Call a loaded strategy the way the worker does: armed, violations sticky."""
    GUARD.violation = ""
    try:
        GUARD.armed = True
        return fn(*args)
    finally:
        GUARD.armed = False


def run_restricted(source: str, board=None):
    """(value, violation) of the restricted strategy on a fresh copy of ``board``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        fn = load_strategy(source)
    try:
        value = call_armed(fn, [row[:] for row in (board or BOARD)])
    except SandboxViolation:
        value = None
    return value, GUARD.violation


def run_plain(source: str, board=None):
    namespace: dict = {}
    exec(compile(source, "<plain>", "exec"), namespace)  # our own test programs, trusted
    with contextlib.redirect_stdout(io.StringIO()):
        return namespace["strategy"]([row[:] for row in (board or BOARD)])


# -- structure: the transformer covers the policy ---------------------------------------------------

def test_every_allowed_node_has_a_visitor():
    everything = DEFAULT_POLICY.nodes() | LOOP_NODES | COMPREHENSION_NODES
    missing = sorted(k for k in everything if not hasattr(StrategyTransformer, f"visit_{k}"))
    assert missing == []


def test_policy_builtins_are_safe_builtins_and_methods_are_not_internal():
    assert DEFAULT_POLICY.allowed_builtins <= set(SAFE_BUILTIN_NAMES)
    assert not [m for m in DEFAULT_POLICY.allowed_methods if is_internal_attribute(m)]


# Every refusal RestrictedPython's transformer can raise, on syntax our policy lets through the
# parser: either it runs here ("runs": check accepts, load and call succeed without a violation
# and give Python's answer) or the check refuses it with the category given.
SWEEP = [
    # names RestrictedPython reserves (print, printed, builtins, breakpoint) and *__roles__
    ("runs", "def strategy(board):\n    printed = 'W'\n    print(printed)\n    return printed\n"),
    ("runs", "def strategy(board):\n    builtins = 'A'\n    breakpoint = builtins\n    return breakpoint\n"),
    ("runs", "def strategy(board):\n    def print(*a):\n        return 'S'\n    return print(1)\n"),
    ("runs", "def strategy(board):\n    print = lambda *a: 'D'\n    return print()\n"),
    ("runs", "def helper(printed, builtins=1):\n    return 'WASD'[(printed + builtins) % 4]\n"
             "def strategy(board):\n    return helper(printed=2)\n"),
    ("runs", "def strategy(board):\n    try:\n        x = 1 // 0\n    except ZeroDivisionError as printed:\n"
             "        x = len(str(printed))\n    return 'WASD'[x % 4]\n"),
    ("runs", "def strategy(board):\n    match board[0]:\n        case [printed, *builtins]:\n"
             "            return 'WASD'[(printed + len(builtins)) % 4]\n    return 'W'\n"),
    ("runs", "printed = 3\ndef strategy(board):\n    print(printed)\n    return 'WASD'[printed]\n"),
    ("runs", "def strategy(board):\n    x__roles__ = 'S'\n    return x__roles__\n"),
    ("runs", "def strategy(board):\n    def eval(x):\n        return x\n    exec = eval\n    return exec(eval('A'))\n"),
    ("escape", "def strategy(board):\n    return eval('1')\n"),
    # the program's own private names, everywhere a name can be bound or read
    ("runs", "def strategy(board):\n    _x = 1\n    return 'WASD'[_x]\n"),
    ("runs", "_SIZE = 4\ndef _corner_score(_row, _w=2):\n    return _row[0] * _w\n"
             "def strategy(board):\n    _f = lambda _v: _v + 1\n    _s = _corner_score(board[0], _w=3)\n"
             "    try:\n        _q = 1 // 0\n    except ZeroDivisionError as _e:\n        _q = len(str(_e))\n"
             "    match board[0]:\n        case [_a, *_rest]:\n            _q += _a + len(_rest)\n"
             "    return 'WASD'[(_f(_s) + _q + (_n := _SIZE)) % 4]\n"),
    ("escape", "def strategy(board):\n    __x = 1\n    return 'W'\n"),
    ("escape", "def strategy(board):\n    _active_ = [True]\n    return 'W'\n"),
    # type: one argument is the class of a value; anything else builds classes
    ("runs", "def strategy(board):\n    return 'W' if type(board) is list and type(board[0][0]) == int else 'A'\n"),
    ("runs", "def strategy(board):\n    return 'S' if type(map(abs, board[0])) is map else 'A'\n"),
    ("escape", "def strategy(board):\n    t = type\n    return 'W'\n"),
    ("escape", "def strategy(board):\n    return type('T', (), {}) and 'W'\n"),
    ("escape", "def strategy(board):\n    return type(int)('T', (), {}) and 'W'\n"),
    # print evaluated where a def runs (defaults) and through lambdas
    ("runs", "def helper(x, out=print):\n    out(x)\n    return x\n"
             "def strategy(board):\n    return helper('W')\n"),
    ("runs", "def strategy(board):\n    def inner(y, out=print):\n        out(y, sep='')\n        return y\n"
             "    show = lambda v, p=print: p(v)\n    show(1)\n    return inner('S')\n"),
    # attributes
    ("escape", "def strategy(board):\n    return board.__class__\n"),
    ("escape", "def strategy(board):\n    return board.a__roles__\n"),
    ("escape", "def strategy(board):\n    return board.gi_frame\n"),
    ("state", "def strategy(board):\n    board.x += 1\n    return 'W'\n"),
    # in-place item and slice operators
    ("runs", "def strategy(board):\n    board[0][1] += 3\n    row = board[1]\n    row[-1] //= 2\n"
             "    row[1:3] *= 1\n    row[:] += [5]\n    return 'WASD'[(row[-1] + board[0][1]) % 4]\n"),
    ("runs", "def strategy(board):\n    t = {'W': 1}\n    t['W'] += 2\n    t['W'] **= 2\n    t['W'] <<= 1\n"
             "    t['W'] |= 4\n    return 'WASD'[t['W'] % 4]\n"),
    # match statements
    ("runs", "def strategy(board):\n    match board[2][3], board[0]:\n        case (2048, [0, *_]):\n"
             "            return 'A'\n        case (x, _) if x > 4:\n            return 'S'\n"
             "        case _:\n            return 'W'\n"),
    ("runs", "def strategy(board):\n    match {'k': board[0][1], 'j': 2}:\n        case {'k': 2 | 4 as v, **rest}:\n"
             "            return 'WASD'[(v + len(rest)) % 4]\n    return 'W'\n"),
    ("runs", "def strategy(board):\n    match board[0][0] == 0:\n        case True:\n            return 'D'\n"
             "        case False:\n            return 'A'\n"),
    ("runs", "def strategy(board):\n    match -1:\n        case -1:\n            return 'S'\n    return 'W'\n"),
    ("structure", "def strategy(board):\n    match board:\n        case list():\n            pass\n    return 'W'\n"),
    ("structure", "def strategy(board):\n    match 1:\n        case board.count:\n            pass\n    return 'W'\n"),
    ("structure", "def strategy(board):\n    match {}:\n        case {board.count: 1}:\n            pass\n"
                  "    return 'W'\n"),
    # annotated assignments
    ("runs", "N: int = 2\ndef strategy(board):\n    order: str = 'WASD'\n    k: int\n    return order[N]\n"),
    ("runs", "def strategy(board):\n    board[0][0]: int = 3\n    return 'WASD'[board[0][0]]\n"),
    # other refusals of RestrictedPython, refused by the check too
    ("state", "def strategy(board):\n    x = 0\n    def h():\n        nonlocal x\n    return 'W'\n"),
    ("structure", "def strategy(board):\n    try:\n        pass\n    except* ValueError:\n        pass\n"
                  "    return 'W'\n"),
    ("structure", "class A(metaclass=type):\n    pass\ndef strategy(board):\n    return 'W'\n"),
    ("structure", "async def strategy(board):\n    return 'W'\n"),
    ("import", "from os import *\ndef strategy(board):\n    return 'W'\n"),
]


@pytest.mark.parametrize("expect,source", SWEEP, ids=[f"{e}-{i}" for i, (e, _) in enumerate(SWEEP)])
def test_restricted_python_refusals_are_supported_or_refused_alike(expect, source):
    verdict = check(source)
    if expect != "runs":
        assert expect in verdict.categories, verdict.violations
        return
    assert verdict.ok, verdict.violations
    value, violation = run_restricted(source)
    assert violation == ""
    assert value == run_plain(source)


def test_print_output_is_discarded_and_print_stays_the_builtin_elsewhere(capsys):
    source = src('''
        def show(x):
            print("shown", x, sep="", end="")
            return x
        def strategy(board):
            print = lambda *a: "S"
            return show(print())
        ''')
    assert check(source).ok
    assert run_restricted(source) == ("S", "")
    assert capsys.readouterr().out == ""


# -- semantics -------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clean_strategies(), boards)
def test_clean_programs_answer_the_same_restricted_and_plain(source, board):
    assert run_restricted(source, board) == (run_plain(source, board), "")


def test_item_augassign_evaluates_each_part_once_in_python_order():
    source = src('''
        def strategy(board):
            log = []
            rows = [[1, 2], [3, 4]]
            alias = rows[1]
            def box():
                log.append("box")
                return rows
            def key():
                log.append("key")
                return 1
            def value():
                log.append("value")
                return [9]
            box()[key()] += value()
            box()[0][key():] *= 2
            return "WASD"[(len(log) + len(alias) + rows[0][-1]) % 4] + "|".join(log) + str(rows)
        ''')
    assert check(source).ok
    value, violation = run_restricted(source)
    assert violation == "" and value == run_plain(source)
    assert "box|key|value|box|key" in value and "[3, 4, 9]" in value  # the same list, extended in place


def test_annotation_without_value_keeps_the_name_local():
    source = src('''
        N = 2
        def strategy(board):
            def h():
                N: int
                return N
            try:
                return "WASD"[h()]
            except UnboundLocalError:
                return "S"
        ''')
    assert check(source).ok
    assert run_restricted(source) == ("S", "") and run_plain(source) == "S"


# -- snapshots: a callback that appends cannot loop forever ------------------------------------------

APPENDING = [
    "r = list(map(lambda v: xs.append(v) or v, xs))",
    "r = list(filter(lambda v: xs.append(v) or True, xs))",
    "r = max(xs, key=lambda v: xs.append(v) or v)",
    "r = min(xs, key=lambda v: xs.append(v) or v)",
    "xs.extend(map(abs, xs))",
    "xs.extend(zip(xs))",
    "xs.extend(enumerate(xs))",
    "xs.extend(reversed(xs))",
    "xs.extend(filter(None, xs))",
    "xs += map(abs, xs)",
]


@pytest.mark.parametrize("statement", APPENDING)
def test_appending_while_iterating_finishes(statement):
    source = f"def strategy(board):\n    xs = [1, 2, 3]\n    {statement}\n    return 'WASD'[len(xs) % 4]\n"
    assert check(source).ok, check(source).violations
    with time_limit(5):
        value, violation = run_restricted(source)
    assert violation == "" and value in ("W", "A", "S", "D")


def test_the_issue_example_finishes_in_the_sandbox():
    from sandbox.records import Limits
    from sandbox.runner import run

    source = src('''
        def strategy(board):
            xs = list(range(4))
            grown = list(map(lambda v: xs.append(v) or v, xs))
            return "WASD"[len(grown) % 4]
        ''')
    assert check(source).ok
    records = run(source, game="2048", seeds=(0,), limits=Limits(max_moves=5, move_seconds=2.0))
    assert [r.outcome for r in records] != ["timeout"], records
    assert all(r.outcome in {"finished", "won", "max_moves", "stuck"} for r in records), records


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-5, 5), max_size=6), st.lists(st.integers(-5, 5), max_size=6), st.integers(-2, 2))
def test_snapshot_builtins_give_the_builtins_results(xs, ys, start):
    table = make_builtins()
    assert list(table["map"](abs, xs)) == list(map(abs, xs))
    assert list(table["map"](max, xs, ys)) == list(map(max, xs, ys))
    assert list(table["filter"](None, xs)) == list(filter(None, xs))
    assert list(table["zip"](xs, ys)) == list(zip(xs, ys))
    assert list(table["enumerate"](xs, start)) == list(enumerate(xs, start))
    assert list(table["enumerate"](xs, start=start)) == list(enumerate(xs, start=start))
    assert list(table["reversed"](xs)) == list(reversed(xs))
    assert list(table["reversed"](range(len(xs)))) == list(reversed(range(len(xs))))
    for name in ("max", "min"):
        fn, real = table[name], getattr(__builtins__, name) if not isinstance(__builtins__, dict) \
            else __builtins__[name]
        assert fn(xs, default=None) == real(xs, default=None)
        assert fn(xs or [0], key=lambda v: -v) == real(xs or [0], key=lambda v: -v)
        assert fn(1, 2, *ys) == real(1, 2, *ys)
    assert isinstance(table["map"](abs, xs), map) and isinstance(table["zip"](xs), zip)


def test_stand_ins_print_and_answer_isinstance_like_the_builtins():
    # A function's text would show its memory address: a randomness source `str(max)` could read.
    source = src('''
        def strategy(board):
            text = str(max) + str(map) + "{}".format(zip) + str([min, filter, reversed, enumerate])
            kinds = isinstance(map(abs, board[0]), map), isinstance(zip(board), (int, zip)), isinstance(3, filter)
            return text + str(kinds)
        ''')
    assert check(source).ok
    value, violation = run_restricted(source)
    assert violation == "" and value == run_plain(source)
    assert "0x" not in value


# -- format templates: one rule, static and runtime ---------------------------------------------------

PIECES = ["{", "}", "{}", "{0}", "{1}", "{a}", "{0[0]}", "{a[1]}", "{0[k]}", "{0.x}", "{a.y}", "{0[0].z}",
          ":", ".2f", ">8", ",", "{w}", "{w.q}", "{w[0]}", "!r", "!s", "[", "]", ".", "0", "a", "x", " ",
          "{{", "}}", "{:{w}}", "{0:{1.x}}", "{:{w}.{w}}", "{0:{1:{2.x}}}", "{!r:>{w}}"]
templates = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)


class _Spy:
    """Records every attribute read through it; items are more spies."""

    log: list[str] = []

    def __getattribute__(self, name):
        _Spy.log.append(name)
        return object.__getattribute__(self, name)

    def __getitem__(self, key):
        return _Spy()

    def __format__(self, spec):
        return "spy"

    def __index__(self):
        return 3


def test_the_spy_sees_attribute_fields():
    _Spy.log = []
    with contextlib.suppress(AttributeError):
        "{0[1]:>{1}} {0.x}".format(_Spy(), 3)
    assert _Spy.log == ["x"]


@settings(max_examples=300, deadline=None)
@given(templates)
def test_templates_without_a_problem_never_reach_an_attribute(template):
    _Spy.log = []
    spies = {k: _Spy() for k in ("a", "w", "k")}
    with contextlib.suppress(Exception):
        template.format(_Spy(), _Spy(), _Spy(), **spies)
    with contextlib.suppress(Exception):
        template.format_map(spies)
    if format_problem(template) is None:
        assert _Spy.log == [], (template, _Spy.log)


@settings(max_examples=80, deadline=None)
@given(templates, st.sampled_from(["format", "format_map"]))
def test_check_and_runtime_agree_on_every_template(template, method):
    call = (f"{template!r}.format(board, board[0], 2, a=board, w=3, k=1)" if method == "format"
            else f"{template!r}.format_map({{'a': board, 'w': 3, 'k': 1}})")
    source = (f"def strategy(board):\n    try:\n        x = {call}\n    except Exception:\n        pass\n"
              "    return 'W'\n")
    static = "no-format-attribute" in {v.rule for v in check(source).violations}
    _value, violation = run_restricted(source)
    assert static == bool(violation), (template, static, violation)
    assert static == (format_problem(template) is not None)


def test_unbound_str_format_is_guarded_at_run_time():
    # The check refuses `str.format(...)` outright; the runtime alone must still stop the escape.
    source = "def strategy(board):\n    return str.format('{0.__class__}', board)\n"
    assert "escape" in check(source).categories
    assert "str.format" in run_restricted(source)[1]
    ok = "def strategy(board):\n    return str.format('{0[0]:>3}', 'W')\n"
    assert run_restricted(ok) == ("  W", "")


# -- attributes: one list of internal names ------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(INTERNAL_ATTRIBUTES) + ["f_lasti", "co_names", "func_globals", "im_self"])
def test_internal_attributes_are_escapes_in_both_layers(name):
    verdict = check(f"def strategy(board):\n    return board.{name}\n")
    assert [v.rule for v in verdict.violations] == ["internal-attribute"]
    assert verdict.categories == {"escape"}
    with pytest.raises(SandboxViolation):
        call_armed(_guarded_getattr, BOARD, name)


def test_unknown_attributes_are_a_milder_category_and_still_stopped_at_run_time():
    verdict = check("def strategy(board):\n    return board.size\n")
    assert [(v.rule, v.category) for v in verdict.violations] == [("unknown-attribute", "attribute")]
    set_allowed_attributes(DEFAULT_POLICY.allowed_methods)
    try:
        with pytest.raises(SandboxViolation):
            call_armed(_guarded_getattr, BOARD, "size")
        assert call_armed(_guarded_getattr, BOARD, "count")(0) == 0
    finally:
        set_allowed_attributes(None)


# -- loading ----------------------------------------------------------------------------------------

def test_load_errors_name_their_outcome():
    with pytest.raises(LoadError) as exc:
        load_strategy("def strategy(board):\n    return __x\n")
    assert exc.value.outcome == "violation"
    with pytest.raises(LoadError) as exc:
        load_strategy("def strategy(board) return\n")
    assert exc.value.outcome == "error"
    with pytest.raises(LoadError) as exc:
        load_strategy("x = 1\n")
    assert exc.value.outcome == "error" and "strategy" in exc.value.message


def test_module_level_helpers_and_constants_run():
    source = src('''
        SIZE = 4
        ORDER: tuple = ("W", "A", "S", "D")
        LOW, HIGH = -1, 2048

        def empty(board, weight=SIZE, low=LOW):
            return sum(map(lambda row: row.count(0), board)) * weight + low

        def strategy(board):
            return ORDER[empty(board) % SIZE] if max(map(max, board)) < HIGH else ORDER[0]
        ''')
    policy = dataclasses.replace(DEFAULT_POLICY)
    assert check(source, policy).ok
    assert run_restricted(source) == (run_plain(source), "")


@pytest.mark.parametrize("statement", APPENDING + [
    "r = list(map(xs.append, xs))",                      # a growing method as the callback itself
    "f = lambda v: xs.insert(0, v)",
    "xs.extend(ys := zip(xs))",
    "xs.append(4)",                                      # the strategy's own body counts like any other
    "xs += [4]",
    "xs *= 2",
    "xs[1:] = [5, 6]",
    "xs[0] += [7]",
    "n = 1\n    n += n",
    "s = slice(0, 1)\n    xs[s] = [4, 5]",                # a slice object: the only other way to store into a slice
])
def test_programs_that_may_grow_a_list_get_the_stand_ins(statement):
    from sandbox.restricted import needs_snapshots

    source = f"def strategy(board):\n    xs = [1, 2, 3]\n    {statement}\n    return 'W'\n"
    assert needs_snapshots(ast.parse(source))


def test_programs_that_cannot_grow_a_list_get_the_real_builtins():
    from envs.game2048.baselines import SOURCES
    from sandbox.restricted import needs_snapshots

    # The baselines only build new lists; counters and item stores grow nothing.
    for source in [*SOURCES.values(), "def strategy(board):\n    xs = [1]\n    xs[0] = 2\n    n = 0\n"
                   "    n += 1\n    n -= 2.5\n    n += -3\n    del xs[0:1]\n    return 'WASD'[n % 4]\n"]:
        assert not needs_snapshots(ast.parse(source)), source


# -- private names: the program's own `_helper` runs; nothing the runtime injects can be named ------

# Every way a program can bind or read a name; `{n}` is the name.
NAME_SITES = (
    "def strategy(board):\n    {n} = 1\n    return 'W'\n",
    "def strategy(board):\n    return 'WASD'[len(str({n})) % 4]\n",
    "{n} = 1\ndef strategy(board):\n    return 'W'\n",
    "def strategy(board, {n}=1):\n    return 'W'\n",
    "def {n}(board):\n    return 'W'\ndef strategy(board):\n    return 'W'\n",
    "def strategy(board):\n    f = lambda {n}: 'W'\n    return f(1)\n",
    "def strategy(board):\n    return 'W' if dict({n}=1) else 'A'\n",
    "def strategy(board):\n    try:\n        x = 1 // 0\n    except ZeroDivisionError as {n}:\n        x = 0\n"
    "    return 'W'\n",
    "def strategy(board):\n    match board[0]:\n        case [{n}, *rest]:\n            return 'W'\n    return 'A'\n",
    "def strategy(board):\n    match board[0]:\n        case [a, *{n}]:\n            return 'W'\n    return 'A'\n",
    "def strategy(board):\n    return 'W' if ({n} := 1) else 'A'\n",
    "def strategy(board):\n    del {n}\n    return 'W'\n",
)


def _fullwidth(name: str, underscores: bool) -> str:
    """A look-alike of ``name`` that NFKC (Python's identifier normalisation) folds back to it."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isalpha() or (underscores and c == "_" and i) else c
                   for i, c in enumerate(name))


# The names the runtime binds in a strategy's module and the temporaries of its rewrites (the print
# collector's `_call_print` is an attribute: refused with every `_` attribute).
INJECTED = sorted(RUNTIME_NAMES | {"_tmp0", "_tmp1"})


def test_every_runtime_name_is_listed():
    module = restricted_globals()
    assert set(module) <= RUNTIME_NAMES
    assert {"_active_", "_reentered_", "_guard_lambda_"} <= RUNTIME_NAMES
    assert not [n for n in INJECTED if is_private_name(n)]


@pytest.mark.parametrize("name", INJECTED)
def test_no_program_binds_or_reads_a_runtime_name_checked_or_not(name):
    variants = {name, "_" + name, _fullwidth(name, False), _fullwidth(name, True)}
    for spelled in sorted(variants):
        for site in NAME_SITES:
            source = site.format(n=spelled)
            try:
                ast.parse(source)
            except SyntaxError:
                continue  # a look-alike Python does not take where an identifier starts
            verdict = check(source)
            assert not verdict.ok and "escape" in verdict.categories, (source, verdict.violations)
            with pytest.raises(LoadError) as refused:  # the runtime alone, as with policy=UNCHECKED
                load_strategy(source)
            assert refused.value.outcome == "violation", (source, refused.value.message)


@pytest.mark.parametrize("site", NAME_SITES)
def test_private_names_run_everywhere_a_name_can_be(site):
    source = site.format(n="_corner_score").replace("del _corner_score\n", "_corner_score = 1\n    del _corner_score\n")
    if site == NAME_SITES[1]:  # a read: of a module-level constant
        source = "_corner_score = 3\n" + source
    assert check(source).ok, check(source).violations
    value, violation = run_restricted(source)
    assert violation == "" and value == run_plain(source)


_underscore_names = st.from_regex(r"_{1,3}[A-Za-z0-9]{0,6}_{0,2}", fullmatch=True).filter(
    lambda n: n.isidentifier() and n != "_")


@settings(max_examples=150, deadline=None)
@given(_underscore_names, st.sampled_from(NAME_SITES))
def test_check_and_runtime_agree_on_every_underscore_name(name, site):
    source = site.format(n=name)
    accepted = check(source).ok
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            load_strategy(source)
        loaded = True
    except LoadError as exc:
        assert exc.outcome == "violation", exc.message
        loaded = False
    assert accepted == loaded == is_private_name(name), source


def test_private_names_are_the_default_policy_and_switchable():
    program = "def _score(board):\n    return 1\ndef strategy(board):\n    _x = _score(board)\n    return 'W'\n"
    assert DEFAULT_POLICY.allow_private_names and check(program).ok
    strict = dataclasses.replace(DEFAULT_POLICY, allow_private_names=False)
    assert {v.rule for v in check(program, strict).violations} == {"private-name"}


# -- type: the class of a value, never a class builder ----------------------------------------------

def test_type_stand_in_answers_one_argument_only():
    table = make_builtins()
    type_ = table["type"]
    assert call_armed(type_, [1]) is list and call_armed(type_, 2.0) is float and call_armed(type_, None) is type(None)
    # The class of a class is the stand-in itself (no metaclass to call); iterators' classes are the program's.
    assert call_armed(type_, int) is type_ and call_armed(type_, type_) is type_ and call_armed(type_, table["max"]) is type_
    assert call_armed(type_, call_armed(table["map"], abs, [1])) is table["map"]
    assert isinstance(int, type_) and not isinstance(3, type_) and repr(type_) == repr(type)
    for args, kwargs in [(("T", (), {}), {}), ((), {}), ((1, 2), {}), ((1,), {"x": 1})]:
        with pytest.raises(SandboxViolation):
            call_armed(lambda: type_(*args, **kwargs))
        assert "type" in GUARD.violation


def test_a_policy_without_type_refuses_it_in_both_layers():
    narrow = dataclasses.replace(DEFAULT_POLICY, allowed_builtins=DEFAULT_POLICY.allowed_builtins - {"type"})
    source = "def strategy(board):\n    return 'W' if type(board) is list else 'A'\n"
    assert "escape" in check(source, narrow).categories
    fn = load_strategy(source, sorted(narrow.allowed_builtins))
    with pytest.raises(SandboxViolation):
        call_armed(fn, BOARD)


@pytest.mark.parametrize("expr", [
    "type('T', (), {})", "type(int)('T', (), {})", "type(type(1))('T', (), {})", "(lambda t: t)(type)('T', (), {})",
    "[type][0]('T', (object,), {})", "type(board, x=1)", "type(*board[:3])",
])
def test_class_building_through_type_is_an_escape_at_run_time(expr):
    source = f"def strategy(board):\n    c = {expr}\n    return 'W'\n"
    assert not check(source).ok
    value, violation = run_restricted(source)
    assert value is None and "type" in violation


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["board", "board[0]", "board[0][0]", "1.5", "'x'", "None", "True", "(1, 2)", "{1: 2}",
                        "set()", "len", "map(abs, board[0])", "zip(board, board)", "range(3)", "lambda: 0"]),
       st.sampled_from(["int", "float", "bool", "str", "list", "tuple", "dict", "set", "map", "zip", "range"]))
def test_type_compares_as_in_python(value, cls):
    source = f"def strategy(board):\n    return 'W' if type({value}) is {cls} else 'A' if type({value}) == {cls} else 'S'\n"
    assert check(source).ok, check(source).violations
    assert run_restricted(source) == (run_plain(source), "")
