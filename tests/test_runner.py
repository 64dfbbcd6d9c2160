"""sandbox.runner: games played in worker processes, limits, kills, replacement, determinism probe."""
from __future__ import annotations

import dataclasses
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import envs
from envs.game2048.baselines import SOURCES
from sandbox.records import OUTCOMES, GameRecord, Limits
from sandbox.planning import UNCHECKED
from sandbox.planning import Malformed as _Malformed
from sandbox.runner import WorkerPool, _validate_game

SPEC = envs.get("2048")
FAST = Limits(move_seconds=0.5, game_seconds=3.0, max_moves=60, stuck_moves=5)

LEFT_UP = '''def strategy(board):
    # Left when it moves anything, else up, right, down.
    rows = list(map(lambda r: list(filter(lambda v: v != 0, r)), board))
    can_left = any(map(lambda i: rows[i] + [0] * (len(board) - len(rows[i])) != board[i]
                       or any(map(lambda j: rows[i][j] == rows[i][j + 1], range(len(rows[i]) - 1))),
                       range(len(board))))
    return "A" if can_left else ["W", "D", "S"][sum(map(sum, board)) % 3]
'''

CYCLE = '''def strategy(board):
    return "WASD"[sum(map(sum, board)) % 4]
'''

GREEDY = SOURCES["greedy"]   # moves only when the board changes: never stuck


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(workers=2) as p:
        yield p


def plain_play(source: str, seed: int, limits: Limits) -> tuple[str, float, int, int]:
    """The same game loop in-process with plain exec: the sandbox must reproduce it exactly."""
    namespace: dict = {}
    exec(compile(source, "<plain>", "exec"), namespace)
    fn = namespace["strategy"]
    state = SPEC.make(seed)
    moves = illegal = run = 0
    while not SPEC.is_over(state) and moves < limits.max_moves:
        _, changed = SPEC.step(state, SPEC.action_id(fn(SPEC.view(state))))
        if changed:
            moves, run = moves + 1, 0
        else:
            illegal, run = illegal + 1, run + 1
            if run >= limits.stuck_moves:
                break
    return SPEC.metrics(state)["score"], int(SPEC.metrics(state)["max_tile"]), moves, illegal


def test_clean_strategy_matches_plain_execution(pool):
    seeds = [0, 1, 2, 3]
    for source in (CYCLE, GREEDY):
        records = pool.run(source, seeds=seeds, limits=FAST, policy=UNCHECKED)
        assert [r.seed for r in records] == seeds
        for r in records:
            assert (r.score, r.metrics["max_tile"], r.moves, r.illegal_moves) == plain_play(source, r.seed, FAST)
    for r in records:
        assert r.outcome == "max_moves", r
        assert sum(r.move_histogram.values()) == r.moves + r.illegal_moves
        assert set(r.move_histogram) == set(SPEC.actions)
        assert set(r.metrics) == set(SPEC.metric_names)
        assert len(r.final_view) == 4 and all(len(row) == 4 for row in r.final_view)
        assert max(map(max, r.final_view)) == r.metrics["max_tile"]
        assert 0 < r.wall_seconds < FAST.game_seconds


def test_same_seeds_same_records(pool):
    strip = lambda rs: [dataclasses.replace(r, wall_seconds=0.0) for r in rs]  # noqa: E731
    a = pool.run(LEFT_UP, seeds=[5, 6], limits=FAST, policy=UNCHECKED)
    b = pool.run(LEFT_UP, seeds=[5, 6], limits=FAST, policy=UNCHECKED)
    assert strip(a) == strip(b)
    assert all(r.outcome in ("max_moves", "finished", "stuck") and r.moves > 0 for r in a), a


@pytest.mark.parametrize("expr, shown", [
    ("'X'", "'X'"), ("'w'", "'w'"), ("' W'", "' W'"), ("1", "int"), ("None", "NoneType"),
    ("['W']", "list"), ("('W',)", "tuple"), ("b'W'", "bytes"),
])
def test_invalid_outputs_end_the_game(pool, expr, shown):
    (r,) = pool.run(f"def strategy(board):\n    return {expr}\n", seeds=[3], limits=FAST, policy=UNCHECKED)
    assert r.outcome == "invalid_output" and shown in r.error and r.moves == 0


def test_exception_is_an_error_with_its_line(pool):
    source = "def strategy(board):\n    x = 1\n    return board[10][0]\n"
    records = pool.run(source, seeds=[0, 1], limits=FAST, policy=UNCHECKED)
    assert [r.outcome for r in records] == ["error", "error"]
    assert "IndexError" in records[0].error and "line 3" in records[0].error


