"""Tests of envs.baselines, envs.game2048.expectimax and envs.baselines_cli."""
from __future__ import annotations

import argparse
import ast
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs import baselines as B
from envs.game2048 import baselines as G
from envs.baselines_cli import add_baselines
from envs.game2048.expectimax import MAX_DEPTH, expectimax_move, expectimax_strategy, heuristic
from envs.game2048 import ACTIONS, slide, to_exponents

TILES = [0, 0, 0, 2, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]


@st.composite
def boards(draw, sizes=(3, 4, 5, 6)):
    """Square list-of-lists boards of tile values, crowded and sparse alike."""
    n = draw(st.sampled_from(sizes))
    cells = draw(st.lists(st.sampled_from(TILES), min_size=n * n, max_size=n * n))
    return [cells[r * n:(r + 1) * n] for r in range(n)]


def moving(board):
    """The moves that change ``board``, by the engine's own slide."""
    return [m for m in ACTIONS if slide(board, m)[2]]


def parser():
    p = argparse.ArgumentParser()
    add_baselines(p.add_subparsers())
    return p


# --- the sandboxable sources ------------------------------------------------------------

# What the brief forbids in a sandboxed strategy; checked here on our own sources so that a
# regression shows up even before the sandbox's checker is available.
FORBIDDEN_NODES = (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.DictComp,
                   ast.GeneratorExp, ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal,
                   ast.Try, ast.With, ast.ClassDef, ast.AsyncFunctionDef)
ALLOWED_BUILTINS = {"len", "max", "min", "sum", "abs", "sorted", "reversed", "any", "all", "map", "filter",
                    "zip", "enumerate", "range", "list", "tuple", "dict", "set", "int", "float", "str",
                    "bool", "round", "divmod", "isinstance"}


@pytest.mark.parametrize("name", sorted(G.SOURCES))
def test_source_parses_and_defines_strategy(name):
    tree = ast.parse(G.SOURCES[name])
    top = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert [f.name for f in top] == ["strategy"]
    assert [a.arg for a in top[0].args.args] == ["board"]
    assert callable(B.make(name))


