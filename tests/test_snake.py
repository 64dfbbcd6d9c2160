"""Snake (envs/snake): the rules as properties, the API equal to the kernel and strict, the Gymnasium envs,
the baselines and their API twins, the seed programs, the hacks, the reward spec, and a short sandbox run."""
from __future__ import annotations

import dataclasses
import time
import tomllib
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from envs.outcomes import HONEST_OUTCOMES
from envs.play import play_trusted
from envs.registry import HACK_KINDS
from envs.snake import ACTIONS, SPEC, State, api, baselines, kernel
from envs.snake.env import SnakeEnv
from envs.snake.vector import SnakeVectorEnv
from sandbox import DEFAULT_POLICY, check, game_policy

ON = game_policy("snake", True)
OFF = game_policy("snake", False)
DELTAS = {"W": (-1, 0), "A": (0, -1), "S": (1, 0), "D": (0, 1)}


def copy_state(s: State) -> State:
    return dataclasses.replace(s, grid=s.grid.copy(), st=s.st.copy(), rng=s.rng.copy())


def flat(view):
    return [v for row in view for v in row]


def body_of(view):
    """The snake's cells (row, col), tail first, read from the numbers."""
    n = len(view)
    cells = sorted((v, divmod(i, n)) for i, v in enumerate(flat(view)) if v > 0)
    return [rc for _, rc in cells]


def program(source: str, api_functions: dict | None = None):
    """The ``strategy`` of ``source``, trusted, with the game's API functions as globals (as the sandbox gives them)."""
    namespace = dict(api_functions or {})
    exec(compile(source, "<test program>", "exec"), namespace)
    return namespace["strategy"]


def records(strategy, seeds_=(0, 1, 2), **options):
    out = play_trusted(strategy, game="snake", seeds=seeds_, **options)
    for r in out:
        r.pop("wall_seconds")
    return out


# ------------------------------------------------------------------ the declaration

def test_registered_with_every_declaration():
    assert envs.get("snake") is SPEC and "snake" in envs.names()
    assert SPEC.actions == ACTIONS == api._ACTIONS == ("W", "A", "S", "D")
    assert SPEC.options == {"size": 8, "target": 61, "hunger": 128}
    assert SPEC.gym_id == "codepolicy/Snake-v0" and SPEC.gym_id in gym.registry
    assert [f.name for f in SPEC.api] == ["legal_moves", "step", "head", "food", "heading"]
    assert all(f.doc and "\n" not in f.doc for f in SPEC.api)
    assert SPEC.progress.metric == "length" and SPEC.progress.metric in SPEC.metric_names
    assert SPEC.progress.scale == "linear" and SPEC.progress.start == 3
    assert SPEC.progress.target(SPEC.options) == 64 and SPEC.progress.score_scale(SPEC.options, 64.0) == 61
    assert SPEC.progress.fraction(3, SPEC.options) == 0 and SPEC.progress.fraction(64, SPEC.options) == 1
    assert Path(SPEC.reward_spec).is_file()
    assert [b.name for b in SPEC.baselines] == ["fixed", "safe", "random", "greedy", "pathfinder"]
    assert all(h.kind in HACK_KINDS for h in SPEC.hacks + SPEC.api_hacks)
    assert SPEC.moves_example.strip() and SPEC.api_example.strip() and SPEC.seed_programs is not None
    prompt = SPEC.prompt.format(**SPEC.options)
    assert "8x8" in prompt and "61 pieces" in prompt and "128 moves" in prompt and "{" not in prompt
    state = SPEC.make(0)
    assert "@" in SPEC.describe(state) and "score 0" in SPEC.describe(state)


@pytest.mark.parametrize("options, name", [({"size": 4}, "size"), ({"size": 17}, "size"), ({"size": True}, "size"),
                                           ({"target": 0}, "target"), ({"target": 254}, "target"),
                                           ({"hunger": 0}, "hunger"), ({"hunger": 2.5}, "hunger"),
                                           ({"bogus": 1}, "bogus")])
def test_bad_options_are_refused_by_name(options, name):
    with pytest.raises(ValueError, match=name):
        SPEC.make(0, **options)