def test_star_args_and_keywords_work(pool):
    source = ("def strategy(board):\n    pick = lambda *a, **k: a[0] % 4\n"
              "    return 'WASD'[max(*[0, 1], *[2]) + pick(*[1], **{'x': 1}) - 3]\n")
    (r,) = pool.run(source, seeds=[0], limits=FAST, policy=UNCHECKED)
    assert r.outcome == "stuck" and r.move_histogram["W"] == r.moves + r.illegal_moves, r


def test_stuck_and_max_moves(pool):
    (stuck,) = pool.run("def strategy(board):\n    return 'W'\n", seeds=[1],
                        limits=dataclasses.replace(FAST, stuck_moves=3), policy=UNCHECKED)
    assert stuck.outcome == "stuck" and stuck.illegal_moves == 3
    (capped,) = pool.run(CYCLE, seeds=[1], limits=dataclasses.replace(FAST, max_moves=7), policy=UNCHECKED)
    assert capped.outcome == "max_moves" and capped.moves == 7


def test_module_level_failures_give_a_record_per_seed(pool):
    for source, outcome in [("def strategy(board):\n    return 'W'\nx = 1 / 0\n", "error"),
                            ("def other(board):\n    return 'W'\n", "error"),
                            ("def strategy(board)\n    return 'W'\n", "error"),
                            ("def strategy(board):\n    return board._x\n", "violation")]:
        records = pool.run(source, seeds=[4, 5, 6], limits=FAST, policy=UNCHECKED)
        assert [(r.seed, r.outcome) for r in records] == [(4, outcome), (5, outcome), (6, outcome)], records


def _seeds_by_corner(want: bool, count: int) -> list[int]:
    found = [s for s in range(200) if (SPEC.view(SPEC.make(s))[0][0] != 0) == want]
    return found[:count]


def test_timeout_kills_the_worker_and_keeps_finished_games(pool):
    # Busy only when the first board has a tile in the top-left corner; one move per game.
    source = ("def strategy(board):\n    if board[0][0]:\n        return str(sum(range(10 ** 10)))\n"
              "    return 'A'\n")
    calm, busy = _seeds_by_corner(False, 3), _seeds_by_corner(True, 1)
    seeds = calm[:2] + busy + calm[2:]
    limits = Limits(move_seconds=0.3, game_seconds=2.0, max_moves=1, stuck_moves=1)
    replaced = pool.replaced
    start = time.monotonic()
    records = pool.run(source, seeds=seeds, limits=limits, policy=UNCHECKED)
    assert time.monotonic() - start < 30.0  # bounded even on a loaded machine (a restart included)
    assert [r.seed for r in records] == seeds
    assert [r.outcome in ("max_moves", "stuck") for r in records[:2]] == [True, True], records
    assert records[2].outcome == "timeout" and "0.3s" in records[2].error
    assert records[3].outcome == "timeout" and "not played" in records[3].error
    # The next job gets a fresh worker and plays normally.
    (after,) = pool.run(GREEDY, seeds=[0], limits=FAST, policy=UNCHECKED)
    assert after.outcome in ("max_moves", "finished")
    assert pool.replaced >= replaced + 1


def test_except_baseexception_cannot_swallow_the_kill(pool):
    source = ("def strategy(board):\n    try:\n        return str(sum(range(10 ** 10)))\n"
              "    except BaseException:\n        return 'A'\n")
    (r,) = pool.run(source, seeds=[0], limits=Limits(move_seconds=0.2, game_seconds=1.0), policy=UNCHECKED)
    assert r.outcome == "timeout"


def test_game_time_limit(pool):
    # Each move is within its limit, the game is not: at 0.1 s or more a move, the five wasted
    # moves in a row that would end the game as "stuck" take longer than the 0.4 s game limit.
    source = "def strategy(board):\n    sum(range(10 ** 7))\n    return 'WASD'[sum(map(sum, board)) % 4]\n"
    (r,) = pool.run(source, seeds=[0], limits=Limits(move_seconds=10.0, game_seconds=0.4), policy=UNCHECKED)
    assert r.outcome == "timeout" and "game took longer" in r.error


def test_memory_bomb_is_contained(pool):
    source = "def strategy(board):\n    x = [0] * (10 ** 10)\n    return 'W'\n"
    records = pool.run(source, seeds=[0, 1], limits=FAST, policy=UNCHECKED)
    assert [r.outcome for r in records] == ["crashed", "crashed"]
    assert "memory" in records[0].error.lower()
    (after,) = pool.run(GREEDY, seeds=[0], limits=FAST, policy=UNCHECKED)
    assert after.outcome in ("max_moves", "finished")


def test_cpu_rlimit_is_a_backstop(pool):
    source = "def strategy(board):\n    return str(sum(range(10 ** 10)))\n"
    limits = Limits(move_seconds=30.0, game_seconds=30.0, cpu_seconds=1)
    (r,) = pool.run(source, seeds=[0], limits=limits, policy=UNCHECKED)
    assert r.outcome == "crashed" and "CPU time" in r.error


