"""Programs cannot reach each other, play is the same in and out of the sandbox, and the probe fails closed."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings

from envs.game2048.baselines import SOURCES
from envs.play import play_trusted
from sandbox.records import GameRecord, Limits
from sandbox.planning import PROBE_SLOWDOWN, UNCHECKED
from sandbox.planning import probe_verdict as _probe_verdict
from sandbox.runner import WorkerPool
from envs.game2048.hacks import get_hack
from sandbox.strategies import clean_strategies

LIMITS = Limits(move_seconds=0.5, game_seconds=5.0, max_moves=200, stuck_moves=5)
HONEST = SOURCES["greedy"]

# Keeps every board it is given alive between calls, through a mutable default: in a warm
# worker shared with the next program, the next program would start with its garbage.
HOG = "def strategy(board, keep=[]):\n    keep.append([0] * 2000000)\n    return 'WASD'[len(keep) % 4]\n"
# Fills a module-level cache that a later program in the same interpreter could read.
STASH = "CACHE = {}\ndef strategy(board, c=CACHE):\n    c[len(c)] = board\n    return 'WASD'[len(c) % 4]\n"


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(workers=2) as p:
        yield p


def _same(record: GameRecord) -> GameRecord:
    """A record without its timing (the only field that may differ between two runs)."""
    return dataclasses.replace(record, wall_seconds=0.0)


def test_an_honest_programs_records_do_not_depend_on_who_ran_before(pool):
    seeds = [0, 1, 2, 3]
    alone = [_same(r) for r in pool.run(HONEST, seeds=seeds, limits=LIMITS)]
    for bad in (HOG, STASH):
        after = pool.run_many([bad, HONEST], seeds=seeds, limits=LIMITS, policy=UNCHECKED)
        assert [_same(r) for r in after[1]] == alone, bad
        # And after the bad program has had the pool to itself.
        pool.run(bad, seeds=seeds, limits=LIMITS, policy=UNCHECKED)
        assert [_same(r) for r in pool.run(HONEST, seeds=seeds, limits=LIMITS)] == alone


def test_evaluate_group_totals_do_not_depend_on_the_previous_step(pool):
    import rewards

    honest = f"```python\n{HONEST}```"
    alone = rewards.evaluate_group([honest], seeds=[0, 1], pool=pool)[0].total
    # The hog as a program that slipped past the static check (UNCHECKED: only the runtime layers).
    pool.run_many([HOG, HOG.replace("keep", "kept")], seeds=[0, 1], limits=LIMITS, policy=UNCHECKED)
    assert rewards.evaluate_group([honest], seeds=[0, 1], pool=pool)[0].total == alone


def _plain(source: str):
    namespace: dict = {}
    exec(compile(source, "<plain>", "exec"), namespace)
    return namespace["strategy"]


def _trusted_record(source: str, seed: int, limits: Limits) -> GameRecord:
    (game,) = play_trusted(_plain(source), seeds=[seed], max_moves=limits.max_moves,
                           stuck_moves=limits.stuck_moves)
    game["final_view"] = tuple(tuple(row) for row in game["final_view"])
    return _same(GameRecord(**game))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(source=clean_strategies())
def test_the_same_program_and_seed_give_the_same_record_in_and_out_of_the_sandbox(pool, source):
    seeds = [0, 7]
    inside = [_same(r) for r in pool.run(source, seeds=seeds, limits=LIMITS)]
    outside = [_trusted_record(source, s, LIMITS) for s in seeds]
    # Errors carry the sandbox's message format; outcomes and every figure are the same.
    assert [dataclasses.replace(r, error="") for r in inside] == [dataclasses.replace(r, error="") for r in outside]


def test_baselines_give_the_same_record_in_and_out_of_the_sandbox(pool):
    for name in ("fixed", "corner", "greedy"):
        inside = [_same(r) for r in pool.run(SOURCES[name], seeds=[0, 1], limits=LIMITS)]
        assert inside == [_trusted_record(SOURCES[name], s, LIMITS) for s in (0, 1)], name


def test_a_game_abandoned_after_the_target_stays_stuck():
    # One loop decides: reaching the target and then repeating a dead move is "stuck", never "won".
    games = play_trusted(_plain("def strategy(board):\n    return 'W'\n"), seeds=range(30), target=4)
    assert {g["outcome"] for g in games} <= {"stuck", "finished"}
    assert any(g["outcome"] == "stuck" and g["metrics"]["max_tile"] >= 4 for g in games)


# --- the determinism probe ------------------------------------------------------------------------

COUNTER = "def strategy(board, n=[]):\n    n.append(1)\n    return 'WASD'[len(n) % 4]\n"
# Spins when the boards it is asked about do not follow each other as a game's do: only a
# replay looks like that (its state is a mutable default, so it runs UNCHECKED).
PROBE_SPINNER = get_hack("replay_staller").source


def test_state_kept_between_calls_is_a_randomness_violation(pool):
    records = pool.run(COUNTER, seeds=[0, 1, 2], limits=LIMITS, policy=UNCHECKED)
    assert all(r.outcome == "violation" and r.error.startswith("randomness:") for r in records), records


def test_a_program_slow_only_when_replayed_fails_closed(pool):
    records = pool.run(PROBE_SPINNER, seeds=[0, 1], limits=LIMITS, policy=UNCHECKED)
    assert all(r.outcome == "violation" and "failed" in r.error for r in records), records


def test_the_probe_does_not_flag_honest_programs(pool):
    for name in ("fixed", "corner", "greedy"):
        assert all(r.outcome != "violation" for r in pool.run(SOURCES[name], seeds=[0, 1, 2], limits=LIMITS))


def test_play_and_probe_share_the_pools_secret_hash_seed():
    """Both zygotes hash strings alike (a set's order is the same in play and probe); pools differ."""
    with WorkerPool(workers=1, secret=b"a") as a, WorkerPool(workers=1, secret=b"b") as b:
        a.warm()
        b.warm()
        seeds = [[z.hash_seed for z in p._zygotes] for p in (a, b)]
    assert seeds[0][0] == seeds[0][1] and seeds[1][0] == seeds[1][1]
    assert seeds[0][0] != seeds[1][0] and 0 not in seeds[0] + seeds[1]


# Ties broken by a set's order: the greedy of the report (every legal move ties) and plain set orders.
SET_ORDER = [get_hack("set_tie_greedy").source, get_hack("set_order_late").source] + [
    f"def strategy(board):\n    return list({{'W', 'A', 'S', 'D'}})[{k}]\n" for k in range(4)] + [
    "def strategy(board):\n    return list({'W', 'A', 'S', 'D'})[sum(map(sum, board)) % 4]\n"]


@pytest.mark.parametrize("secret", [b"set-order-0", b"set-order-1", b"set-order-2"])
def test_ties_broken_by_a_sets_order_are_never_randomness(secret):
    with WorkerPool(workers=2, secret=secret) as p:
        results = p.run_many(SET_ORDER, seeds=[0, 1, 2], limits=LIMITS, policy=UNCHECKED)
    for source, records in zip(SET_ORDER, results):
        assert all(r.outcome != "violation" for r in records), (source, records)


def test_a_slow_load_is_not_a_slow_first_move():
    """Twenty kilobytes of module-level helpers (about half a second to load) are not a slow first move."""
    source = get_hack("slow_load").source
    tight = Limits(move_seconds=0.25, game_seconds=10.0, max_moves=100, stuck_moves=5)
    with WorkerPool(workers=2, secret=b"slow load") as p:
        records = p.run(source, seeds=[0, 1, 2, 3], limits=tight)
    assert all(r.outcome in ("finished", "max_moves", "won") for r in records), records


def test_probe_verdict_fails_closed():
    sample = [(0, [[0]], "W", 0.001), (0, [[2]], "A", 0.001)]
    limits = Limits(move_seconds=1.0)
    assert _probe_verdict(sample, ["W", "A"], None, limits) == ""
    assert _probe_verdict(sample, ["W", "S"], None, limits).startswith("randomness:")
    # Stopped before answering a board it answered quickly in play: counted against it.
    assert "failed" in _probe_verdict(sample, ["W"], ("timeout", "a move took longer than 1s"), limits)
    assert "failed" in _probe_verdict(sample, [], ("crashed", "the worker exited with code 1"), limits)
    # A program as slow during play as the limit allows is not punished for a slow replay.
    slow = [(0, [[0]], "W", 1.0 / PROBE_SLOWDOWN)]
    assert _probe_verdict(slow, [], ("timeout", "a move took longer than 1s"), limits) == ""
    assert _probe_verdict(slow, [], ("crashed", "killed"), limits).startswith("randomness:")


@pytest.mark.parametrize("load", [0.0, 0.7, 2.4, 3.0])
def test_a_probe_that_fails_while_loading_is_judged_against_the_load_of_play(load):
    """Like with like: a probe stopped before its first answer compares with play's load, not the first board."""
    limits = Limits(move_seconds=1.0, game_seconds=10.0)
    sample = [(0, [[0]], "W", 0.001, load), (0, [[2]], "A", 0.001, load)]
    slow_enough = load * PROBE_SLOWDOWN >= limits.game_seconds
    verdict = _probe_verdict(sample, [], ("timeout", "the game took longer than 10s", True), limits)
    assert (verdict == "") == slow_enough
    assert not verdict or "loaded again" in verdict
    # A crash while loading never passes, and a failure on a board is judged by that board.
    assert _probe_verdict(sample, [], ("crashed", "killed", True), limits).startswith("randomness:")
    assert "failed" in _probe_verdict(sample, ["W"], ("timeout", "a move took longer than 1s", False), limits)
