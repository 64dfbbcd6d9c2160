"""score(): total = weighted sum, bounds, info keys, the orders the defaults promise, baseline ranking."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings, strategies as st

import rewards
from rewards import rules
from rewards.records import Evaluation
from sandbox.records import FORMAT_REASONS, OUTCOMES, FormatError, GameRecord, Verdict, Violation

SPEC = rewards.default_spec()
SOURCE = 'def strategy(board):\n    return "A"\n'
CATEGORIES = ("import", "file_access", "randomness", "loop", "escape", "state", "structure", "resource", "syntax")
INFO_KEYS = {"format_ok", "compliant", "played", "mean_score", "max_tile", "mean_max_tile", "won_rate"}

tiles = st.sampled_from([0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384])
histograms = st.dictionaries(st.sampled_from("WASD"), st.integers(0, 3000))


@st.composite
def records(draw, outcomes=st.sampled_from(OUTCOMES)):
    return GameRecord(seed=draw(st.integers(0, 100)), outcome=draw(outcomes), score=draw(st.floats(0, 3e5)),
                      max_tile=draw(tiles), moves=draw(st.integers(0, 6000)), move_histogram=draw(histograms))


violations = st.builds(Violation, rule=st.just("r"), category=st.sampled_from(CATEGORIES + ("other",)),
                       line=st.integers(1, 9), col=st.integers(0, 9), message=st.just("m"))


@st.composite
def evaluations(draw):
    kind = draw(st.sampled_from(["format", "rejected", "ran"]))
    if kind == "format":
        reason = draw(st.sampled_from(FORMAT_REASONS))
        return Evaluation(completion="c", game="2048", format_error=FormatError(reason, "m"))
    source = SOURCE + "\n".join(f"# {i}\n    x = {i}" for i in range(draw(st.integers(0, 120))))
    if kind == "rejected":
        found = tuple(draw(st.lists(violations, min_size=1, max_size=4)))
        return Evaluation(completion="c", game="2048", source=source, verdict=Verdict(False, found))
    games = tuple(draw(st.lists(records(), min_size=1, max_size=6)))
    return Evaluation(completion="c", game="2048", source=source, verdict=Verdict(True), records=games)


def ran(*games: GameRecord) -> Evaluation:
    return Evaluation(completion=SOURCE, game="2048", source=SOURCE, verdict=Verdict(True), records=tuple(games))


@settings(max_examples=300, deadline=None)
@given(ev=evaluations(), weights=st.lists(st.floats(-3, 3, allow_nan=False), min_size=5, max_size=5))
def test_total_is_the_weighted_sum_and_bounded(ev, weights):
    spec = SPEC
    for name, w in zip(SPEC.names, weights):
        spec = spec.with_rule(name, w, **SPEC.term(name).params)
    b = rewards.score(ev, spec)
    assert b.weights == spec.weights
    assert set(b.values) == set(spec.names)
    assert b.total == pytest.approx(sum(b.weights[k] * v for k, v in b.values.items()), abs=1e-12)
    lo, hi = spec.total_bounds()
    assert lo - 1e-9 <= b.total <= hi + 1e-9
    for name, v in b.values.items():
        low, high = spec.term(name).rule.bounds
        assert low <= v <= high and math.isfinite(v)
    assert INFO_KEYS <= set(b.info)
    assert b == rewards.score(ev, spec)  # deterministic


@settings(max_examples=200, deadline=None)
@given(ev=evaluations(), runtime=st.lists(records(st.just("violation")), max_size=2),
       honest=st.lists(records(st.sampled_from(sorted(rules.HONEST_OUTCOMES))), max_size=4))
def test_cheats_never_get_a_positive_total(ev, runtime, honest):
    if ev.verdict is None:
        return
    if ev.verdict.ok:
        if not runtime:  # caught at run time: one game stopped by the guard, others maybe honest
            runtime = [GameRecord(seed=0, outcome="violation", error="audit: open")]
        ev = Evaluation(completion="c", game="2048", source=ev.source, verdict=ev.verdict,
                        records=tuple(honest) + tuple(runtime))
    b = rewards.score(ev, SPEC)
    assert b.total < 0
    assert b.values["performance"] == 0.0 and b.info["compliant"] == 0.0


def test_ladder_of_totals():
    """Format reasons in order, then runtime error < bad move < plays.

    A program stuck on one move is a bad move that also pays the diversity penalty, so it
    sits between a runtime error and an invalid output.
    """
    ladder = [Evaluation(completion="c", game="2048", format_error=FormatError(r, "m")) for r in FORMAT_REASONS]
    ladder += [
        ran(GameRecord(seed=0, outcome="error", max_tile=4, error="NameError")),
        ran(GameRecord(seed=0, outcome="stuck", max_tile=8, moves=6, move_histogram={"A": 11})),
        ran(GameRecord(seed=0, outcome="invalid_output", max_tile=4)),
        ran(GameRecord(seed=0, outcome="finished", max_tile=16, score=40, moves=30,
                       move_histogram={"A": 30})),
    ]
    totals = [rewards.score(e, SPEC).total for e in ladder]
    assert totals == sorted(totals) and len(set(totals)) == len(totals), totals


@settings(max_examples=200, deadline=None)
@given(honest=st.lists(records(st.sampled_from(sorted(rules.HONEST_OUTCOMES))), min_size=1, max_size=4),
       early=st.lists(records(st.sampled_from(["invalid_output", "stuck", "error", "timeout", "crashed"])),
                      min_size=1, max_size=4))
def test_early_ending_programs_score_below_honest_ones(honest, early):
    assert rewards.score(ran(*early), SPEC).total < rewards.score(ran(*honest), SPEC).total


def test_info_keys():
    b = rewards.score(ran(GameRecord(seed=0, outcome="won", score=21000, max_tile=2048, moves=900,
                                     move_histogram={"W": 300, "A": 300, "S": 300}),
                          GameRecord(seed=1, outcome="stuck", score=100, max_tile=32, moves=40,
                                     move_histogram={"A": 45})), SPEC)
    assert b.info["format_ok"] == 1 and b.info["compliant"] == 1 and b.info["played"] == 1
    assert b.info["max_tile"] == 2048 and b.info["mean_max_tile"] == 1040 and b.info["won_rate"] == 0.5
    assert b.info["mean_score"] == 10550 and b.info["outcome_stuck"] == 1 and b.info["outcome_won"] == 1
    assert b.source == SOURCE
    failed = rewards.score(Evaluation(completion="", game="2048", format_error=FormatError("empty", "m")), SPEC)
    assert failed.info["format_ok"] == 0 and failed.info["played"] == 0 and failed.source is None
    crashed = rewards.score(ran(GameRecord(seed=0, outcome="error", max_tile=4, error="x")), SPEC)
    assert crashed.info["played"] == 0 and crashed.info["compliant"] == 1


def test_rule_values_are_clipped_and_nan_refused():
    @rewards.rule("test_wild", bounds=(-1.0, 1.0))
    def wild(ev, *, value: float = 5.0):
        """Returns what it is told."""
        return value

    spec = SPEC.with_rule("test_wild", 1.0)
    assert rewards.score(ran(), spec).values["test_wild"] == 1.0
    with pytest.raises(ValueError, match="rule 'test_nan' returned nan"):
        rewards.score(ran(), SPEC.with_rule(lambda ev: float("nan"), 1.0, name="test_nan"))


# ------------------------------------------------------------------ baselines, played trusted in-process

def _trusted_records(name: str, seeds, max_moves: int = 5000) -> tuple[GameRecord, ...]:
    baselines = pytest.importorskip("envs.baselines", reason="envs.baselines not written yet")
    strategy = baselines.make(name)
    out = []
    for seed in seeds:
        histogram: dict[str, int] = {}

        def counting(board, strategy=strategy, histogram=histogram):
            move = strategy(board)
            histogram[move] = histogram.get(move, 0) + 1
            return move

        g = baselines.play_games(counting, [seed], max_moves=max_moves)[0]
        out.append(GameRecord(seed=seed, outcome=g["outcome"], score=g["score"], max_tile=g["max_tile"],
                              moves=g["moves"], move_histogram=histogram))
    return tuple(out)


def test_defaults_rank_the_baselines_in_true_order():
    """expectimax > greedy > corner > a fixed single move, on the same 8 seeds."""
    seeds = range(8)
    totals = {}
    for name in ("expectimax", "greedy", "corner", "fixed"):
        totals[name] = rewards.score(ran(*_trusted_records(name, seeds)), SPEC).total
    assert totals["expectimax"] > totals["greedy"] > totals["corner"] > totals["fixed"], totals
