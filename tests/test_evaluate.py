"""evaluate / evaluate_group: common random numbers, the source-hash cache, never running a
non-compliant program (with a recording stand-in for the sandbox), then end to end through
the real sandbox: determinism across worker counts, baseline ranking, cheats."""
from __future__ import annotations

import functools
import inspect
import sys
import types

import pytest
from hypothesis import HealthCheck, given, settings

import rewards
from rewards.evaluate import RecordCache, source_hash
from sandbox.records import FormatError, GameRecord, Limits, Verdict, Violation

evaluate_module = sys.modules["rewards.evaluate"]  # rewards.evaluate is also the function's name
SPEC = rewards.default_spec()

GOOD = '''def strategy(board):
    # prefer left, then up
    return "A" if board[0][0] else "W"
'''
GOOD_RELAID = '''def strategy(board):

    return "A" if board[0][0] else "W"   # same program, other layout
'''
OTHER = 'def strategy(board):\n    return "D"\n'
BAD = 'import os\ndef strategy(board):\n    return "W"\n'


def fence(source: str, prose: str = "Here is my strategy:") -> str:
    return f"{prose}\n```python\n{source}```\n"


class FakeSandbox:
    """Records what the rewards ask the sandbox to do; plays nothing."""

    def __init__(self):
        self.runs: list[tuple[list[str], list[int]]] = []

    def extract(self, completion: str) -> str:
        if "```python\n" not in completion:
            raise FormatError("no_code", "no code block")
        return completion.split("```python\n", 1)[1].split("```", 1)[0]

    def check(self, source: str, policy=None) -> Verdict:
        if "import" in source:
            return Verdict(False, (Violation("no-import", "import", 1, 0, "import"),))
        return Verdict(True)

    def run_many(self, sources, game, seeds, limits=None, options=None, pool=None, policy=None):
        assert not any("import" in s for s in sources), "a non-compliant program was sent to run"
        self.runs.append((list(sources), list(seeds)))
        return [[GameRecord(seed=s, outcome="finished", score=100.0 * len(src), metrics={"max_tile": 64}, moves=50,
                            move_histogram={"W": 20, "A": 30}) for s in seeds] for src in sources]


@pytest.fixture
def fake(monkeypatch):
    box = FakeSandbox()
    monkeypatch.setattr(evaluate_module, "sandbox", types.SimpleNamespace(
        extract=box.extract, check=box.check, run_many=box.run_many))
    return box


def test_source_hash_ignores_layout_and_comments():
    assert source_hash(GOOD) == source_hash(GOOD_RELAID)
    assert source_hash(GOOD) != source_hash(OTHER)
    assert source_hash("def broken(:") == source_hash("def broken(:\n\n")


def test_group_runs_each_distinct_compliant_program_once_on_shared_seeds(fake):
    completions = [fence(GOOD), fence(GOOD_RELAID, "again"), fence(OTHER), fence(BAD), "no code at all", fence(GOOD)]
    out = rewards.evaluate_group(completions, game="2048", seeds=[3, 4, 5], spec=SPEC)
    assert len(fake.runs) == 1
    sources, seeds = fake.runs[0]
    assert seeds == [3, 4, 5] and len(sources) == 2  # GOOD (any layout) and OTHER; BAD never runs
    assert [b.info["compliant"] for b in out] == [1, 1, 1, 0, 0, 1]
    assert out[0].values == out[1].values == out[5].values
    assert out[3].total < 0 and out[3].values["performance"] == 0.0
    assert out[4].values["format"] == SPEC.term("format").all_params()["no_code"]
    assert [b.source for b in out][:3] == [GOOD, GOOD_RELAID, OTHER]


def test_cache_across_calls_keys_on_seeds(fake):
    cache = RecordCache(maxsize=8)
    rewards.evaluate_group([fence(GOOD)], game="2048", seeds=[0, 1], spec=SPEC, cache=cache)
    rewards.evaluate_group([fence(GOOD_RELAID), fence(GOOD)], game="2048", seeds=[0, 1], spec=SPEC, cache=cache)
    assert len(fake.runs) == 1
    rewards.evaluate_group([fence(GOOD)], game="2048", seeds=[2, 3], spec=SPEC, cache=cache)
    assert len(fake.runs) == 2 and len(cache) == 2


def test_record_cache_is_bounded_lru():
    cache = RecordCache(maxsize=2)
    cache["a"], cache["b"] = 1, 2
    cache["a"]
    cache["c"] = 3
    assert list(cache) == ["a", "c"]


