"""sandbox.restricted at run time: no function of a program runs twice at once, no builtin walks a growing list.

The static check explains recursion early; these tests skip it (``load_strategy`` called
directly, or ``sandbox.run`` with ``UNCHECKED``) to show the runtime alone stops every route:

* re-entry of any ``def`` or ``lambda`` while it runs, by name, by value (a function handed to
  itself), through a builtin's callback (``map``, ``filter``, ``max``/``min``/``sorted`` keys), a
  default, a closure, a container or a lazy iterator consumed anywhere, is a ``loop`` violation;
  calls one after another, the game loop's once per move, and calls after a caught exception are not;
* the flags cost nothing in meaning: lambdas turned into ``def`` s (to guard them cheaply) and
  leaves left unguarded answer as plain Python does;
* a list that may grow is read through a snapshot by every builtin, whoever appends;
* annotations never run, and whatever Python refuses in one cannot fail a game.
"""
from __future__ import annotations

import ast
import contextlib
import io
import textwrap
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alarm import time_limit

from sandbox.restricted import GUARD, LoadError, SandboxViolation, _is_leaf, load_strategy, needs_snapshots
from sandbox.strategies import clean_strategies

BOARD = [[0, 2, 4, 8], [16, 32, 64, 128], [256, 512, 1024, 2048], [0, 0, 2, 2]]
TILES = (0, 0, 0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
boards = st.lists(st.lists(st.sampled_from(TILES), min_size=4, max_size=4), min_size=4, max_size=4)


def src(text: str) -> str:
    return textwrap.dedent(text).strip("\n") + "\n"


def load(source: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        return load_strategy(source)


def call(fn, board=None):
    """(value, violation) of one armed call, as the worker makes it (the verdict is sticky)."""
    GUARD.violation = ""
    try:
        GUARD.armed = True
        value = fn([row[:] for row in (board or BOARD)])
    except SandboxViolation:
        value = None
    except Exception as exc:  # noqa: BLE001 - the program's own error is an answer here
        value = f"error: {type(exc).__name__}"
    finally:
        GUARD.armed = False
    return value, GUARD.violation


def outcome(source: str, board=None) -> tuple:
    """(value, violation) of a fresh load and one move; a violation while loading counts too."""
    try:
        fn = load(source)
    except LoadError as exc:
        return None, exc.message if exc.outcome == "violation" else f"load {exc.outcome}: {exc.message}"
    with time_limit(10):
        return call(fn, board)


def plain(source: str, board=None):
    namespace: dict = {}
    exec(compile(source, "<plain>", "exec"), namespace)  # our own test programs, trusted
    with contextlib.redirect_stdout(io.StringIO()):
        return namespace["strategy"]([row[:] for row in (board or BOARD)])


def is_loop(violation: str) -> bool:
    return violation.startswith("loop:") and "called again while it was running" in violation


# -- the hostile examples, exactly ----------------------------------------------------------------

LOOKAHEAD = src('''
    def shift(row):
        tiles = list(filter(lambda v: v != 0, row))
        return tiles + [0] * (4 - len(tiles))

    def turn(board, move):
        rows = board if move in "AD" else list(map(list, zip(*board)))
        moved = list(map(shift, rows if move in "AW" else list(map(lambda r: r[::-1], rows))))
        moved = moved if move in "AW" else list(map(lambda r: r[::-1], moved))
        return moved if move in "AD" else list(map(list, zip(*moved)))

    def value(board):
        return sum(map(lambda row: row.count(0), board))

    def search(f, board, depth):
        if depth == 0:
            return value(board)
        kids = list(map(lambda m: turn(board, m), "WASD"))
        depths = [depth - 1] * len(kids)
        return max(map(f, [f] * len(kids), kids, depths))

    def strategy(board):
        return max("WASD", key=lambda m: search(search, turn(board, m), 2))
    ''')

EXAMPLES = {
    "a function handed to itself through map": LOOKAHEAD,
    "a lambda bound to a name, self-applied through map": src('''
        def strategy(board):
            go = lambda g, n: 0 if n <= 0 else 1 + sum(map(g, [g, g], [n - 1, n - 1]))
            return "WASD"[go(go, 12) % 4]
        '''),
    "a max key that calls the key it was given": src('''
        def deep(key, n):
            return n if n <= 0 else max([n - 1], key=lambda v: key(key, v))

        def strategy(board):
            return "WASD"[deep(deep, 5000) % 4]
        '''),
    "the strategy's own default, mapped over a list the strategy grows": src('''
        def strategy(board, work=None):
            if work is not None:
                work.append(board)
                return len(work) < 20000
            work = [board]
            drive(work)
            return "WASD"[len(work) % 4]

        def drive(work, step=strategy):
            return list(map(step, work, [work] * 20000))
        '''),
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_hostile_examples_are_loop_violations_at_run_time(name):
    value, violation = outcome(EXAMPLES[name])
    assert is_loop(violation), (value, violation)


def test_the_lookahead_is_a_working_strategy_in_plain_python():
    assert plain(LOOKAHEAD) in ("W", "A", "S", "D")


def test_the_lookahead_is_a_violation_in_every_game_through_the_sandbox():
    from sandbox.records import Limits
    from sandbox.runner import UNCHECKED, run

    records = run(LOOKAHEAD, seeds=(0, 1), limits=Limits(max_moves=5, move_seconds=5.0), policy=UNCHECKED)
    assert all(r.outcome == "violation" and r.error.startswith("loop:") for r in records), records
    assert all(r.moves == 0 for r in records), records


def test_a_list_grown_while_a_builtin_reads_it_at_load_time_is_read_once():
    # Module-level code (refused by the check, run here anyway) maps the strategy over a list the
    # strategy grows: not a re-entry (the strategy is not running), so the snapshot bounds it.
    source = src('''
        def strategy(board):
            WORK.append(board)
            return "WASD"[len(WORK) % 4]

        WORK = [1, 2, 3]
        SEEN = list(map(strategy, WORK))
        ''')
    assert needs_snapshots(ast.parse(source))
    with time_limit(5):
        fn = load(source)
    assert call(fn) == ("D", "")  # three calls at load time (the list as it was: 6 items), a seventh now


# -- every route of recursion, generated ----------------------------------------------------------

# How a function `f` (a def or a lambda with the same parameters) gets itself called again. Each
# body recurses once n > 0; `f(f, n)` starts it. `{call}` is how the body reaches f again.
ROUTES = {
    "by value": "g(g, n - 1)",
    "map": "sum(map(g, [g], [n - 1]))",
    "map, consumed by list": "len(list(map(g, [g], [n - 1])))",
    "filter": "len(list(filter(lambda v: g(g, v) or True, [n - 1])))",
    "max key": "max([n - 1], key=lambda v: g(g, v))",
    "min key": "min([n - 1], key=lambda v: g(g, v))",
    "sorted key": "sorted([n - 1], key=lambda v: g(g, v))[0]",
    "list.sort key": "[n - 1].sort(key=lambda v: g(g, v)) or 0",
    "in": "(0 in map(g, [g], [n - 1])) and 0",
    "star": "len([*map(g, [g], [n - 1])])",
    "join": "len(''.join(map(lambda v: str(g(g, v)), [n - 1])))",
    "extend": "[].extend(map(g, [g], [n - 1])) or 0",
    "any": "any(map(g, [g], [n - 1])) and 0",
    "dict": "len(dict(map(lambda v: (v, g(g, v)), [n - 1])))",
    "zip": "len(list(zip(map(g, [g], [n - 1]))))",
    "a container": "{'go': g}['go'](g, n - 1)",
    "a default": "(lambda v, h=g: h(h, v))(n - 1)",
    "a rebound builtin": "(lambda len: len(n - 1))(lambda v: g(g, v))",
}


def _program(route: str, form: str, start: str, guard: bool) -> str:
    call = ROUTES[route]
    if form == "def":
        define = f"def f(g, n):\n    return 0 if n <= 0 else 1 + ({call})\n"
        first = "f(f, 3)"
    elif form == "lambda":
        define = f"f = lambda g, n: 0 if n <= 0 else 1 + ({call})\n"
        first = "f(f, 3)"
    elif form == "mutual":  # f calls back whatever it is given, here a function that calls f
        define = f"def f(g, n):\n    return 0 if n <= 0 else 1 + ({call})\ndef hop(g, n):\n    return f(g, n)\n"
        first = "hop(hop, 3)"
    else:  # a closure: each call of make() makes another instance of the same function
        define = f"def make():\n    def inner(g, n):\n        return 0 if n <= 0 else 1 + ({call})\n    return inner\n"
        first = "make()(make(), 3)"
    if start == "module":
        return define + f"DEPTH = {first}\ndef strategy(board):\n    return 'WASD'[DEPTH % 4]\n"
    attempt = f"try:\n        depth = {first}\n    except Exception:\n        depth = -1\n" if guard else \
        f"depth = {first}\n"
    if start == "helper":
        return define + f"def helper():\n    {attempt}    return depth\n" \
            + "def strategy(board):\n    return 'WASD'[helper() % 4]\n"
    return define + f"def strategy(board):\n    {attempt}    return 'WASD'[depth % 4]\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(ROUTES)), st.sampled_from(["def", "lambda", "closure", "mutual"]),
       st.sampled_from(["strategy", "helper", "module"]), st.booleans())
def test_every_route_of_recursion_is_a_loop_violation(route, form, start, guard):
    source = _program(route, form, start, guard)
    assert plain(source) in ("W", "A", "S", "D")  # plain Python: a recursion three calls deep, and a move
    value, violation = outcome(source)
    assert is_loop(violation), (source, value, violation)


@pytest.mark.parametrize("shape", [
    "def f(n):\n    return 0 if n <= 0 else f(n - 1)\n",
    "def f(n):\n    return 0 if n <= 0 else g(n - 1)\ndef g(n):\n    return f(n)\n",
    "def f(n):\n    return 0 if n <= 0 else h(n - 1)\nh = lambda n: f(n)\n",
    "f = lambda n: 0 if n <= 0 else f(n - 1)\n",
    "f = lambda n, k=2: 0 if n <= 0 else f(n - 1)\n",           # a lambda with a default keeps its wrapper
    "def f(n):\n    return 0 if n <= 0 else [f(n - 1) for m in [1]][0]\n",
    "def f(n):\n    return 0 if n <= 0 else list(map(lambda v, k=1: f(v), [n - 1]))[0]\n",
])
def test_direct_mutual_and_lambda_recursion(shape):
    value, violation = outcome(shape + "def strategy(board):\n    return 'WASD'[f(2)]\n")
    assert is_loop(violation), (value, violation)


def test_the_strategy_calling_itself_is_a_violation_and_the_game_calling_it_is_not():
    recursive = src('''
        def strategy(board):
            if board == 0:
                return "W"
            return max(map(strategy, [0]))
        ''')
    assert is_loop(outcome(recursive)[1])
    honest = load(src('''
        def helper(row):
            return row.count(0)

        def strategy(board):
            return "WASD"[sum(map(helper, board)) % 4]
        '''))
    answers = [call(honest) for _ in range(5)]  # once per move: never a re-entry
    assert answers == [answers[0]] * 5 and answers[0][1] == ""


def test_a_violation_is_sticky_even_when_the_program_catches_it():
    source = src('''
        def f(n):
            try:
                return f(n - 1)
            except Exception:
                return 7

        def strategy(board):
            return "WASD"[f(3) % 4]
        ''')
    value, violation = outcome(source)
    assert is_loop(violation)


# -- no false alarm: sequential calls, caught exceptions, Python's meaning ----------------------------

def test_functions_called_again_after_an_exception_are_not_re_entered():
    # Each kind of site raises, the exception is caught, and the same site is called again.
    source = src('''
        def hoisted(board):
            g = lambda v: 10 // v + sum([])              # turned into a def
            h = lambda v, d=1: 10 // (v * d) + sum([])   # kept a lambda, wrapped
            def inner(v):
                return 10 // v + sum([])
            results = []
            for_each = [0, 2, 0, 5]
            def attempt(fn, v):
                try:
                    return fn(v)
                except ZeroDivisionError:
                    return -1
            results = list(map(lambda v: (attempt(g, v), attempt(h, v), attempt(inner, v)), for_each))
            return results

        def strategy(board):
            total = sum(map(lambda r: sum(r), hoisted(board)))
            return "WASD"[total % 4]
        ''')
    assert outcome(source) == (plain(source), "")


def test_functions_used_many_times_one_after_another_are_fine():
    source = src('''
        def score(row):
            return sum(map(lambda v: v * v, row))

        def both(a, b):
            return score(a) + score(b)

        def strategy(board):
            apply = lambda fn, xs: list(map(fn, xs))
            totals = apply(score, board) + [both(board[0], board[1])] + apply(lambda r: both(r, r), board)
            ranks = sorted(range(4), key=lambda i: (score(board[i]), -i))
            return "WASD"[(sum(totals) + ranks[0]) % 4]
        ''')
    assert outcome(source) == (plain(source), "")


@pytest.mark.parametrize("expr", [
    "(lambda: 1)() if board[0][0] else (lambda: 2)()",
    "sum(map(lambda r: sum(map(lambda v: v + later, r)), board))",    # a closure over a later local
    "len(list(filter(lambda r: (lambda v: v > 2)(r[0]), board)))",
    "sum(map(lambda r, k=3: k * len(r), board))",
    "max(map(lambda r: max(map(lambda v: (v := v + 1) * 2, r)), board))",
    "(lambda *a, **k: len(a) + len(k))(1, 2, x=3)",
    "(lambda a, /, b, *, c: a + b + c)(1, b=2, c=3)",
    "sum(map(lambda i: [0, 1][i % 2], range(9)))",
    "str(lambda: 0)[:10]",
])
def test_lambdas_answer_as_in_python(expr):
    source = f"def strategy(board):\n    later = 0\n    f = lambda: {expr}\n    later = 5\n    return str(f())\n"
    assert outcome(source) == (plain(source), "")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clean_strategies(), boards)
def test_clean_programs_never_see_a_violation_move_after_move(source, board):
    fn = load(source)
    first = call(fn, board)
    assert first == (plain(source, board), "")
    assert call(fn, board) == first  # the flags are all down again between moves


# -- leaves: a function left without a flag can run no code of the program -------------------------

@pytest.mark.parametrize("body", [
    "v != 0", "tiles[v] * 2 if v else 0", "len(v) + abs(v)", "row.count(0)", "max(v, 2)", "map(abs, v)",
    "f'{v:>4}'", "v in (2, 4)", "not v and v[1:3]",
])
def test_leaves(body):
    assert _is_leaf(ast.parse(f"lambda v: {body}", mode="eval").body, set())


@pytest.mark.parametrize("body", [
    "g(v)", "sum(v)", "v in m", "[*m]", "''.join(m)", "xs.extend(m)", "xs.sort(key=k)", "max(v)", "{**m}",
    "list(v)", "sorted(v)", "max(v, key=k)", "len(*v)", "abs(**v)",
])
def test_not_leaves(body):
    assert not _is_leaf(ast.parse(f"lambda v: {body}", mode="eval").body, set())


@pytest.mark.parametrize("body", [
    "    a, b = v\n    return a", "    xs[0:1] = v\n    return 0", "    xs += v\n    return 0",
    "    xs[s] = v\n    return 0",
    "    @g\n    def h():\n        pass\n    return 0", "    for x in v:\n        pass\n    return 0",
])
def test_not_leaf_defs(body):
    assert not _is_leaf(ast.parse(f"def f(v):\n{body}\n").body[0], set())


def test_a_chain_of_unflagged_looking_stores_is_still_caught():
    # `put` stores a lazy iterator through a slice object: that consumes it, and its callback is
    # `put` again. Only a flag on `put` itself can see that.
    source = src('''
        def put(xs, s, m):
            xs[s] = m
            return 0

        def strategy(board):
            inner = map(put, [[]], [slice(0, 0)], [[]])
            outer = map(put, [[]], [slice(0, 0)], [inner])
            return "WASD"[put([], slice(0, 0), outer)]
        ''')
    assert needs_snapshots(ast.parse(source))
    assert is_loop(outcome(source)[1])


def test_a_rebound_builtin_name_is_not_a_leaf_call():
    assert _is_leaf(ast.parse("lambda v: len(v)", mode="eval").body, set())
    assert not _is_leaf(ast.parse("lambda v: len(v)", mode="eval").body, {"len"})


# -- generators, annotations ------------------------------------------------------------------------

@pytest.mark.parametrize("body", ["yield 1", "yield from [1]", "x = (yield)"])
def test_generators_are_refused_at_compile(body):
    with pytest.raises(LoadError) as exc:
        load(f"def g():\n    {body}\ndef strategy(board):\n    return 'W'\n")
    assert exc.value.outcome == "violation" and "yield" in exc.value.message


def test_annotations_never_run():
    source = src('''
        def helper():
            return 1 // 0

        def strategy(board: helper(), *rest: helper(), depth: helper() = 2, **more: helper()) -> helper():
            return "WASD"[depth]
        ''')
    assert outcome(source) == ("S", "")


@pytest.mark.parametrize("annotation", ["(x := 1)", "(yield)", "[y for y in range(3)]", "helper"])
def test_what_python_refuses_in_an_annotation_cannot_fail_a_game(annotation):
    source = f"def helper():\n    return 1\ndef strategy(board: {annotation}) -> {annotation}:\n    return 'A'\n"
    assert outcome(source) == ("A", "")


# -- growing lists under relaxed policies: for loops and comprehensions read a snapshot ---------------

@pytest.mark.parametrize("statement", [
    "for x in xs:\n        xs.append(x)",
    "ys = [xs.append(x) for x in xs]",
    "xs.extend(x for x in xs)",
])
def test_loops_over_a_growing_list_read_it_once(statement):
    source = f"def strategy(board):\n    xs = [1, 2, 3]\n    {statement}\n    return 'WASD'[len(xs) % 4]\n"
    with time_limit(5):
        assert outcome(source) == ("S", "")
