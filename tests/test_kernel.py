"""The 4x4 bitboard fast path of the batched kernels plays exactly the array kernel's games,
including boards that reach tile 32768 (exponent 15), where the fast path hands over."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from envs.game2048 import kernel

LINES = kernel.line_table(4)


def _boards(draw_exponents, count: int, high: int) -> np.ndarray:
    return np.array(draw_exponents, dtype=np.uint8).reshape(count, 16) % (high + 1)


def _reference_random_play(boards, rngs, steps, seeds):
    """random_play_batch written with the single-board array kernels, one call at a time."""
    moves = 0
    for i in range(boards.shape[0]):
        for _ in range(steps):
            r = int(kernel._next(rngs, i))
            order = kernel._PERMS[((r >> 32) * 24) >> 32]
            for d in order:
                if kernel.slide(boards[i], LINES, int(d))[1]:
                    kernel.spawn(boards[i], rngs, i)
                    moves += 1
                    break
            else:
                seeds[i] += boards.shape[0]
                kernel.reset(boards[i], rngs, i, int(seeds[i]))
    return moves


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 16), min_size=4 * 16, max_size=4 * 16), st.integers(0, 2**32),
       st.integers(10, 16))
def test_random_play_fast_path_matches_the_array_kernel(cells, seed, high):
    boards = _boards(cells, 4, high)
    rngs = np.zeros(4, dtype=np.uint64)
    for i in range(4):
        kernel.seed_rng(rngs, i, seed + i)
    seeds = np.arange(4, dtype=np.int64) + seed
    ref_boards, ref_rngs, ref_seeds = boards.copy(), rngs.copy(), seeds.copy()
    moves = kernel.random_play_batch(boards, rngs, LINES, 40, seeds)
    ref_moves = _reference_random_play(ref_boards, ref_rngs, 40, ref_seeds)
    assert moves == ref_moves
    assert (boards == ref_boards).all() and (rngs == ref_rngs).all() and (seeds == ref_seeds).all()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 16), min_size=8 * 16, max_size=8 * 16), st.integers(0, 2**32),
       st.integers(10, 16), st.lists(st.integers(0, 3), min_size=8, max_size=8))
def test_step_batch_fast_path_matches_single_steps(cells, seed, high, actions):
    boards = _boards(cells, 8, high)
    rngs = np.zeros(8, dtype=np.uint64)
    for i in range(8):
        kernel.seed_rng(rngs, i, seed + i)
    ref_boards, ref_rngs = boards.copy(), rngs.copy()
    acts = np.array(actions, dtype=np.int64)
    gained = np.zeros(8, np.int64)
    changed = np.zeros(8, np.bool_)
    over = np.zeros(8, np.bool_)
    for _ in range(3):
        kernel.step_batch(boards, rngs, LINES, acts, gained, changed, over)
        for i in range(8):
            g, c = kernel.step(ref_boards[i], ref_rngs, i, LINES, int(acts[i]))
            assert (g, c) == (gained[i], changed[i])
            assert over[i] == kernel.is_over(ref_boards[i], 4)
        assert (boards == ref_boards).all() and (rngs == ref_rngs).all()
        acts = (acts + 1) % 4
