"""The game API (envs.game2048.api): equal to the kernel, safe to hand to a program, switched by the spec."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from envs.game2048 import ACTIONS, SPEC, kernel, lines_for
from envs.game2048.api import MAX_TILE, make_legal_moves, make_slide
from sandbox import check, game_policy, with_game_api
from sandbox.cheats import api_abuse_programs
from sandbox.policy import DEFAULT_POLICY

ON = game_policy("2048", True)
OFF = game_policy("2048", False)
USES_API = 'def strategy(board):\n    moves = legal_moves(board)\n    return moves[0] if moves else "A"\n'


@st.composite
def boards(draw, sizes=range(3, 9)):
    """A square board of tiles (exponents 0..17), sparse and crowded alike, and its size."""
    n = draw(st.sampled_from(list(sizes)))
    top = draw(st.integers(1, 17))
    exps = draw(st.lists(st.integers(0, top), min_size=n * n, max_size=n * n))
    return n, [[1 << e if e else 0 for e in exps[r * n:(r + 1) * n]] for r in range(n)]


def kernel_slide(board, move):
    n = len(board)
    b = np.array([int(v).bit_length() - 1 if v else 0 for row in board for v in row], dtype=np.uint8)
    gained, changed = kernel.slide(b, lines_for(n), ACTIONS.index(move))
    flat = [1 << int(e) if e else 0 for e in b]
    return [flat[r * n:(r + 1) * n] for r in range(n)], int(gained), bool(changed)


# ------------------------------------------------------------------ the declaration

def test_spec_declares_the_api():
    assert envs.ApiFunction is envs.registry.ApiFunction
    assert [f.name for f in SPEC.api] == ["legal_moves", "slide"]
    assert [f.signature for f in SPEC.api] == ["legal_moves(board)", "slide(board, move)"]
    assert all(f.doc and "\n" not in f.doc for f in SPEC.api)
    with pytest.raises(dataclasses.FrozenInstanceError):
        SPEC.api[0].name = "x"
    from envs.game2048 import api
    assert api._ACTIONS == SPEC.actions  # the API's copy of the action order is the game's
    built = SPEC.api_functions(size=5)
    assert built["legal_moves"]([[0] * 5] * 5) == []
    with pytest.raises(ValueError, match="size"):
        SPEC.api_functions(size=9)


# ------------------------------------------------------------------ equal to the kernel

@settings(max_examples=300, deadline=None)
@given(boards())
def test_slide_and_legal_moves_equal_the_kernel(sized):
    n, board = sized
    legal, slide = make_legal_moves({"size": n}), make_slide({"size": n})
    copy = [list(r) for r in board]
    expected_legal = []
    for move in ACTIONS:
        after, points, changed = kernel_slide(board, move)
        assert slide(board, move) == (after, points)
        if changed:
            expected_legal.append(move)
    assert legal(board) == expected_legal
    assert board == copy  # the argument is never changed


def test_results_are_fresh_values():
    legal, slide = make_legal_moves({}), make_slide({})
    board = [[2, 2, 0, 0], [0, 4, 4, 0], [0, 0, 0, 0], [8, 0, 0, 8]]
    first, points = slide(board, "A")
    assert (first, points) == ([[4, 0, 0, 0], [8, 0, 0, 0], [0, 0, 0, 0], [16, 0, 0, 0]], 28)
    first[0][0] = 99
    first.append([1])
    again = slide(board, "A")[0]
    assert again[0][0] == 4 and len(again) == 4 and again is not first and again[1] is not first[1]
    moves = legal(board)
    moves.clear()
    assert legal(board) == ["W", "A", "S", "D"]
    assert type(points) is int and all(type(v) is int for row in again for v in row)


# ------------------------------------------------------------------ malformed arguments, in process

def _not_a_board(n):
    row = st.lists(st.sampled_from([0, 2, 4]), min_size=n, max_size=n)
    good = st.lists(row, min_size=n, max_size=n)
    bad_cell = st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_TILE + 1), st.sampled_from([1, 3, 6, 12]),
                         st.booleans(), st.floats(allow_nan=True), st.text(max_size=3), st.none(),
                         st.just([2]), st.just((2,)))

    def with_cell(b, r, c, v):
        b = [list(x) for x in b]
        b[r % n][c % n] = v
        return b

    return st.one_of(
        st.none(), st.integers(), st.text(max_size=5), st.floats(), st.dictionaries(st.integers(), st.integers()),
        st.lists(row, max_size=n + 3).filter(lambda b: len(b) != n),
        st.lists(st.lists(st.sampled_from([0, 2]), max_size=n + 3), min_size=n, max_size=n).filter(
            lambda b: any(len(r) != n for r in b)),
        st.builds(with_cell, good, st.integers(0, 99), st.integers(0, 99), bad_cell),
        good.map(lambda b: [b] * n),
        good.map(lambda b: set(map(tuple, b))),
    )


@settings(max_examples=200, deadline=None)
@given(st.integers(3, 8).flatmap(lambda n: st.tuples(st.just(n), _not_a_board(n))))
def test_every_malformed_board_raises_a_clear_error(arg):
    n, board = arg
    for fn, args in ((make_legal_moves({"size": n}), (board,)), (make_slide({"size": n}), (board, "W"))):
        with pytest.raises((TypeError, ValueError)) as info:
            fn(*args)
        message = str(info.value)
        assert "\n" not in message and message.startswith(("legal_moves:", "slide:"))


@pytest.mark.parametrize("move", ["w", "UP", "W ", "", 0, None, ["W"], b"W", True, "W" * 10**6])
def test_a_move_that_is_not_an_action_is_refused(move):
    with pytest.raises((TypeError, ValueError), match="^slide: move"):
        make_slide({})([[0] * 4] * 4, move)


def test_huge_arguments_are_refused_by_their_length():
    legal = make_legal_moves({})
    huge = [0] * 10**7
    rows = [huge] * 4
    start = time.perf_counter()
    for arg in (huge, rows, [huge] * 10**6):
        with pytest.raises(ValueError):
            legal(arg)
    with pytest.raises(ValueError):
        legal([[0, 0, 0, 10**5000]] * 4)  # a huge int is never rendered
    assert time.perf_counter() - start < 0.05


def test_subclasses_never_run_their_methods():
    class Row(list):
        def __len__(self):
            raise AssertionError("ran the subclass's __len__")

    with pytest.raises(TypeError, match="board\\[0\\]"):
        make_legal_moves({})([Row([0] * 4)] * 4)


# ------------------------------------------------------------------ the policy switch

def test_switch_off_rejects_and_on_accepts():
    assert check(USES_API, ON).ok
    off = check(USES_API, OFF)
    assert not off.ok and {v.rule for v in off.violations} == {"game-api-off"}
    assert off.categories == {"attribute"}
    # The default policy knows no game: an unknown name is a NameError at run time, as before.
    assert check(USES_API, DEFAULT_POLICY).ok
    # A program's own helper of the same name is its own business, switch on or off.
    own = "def legal_moves(b):\n    return ['A']\n\n\ndef strategy(board):\n    return legal_moves(board)[0]\n"
    assert check(own, ON).ok and check(own, OFF).ok
    # The rule stays out of the prompt text, which does not list the API.
    assert OFF.describe() == DEFAULT_POLICY.describe() == ON.describe()
    assert with_game_api(OFF, ["legal_moves", "slide"]) == ON
    with pytest.raises(ValueError, match="identifier"):
        with_game_api(None, ["_hidden"])


def test_introspection_of_the_functions_is_refused():
    for expr in ("legal_moves.__globals__", "slide.__code__", "legal_moves.__self__", "legal_moves.__closure__",
                 "legal_moves._function", "type(legal_moves).__init__", "legal_moves.__call__.__globals__"):
        source = f"def strategy(board):\n    x = {expr}\n    return 'A'\n"
        assert not check(source, ON).ok, expr


def test_the_runtime_wrapper_reaches_nothing():
    pytest.importorskip("RestrictedPython")
    from sandbox.restricted import GUARD, LoadError, load_strategy

    api = SPEC.api_functions()
    fn = load_strategy("def strategy(board):\n    return [str(legal_moves), type(slide), type(type(slide)), "
                       "isinstance(slide, type), legal_moves(board)]\n", api=api)
    text, kind, kind2, is_type, moves = fn([[2, 0, 0, 0]] + [[0] * 4] * 3)
    assert text == "<game function legal_moves>" and "0x" not in text
    assert kind is kind2 and kind(5) is int  # the `type` stand-in, not the wrapper's class
    assert moves == ["S", "D"]
    for attr in ("_function", "__globals__", "__code__", "__self__"):
        with pytest.raises(LoadError):  # refused when compiled
            load_strategy(f"def strategy(board):\n    return legal_moves.{attr}\n", api=api)
    GUARD.violation = ""


# ------------------------------------------------------------------ in the sandbox

@pytest.fixture(scope="module")
def pool():
    import sandbox

    with sandbox.WorkerPool(2) as p:
        yield p


def test_switch_on_plays_and_off_is_refused(pool):
    on, off = pool.run_many([USES_API], seeds=[0, 1], policy=ON)[0], pool.run_many([USES_API], seeds=[0], policy=OFF)[0]
    assert all(r.outcome == "finished" and r.moves > 50 for r in on)  # the probe replayed boards: no violation
    assert off[0].outcome == "violation" and "game-api-off" in off[0].error
    with pytest.raises(ValueError, match="does not declare"):
        pool.run(USES_API, game="2048", policy=dataclasses.replace(ON, api_names=frozenset({"peek"})))


@settings(max_examples=4, deadline=None)
@given(st.lists(api_abuse_programs(), min_size=12, max_size=12))
def test_every_api_abuse_is_the_programs_own_runtime_error(pool, abuses):
    results = pool.run_many([a.source for a in abuses], seeds=[0], policy=ON)
    for abuse, records in zip(abuses, results):
        assert check(abuse.source, ON).ok, abuse.source
        r = records[0]
        assert r.outcome == "error" and r.error.startswith(("TypeError", "ValueError")), (abuse.call, r)


def test_api_hacks_end_as_their_kind(pool):
    from envs.game2048.hacks import API_HACKS

    results = pool.run_many([h.source for h in API_HACKS], seeds=[0], policy=ON)
    for hack, records in zip(API_HACKS, results):
        r = records[0]
        if hack.name == "api_flood":
            assert r.outcome == "timeout", r
        elif hack.kind == "error":
            assert r.outcome == "error" and r.moves == 0 and r.error.startswith(("TypeError", "ValueError")), r
        elif hack.kind == "loop":
            assert r.outcome == "violation" and "loop" in r.error, r
        else:
            assert r.outcome == "finished" and r.moves > 50, r


def test_one_line_baselines_play_the_same_games(pool):
    from envs.game2048.baselines import API_SOURCES, SOURCES

    seeds = [0, 1, 2]
    for name, source in API_SOURCES.items():
        assert len(source.strip().splitlines()) == 2  # the def and one line
        long, short = pool.run(SOURCES[name], seeds=seeds, policy=ON), pool.run(source, seeds=seeds, policy=ON)
        for a, b in zip(long, short):
            assert a.outcome == "finished"
            assert dataclasses.replace(a, wall_seconds=0.0) == dataclasses.replace(b, wall_seconds=0.0), name
