"""sandbox.ray_pool: on a local Ray (2 CPUs), RayPool gives the local pool's records and rewards bit for
bit, keeps one program's crash or timeout from the others, and releases its actors; make_pool; no ray."""
from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rewards
import sandbox
from envs.game2048.baselines import SOURCES
from sandbox.ray_pool import RAY_MISSING, RayPool, RayUnavailable
from sandbox.records import GameRecord, Limits
from sandbox.runner import UNCHECKED, WorkerPool

SECRET = bytes(range(16))   # one secret for both pools: the zygotes' hash seeds and every job key follow it
SEEDS = [0, 1, 2]
LIMITS = Limits(game_seconds=10.0, max_moves=200)
SHORT = Limits(move_seconds=0.5, game_seconds=5.0, max_moves=100)

SPIN = "def strategy(board):\n    while True:\n        pass\n"            # a timeout (runs UNCHECKED)
BOMB = "def strategy(board):\n    return 'x' * (1 << 40)\n"               # out of memory: crashed
STATE = "def strategy(board, seen=[]):\n    seen.append(1)\n    return 'WASD'[len(seen) % 4]\n"  # the probe's
# Play that depends on the zygote's PYTHONHASHSEED (the order of a set of strings): some are caught by the
# probe (a zygote with another hash seed), some are not and play by their zygote's order.
HASHY = [f"def strategy(board):\n    return list({{'W', 'A', 'S', 'D'}})[{k}]\n" for k in range(4)] + [
    "def strategy(board):\n    return list({'W', 'A', 'S', 'D'})[sum(map(sum, board)) % 4]\n"]


def fence(source: str) -> str:
    return f"My strategy:\n```python\n{source}```\n"


def timeless(records: list[list[GameRecord]]) -> list[list[GameRecord]]:
    """Records without their measured time, the one field two runs of a program may differ in."""
    return [[dataclasses.replace(r, wall_seconds=0.0) for r in rs] for rs in records]


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_pool():
    with WorkerPool(2, secret=SECRET) as pool:
        yield pool


# -- without Ray ---------------------------------------------------------------------------------


def test_make_pool_kinds():
    with pytest.raises(ValueError, match=r"^unknown sandbox pool 'gpu': expected one of 'local', 'ray'$"):
        sandbox.make_pool("gpu")
    with sandbox.make_pool("local", 1) as pool:
        assert isinstance(pool, WorkerPool) and pool.workers == 1
        assert repr(pool) == "WorkerPool(workers=1, game='2048')"


def test_a_missing_ray_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    with pytest.raises(RayUnavailable) as info:
        sandbox.make_pool("ray")
    assert str(info.value) == RAY_MISSING == "the Ray pool needs ray: pip install 'codepolicy[ray]'"
    # An ImportError, and a ValueError so that the command line prints it as one line.
    assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)


def test_import_sandbox_never_imports_ray():
    code = ("import sys, sandbox\nsandbox.RayPool, sandbox.make_pool, sandbox.ray_pool\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_rewards_never_read_the_measured_time():
    """The only record field that differs between pools (and runs) is time; no reward may depend on it."""
    record = GameRecord(seed=0, outcome="finished", score=1200.0, metrics={"max_tile": 128}, moves=150,
                        move_histogram={"W": 50, "A": 50, "S": 25, "D": 25}, wall_seconds=0.25)
    evaluation = rewards.Evaluation(completion="", game="2048", source=SOURCES["corner"],
                                    verdict=sandbox.check(SOURCES["corner"]), records=(record,))
    slow = dataclasses.replace(evaluation, records=(dataclasses.replace(record, wall_seconds=9.75),))
    spec = rewards.default_spec()
    assert rewards.score(evaluation, spec) == rewards.score(slow, spec)


# -- on a local Ray --------------------------------------------------------------------------------


def test_rewards_are_bit_identical_to_the_local_pool(ray_local, local_pool):
    baselines = [fence(source) for source in SOURCES.values()]
    with RayPool(2, secret=SECRET) as ray_pool:
        assert ray_pool.workers == local_pool.workers == 2

        @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(sandbox.strategies.clean_strategies(max_statements=4), min_size=2, max_size=6),
               st.lists(sandbox.cheats.cheating_strategies(), min_size=1, max_size=4))
        def check(clean, cheats):
            completions = baselines + [fence(s) for s in clean] + [fence(c.source) for c in cheats]
            local = rewards.evaluate_group(completions, seeds=SEEDS, pool=local_pool, limits=LIMITS)
            remote = rewards.evaluate_group(completions, seeds=SEEDS, pool=ray_pool, limits=LIMITS)
            assert remote == local  # every rule's value, weight, info and the source
            assert [b.total.hex() for b in remote] == [b.total.hex() for b in local]  # bit for bit

        check()