@pytest.mark.parametrize("name", sorted(G.SOURCES))
def test_source_obeys_the_no_loop_style(name):
    tree = ast.parse(G.SOURCES[name])
    defined = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    defined |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    defined |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.arguments) for a in n.args}
    for node in ast.walk(tree):
        assert not isinstance(node, FORBIDDEN_NODES), f"{name}: {type(node).__name__} at line {node.lineno}"
        if isinstance(node, ast.Name):
            assert not node.id.startswith("_"), f"{name}: name {node.id}"
            if isinstance(node.ctx, ast.Load):
                assert node.id in defined or node.id in ALLOWED_BUILTINS, f"{name}: uses {node.id}"
        if isinstance(node, ast.Attribute):
            assert not node.attr.startswith("_"), f"{name}: attribute {node.attr}"
    # No recursion: no function calls itself by name.
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        calls = {c.func.id for c in ast.walk(fn) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
        assert fn.name not in calls, f"{name}: {fn.name} is recursive"


def test_sources_pass_the_sandbox_check():
    try:
        from sandbox.check import check
    except ImportError as exc:
        pytest.skip(f"sandbox.check is not available yet ({exc})")
    for name, source in G.SOURCES.items():
        verdict = check(source)
        assert verdict.ok, f"{name} rejected: " + "; ".join(map(str, verdict.violations))


def slide_helper():
    """The pure-Python slide pasted into the sources, as a callable ``slide(rows, move)``."""
    ns: dict = {}
    exec("def helpers(board):" + G._SLIDE_HELPERS + "    return slide\n", ns)
    return lambda board, move: ns["helpers"](board)(board, move)


@settings(max_examples=150, deadline=None)
@given(boards(sizes=(3, 4, 5, 6, 7, 8)), st.sampled_from(ACTIONS))
def test_source_slide_matches_the_engine(board, move):
    new, gained = slide_helper()(board, move)
    ref, ref_gained, _ = slide(board, move)
    assert (new, gained) == (ref, ref_gained)


@pytest.mark.parametrize("case, left, gained", [
    ([2, 2, 2, 2], [4, 4, 0, 0], 8), ([4, 4, 8, 0], [8, 8, 0, 0], 8), ([2, 2, 4, 4], [4, 8, 0, 0], 12),
    ([2, 2, 2, 0], [4, 2, 0, 0], 4), ([0, 2, 0, 2], [4, 0, 0, 0], 4),
])
def test_source_slide_known_lines(case, left, gained):
    board = [case, [0] * 4, [0] * 4, [0] * 4]
    new, g = slide_helper()(board, "A")
    assert new[0] == left and g == gained


@settings(max_examples=60, deadline=None)
@given(boards())
def test_every_baseline_returns_an_action(board):
    for name in G.SOURCES:
        assert B.make(name)(board) in ACTIONS
    assert G.random_strategy(0)(board) in ACTIONS
    assert expectimax_strategy(2)(board) in ACTIONS


@settings(max_examples=80, deadline=None)
@given(boards())
def test_greedy_and_corner_only_make_moves_that_change_the_board(board):
    legal = moving(board)
    for name in ("greedy", "corner"):
        move = B.make(name)(board)
        if legal:
            assert move in legal, f"{name} chose {move} on {board}; moves that change it: {legal}"


@settings(max_examples=30, deadline=None)
@given(boards(), st.integers(0, 2**32))
def test_random_strategy_is_seeded_and_legal(board, seed):
    legal = moving(board)
    a, b = G.random_strategy(seed), G.random_strategy(seed)
    picks = [a(board) for _ in range(5)]
    assert picks == [b(board) for _ in range(5)]
    if legal:
        assert set(picks) <= set(legal)


def test_strategies_do_not_mutate_the_board():
    board = [[2, 2, 0, 4], [0, 4, 4, 0], [8, 0, 8, 2], [2, 0, 0, 2]]
    copy = [row[:] for row in board]
    for name in G.SOURCES:
        B.make(name)(board)
    expectimax_strategy(2)(board)
    assert board == copy


def test_fixed_is_always_left():
    assert B.make("fixed")([[0, 0, 0, 2]] + [[0] * 4] * 3) == "A"
    assert B.make("fixed")([[2, 4, 8, 16]] + [[0] * 4] * 3) == "A"  # even when left changes nothing


# --- expectimax ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(boards(sizes=(3, 4, 5)), st.integers(1, 2))
def test_expectimax_returns_a_legal_move(board, depth):
    action = expectimax_move(to_exponents(board), len(board), depth)
    legal = moving(board)
    if legal:
        assert ACTIONS[action] in legal
    else:
        assert action == -1  # no move changes it (a dead board, or an empty one)


@pytest.mark.parametrize("depth", [1, 2])
def test_expectimax_moves_when_every_leaf_scores_below_zero(depth):
    # Big disordered tiles push the heuristic below zero; a move must still be chosen.
    board = [[0] * 5, [0] * 5, [0, 0, 2, 1024, 2], [0, 0, 0, 256, 2], [0, 2, 2048, 2, 4]]
    assert heuristic(to_exponents(board), 5) < 0
    assert ACTIONS[expectimax_move(to_exponents(board), 5, depth)] in moving(board)


def test_expectimax_depth_3_is_legal_on_a_crowded_board():
    board = [[2, 4, 8, 16], [4, 8, 16, 32], [2, 0, 4, 8], [0, 2, 0, 4]]
    assert ACTIONS[expectimax_move(to_exponents(board), 4, 3)] in moving(board)


def test_expectimax_rejects_bad_input():
    with pytest.raises(ValueError, match="depth"):
        expectimax_move(np.zeros(16, np.uint8), 4, MAX_DEPTH + 1)
    with pytest.raises(ValueError, match="depth"):
        expectimax_strategy(0)
    with pytest.raises(ValueError, match="cells"):
        expectimax_move(np.zeros(15, np.uint8), 4, 2)


def test_heuristic_prefers_an_ordered_board_with_the_max_in_a_corner():
    ordered = to_exponents([[256, 128, 64, 32], [8, 16, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0]])
    scattered = to_exponents([[2, 32, 8, 0], [128, 0, 16, 0], [0, 256, 0, 64], [0, 0, 0, 0]])
    assert heuristic(ordered, 4) > heuristic(scattered, 4)


# --- playing and the ranking ----------------------------------------------------------------


def mean_scores(names, seeds, depth=2):
    return {n: sum(g["score"] for g in B.play_games(B.make(n, depth=depth), seeds)) / len(seeds) for n in names}


def test_baselines_rank_expectimax_greedy_corner_fixed():
    means = mean_scores(["expectimax", "greedy", "corner", "fixed"], range(6))
    assert means["expectimax"] > means["greedy"] > means["corner"] > means["fixed"], means


@pytest.mark.slow
def test_baselines_rank_in_true_order_over_many_games():
    means = mean_scores(list(B.names()), range(100, 160))
    assert [n for n, _ in sorted(means.items(), key=lambda kv: -kv[1])] == list(B.names()), means


@pytest.mark.slow
def test_expectimax_depth_2_often_reaches_2048():
    games = B.play_games(B.make("expectimax", depth=2), range(30))
    assert sum(g["metrics"]["max_tile"] >= 2048 for g in games) >= 10


def test_games_are_reproducible():
    for name in ("greedy", "random"):
        first = B.play_games(B.make(name, seed=3), [7, 8])
        again = B.play_games(B.make(name, seed=3), [7, 8])
        strip = [{k: v for k, v in g.items() if k != "wall_seconds"} for g in first]
        assert strip == [{k: v for k, v in g.items() if k != "wall_seconds"} for g in again]


def test_every_game_loop_shares_one_default_move_cap():
    import inspect

    import envs
    from envs import play
    from sandbox.records import Limits

    def default(fn):
        return inspect.signature(fn).parameters["max_moves"].default

    assert envs.DEFAULT_MAX_MOVES == play.DEFAULT_MAX_MOVES == Limits().max_moves
    for fn in (play.play_game, play.play_one, play.play_trusted, B.play_games, B.run_baselines):
        assert default(fn) == envs.DEFAULT_MAX_MOVES, fn.__name__
    assert parser().parse_args(["baselines"]).max_moves == envs.DEFAULT_MAX_MOVES


def test_fixed_gets_stuck_quickly():
    games = B.play_games(B.make("fixed"), range(5))
    assert all(g["moves"] < 50 for g in games)


def test_summarize_counts_tiles_and_reach():
    games = [{"score": 100, "metrics": {"max_tile": 512}, "moves": 10},
             {"score": 300, "metrics": {"max_tile": 2048}, "moves": 30},
             {"score": 200, "metrics": {"max_tile": 128}, "moves": 20},
             {"score": 0, "metrics": {"max_tile": 512}, "moves": 0}]
    s = B.summarize("x", games, seconds=2.0)
    assert s.mean_score == 150 and s.max_score == 300 and s.mean_moves == 15
    assert s.metric == "max_tile" and s.progress == {128: 1, 512: 2, 2048: 1} and s.mean_progress == 800
    assert s.reach == {512: 0.75, 1024: 0.25, 2048: 0.25}
    assert s.games_per_second == 2.0 and s.moves_per_second == 30.0
    with pytest.raises(ValueError, match="no games"):
        B.summarize("x", [], 1.0)


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="no baseline 'nope'.*known: fixed, random, corner, greedy, expectimax"):
        B.make("nope")
    assert "random" not in B.sources("2048") and "expectimax" not in B.sources("2048")  # trusted only


# --- CLI ------------------------------------------------------------------------------------


def test_cli_table(capsys):
    args = parser().parse_args(["baselines", "--games", "2", "--only", "greedy", "fixed", "--seed", "5"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "greedy" in out and "fixed" in out and ">=2048" in out and "games/s" in out
    assert "expectimax" not in out


def test_cli_json(capsys):
    args = parser().parse_args(["baselines", "--games", "2", "--json", "--size", "3", "--depth", "1"])
    assert args.handler(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in data["baselines"]] == list(B.names())
    assert data["options"] == {"size": 3} and all(b["games"] == 2 for b in data["baselines"])
    assert set(data["baselines"][0]["reach"]) == {"512", "1024", "2048"}


@pytest.mark.parametrize("argv, match", [
    (["--games", "0"], "--games"), (["--depth", "9"], "--depth"), (["--size", "2"], "size"),
    (["--max-moves", "0"], "--max-moves"),
])
def test_cli_bad_input(argv, match):
    args = parser().parse_args(["baselines", "--only", "fixed"] + argv)
    with pytest.raises(ValueError, match=match):
        args.handler(args)