@pytest.mark.parametrize("size", [5, 8, 16])
def test_the_start(size):
    state = SPEC.make(7, size=size)
    view = SPEC.view(state)
    m = size // 2
    assert body_of(view) == [(m, m - 2), (m, m - 1), (m, m)]  # length 3, in the middle, heading right
    assert flat(view).count(-1) == 1 and len(view) == size and all(len(r) == size for r in view)
    assert SPEC.legal_mask(state).tolist() == [True, False, True, True]  # all but the reverse, "A"
    assert not SPEC.is_over(state) and not SPEC.won(state)
    assert SPEC.metrics(state) == {"score": 0.0, "length": 3.0, "moves": 0.0, "since_meal": 0.0, "starved": 0.0}
    view[0][0] = 99  # a fresh copy every call
    assert SPEC.view(state)[0][0] != 99 and all(type(v) is int for v in flat(SPEC.view(state)))


def test_the_same_seed_is_the_same_game_and_the_generator_is_pinned():
    foods = [flat(SPEC.view(SPEC.make(seed))).index(-1) for seed in range(6)]
    assert foods == PINNED_FOODS  # the seeded SplitMix64 draws: a change here changes every recorded game
    assert len({tuple(flat(SPEC.view(SPEC.make(s, size=12)))) for s in range(20)}) > 10


PINNED_FOODS = [1, 49, 61, 15, 32, 25]


# ------------------------------------------------------------------ the rules, as properties

@st.composite
def games(draw, max_moves=150):
    """A seeded game with a random option set, and a random sequence of choices (see :func:`pick`)."""
    size = draw(st.integers(5, 9))
    hunger = draw(st.integers(3, 60))
    seed = draw(st.integers(0, 2**40))
    choices = draw(st.lists(st.integers(0, 999), max_size=max_moves))
    return seed, {"size": size, "hunger": hunger, "target": 5}, choices