def test_one_keyword_signature(fake):
    completions = [fence(GOOD), fence(OTHER)]
    contract = rewards.evaluate_group(completions, game="2048", seeds=[0, 1], spec=SPEC)
    assert rewards.evaluate_group(completions, seeds=[0, 1], spec=SPEC) == contract  # game: the spec's
    assert rewards.evaluate_group(completions, seeds=(0, 1)) == contract  # spec: the game's shipped one
    assert [b.total for b in rewards.evaluate_group(completions, spec=SPEC)] == [b.total for b in contract]  # default seeds
    params = inspect.signature(rewards.evaluate_group).parameters
    assert [p.name for p in params.values() if p.kind is not p.KEYWORD_ONLY] == ["completions"]
    assert list(params) == ["completions", "game", "seeds", "spec", "pool", "limits", "options", "policy", "cache"]
    with pytest.raises(TypeError):
        rewards.evaluate_group(completions, "2048", [0, 1], SPEC)  # the old positional form
    with pytest.raises(TypeError):
        rewards.evaluate_group(completions, [0, 1])  # the old form after a functools.partial
    with pytest.raises(TypeError, match="list of completions"):
        rewards.evaluate_group("one string", seeds=[0], spec=SPEC)
    with pytest.raises(ValueError, match="seeds is empty"):
        rewards.evaluate_group(completions, seeds=[], spec=SPEC)


def test_settings_and_hashes_are_worked_out_once_per_call(fake, monkeypatch):
    calls = {"settings": 0, "hash": 0}
    settings_, hash_ = evaluate_module._settings, evaluate_module.source_hash

    def counting_settings(*args):
        calls["settings"] += 1
        return settings_(*args)

    def counting_hash(source):
        calls["hash"] += 1
        return hash_(source)

    monkeypatch.setattr(evaluate_module, "_settings", counting_settings)
    monkeypatch.setattr(evaluate_module, "source_hash", counting_hash)
    completions = [fence(GOOD), fence(GOOD_RELAID), fence(OTHER), fence(BAD), fence(GOOD)]
    rewards.evaluate_group(completions, seeds=[0, 1], spec=SPEC)
    # once per call; one hash per distinct compliant source (GOOD, GOOD_RELAID, OTHER; BAD is never hashed)
    assert calls == {"settings": 1, "hash": 3}


def test_small_cache_never_loses_records_within_a_call(fake):
    cache = RecordCache(maxsize=1)
    completions = [fence(GOOD), fence(OTHER), fence('def strategy(board):\n    return "S"\n'), fence(GOOD)]
    out = rewards.evaluate_group(completions, seeds=[0], spec=SPEC, cache=cache)
    assert out == rewards.evaluate_group(completions, seeds=[0], spec=SPEC)
    assert len(cache) == 1 and len(fake.runs) == 2


def test_evaluations_carry_the_game_options(fake):
    [ev] = rewards.evaluate_many([fence(GOOD)], seeds=[0], spec=SPEC, options={"target": 512})
    assert ev.options == {**SPEC.options, "target": 512}
    [ev] = rewards.evaluate_many([fence(GOOD)], "toy", [0], spec=SPEC)  # another game: not the spec's options
    assert ev.options == {}


def test_spec_target_option_reaches_the_performance_rule_through_a_group(fake):
    spec512 = rewards.RewardSpec.from_text(SPEC.to_toml().replace("target = 2048", "target = 512"))
    [b] = rewards.evaluate_group([fence(GOOD)], seeds=[0], spec=spec512)
    [ev] = rewards.evaluate_many([fence(GOOD)], seeds=[0], spec=spec512)
    assert ev.options["target"] == 512
    performance = rewards.get_rule("performance")
    assert b.values["performance"] == performance(ev, target=512) != performance(ev, target=2048)


def test_group_reward_fn_is_the_trainer_contract(fake):
    completions = [fence(GOOD), fence(OTHER), "no code"]
    reward_fn = rewards.group_reward_fn("2048", SPEC)
    assert not isinstance(reward_fn, functools.partial) and isinstance(reward_fn.cache, RecordCache)
    contract = rewards.evaluate_group(completions, game="2048", seeds=[0, 1], spec=SPEC)
    assert reward_fn(completions, seeds=[0, 1]) == contract
    assert len(fake.runs) == 2
    assert reward_fn(completions, seeds=[0, 1]) == contract  # the same programs on the same seeds: cached
    assert len(fake.runs) == 2
    reward_fn(completions, seeds=[2, 3])  # new seeds: new games
    assert len(fake.runs) == 3
    with pytest.raises(TypeError):
        reward_fn(completions, [0, 1])  # seeds is a keyword
    with pytest.raises(TypeError, match="list of completions"):
        reward_fn("one string", seeds=[0])
    assert rewards.group_reward_fn("2048").spec == rewards.default_spec("2048")
    shared = RecordCache()
    assert rewards.group_reward_fn("2048", SPEC, cache=shared).cache is shared
    assert "GroupRewardFn(game='2048'" in repr(reward_fn)