def test_dead_worker_is_replaced_and_reported(pool):
    # Only the plain layer lets a program reach os._exit (it raises no audit event).
    source = "import os\ndef strategy(board):\n    os._exit(3)\n"
    records = pool.run_many([source], seeds=[0, 1], limits=FAST, policy=UNCHECKED, restricted=False)[0]
    assert [r.outcome for r in records] == ["crashed", "crashed"]
    # Seeds are split over the two workers, so the second game may have died on its own worker.
    assert "exited with code 3" in records[0].error
    assert "exited with code 3" in records[1].error or "not played" in records[1].error
    (after,) = pool.run(GREEDY, seeds=[0], limits=FAST, policy=UNCHECKED)
    assert after.outcome in ("max_moves", "finished")


def test_garbage_from_a_subverted_worker_is_a_crash(pool):
    # A program that escaped every layer and writes its own frames to the parent's socket.
    source = ("import os, stat\ndef strategy(board):\n    for fd in range(3, 64):\n        try:\n"
              "            if stat.S_ISSOCK(os.fstat(fd).st_mode):\n"
              "                os.write(fd, b'\\x00\\x00\\x00\\x05hello')\n"
              "        except OSError:\n            pass\n    return 'W'\n")
    records = pool.run_many([source], seeds=[0, 1], limits=FAST, policy=UNCHECKED, restricted=False)[0]
    assert [r.outcome for r in records] == ["crashed", "crashed"]
    assert "malformed" in records[0].error


@pytest.mark.parametrize("change", [
    {"outcome": "timeout"}, {"outcome": "won!"}, {"moves": -1}, {"moves": 1.5}, {"score": float("nan")},
    {"move_histogram": {"W": 1}}, {"moved_histogram": {"W": 0, "A": 1, "S": 0, "D": 0}},
    {"metrics": {"evil": 1.0}}, {"seed": 99}, {"i": 1}, {"error": 3},
    {"final_view": [[1] * 10] * 1000}, {"wall_seconds": 1e9}, {"illegal_moves": 7},
])
def test_validation_refuses_malformed_records(change):
    good = {"t": "game", "i": 0, "seed": 0, "outcome": "finished", "score": 4.0, "max_tile": 4, "moves": 1,
            "move_histogram": {"W": 1, "A": 0, "S": 0, "D": 0}, "moved_histogram": {"W": 1, "A": 0, "S": 0, "D": 0},
            "illegal_moves": 0, "wall_seconds": 0.01, "error": "",
            "metrics": {"score": 4.0, "max_tile": 4.0, "moves": 1.0}, "final_view": [[4, 0], [0, 2]]}
    assert isinstance(_validate_game(good, 0, [0], SPEC, 1.0), GameRecord)
    with pytest.raises(_Malformed):
        _validate_game({**good, **change}, 0, [0], SPEC, 1.0)


def test_hash_dependent_strategy_is_deterministic_within_a_pool(pool):
    # Set order of strings depends on PYTHONHASHSEED; play and probe share the pool's secret seed, so
    # the order is the same in both and the program is as deterministic as any other.
    source = ("def strategy(board):\n    order = list(set('abcdefghij'))\n"
              "    return 'WASD'[order.index('abcdefghij'[sum(map(sum, board)) % 10]) % 4]\n")
    records = pool.run(source, seeds=[0, 1], limits=FAST, policy=UNCHECKED)
    assert all(r.outcome != "violation" for r in records), records
    # State kept between calls is still caught on the same boards.
    counter = "def strategy(board, seen=[]):\n    seen.append(1)\n    return 'WASD'[len(seen) % 4]\n"
    assert all(r.outcome == "violation" and r.error.startswith("randomness:")
               for r in pool.run(counter, seeds=[0, 1], limits=FAST, policy=UNCHECKED))


def test_a_named_violation_is_not_renamed_randomness(pool):
    # Violates only on some boards: its probe answers differ, but the records keep the real cause.
    source = "def strategy(board):\n    if board[0][0]:\n        open('x')\n    return 'WASD'[sum(map(sum, board)) % 4]\n"
    records = pool.run(source, seeds=list(range(6)), limits=FAST, policy=UNCHECKED)
    assert all(r.outcome == "violation" and "open" in r.error for r in records), records


def test_static_check_rejects_without_running(pool):
    pytest.importorskip("sandbox.check")
    records = pool.run("import os\ndef strategy(board):\n    return 'W'\n", seeds=[0, 1], limits=FAST)
    assert [r.outcome for r in records] == ["violation", "violation"]
    assert records[0].error.startswith("static check:") and records[0].moves == 0