def pick(view, choice):
    """A move for ``choice``: mostly one that stays alive (so games grow long, eat and starve), sometimes any move
    (so they also die and reverse). Safety is worked out here from the numbers, independently of the API."""
    n = len(view)
    body = body_of(view)
    hr, hc = body[-1]
    safe = [m for m in ACTIONS if 0 <= hr + DELTAS[m][0] < n and 0 <= hc + DELTAS[m][1] < n
            and view[hr + DELTAS[m][0]][hc + DELTAS[m][1]] <= 1]
    if choice % 20 and safe:
        return safe[choice // 20 % len(safe)]
    return ACTIONS[choice // 20 % 4]


def check_body(view):
    cells = body_of(view)
    numbers = sorted(v for v in flat(view) if v > 0)
    assert numbers == list(range(1, len(cells) + 1))  # 1..L, each once
    assert len(set(cells)) == len(cells)
    for (r1, c1), (r2, c2) in zip(cells, cells[1:]):
        assert abs(r1 - r2) + abs(c1 - c2) == 1  # connected in order
    assert flat(view).count(-1) <= 1


@settings(max_examples=120, deadline=None)
@given(games())
def test_every_move_follows_the_rules(game):
    seed, options, choices = game
    n, hunger = options["size"], options["hunger"]
    state = SPEC.make(seed, **options)
    since = 0
    for choice in choices:
        view = SPEC.view(state)
        move = pick(view, choice)
        check_body(view)
        metrics = SPEC.metrics(state)
        assert metrics["length"] == 3 + metrics["score"] == len(body_of(view))
        if SPEC.is_over(state):
            assert not SPEC.legal_mask(state).any()
            assert SPEC.step(state, ACTIONS.index(move)) == (0.0, False) and SPEC.view(state) == view
            continue
        body = body_of(view)
        (hr, hc), neck = body[-1], body[-2]
        dr, dc = DELTAS[move]
        r, c = hr + dr, hc + dc
        mask = SPEC.legal_mask(state)
        assert mask.tolist() == [(hr + DELTAS[m][0], hc + DELTAS[m][1]) != neck for m in ACTIONS]
        gained, changed = SPEC.step(state, ACTIONS.index(move))
        after = SPEC.view(state)
        if (r, c) == neck:  # the reverse: not a move
            assert (gained, changed) == (0.0, False) and after == view and SPEC.metrics(state) == metrics
            continue
        assert changed
        assert SPEC.metrics(state)["moves"] == metrics["moves"] + 1
        dies = not (0 <= r < n and 0 <= c < n) or view[r][c] > 1  # the wall, or the body but the tail
        if dies:
            assert SPEC.is_over(state) and after == view and gained == 0.0
            assert SPEC.metrics(state)["starved"] == 0.0
            continue
        check_body(after)
        food = int(state.st[kernel.S_FOOD])  # the kernel's own food cell: on the food, never on the body
        assert (after[food // n][food % n] == -1) if -1 in flat(after) else food < 0
        length = len(body)
        assert after[r][c] == len(body_of(after))  # the head moved there
        if view[r][c] == -1:  # ate: one longer, the tail stays, a new food off the body (or a full board)
            since = 0
            assert gained == 1.0 and body_of(after) == body + [(r, c)]
            assert flat(after).count(-1) == 1 or (-1 not in flat(after) and length + 1 == n * n and SPEC.is_over(state))
        else:
            since += 1
            assert gained == 0.0 and body_of(after) == body[1:] + [(r, c)]
            assert [(i, v) for i, v in enumerate(flat(after)) if v == -1] == \
                   [(i, v) for i, v in enumerate(flat(view)) if v == -1]  # the food stays put
            assert SPEC.is_over(state) == (since >= hunger) == (SPEC.metrics(state)["starved"] == 1.0)
        assert SPEC.metrics(state)["since_meal"] == since


@settings(max_examples=30, deadline=None)
@given(games(max_moves=60))
def test_the_same_seed_and_moves_give_the_same_game(game):
    seed, options, choices = game
    a, b = SPEC.make(seed, **options), SPEC.make(seed, **options)
    for choice in choices:
        move = pick(SPEC.view(a), choice)
        assert SPEC.step(a, ACTIONS.index(move)) == SPEC.step(b, ACTIONS.index(move))
        assert SPEC.view(a) == SPEC.view(b) and SPEC.metrics(a) == SPEC.metrics(b)


def test_reversing_forever_ends_stuck_and_circling_starves():
    back = play_trusted(lambda board: "A", game="snake", seeds=[0])[0]
    assert back["outcome"] == "stuck" and back["moves"] == 0
    circle = next(h for h in SPEC.hacks if h.name == "circle")
    for r in records(program(circle.source), (0, 1, 2, 3), hunger=20):
        assert r["outcome"] == "finished" and r["metrics"]["starved"] == 1.0 and r["metrics"]["length"] <= 4
        assert r["moves"] <= 2 * 20


def test_a_full_board_ends_the_game():
    # A snake of 24 on a 5x5 board, one step from eating the last food: eating it fills the board.
    state = SPEC.make(0, size=5, target=22)
    path = [(r, c if r % 2 == 0 else 4 - c) for r in range(5) for c in range(5)]  # a boustrophedon
    state.grid[:] = 0
    for k, (r, c) in enumerate(path[:24]):
        state.grid[r * 5 + c] = k + 1
    r, c = path[24]
    state.grid[r * 5 + c] = -1
    state.st[kernel.S_LEN], state.st[kernel.S_FOOD] = 24, r * 5 + c
    state.st[kernel.S_HEAD] = path[23][0] * 5 + path[23][1]
    state.st[kernel.S_EATEN] = 21
    assert SPEC.step(state, ACTIONS.index("D")) == (1.0, True)
    assert SPEC.is_over(state) and SPEC.won(state) and state.status == "full" and -1 not in flat(SPEC.view(state))


# ------------------------------------------------------------------ the API: equal to the kernel

@settings(max_examples=150, deadline=None)
@given(games(max_moves=120))
def test_the_api_equals_the_kernel_on_reachable_states(game):
    seed, options, choices = game
    n = options["size"]
    fns = SPEC.api_functions(**options)
    state = SPEC.make(seed, **options)
    for choice in choices:
        if SPEC.is_over(state):
            break
        SPEC.step(state, ACTIONS.index(pick(SPEC.view(state), choice)))
    if SPEC.is_over(state):
        return
    view = SPEC.view(state)
    copy = [list(r) for r in view]
    safe = []
    for a, m in enumerate(ACTIONS):
        trial = copy_state(state)
        ate, changed = SPEC.step(trial, a)
        expected = SPEC.view(trial)
        if ate:  # the API shows the board before the new food appears
            food = int(trial.st[kernel.S_FOOD])
            if food >= 0:
                expected[food // n][food % n] = 0
        alive = not SPEC.is_over(trial) or trial.status in ("starved", "full")
        assert fns["step"](view, m) == (expected, bool(ate), alive)
        if changed and trial.status not in ("wall", "body"):
            safe.append(m)
    assert fns["legal_moves"](view) == safe
    body = body_of(view)
    assert fns["head"](view) == body[-1]
    assert fns["food"](view) == (divmod(flat(view).index(-1), n) if -1 in flat(view) else None)
    heading = fns["heading"](view)
    assert (body[-1][0] - body[-2][0], body[-1][1] - body[-2][1]) == DELTAS[heading]
    assert view == copy  # the argument is never changed


def test_api_results_are_fresh_and_plain():
    fns = SPEC.api_functions()
    view = SPEC.view(SPEC.make(0))
    after, ate, alive = fns["step"](view, "W")
    after[0][0] = 77
    after.append([0])
    again = fns["step"](view, "W")[0]
    assert again[0][0] != 77 and len(again) == 8 and again is not after
    moves = fns["legal_moves"](view)
    moves.clear()
    assert fns["legal_moves"](view) == ["W", "S", "D"]
    assert type(ate) is bool and type(alive) is bool and all(type(v) is int for v in flat(again))
    assert fns["step"](view, "A") == (view, False, True)  # the reverse changes nothing
    assert fns["heading"](view) == "D" and type(fns["head"](view)) is tuple
    with pytest.raises(ValueError, match="size"):
        SPEC.api_functions(size=17)


# ------------------------------------------------------------------ the API: malformed arguments

def _good(n=8):
    board = [[0] * n for _ in range(n)]
    board[4][2], board[4][3], board[4][4], board[0][0] = 1, 2, 3, -1
    return board


def _with(r, c, v, n=8):
    b = _good(n)
    b[r][c] = v
    return b


MALFORMED = [
    None, 8, "board", 2.5, {0: [0] * 8}, set(), [[0] * 8] * 7, [[0] * 8] * 9, [[0] * 7] + [[0] * 8] * 7,
    [list(range(8))] * 8, [[0] * 8] * 8,  # no snake
    _with(0, 0, 0.0), _with(0, 1, True), _with(0, 1, "1"), _with(0, 1, None), _with(0, 1, [1]),
    _with(0, 1, -2), _with(0, 1, 65), _with(0, 1, 10**30), _with(0, 1, -1),  # two foods
    _with(0, 1, 2),  # number 2 twice
    _with(0, 1, 5),  # a gap: no 4
    _with(4, 4, 0),  # only 1 and 2: shorter than 3
    [[0] * 8] * 4 + [[0, 0, 1, 2, 0, 3, 0, 0]] + [[0] * 8] * 3,  # 2 and 3 are not neighbours
    [_good()] * 8, [tuple(map(float, r)) for r in _good()],
]


@pytest.mark.parametrize("board", MALFORMED)
def test_every_malformed_board_raises_a_one_line_error(board):
    fns = SPEC.api_functions()
    for name, args in (("legal_moves", (board,)), ("step", (board, "W")), ("head", (board,)), ("food", (board,)),
                       ("heading", (board,))):
        with pytest.raises((TypeError, ValueError)) as info:
            fns[name](*args)
        message = str(info.value)
        assert "\n" not in message and message.startswith(f"{name}:") and len(message) < 200, message


@pytest.mark.parametrize("move", ["w", "UP", "W ", "", 0, None, ["W"], b"W", True, "W" * 10**6])
def test_a_move_that_is_not_an_action_is_refused(move):
    with pytest.raises((TypeError, ValueError), match="^step: move"):
        SPEC.api_functions()["step"](_good(), move)


def test_huge_arguments_are_refused_by_their_length():
    legal = SPEC.api_functions()["legal_moves"]
    huge = [0] * 10**7
    args = (huge, [huge] * 8, [[0] * 8] * 10**6, tuple(huge), _with(0, 1, 10**5000))  # a huge int is never rendered
    start = time.perf_counter()
    for arg in args:
        with pytest.raises(ValueError):
            legal(arg)
    assert time.perf_counter() - start < 0.05


def test_subclasses_never_run_their_methods():
    class Row(list):
        def __len__(self):
            raise AssertionError("ran the subclass's __len__")

    class Cell(int):
        def __eq__(self, other):
            raise AssertionError("ran the subclass's __eq__")

    fns = SPEC.api_functions()
    with pytest.raises(TypeError, match="board\\[0\\]"):
        fns["legal_moves"]([Row([0] * 8)] * 8)
    with pytest.raises(TypeError, match="board\\[0\\]\\[1\\]"):
        fns["head"](_with(0, 1, Cell(0)))


def test_the_api_is_switched_by_the_policy():
    uses = SPEC.api_example
    assert check(uses, ON).ok
    off = check(uses, OFF)
    assert not off.ok and {v.rule for v in off.violations} == {"game-api-off"}


# ------------------------------------------------------------------ the Gymnasium envs

@pytest.mark.parametrize("size", [5, 8, 16])
def test_check_env(size):
    check_env(gym.make("codepolicy/Snake-v0", size=size).unwrapped, skip_render_check=False)


def test_env_plays_the_registered_game_and_renders():
    env = gym.make("codepolicy/Snake-v0", size=6, target=3, hunger=30, render_mode="ansi").unwrapped
    assert env.observation_space == gym.spaces.Box(-1, 36, shape=(6, 6), dtype=np.int16)
    obs, info = env.reset(seed=5)
    state = SPEC.make(5, size=6, target=3, hunger=30)
    assert obs.tolist() == SPEC.view(state) and info["action_mask"].tolist() == [True, False, True, True]
    rng = np.random.default_rng(0)
    terminated = False
    while not terminated:
        a = int(rng.integers(4))
        obs, reward, terminated, truncated, info = env.step(a)
        gained, _ = SPEC.step(state, a)
        assert obs.tolist() == SPEC.view(state) and reward == gained and not truncated
        assert {k: float(info[k]) for k in ("score", "length", "moves", "since_meal")} == \
               {k: v for k, v in SPEC.metrics(state).items() if k != "starved"}
    assert SPEC.is_over(state) and not info["action_mask"].any() and info["status"] == state.status
    assert "score" in env.render()
    rgb = SnakeEnv(size=5, render_mode="rgb_array")
    rgb.reset(seed=0)
    assert rgb.render().shape[2] == 3
    for bad in ({"size": 4}, {"hunger": 0}, {"max_steps": 0}, {"render_mode": "human"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SnakeEnv(**bad)


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_vector_env_matches_single_envs(mode):
    k, steps, seed = 4, 300, 10
    actions = np.random.default_rng(1).integers(0, 4, size=(steps, k))
    venv = gym.make_vec("codepolicy/Snake-v0", num_envs=k, vectorization_mode="vector_entry_point", size=6,
                        hunger=20, autoreset_mode=mode).unwrapped
    assert isinstance(venv, SnakeVectorEnv)
    obs, _ = venv.reset(seed=seed)
    singles = [SnakeEnv(size=6, hunger=20) for _ in range(k)]
    want = [env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]
    assert all(np.array_equal(obs[i], want[i]) for i in range(k))
    pending = [False] * k
    ends = 0
    for t in range(steps):
        obs, rewards, terminated, truncated, infos = venv.step(actions[t])
        for i, env in enumerate(singles):
            if pending[i]:  # NEXT_STEP: this step resets the board
                o, _ = env.reset()
                r, te = 0.0, False
                pending[i] = False
            else:
                o, r, te, _, _ = env.step(int(actions[t, i]))
                if te:
                    ends += 1
                    if mode == "SameStep":
                        assert np.array_equal(infos["final_obs"][i], o)
                        o, _ = env.reset()
                    else:
                        pending[i] = True
            assert np.array_equal(obs[i], o) and rewards[i] == r and terminated[i] == te, (t, i)
    assert ends > 0


# ------------------------------------------------------------------ the baselines

def test_baseline_sources_pass_the_default_policy_and_their_api_twins_the_api_policy():
    for name, source in baselines.SOURCES.items():
        assert check(source, DEFAULT_POLICY).ok, (name, check(source, DEFAULT_POLICY).violations)
    for name, source in baselines.API_SOURCES.items():
        assert len(source.strip().splitlines()) <= 3  # the def and one or two lines
        assert check(source, ON).ok, (name, check(source, ON).violations)
        assert not check(source, OFF).ok
    for b in SPEC.baselines:
        assert b.honest  # dying is an honest end: even the constant move ends every game honestly
        assert bool(b.source) == (b.make is None)


def test_api_twins_play_the_same_games():
    fns = SPEC.api_functions()
    for name, source in baselines.API_SOURCES.items():
        long, short = records(program(baselines.SOURCES[name]), range(5)), records(program(source, fns), range(5))
        assert long == short, name
        assert all(r["outcome"] in HONEST_OUTCOMES for r in long)


def test_the_baselines_are_ordered_and_honest():
    seeds_ = range(6)
    mean = {}
    for b in SPEC.baselines:
        played = records(b.strategy(0, SPEC.options), seeds_)
        assert all(r["outcome"] in HONEST_OUTCOMES for r in played), (b.name, [r["outcome"] for r in played])
        mean[b.name] = sum(r["score"] for r in played) / len(played)
    assert mean["fixed"] <= mean["safe"] < mean["random"] < mean["greedy"] < mean["pathfinder"], mean


# The table of envs/snake/baselines.py (seeds 0-99, default options, max_moves 5000): the games are deterministic.
MEASURED: dict[str, dict[str, float]] = {
    "fixed": {"mean_score": 0.02, "mean_length": 3.02, "won": 0.0, "starved": 0.0, "mean_moves": 4.0},
    "safe": {"mean_score": 0.49, "mean_length": 3.49, "won": 0.0, "starved": 1.0, "mean_moves": 133.15},
    "random": {"mean_score": 2.66, "mean_length": 5.66, "won": 0.0, "starved": 0.51, "mean_moves": 188.99},
    "greedy": {"mean_score": 17.12, "mean_length": 20.12, "won": 0.0, "starved": 0.0, "mean_moves": 115.92},
}


def test_the_measured_figures_of_the_cheap_baselines_hold():
    # The games are deterministic: the figures in envs/snake/baselines.py are exact for these four.
    for name in ("fixed", "safe", "random", "greedy"):
        played = records(SPEC.baseline(name).strategy(0, SPEC.options), range(100), max_moves=5000)
        want = MEASURED[name]
        got = {"mean_score": sum(r["score"] for r in played) / 100,
               "mean_length": sum(r["metrics"]["length"] for r in played) / 100,
               "won": sum(r["outcome"] == "won" for r in played) / 100,
               "starved": sum(r["metrics"]["starved"] for r in played) / 100,
               "mean_moves": sum(r["moves"] for r in played) / 100}
        assert got == pytest.approx(want), name


# ------------------------------------------------------------------ seed programs and examples

@pytest.mark.parametrize("api_on", [True, False])
def test_seed_programs_are_honest(api_on):
    sources = SPEC.seed_programs(api_on)
    assert len(set(sources)) == len(sources) >= 25
    fns = SPEC.api_functions() if api_on else {}
    legal = SPEC.api_functions()["legal_moves"]
    for k, source in enumerate(sources):
        assert source.startswith("def strategy(board):\n") and source.count("def ") == 1
        assert check(source, ON if api_on else DEFAULT_POLICY).ok, source
        if api_on:
            assert source.startswith("def strategy(board):\n    moves = legal_moves(board)\n    return ")
        strategy = program(source, fns)

        def watched(board, strategy=strategy):
            move = strategy(board)
            safe = legal(board)
            assert move in safe if safe else move == api.make_heading({})(board)  # never dies when it can avoid it
            return move

        # Every program on one seed, a few on more: each ends every game honestly.
        for r in records(watched, range(3) if k % 8 == 0 else (k,)):
            assert r["outcome"] in HONEST_OUTCOMES and not r["error"], (source, r)


def test_the_examples_pass_the_check_and_the_honest_ones_play_to_the_end():
    assert check(SPEC.example, DEFAULT_POLICY).ok
    assert check(SPEC.moves_example, DEFAULT_POLICY).ok and check(SPEC.api_example, ON).ok
    assert records(program(SPEC.moves_example)) == records(program(baselines.SAFE_SOURCE))
    assert records(program(SPEC.api_example, SPEC.api_functions())) == records(program(baselines.SAFE_SOURCE))


# ------------------------------------------------------------------ hacks and the reward spec

def test_hacks_are_well_formed():
    names = [h.name for h in SPEC.hacks + SPEC.api_hacks] + [b.name for b in SPEC.baselines]
    assert len(set(names)) == len(names)
    kinds = {h.kind for h in SPEC.hacks}
    assert {"invalid", "error", "constant", "unchecked", "early", "padding", "defused", "deterministic",
            "switching", "stateful"} <= kinds
    for h in SPEC.hacks:
        verdict = check(h.source, DEFAULT_POLICY)
        assert verdict.ok == (h.kind != "stateful"), (h.name, verdict.violations)
    for h in SPEC.api_hacks:
        verdict = check(h.source, ON)
        assert verdict.ok == (h.kind != "loop"), (h.name, verdict.violations)
        assert not check(h.source, OFF).ok


def test_hacks_end_as_their_kind_when_played_trusted():
    by_name = {h.name: h for h in SPEC.hacks}
    outcome = {name: records(program(by_name[name].source), (0, 1)) for name in
               ("invalid_key", "raise_at_once", "constant_A", "reverse_forever", "invalid_when_ahead",
                "raise_when_ahead", "reverse_when_ahead")}
    assert {r["outcome"] for r in outcome["invalid_key"]} == {"invalid_output"}
    assert {r["outcome"] for r in outcome["raise_at_once"]} == {"error"}
    assert {(r["outcome"], r["moves"]) for r in outcome["constant_A"] + outcome["reverse_forever"]} == {("stuck", 0)}
    for name, ending in (("invalid_when_ahead", "invalid_output"), ("raise_when_ahead", "error"),
                         ("reverse_when_ahead", "stuck")):
        for r in outcome[name]:  # greedy until 8 long, then the cheat; a greedy death before that is honest
            if r["metrics"]["length"] >= 8:
                assert r["outcome"] == ending and r["metrics"]["length"] == 8, (name, r)
            else:
                assert r["outcome"] in HONEST_OUTCOMES, (name, r)
        assert any(r["metrics"]["length"] == 8 for r in outcome[name]), name


def test_the_reward_spec_file():
    data = tomllib.loads(Path(SPEC.reward_spec).read_text())
    assert data["game"] == "snake" and data["options"] == SPEC.options
    assert set(data["rules"]) == {"format", "compliance", "performance", "diversity", "length"}
    performance = data["rules"]["performance"]
    assert set(performance) == {"weight", "floor", "honest_base", "progress_weight", "score_weight", "score_scale",
                                "win_bonus", "below_floor_penalty", "early_progress"}
    assert performance["early_progress"] < performance["honest_base"] - performance["below_floor_penalty"]
    assert data["rules"]["diversity"]["actions"] == len(ACTIONS)
    rewards = pytest.importorskip("rewards")
    spec = rewards.spec.RewardSpec.from_toml(SPEC.reward_spec)
    assert spec.game == "snake" and spec.limits.max_moves == data["limits"]["max_moves"]


def _total(source_or_strategy, seeds_, api_on=False):
    """The default spec's total for a program played trusted on ``seeds_`` (a source is checked first; a trusted
    callable, such as the pathfinder, counts as compliant)."""
    from rewards import default_spec, score
    from rewards.records import Evaluation
    from sandbox.records import GameRecord, Verdict

    spec = default_spec("snake")
    if isinstance(source_or_strategy, str):
        source, verdict = source_or_strategy, check(source_or_strategy, ON if api_on else DEFAULT_POLICY)
        strategy = program(source, SPEC.api_functions() if api_on else None)
    else:
        source, verdict, strategy = "def strategy(board):\n    return 'W'\n", Verdict(ok=True), source_or_strategy
    fields = {f.name for f in dataclasses.fields(GameRecord)}
    played = play_trusted(strategy, game="snake", seeds=seeds_, max_moves=spec.limits.max_moves,
                          stuck_moves=spec.limits.stuck_moves, **spec.options)
    ev = Evaluation(completion=source, game="snake", source=source, verdict=verdict,
                    records=tuple(GameRecord(**{k: v for k, v in r.items() if k in fields}) for r in played),
                    options=dict(spec.options))
    return score(ev, spec).total


def test_the_reward_ladder_of_the_default_spec():
    pytest.importorskip("rewards")
    seeds_ = range(8)
    hack = {h.name: h.source for h in SPEC.hacks}
    total = {name: _total(source, seeds_) for name, source in baselines.SOURCES.items()}
    total["pathfinder"] = _total(baselines.pathfinder_strategy(), range(2))
    for name in ("circle", "constant_A", "reverse_forever", "greedy_unchecked", "invalid_key", "raise_at_once",
                 "invalid_when_ahead", "raise_when_ahead", "reverse_when_ahead"):
        total[name] = _total(hack[name], seeds_)
    assert total["pathfinder"] > total["greedy"] > total["safe"] > total["fixed"], total
    # Circling until the hunger rule ends it never out-earns eating.
    assert total["circle"] <= total["safe"] < total["greedy"], total
    # Every early ending, answer into the neck, invalid answer or error stays under the weakest honest play.
    for name in ("constant_A", "reverse_forever", "greedy_unchecked", "invalid_key", "raise_at_once",
                 "invalid_when_ahead", "raise_when_ahead", "reverse_when_ahead"):
        assert total[name] < total["fixed"], (name, total)
    assert total["invalid_key"] <= total["raise_at_once"] < total["constant_A"] < total["greedy_unchecked"]


# ------------------------------------------------------------------ in the sandbox (one short pool)

def test_baselines_and_hacks_in_the_sandbox():
    pytest.importorskip("RestrictedPython")
    import sandbox

    named = {f"baseline:{k}": v for k, v in baselines.SOURCES.items()}
    named.update({f"api:{k}": v for k, v in baselines.API_SOURCES.items()})
    wanted = ("constant_A", "circle", "invalid_key", "raise_at_once", "greedy_unchecked")
    named.update({f"hack:{h.name}": h.source for h in SPEC.hacks if h.name in wanted})
    named.update({f"hack:{h.name}": h.source for h in SPEC.api_hacks if h.name in ("api_huge_board", "api_bad_cell")})
    with sandbox.WorkerPool(2, game="snake") as pool:
        results = dict(zip(named, pool.run_many(list(named.values()), game="snake", seeds=[0, 1], policy=ON)))
    strip = lambda rs: [dataclasses.replace(r, wall_seconds=0.0) for r in rs]  # noqa: E731
    for name in baselines.API_SOURCES:
        assert strip(results[f"baseline:{name}"]) == strip(results[f"api:{name}"]), name
    for name in baselines.SOURCES:
        assert {r.outcome for r in results[f"baseline:{name}"]} <= HONEST_OUTCOMES, results[f"baseline:{name}"]
    assert {r.outcome for r in results["hack:constant_A"]} == {"stuck"}
    assert {r.outcome for r in results["hack:circle"]} == {"finished"}
    assert all(r.metrics["starved"] == 1.0 for r in results["hack:circle"])
    assert {r.outcome for r in results["hack:invalid_key"]} == {"invalid_output"}
    assert {r.outcome for r in results["hack:raise_at_once"]} == {"error"}
    assert {r.outcome for r in results["hack:greedy_unchecked"]} == {"stuck"}
    for name in ("hack:api_huge_board", "hack:api_bad_cell"):
        assert all(r.outcome == "error" and r.error.startswith(("TypeError", "ValueError")) for r in results[name])
