"""The batched 2048 vector env: make_vec, autoreset modes, equivalence with single envs."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import envs  # noqa: F401  (registers the gym id)
from envs.game2048.env import Game2048Env
from envs.game2048.render import image_shape
from envs.game2048.vector import Game2048VectorEnv

KEYS = ("score", "max_tile", "moves", "illegal_moves", "action_mask", "won")


def make(num_envs=4, **kw) -> Game2048VectorEnv:
    return gym.make_vec("codepolicy/2048-v0", num_envs=num_envs, vectorization_mode="vector_entry_point", **kw)


def test_make_vec_spaces_and_shapes():
    env = make(8, size=5)
    assert isinstance(env, Game2048VectorEnv)
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert env.single_observation_space == gym.spaces.Box(0, 26, (5, 5), np.uint8)
    assert env.observation_space.shape == (8, 5, 5)
    assert env.action_space == gym.spaces.MultiDiscrete([4] * 8)
    obs, infos = env.reset(seed=0)
    assert obs.shape == (8, 5, 5) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    obs, rewards, term, trunc, infos = env.step(env.action_space.sample())
    assert rewards.shape == term.shape == trunc.shape == (8,)
    assert rewards.dtype == np.float64 and term.dtype == trunc.dtype == np.bool_
    for key in KEYS:
        assert len(infos[key]) == 8 and infos["_" + key].all()
    assert infos["action_mask"].shape == (8, 4)


def _single_rollout(seed, actions, **kw):
    """What one board of the vector env should do: a single env with NEXT_STEP autoreset by hand."""
    env = Game2048Env(**kw)
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, False, False, info)]
    done = False
    for a in actions:
        if done:
            obs, info = env.reset()
            out.append((obs, 0.0, False, False, info))
            done = False
            continue
        obs, r, te, tr, info = env.step(a)
        out.append((obs, r, te, tr, info))
        done = te or tr
    return out


@pytest.mark.parametrize("kw", [{}, {"size": 3, "max_steps": 40, "max_illegal": 3, "reward_mode": "merge_count"}])
def test_next_step_matches_single_envs(kw):
    k, n_steps, seed = 6, 400, 100
    actions = np.random.default_rng(0).integers(0, 4, size=(n_steps, k))
    venv = Game2048VectorEnv(num_envs=k, **kw)
    obs, infos = venv.reset(seed=seed)
    got = [[(obs[i], 0.0, False, False, {key: infos[key][i] for key in KEYS})] for i in range(k)]
    for t in range(n_steps):
        obs, r, te, tr, infos = venv.step(actions[t])
        for i in range(k):
            got[i].append((obs[i], r[i], te[i], tr[i], {key: infos[key][i] for key in KEYS}))
    episodes = 0
    for i in range(k):
        want = _single_rollout(seed + i, actions[:, i].tolist(), **kw)
        for t, (g, w) in enumerate(zip(got[i], want)):
            assert np.array_equal(g[0], w[0]), (i, t)
            assert g[1:4] == w[1:4], (i, t)
            for key in KEYS:
                assert np.array_equal(g[4][key], w[4][key]), (i, t, key)
        episodes += sum(1 for step in want if step[2] or step[3])
    assert episodes > 0  # the comparison crossed at least one autoreset


def test_next_step_autoreset_semantics():
    venv = Game2048VectorEnv(num_envs=2, size=3)
    venv.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(5000):
        obs, r, te, tr, infos = venv.step(rng.integers(0, 4, 2))
        if te[0]:
            break
    assert te[0] and not infos["action_mask"][0].any()
    last = obs[0].copy()
    obs, r, te, tr, infos = venv.step(np.array([0, 0]))
    # The ended board is reset, its action ignored; a fresh game has two tiles.
    assert r[0] == 0.0 and not te[0] and not tr[0]
    assert (obs[0] != 0).sum() == 2 and not np.array_equal(obs[0], last)
    assert infos["score"][0] == 0 and infos["moves"][0] == 0


def test_same_step_autoreset():
    k = 4
    venv = Game2048VectorEnv(num_envs=k, size=3, autoreset_mode=AutoresetMode.SAME_STEP)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    single = [Game2048Env(size=3) for _ in range(k)]
    venv.reset(seed=0)
    for i, e in enumerate(single):
        e.reset(seed=i)
    rng = np.random.default_rng(0)
    seen_end = 0
    for _ in range(600):
        acts = rng.integers(0, 4, k)
        obs, r, te, tr, infos = venv.step(acts)
        for i, e in enumerate(single):
            o, rr, t1, t2, info = e.step(int(acts[i]))
            assert (r[i], te[i], tr[i]) == (rr, t1, t2)
            if t1 or t2:
                seen_end += 1
                assert infos["_final_obs"][i] and np.array_equal(infos["final_obs"][i], o)
                assert infos["final_info"]["score"][i] == info["score"]
                o, info = e.reset()
            else:
                assert "final_obs" not in infos or infos["final_obs"][i] is None
            assert np.array_equal(obs[i], o) and infos["score"][i] == info["score"]
    assert seen_end > 0


def test_disabled_autoreset_and_reset_mask():
    venv = Game2048VectorEnv(num_envs=3, max_steps=2, autoreset_mode="Disabled")
    obs0, _ = venv.reset(seed=5)
    venv.step(np.array([0, 1, 2]))
    obs, r, te, tr, infos = venv.step(np.array([3, 3, 3]))
    assert tr.all()
    moved = obs.copy()
    obs, _ = venv.reset(options={"reset_mask": np.array([True, False, False])})
    assert np.array_equal(obs[1:], moved[1:]) and (obs[0] != 0).sum() == 2
    # Only board 0 restarted its step count; the others are still past max_steps.
    _, _, te, tr, infos = venv.step(np.array([0, 0, 0]))
    assert list(tr | te) == [False, True, True]
    with pytest.raises(ValueError, match="reset_mask"):
        venv.reset(options={"reset_mask": np.array([1, 0, 0])})


def test_seed_lists_and_reproducibility():
    a = Game2048VectorEnv(num_envs=3)
    b = Game2048VectorEnv(num_envs=3)
    oa, _ = a.reset(seed=[10, 11, 12])
    ob, _ = b.reset(seed=10)
    assert np.array_equal(oa, ob)
    acts = np.random.default_rng(3).integers(0, 4, (50, 3))
    for t in range(50):
        assert np.array_equal(a.step(acts[t])[0], b.step(acts[t])[0])
    with pytest.raises(ValueError, match="2 seeds"):
        a.reset(seed=[1, 2])


def test_bad_actions_are_errors():
    venv = Game2048VectorEnv(num_envs=2)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        venv.step(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="0..3"):
        venv.step(np.array([0, 4]))
    with pytest.raises(ValueError, match="integers"):
        venv.step(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="num_envs"):
        Game2048VectorEnv(num_envs=0)
    with pytest.raises(ValueError, match="autoreset_mode"):
        Game2048VectorEnv(autoreset_mode="sometimes")


def test_render_per_board():
    venv = Game2048VectorEnv(num_envs=2, render_mode="rgb_array")
    venv.reset(seed=0)
    frames = venv.render()
    assert len(frames) == 2 and all(f.shape == image_shape(4) for f in frames)
    venv = Game2048VectorEnv(num_envs=2, render_mode="ansi")
    venv.reset(seed=0)
    assert all(t.endswith("score: 0\n") for t in venv.render())