def test_records_are_the_same_including_cheats_past_the_check(ray_local, local_pool):
    """Cheats run UNCHECKED, so the runtime layers (restricted builtins, audit hook, probe) decide."""
    with RayPool(2, secret=SECRET) as ray_pool:

        @settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(sandbox.cheats.cheating_strategies(), min_size=4, max_size=10),
               st.lists(sandbox.strategies.clean_strategies(max_statements=4), min_size=1, max_size=4))
        def check(cheats, clean):
            sources = [c.source for c in cheats] + clean + [STATE]
            local = local_pool.run_many(sources, seeds=SEEDS, limits=LIMITS, policy=UNCHECKED)
            remote = ray_pool.run_many(sources, seeds=SEEDS, limits=LIMITS, policy=UNCHECKED)
            assert timeless(remote) == timeless(local)
            assert {r.outcome for r in remote[-1]} == {"violation"}  # the probe saw the kept state

        check()
        # Records that depend on the hash seed agree because the actors' zygotes take theirs from the
        # pool's secret (another secret: other records, e.g. a probe that no longer catches a program).
        hashy = ray_pool.run_many(HASHY, seeds=[0, 1], limits=LIMITS, policy=UNCHECKED)
        assert timeless(hashy) == timeless(local_pool.run_many(HASHY, seeds=[0, 1], limits=LIMITS, policy=UNCHECKED))
        with WorkerPool(2, secret=b"another secret!!") as other:
            assert timeless(other.run_many(HASHY, seeds=[0, 1], limits=LIMITS, policy=UNCHECKED)) != timeless(hashy)
        # A single program's seeds are shared out over both actors too, as the local pool does.
        one = ray_pool.run_many([SOURCES["greedy"]], seeds=range(6), limits=LIMITS)
        assert timeless(one) == timeless(local_pool.run_many([SOURCES["greedy"]], seeds=range(6), limits=LIMITS))


def test_a_crash_or_timeout_does_not_disturb_the_other_programs(ray_local, local_pool):
    honest = [SOURCES["greedy"], SOURCES["corner"]]
    alone = timeless(local_pool.run_many(honest, seeds=SEEDS, limits=SHORT))
    with RayPool(2, secret=SECRET) as ray_pool:
        pids = ray_pool.actor_pids()
        out = ray_pool.run_many([SPIN, honest[0], BOMB, honest[1], SPIN + "\n"], seeds=SEEDS, limits=SHORT,
                                policy=UNCHECKED)
        assert [r.outcome for r in out[0]] == ["timeout"] * len(SEEDS)
        assert [r.outcome for r in out[2]] == ["crashed"] * len(SEEDS)
        assert timeless([out[1], out[3]]) == alone
        assert ray_pool.replaced >= 2  # the killed children, replaced inside their actors
        assert ray_pool.actor_pids() == pids  # no actor was lost
        assert timeless(ray_pool.run_many(honest, seeds=SEEDS, limits=SHORT)) == alone


def test_close_releases_the_actors_and_leaves_ray_running(ray_local):
    ray = ray_local
    pool = sandbox.make_pool("ray", 2)
    assert isinstance(pool, RayPool)
    assert repr(pool).startswith("RayPool(workers=2, game='2048', address=")
    actors = list(pool._actors)
    pool.warm()
    pool.close()
    pool.close()  # twice is fine
    assert repr(pool).endswith(", closed)")
    with pytest.raises(RuntimeError, match="closed"):
        pool.run(SOURCES["greedy"])
    for actor in actors:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(actor.warm.remote(), timeout=60)
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2  # both CPUs free again
    assert ray.is_initialized()  # a Ray the pool did not start is not the pool's to stop


def test_more_workers_than_the_cluster_has_cpus(ray_local):
    with pytest.raises(ValueError, match="needs 3 CPUs; the Ray cluster has 2"):
        RayPool(3)


@pytest.mark.slow
def test_a_ray_the_pool_started_is_shut_down_by_the_last_pool_to_close():
    pytest.importorskip("ray")
    code = ("import ray, sandbox\n"
            "first = sandbox.RayPool(1)\n"          # no Ray yet: this pool starts a local one
            "second = sandbox.RayPool(1)\n"         # relies on the same one
            "assert first.run('def strategy(board):\\n    return \"A\"\\n')[0].outcome == 'stuck'\n"
            "first.close()\n"
            "assert ray.is_initialized()\n"
            "second.close()\n"
            "assert not ray.is_initialized()\n")
    # RAY_ADDRESS=local: a Ray of its own, whatever else runs on this machine.
    env = {**os.environ, "RAY_ADDRESS": "local"}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, env=env)
