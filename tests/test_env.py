"""The Gymnasium 2048 env: check_env, spaces, info, rewards, illegal moves, truncation, rendering."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from envs.game2048 import slide, to_tiles
from envs.game2048.env import Game2048Env
from envs.game2048.render import image_shape

INFO_KEYS = {"score", "max_tile", "moves", "illegal_moves", "action_mask", "won"}


def tiles(obs: np.ndarray) -> list[list[int]]:
    return to_tiles(obs.reshape(-1), obs.shape[0])


@pytest.mark.parametrize("size", [3, 4, 6])
def test_check_env(size):
    check_env(gym.make("codepolicy/2048-v0", size=size).unwrapped, skip_render_check=False)


def test_make_with_options_and_spaces():
    env = gym.make("codepolicy/2048-v0", size=5, target=256, max_steps=50, render_mode="ansi")
    assert isinstance(env.unwrapped, Game2048Env)
    assert env.observation_space == gym.spaces.Box(0, 26, shape=(5, 5), dtype=np.uint8)
    assert env.action_space == gym.spaces.Discrete(4)
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (5, 5) and env.observation_space.contains(obs)
    assert set(info) == INFO_KEYS
    assert info["action_mask"].dtype == np.bool_ and info["action_mask"].shape == (4,)


def test_reset_plays_the_registered_game():
    spec = envs.get("2048")
    env = Game2048Env()
    obs, _ = env.reset(seed=42)
    state = spec.make(42)
    assert tiles(obs) == spec.view(state)
    for a in [1, 0, 3, 2, 1, 1, 0, 3] * 10:
        obs, reward, *_ = env.step(a)
        gained, _ = spec.step(state, a)
        assert tiles(obs) == spec.view(state) and reward == gained
    assert env.score == state.score


def test_action_ids_are_w_a_s_d():
    env = Game2048Env()
    env.reset(seed=3)
    for a, name in enumerate("WASD"):
        before = tiles(env.board)
        want, _, _ = slide(before, name)
        env2 = Game2048Env()
        env2.reset(seed=3)
        obs, *_ = env2.step(a)
        after = tiles(obs)
        # after = want plus at most one spawned tile
        diff = [(r, c) for r in range(4) for c in range(4) if after[r][c] != want[r][c]]
        assert len(diff) <= 1 and all(want[r][c] == 0 for r, c in diff)


@settings(deadline=None, max_examples=30)
@given(st.integers(0, 2**32), st.lists(st.integers(0, 3), min_size=1, max_size=200))
def test_info_tracks_the_game(seed, actions):
    env = Game2048Env()
    obs, info = env.reset(seed=seed)
    score = moves = illegal = 0
    for a in actions:
        mask_before = info["action_mask"]
        before = tiles(obs)
        obs, reward, terminated, truncated, info = env.step(a)
        want, gained, changed = slide(before, "WASD"[a])
        assert changed == bool(mask_before[a])
        if changed:
            score += gained
            moves += 1
            assert reward == gained
        else:  # illegal: nothing spawns, counted
            illegal += 1
            assert tiles(obs) == before and reward == 0.0
        assert info["score"] == score and info["moves"] == moves and info["illegal_moves"] == illegal
        assert info["max_tile"] == max(max(r) for r in tiles(obs))
        assert list(info["action_mask"]) == [slide(tiles(obs), m)[2] for m in "WASD"]
        assert terminated == (not info["action_mask"].any()) and not truncated
        if terminated:
            break


def test_action_mask_is_a_fresh_copy():
    env = Game2048Env()
    _, info = env.reset(seed=0)
    before = env.action_mask.copy()
    info["action_mask"][:] = ~info["action_mask"]  # the user's copy is theirs to change
    _, later = env.reset(seed=0)
    assert (later["action_mask"] == before).all() and (env.action_mask == before).all()
    assert later["action_mask"] is not info["action_mask"]


def test_observation_is_a_copy():
    env = Game2048Env()
    obs, _ = env.reset(seed=0)
    kept = obs.copy()
    obs[:] = 0
    assert np.array_equal(env.board, kept)


def _illegal_action(info) -> int:
    return int(np.flatnonzero(~info["action_mask"])[0])


def _env_with_illegal_move(**kw) -> tuple[Game2048Env, dict]:
    env = Game2048Env(**kw)
    for seed in range(100):
        _, info = env.reset(seed=seed)
        if not info["action_mask"].all():
            return env, info
    raise AssertionError("no start position with an illegal move in 100 seeds")


def test_illegal_moves_terminate_after_k_in_a_row():
    env, info = _env_with_illegal_move(max_illegal=3, illegal_reward=-1.0)
    a = _illegal_action(info)
    for k in range(1, 4):
        obs, reward, terminated, truncated, info = env.step(a)
        assert reward == -1.0 and info["illegal_moves"] == k
        assert terminated == (k == 3) and not truncated


def test_a_legal_move_resets_the_illegal_streak():
    env, info = _env_with_illegal_move(max_illegal=2)
    _, _, terminated, _, info = env.step(_illegal_action(info))
    assert not terminated
    _, _, terminated, _, info = env.step(int(np.flatnonzero(info["action_mask"])[0]))
    assert not terminated
    # After a legal move the count starts again: one more illegal move does not end it.
    for a in np.flatnonzero(~info["action_mask"])[:1]:
        _, _, terminated, _, info = env.step(int(a))
        assert not terminated and info["illegal_moves"] == 2


def test_illegal_moves_never_end_by_default():
    env, info = _env_with_illegal_move()
    a = _illegal_action(info)
    for _ in range(50):
        _, _, terminated, truncated, info = env.step(a)
        assert not terminated and not truncated
    assert info["illegal_moves"] == 50


def test_truncation_at_max_steps_counts_every_step():
    env, info = _env_with_illegal_move(max_steps=5)
    a = _illegal_action(info)
    for k in range(1, 6):
        *_, terminated, truncated, info = env.step(a)
        assert truncated == (k == 5) and not terminated


def test_episode_terminates_when_no_move_is_left():
    env = Game2048Env(size=3)
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(10_000):
        _, _, terminated, _, info = env.step(int(rng.integers(4)))
        if terminated:
            break
    assert terminated and not info["action_mask"].any()


def test_reward_modes():
    for mode in ("score", "log_max_tile_gain", "merge_count"):
        env = Game2048Env(reward_mode=mode)
        obs, info = env.reset(seed=7)
        rng = np.random.default_rng(1)
        for _ in range(300):
            before, max_before = tiles(obs), info["max_tile"]
            a = int(rng.integers(4))
            obs, reward, terminated, _, info = env.step(a)
            _, gained, changed = slide(before, "WASD"[a])
            tiles_before = sum(v > 0 for r in before for v in r)
            tiles_after = sum(v > 0 for r in tiles(obs) for v in r) - (1 if changed else 0)
            want = {"score": gained,
                    "log_max_tile_gain": np.log2(info["max_tile"]) - np.log2(max_before),
                    "merge_count": tiles_before - tiles_after}[mode] if changed else 0.0
            assert reward == want and isinstance(reward, float)
            if terminated:
                break


def test_seedless_resets_are_reproducible():
    def episodes(seed):
        env = Game2048Env()
        out = [env.reset(seed=seed)[0].tolist()]
        out += [env.reset()[0].tolist() for _ in range(5)]
        return out

    assert episodes(9) == episodes(9)
    assert len({str(b) for b in episodes(9)}) > 1


def test_won_flag_follows_target():
    env = Game2048Env(target=8)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(1000):
        _, _, terminated, _, info = env.step(int(rng.integers(4)))
        assert info["won"] == (info["max_tile"] >= 8)
        if info["won"] or terminated:
            break
    assert info["won"]


def test_render_ansi_and_rgb():
    env = Game2048Env(size=4, render_mode="ansi")
    obs, info = env.reset(seed=0)
    text = env.render()
    lines = text.rstrip("\n").split("\n")
    assert len(lines) == 5 and lines[-1] == f"score: {info['score']}"
    assert len({len(line) for line in lines[:4]}) == 1  # aligned
    assert [[int(c) if c != "." else 0 for c in line.split()] for line in lines[:4]] == tiles(obs)
    for size in (3, 4, 8):
        env = Game2048Env(size=size, render_mode="rgb_array")
        env.reset(seed=0)
        img = env.render()
        assert img.dtype == np.uint8 and img.shape == image_shape(size)
    assert Game2048Env().render() is None


def test_rgb_render_draws_every_tile_value():
    from envs.game2048.render import render_rgb

    board = np.arange(16, dtype=np.uint8).reshape(4, 4)
    img = render_rgb(board)
    assert img.shape == image_shape(4)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 10  # colours and text, not a blank image
    big = render_rgb(np.full((8, 8), 40, dtype=np.uint8))  # huge tiles fall back to ^k labels
    assert big.shape == image_shape(8)


@pytest.mark.parametrize("kwargs, needle", [
    ({"size": 2}, "size"), ({"target": 3}, "target"), ({"max_steps": 0}, "max_steps"),
    ({"reward_mode": "points"}, "'points'"), ({"max_illegal": -1}, "max_illegal"),
    ({"render_mode": "human"}, "'human'"), ({"illegal_reward": "x"}, "illegal_reward"),
])
def test_bad_arguments_name_themselves(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        Game2048Env(**kwargs)


def test_bad_action_is_an_error():
    env = Game2048Env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="0..3"):
        env.step(4)