def test_unknown_game_option_is_a_clear_error(pool):
    with pytest.raises(ValueError, match="option"):
        pool.run(CYCLE, seeds=[0], options={"colour": 3}, policy=UNCHECKED)


def test_other_board_sizes(pool):
    (r,) = pool.run(CYCLE, seeds=[0], options={"size": 3}, limits=FAST, policy=UNCHECKED)
    assert len(r.final_view) == 3 and r.outcome in ("finished", "max_moves", "stuck", "won")


PICKS = [CYCLE, "def strategy(board):\n    return 'W'\n", "def strategy(board):\n    return 7\n",
           "def strategy(board):\n    return board[9]\n", "def strategy(board)\n", "x = (\n"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.sampled_from(range(len(PICKS))), min_size=1, max_size=4),
       seeds=st.lists(st.integers(0, 2 ** 31), min_size=0, max_size=4))
def test_every_source_gets_a_record_per_seed(pool, picks, seeds):
    results = pool.run_many([PICKS[i] for i in picks], seeds=seeds, limits=FAST, policy=UNCHECKED)
    assert len(results) == len(picks)
    for records in results:
        assert [r.seed for r in records] == seeds
        assert all(r.outcome in OUTCOMES for r in records)


# -- a relaxed policy's recursion runs; the default policy's never does --------------------------------

RECURSIVE = '''def depth(n):
    return 0 if n <= 0 else depth(n - 1) + 1

def strategy(board):
    return "WASD"[depth(sum(map(sum, board)) % 7) % 4]
'''


def test_recursion_runs_exactly_where_the_policy_allows_it(pool):
    from sandbox.check import check
    from sandbox.policy import DEFAULT_POLICY

    relaxed = dataclasses.replace(DEFAULT_POLICY, allow_recursion=True)
    assert check(RECURSIVE, relaxed).ok and not check(RECURSIVE).ok
    # What the relaxed check accepts, the runtime runs: the same game as plain Python.
    (r,) = pool.run(RECURSIVE, seeds=[2], limits=FAST, policy=relaxed)
    assert r.outcome in ("max_moves", "stuck", "finished"), r
    assert (r.score, r.metrics["max_tile"], r.moves, r.illegal_moves) == plain_play(RECURSIVE, 2, FAST)
    (r,) = pool.run(RECURSIVE, seeds=[2], limits=FAST)
    assert r.outcome == "violation" and "static check" in r.error
    (r,) = pool.run(RECURSIVE, seeds=[2], limits=FAST, policy=UNCHECKED)  # the default runtime alone
    assert r.outcome == "violation" and "loop" in r.error


def test_a_relaxed_policy_bounds_recursion_by_depth(pool):
    from sandbox.policy import DEFAULT_POLICY

    endless = "def down(n):\n    return down(n + 1)\n\ndef strategy(board):\n    return down(0)\n"
    (r,) = pool.run(endless, seeds=[0], limits=FAST, policy=dataclasses.replace(DEFAULT_POLICY, allow_recursion=True))
    assert r.outcome == "error" and "RecursionError" in r.error


# -- recording every call of a game ----------------------------------------------------------------------

def test_recorded_calls_are_every_call_of_each_game_in_order(pool):
    from envs.play import play_trusted
    from sandbox.records import RecordedGame

    strip = lambda r: dataclasses.replace(r, wall_seconds=0.0)  # noqa: E731
    seeds = [4, 4, 9]  # a repeated seed has its own calls
    namespace: dict = {}
    exec(compile(LEFT_UP, "<plain>", "exec"), namespace)  # our own program, trusted
    plain = pool.run(LEFT_UP, seeds=seeds, limits=FAST)
    recorded = pool.run(LEFT_UP, seeds=seeds, limits=FAST, record_calls=True)
    assert [type(g) for g in recorded] == [RecordedGame] * len(seeds)
    for game, record in zip(recorded, plain):
        assert strip(game.record) == strip(record)
        asked: list = []

        def spy(view, asked=asked):
            asked.append((tuple(map(tuple, view)), namespace["strategy"](view)))
            return asked[-1][1]

        play_trusted(spy, seeds=[record.seed], max_moves=FAST.max_moves, stuck_moves=FAST.stuck_moves)
        assert list(game.calls) == asked
        assert len(game.calls) == record.moves + record.illegal_moves


def test_recorded_calls_of_programs_that_never_ran_are_empty(pool):
    rejected, unloadable = "import os\ndef strategy(board):\n    return 'W'\n", "x = 1 // 0\ndef strategy(board):\n    return 'W'\n"
    for game in pool.run_many([rejected, unloadable], seeds=[0, 1], limits=FAST, record_calls=True):
        assert [g.calls for g in game] == [(), ()] and {g.record.outcome for g in game} <= {"violation", "error"}
