"""The 2048 rules: Hypothesis properties, a differential test against a pure-Python
reference written here, hand-worked cases, bad-input errors, seeding and spawn odds."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import envs
from envs.game2048 import ACTIONS, is_over, kernel, lines_for, slide

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = settings(deadline=None, max_examples=150)


# --- the reference: obviously correct, slow, list based ---------------------------------


def ref_slide_row_left(row: list[int]) -> tuple[list[int], int, list[int]]:
    """Slide one row to the left -> (new row, points, values of the merged tiles)."""
    tiles = [v for v in row if v]
    out, merged = [], []
    i = 0
    while i < len(tiles):
        if i + 1 < len(tiles) and tiles[i] == tiles[i + 1]:
            out.append(2 * tiles[i])
            merged.append(2 * tiles[i])
            i += 2
        else:
            out.append(tiles[i])
            i += 1
    return out + [0] * (len(row) - len(out)), sum(merged), merged


def transpose(b: list[list[int]]) -> list[list[int]]:
    return [list(col) for col in zip(*b)]


def mirror(b: list[list[int]]) -> list[list[int]]:
    return [row[::-1] for row in b]


def ref_slide(board: list[list[int]], move: str) -> tuple[list[list[int]], int, list[int]]:
    """The whole-board reference: every move is 'left' after a transpose and/or mirror."""
    pre = {"A": lambda b: b, "D": mirror, "W": transpose, "S": lambda b: mirror(transpose(b))}[move]
    post = {"A": lambda b: b, "D": mirror, "W": transpose, "S": lambda b: transpose(mirror(b))}[move]
    rows, gained, merged = [], 0, []
    for row in pre(board):
        r, g, m = ref_slide_row_left(row)
        rows.append(r)
        gained += g
        merged += m
    return post(rows), gained, merged


def ref_is_over(board: list[list[int]]) -> bool:
    return all(ref_slide(board, m)[0] == board for m in ACTIONS)


# --- Hypothesis boards ----------------------------------------------------------------


@st.composite
def boards(draw, sizes=st.integers(3, 8)):
    n = draw(sizes)
    # Small exponents and many blanks, so merges and full boards both come up often.
    cell = st.one_of(st.just(0), st.integers(1, 4), st.integers(1, 12))
    return [[(1 << e) if e else 0 for e in draw(st.lists(cell, min_size=n, max_size=n))] for _ in range(n)]


moves = st.sampled_from(ACTIONS)


@SETTINGS
@given(boards(), moves)
def test_slide_matches_reference(board, move):
    assert slide(board, move) == (ref_slide(board, move)[0], ref_slide(board, move)[1],
                                  ref_slide(board, move)[0] != board)


@SETTINGS
@given(boards(), moves)
def test_slide_preserves_tile_sum(board, move):
    new, _, _ = slide(board, move)
    assert sum(map(sum, new)) == sum(map(sum, board))


@SETTINGS
@given(boards(), moves)
def test_gained_is_sum_of_new_merged_tiles(board, move):
    new, gained, _ = slide(board, move)
    _, _, merged = ref_slide(board, move)
    assert gained == sum(merged)
    # Every merged tile is on the new board (as a multiset).
    remaining = [v for row in new for v in row if v]
    for v in merged:
        remaining.remove(v)
    # Tiles lost = merges made.
    assert sum(v != 0 for row in board for v in row) - sum(v != 0 for row in new for v in row) == len(merged)


@SETTINGS
@given(boards(), moves)
def test_changed_iff_board_differs(board, move):
    new, _, changed = slide(board, move)
    assert changed == (new != board)


@SETTINGS
@given(boards())
def test_symmetries(board):
    assert slide(board, "A")[0] == mirror(slide(mirror(board), "D")[0])
    assert slide(board, "W")[0] == transpose(slide(transpose(board), "A")[0])
    assert slide(board, "S")[0] == transpose(slide(transpose(board), "D")[0])


@SETTINGS
@given(boards(), moves)
def test_no_tile_merges_twice(board, move):
    """Reading a line from the side moved towards, each output tile is the next input tile
    or the merge of the next two equal ones: never three or more tiles in one."""
    new, _, _ = slide(board, move)
    pre = {"A": lambda b: b, "D": mirror, "W": transpose, "S": lambda b: mirror(transpose(b))}[move]
    for before, after in zip(pre(board), pre(new)):
        pending = [v for v in before if v]
        for v in (x for x in after if x):
            if pending[0] == v:
                pending = pending[1:]
            else:
                assert pending[:2] == [v // 2, v // 2], (before, after)
                pending = pending[2:]
        assert not pending


@SETTINGS
@given(boards())
def test_game_over_iff_no_move_changes(board):
    # The all-empty board never occurs in play (a game starts with two tiles); the kernel
    # calls it "not over" because it has empty cells, though no move changes it.
    assume(any(v for row in board for v in row))
    assert is_over(board) == (not any(slide(board, m)[2] for m in ACTIONS)) == ref_is_over(board)


def test_game_over_on_full_boards():
    full = [[2, 4, 2, 4], [4, 2, 4, 2], [2, 4, 2, 4], [4, 2, 4, 2]]
    assert is_over(full)
    full[3][3] = 4
    full[3][2] = 4
    assert not is_over(full)


# --- kernel-level differential test, with spawns -------------------------------------


@SETTINGS
@given(boards(st.sampled_from([3, 4, 5, 8])), st.lists(moves, min_size=1, max_size=30), st.integers(0, 2**63 - 1))
def test_kernel_step_is_reference_slide_plus_one_spawn(board, seq, seed):
    n = len(board)
    lines = lines_for(n)
    b = np.array([(v.bit_length() - 1) if v else 0 for row in board for v in row], dtype=np.uint8)
    rng = np.zeros(1, dtype=np.uint64)
    kernel.seed_rng(rng, 0, seed)
    for move in seq:
        before = [[(1 << int(e)) if e else 0 for e in b[r * n:(r + 1) * n]] for r in range(n)]
        want, want_gain, _ = ref_slide(before, move)
        gained, changed = kernel.step(b, rng, 0, lines, ACTIONS.index(move))
        after = [[(1 << int(e)) if e else 0 for e in b[r * n:(r + 1) * n]] for r in range(n)]
        assert gained == want_gain and changed == (want != before)
        diffs = [(r, c) for r in range(n) for c in range(n) if after[r][c] != want[r][c]]
        if changed:  # exactly one new 2 or 4, on a cell the slide left empty
            assert len(diffs) == 1
            r, c = diffs[0]
            assert want[r][c] == 0 and after[r][c] in (2, 4)
        else:
            assert diffs == [] and after == before


def test_batched_step_matches_single_step():
    spec = envs.get("2048")
    seeds = np.arange(16, dtype=np.int64)
    boards_ = np.zeros((16, 16), dtype=np.uint8)
    rngs = np.zeros(16, dtype=np.uint64)
    kernel.reset_batch(boards_, rngs, seeds)
    states = [spec.make(int(s)) for s in seeds]
    actions_rng = np.random.default_rng(0)
    gained = np.zeros(16, dtype=np.int64)
    changed = np.zeros(16, dtype=np.bool_)
    over = np.zeros(16, dtype=np.bool_)
    for _ in range(200):
        acts = actions_rng.integers(0, 4, 16).astype(np.int64)
        kernel.step_batch(boards_, rngs, lines_for(4), acts, gained, changed, over)
        for i, s in enumerate(states):
            g, c = spec.step(s, int(acts[i]))
            assert (g, c) == (gained[i], changed[i])
            assert np.array_equal(s.board, boards_[i])
            assert spec.is_over(s) == over[i]


# --- hand cases ---------------------------------------------------------------------


@pytest.mark.parametrize("row, want, points", [
    ([2, 2, 2, 2], [4, 4, 0, 0], 8),
    ([4, 4, 8, 0], [8, 8, 0, 0], 8),
    ([2, 2, 4, 4], [4, 8, 0, 0], 12),
    ([0, 0, 0, 2], [2, 0, 0, 0], 0),
    ([2, 0, 2, 4], [4, 4, 0, 0], 4),
])
def test_hand_cases(row, want, points):
    board = [row, [0] * 4, [0] * 4, [0] * 4]
    new, gained, changed = slide(board, "A")
    assert new[0] == want and gained == points and changed == (want != row)
    # The same line moved right, up and down.
    assert slide(mirror(board), "D")[0][0] == want[::-1]
    assert transpose(slide(transpose(board), "W")[0])[0] == want


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("call, needle", [
    (lambda: slide([[0] * 4] * 4, "X"), "'X'"),
    (lambda: slide([[0] * 4] * 3, "A"), "row 0"),
    (lambda: slide([[0, 0], [0, 0]], "A"), "2 rows"),
    (lambda: slide([[3, 0, 0, 0]] + [[0] * 4] * 3, "A"), "board[0][0] = 3"),
    (lambda: slide([[1, 0, 0, 0]] + [[0] * 4] * 3, "A"), "board[0][0] = 1"),
    (lambda: is_over([[0] * 4] * 3 + [[0, 0, 6, 0]]), "board[3][2] = 6"),
    (lambda: slide("nope", "A"), "list of rows"),
    (lambda: envs.get("2048").action_id("left"), "'left'"),
    (lambda: envs.get("2048").make(0, size=9), "size"),
    (lambda: envs.get("2048").make(0, target=1000), "target"),
    (lambda: envs.get("2048").make(0, colour=1), "'colour'"),
    (lambda: envs.get("chess"), "'chess'"),
])
def test_bad_input_names_it(call, needle):
    with pytest.raises((ValueError, KeyError)) as info:
        call()
    assert needle in str(info.value)


# --- seeding --------------------------------------------------------------------------


def _game_trace(seed: int, n_moves: int = 300) -> list:
    spec = envs.get("2048")
    state = spec.make(seed)
    trace = [state.board.tolist()]
    for k in range(n_moves):
        spec.step(state, (k * 7 + k // 3) % 4)
        trace.append(state.board.tolist())
    return trace


def test_same_seed_same_game_in_process():
    assert _game_trace(5) == _game_trace(5)
    assert _game_trace(5) != _game_trace(6)


def test_same_seed_same_game_across_processes():
    code = ("import json, sys; sys.path.insert(0, 'tests'); from test_game2048 import _game_trace; "
            "print(json.dumps(_game_trace(12345)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120)
    assert json.loads(out.stdout) == _game_trace(12345)


def test_spawn_frequencies():
    """2 with p=0.9, 4 with p=0.1, uniform over the empty cells (chi-square, fixed seed)."""
    n_draws = 40_000
    b = np.zeros(16, dtype=np.uint8)
    b[[0, 5, 10]] = 3  # three occupied cells: 13 empty
    empty = [i for i in range(16) if b[i] == 0]
    rng = np.zeros(1, dtype=np.uint64)
    kernel.seed_rng(rng, 0, 2024)
    cell_counts = np.zeros(16, dtype=np.int64)
    fours = 0
    for _ in range(n_draws):
        work = b.copy()
        kernel.spawn(work, rng, 0)
        (new,) = np.flatnonzero(work != b)
        cell_counts[new] += 1
        fours += int(work[new] == 2)
    assert set(np.flatnonzero(cell_counts)) == set(empty)
    expected = n_draws / len(empty)
    chi2 = float(((cell_counts[empty] - expected) ** 2 / expected).sum())
    assert chi2 < 36.1  # chi-square, 12 dof, p = 0.0003
    # Fours: binomial(n, 0.1); 5 standard deviations either side.
    sd = (n_draws * 0.1 * 0.9) ** 0.5
    assert abs(fours - n_draws * 0.1) < 5 * sd


def test_new_game_has_two_tiles_of_2_or_4():
    for seed in range(50):
        state = envs.get("2048").make(seed)
        tiles = state.board[state.board != 0]
        assert len(tiles) == 2 and set(tiles.tolist()) <= {1, 2}
