"""The game registry: a toy game defined in its own module (tests/toy_game.py) goes through the same API as 2048 and is played
end to end, so a new game needs nothing outside its own definition."""
from __future__ import annotations

from dataclasses import replace

import pytest

import envs
from envs.play import play_trusted
from envs.registry import GameSpec, UnknownGameError, get, names, register

from toy_game import TOY, _move  # noqa: E402  (importing it registers "slide1d")


@pytest.fixture(autouse=True)
def toy_registered():
    register("slide1d", TOY)
    yield
    envs.registry._REGISTRY.pop("slide1d", None)  # leave the registry as other tests expect it


def test_registered_names_and_lookup():
    assert "2048" in names() and "slide1d" in names() and names() == sorted(names())
    assert get("slide1d") is TOY
    assert envs.get("2048").gym_id == "codepolicy/2048-v0"


def test_unknown_game_error_names_it_and_the_known_games():
    with pytest.raises(UnknownGameError) as info:
        get("tetris")
    assert "'tetris'" in str(info.value) and "2048" in str(info.value) and "slide1d" in str(info.value)
    with pytest.raises(UnknownGameError, match="tetris"):
        play_trusted(lambda v: "L", game="tetris")


def test_register_checks_its_input():
    with pytest.raises(ValueError, match="'other'"):
        register("other", TOY)
    with pytest.raises(TypeError, match="GameSpec"):
        register("slide1d", object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'width'"):
        TOY.make(0, width=3)
    with pytest.raises(ValueError, match="'U'"):
        TOY.action_id("U")


def test_toy_game_played_end_to_end():
    def alternate(line):  # left when it changes the line, else right
        return "L" if _move(line, 0)[0] != line else "R"

    records = play_trusted(alternate, game="slide1d", seeds=range(6), max_moves=500)
    assert [r["seed"] for r in records] == list(range(6))
    for r in records:
        assert r["outcome"] in ("finished", "won", "max_moves", "stuck")
        assert r["moves"] > 0 and set(r["move_histogram"]) == {"L", "R"}
        assert sum(r["move_histogram"].values()) == r["moves"] + r["illegal_moves"]
        assert set(r["metrics"]) == set(TOY.metric_names) and r["score"] == r["metrics"]["score"]
    # Same seeds, same games.
    assert [r["score"] for r in records] == [r["score"] for r in play_trusted(alternate, "slide1d", range(6), 500)]


def test_toy_game_outcomes():
    stuck = play_trusted(lambda line: "L", game="slide1d", seeds=[0], stuck_moves=3, length=4)[0]
    assert stuck["outcome"] in ("stuck", "finished", "won")
    bad = play_trusted(lambda line: "up", game="slide1d", seeds=[0])[0]
    assert bad["outcome"] == "invalid_output" and "'up'" in bad["error"]
    err = play_trusted(lambda line: line[99], game="slide1d", seeds=[0])[0]
    assert err["outcome"] == "error" and "IndexError" in err["error"]
    capped = play_trusted(lambda line: "LR"[len([v for v in line if v]) % 2], game="slide1d", seeds=[1],
                          max_moves=2, length=16, target=1 << 20)[0]
    assert capped["outcome"] == "max_moves" and capped["moves"] == 2
    won = play_trusted(lambda line: "L" if _move(line, 0)[0] != line else "R", game="slide1d",
                       seeds=[0], target=4)[0]
    assert won["outcome"] == "won" and won["metrics"]["max_tile"] >= 4


def test_2048_through_the_same_path():
    records = play_trusted(lambda board: "A", game="2048", seeds=[0, 1], stuck_moves=2)
    assert all(r["outcome"] == "stuck" for r in records)
    spec = get("2048")
    ex: dict = {}
    exec(spec.example, ex)  # noqa: S102  (our own bundled example)
    out = play_trusted(ex["strategy"], seeds=[3], size=3, target=64)[0]
    assert out["outcome"] in ("finished", "won", "stuck") and out["moves"] > 0


def test_bad_play_arguments():
    with pytest.raises(ValueError, match="max_moves"):
        play_trusted(lambda v: "L", game="slide1d", max_moves=0)
    with pytest.raises(ValueError, match="stuck_moves"):
        play_trusted(lambda v: "L", game="slide1d", stuck_moves=0)
    with pytest.raises(ValueError, match="'colour'"):
        play_trusted(lambda v: "L", game="slide1d", colour=1)


def test_spec_is_frozen():
    with pytest.raises(Exception):
        TOY.name = "x"  # type: ignore[misc]
    assert replace(TOY, prompt="p").prompt == "p"


def _sandbox_runner():
    try:
        import sandbox.runner as runner
    except ImportError as exc:
        pytest.skip(f"sandbox.runner not importable yet ({exc}); the toy game runs through play_trusted only")
    return runner


def test_toy_game_through_the_sandbox():
    runner = _sandbox_runner()
    source = "def strategy(line):\n    return 'L' if line[0] == 0 or line[0] == line[1] else 'R'\n"
    records = runner.run(source, game="slide1d", seeds=(0, 1))
    assert [r.outcome for r in records] and all(r.outcome in ("finished", "won", "max_moves", "stuck")
                                               for r in records), records
    trusted = play_trusted(_exec_strategy(source), game="slide1d", seeds=(0, 1))
    assert [r.score for r in records] == [t["score"] for t in trusted]


def test_2048_through_the_sandbox_matches_trusted_play():
    runner = _sandbox_runner()
    source = get("2048").example
    records = runner.run(source, game="2048", seeds=(0, 1))
    trusted = play_trusted(_exec_strategy(source), game="2048", seeds=(0, 1), max_moves=5000)
    assert [(r.outcome, r.score, r.moves) for r in records] == [(t["outcome"], t["score"], t["moves"]) for t in trusted]


def _exec_strategy(source: str):
    ns: dict = {}
    exec(source, ns)  # noqa: S102  (a fixed source written in this file)
    return ns["strategy"]