def test_group_reward_fn_checks_one_breakdown_per_completion(fake, monkeypatch):
    monkeypatch.setattr(evaluate_module, "evaluate_group", lambda completions, **kw: [])
    with pytest.raises(ValueError, match="0 breakdowns for 1 completions"):
        rewards.group_reward_fn("2048", SPEC)([fence(GOOD)], seeds=[0])


def test_evaluate_single_completion(fake):
    ev = rewards.evaluate(fence(GOOD), "2048", (7,))
    assert ev.source == GOOD and ev.verdict.ok and [r.seed for r in ev.records] == [7]
    ev = rewards.evaluate(fence(BAD), "2048", (7,))
    assert not ev.verdict.ok and ev.records == ()
    ev = rewards.evaluate("prose only", "2048", (7,))
    assert ev.format_error.reason == "no_code" and ev.source is None and ev.verdict is None


# ------------------------------------------------------------------ through the real sandbox

def _real_sandbox():
    import sandbox
    missing = [n for n in ("extract", "check", "run", "run_many", "WorkerPool") if not hasattr(sandbox, n)]
    if missing:
        pytest.skip(f"sandbox does not provide {', '.join(missing)} yet")
    return sandbox


@pytest.fixture(scope="module")
def pools():
    sandbox = _real_sandbox()
    one, two = sandbox.WorkerPool(1), sandbox.WorkerPool(2)
    yield one, two
    one.close()
    two.close()


FAST = Limits(max_moves=300, game_seconds=10.0)


def test_real_group_is_deterministic_across_runs_and_worker_counts(pools):
    baselines = pytest.importorskip("envs.baselines")
    one, two = pools
    sources = baselines.sources("2048")
    completions = [fence(sources["corner"]), fence(sources["greedy"]), fence(OTHER),
                   fence(BAD), fence("def strategy(board):\n    return 7\n"),
                   fence("def strategy(board):\n    return board[9][9]\n"), "no code"]
    a = rewards.evaluate_group(completions, game="2048", seeds=[0, 1], spec=SPEC, pool=one, limits=FAST)
    b = rewards.evaluate_group(completions, game="2048", seeds=[0, 1], spec=SPEC, pool=two, limits=FAST)
    c = rewards.evaluate_group(completions, game="2048", seeds=[0, 1], spec=SPEC, pool=two, limits=FAST)
    assert [x.values for x in a] == [x.values for x in b] == [x.values for x in c]
    assert [x.total for x in a] == [x.total for x in b] == [x.total for x in c]
    totals = [x.total for x in a]
    # plays > runtime error >= invalid output (a failure to answer, not a move) > non-compliant
    assert totals[0] > totals[5] >= totals[4] > totals[3]
    assert a[4].info["outcome_invalid_output"] == 2 and a[5].info["outcome_error"] == 2


def test_real_baselines_rank_in_true_order(pools):
    """The sandboxable baselines through the sandbox, expectimax played trusted: true order."""
    baselines = pytest.importorskip("envs.baselines")
    seeds = list(range(6))
    names = ("greedy", "corner", "fixed")
    out = rewards.evaluate_group([fence(baselines.sources("2048")[n]) for n in names], game="2048", seeds=seeds, spec=SPEC,
                                 pool=pools[1])
    totals = dict(zip(names, (b.total for b in out)))
    assert all(b.info["compliant"] == 1 for b in out)
    strategy = baselines.make("expectimax")
    records = []
    for seed in seeds:
        histogram: dict[str, int] = {}

        def counting(board, histogram=histogram):
            move = strategy(board)
            histogram[move] = histogram.get(move, 0) + 1
            return move

        g = baselines.play_games(counting, [seed], max_moves=SPEC.limits.max_moves)[0]
        records.append(GameRecord(seed=seed, outcome=g["outcome"], score=g["score"], metrics={"max_tile": g["metrics"]["max_tile"]},
                                  moves=g["moves"], move_histogram=histogram))
    ev = rewards.Evaluation(completion="", game="2048", source=OTHER, verdict=Verdict(True), records=tuple(records))
    totals["expectimax"] = rewards.score(ev, SPEC).total
    assert totals["expectimax"] > totals["greedy"] > totals["corner"] > totals["fixed"], totals


def test_real_cheats_never_get_a_positive_total(pools):
    _real_sandbox()
    cheats = pytest.importorskip("sandbox.cheats")
    seen = []

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cheats.cheating_strategies())
    def check(cheat):
        [b] = rewards.evaluate_group([fence(cheat.source)], game="2048", seeds=[0], spec=SPEC, pool=pools[1],
                                     limits=FAST)
        seen.append(cheat.category)
        assert b.total < 0, (cheat.category, cheat.technique, b.values)
        assert b.values["performance"] == 0.0

    check()
    assert seen
