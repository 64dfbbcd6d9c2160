"""score(): total = weighted sum, bounds, info keys, the orders the defaults promise, baseline ranking."""
from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings, strategies as st

import rewards
from rewards import rules
from rewards.records import Evaluation
from sandbox.records import FORMAT_REASONS, OUTCOMES, FormatError, GameRecord, Verdict, Violation

SPEC = rewards.default_spec()
RECORD_FIELDS = {f.name for f in dataclasses.fields(GameRecord)}
SOURCE = 'def strategy(board):\n    return "A"\n'
CATEGORIES = ("import", "file_access", "randomness", "loop", "escape", "state", "structure", "resource", "syntax")
INFO_KEYS = {"format_ok", "compliant", "played", "mean_score", "max_tile", "mean_max_tile", "won_rate"}

tiles = st.sampled_from([0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384])
histograms = st.dictionaries(st.sampled_from("WASD"), st.integers(0, 3000))


@st.composite
def records(draw, outcomes=st.sampled_from(OUTCOMES)):
    """A game record; board-changing moves are part of the answers, the rest padding that changed nothing."""
    moved = draw(histograms)
    padding = draw(st.dictionaries(st.sampled_from("WASD"), st.integers(0, 3000)))
    answered = {m: moved.get(m, 0) + padding.get(m, 0) for m in "WASD"}
    return GameRecord(seed=draw(st.integers(0, 100)), outcome=draw(outcomes), score=draw(st.floats(0, 3e5)),
                      metrics={"max_tile": draw(tiles)}, moves=sum(moved.values()), move_histogram=answered,
                      moved_histogram={m: moved.get(m, 0) for m in "WASD"},
                      illegal_moves=sum(padding.values()))


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
    """Format reasons in order, then runtime error (= invalid output) < bad move (stuck) < plays.

    This test used to put an invalid output *above* a program stuck on one move: "Q" paid
    0.61, more than "A". An invalid answer is a failure to answer: it totals
    exactly what a raise does, and a program that never moved pays the full diversity penalty.
    """
    ladder = [Evaluation(completion="c", game="2048", format_error=FormatError(r, "m")) for r in FORMAT_REASONS]
    ladder += [
        ran(GameRecord(seed=0, outcome="error", metrics={"max_tile": 4}, error="NameError")),
        ran(GameRecord(seed=0, outcome="stuck", metrics={"max_tile": 8}, moves=6, move_histogram={"A": 11},
                       moved_histogram={"A": 6}, illegal_moves=5)),
        ran(GameRecord(seed=0, outcome="finished", metrics={"max_tile": 16}, score=40, moves=30,
                       move_histogram={"A": 30}, moved_histogram={"A": 30})),
    ]
    totals = [rewards.score(e, SPEC).total for e in ladder]
    assert totals == sorted(totals) and len(set(totals)) == len(totals), totals
    invalid = ran(GameRecord(seed=0, outcome="invalid_output", metrics={"max_tile": 4}))
    assert rewards.score(invalid, SPEC).total == totals[len(FORMAT_REASONS)]


@settings(max_examples=150, deadline=None)
@given(rec=records(st.sampled_from(["invalid_output", "error", "timeout", "crashed", "stuck"])))
def test_an_invalid_answer_totals_what_a_runtime_error_does(rec):
    as_error = dataclasses.replace(rec, outcome="error")
    as_invalid = dataclasses.replace(rec, outcome="invalid_output")
    assert rewards.score(ran(as_invalid), SPEC).total == rewards.score(ran(as_error), SPEC).total


@settings(max_examples=150, deadline=None)
@given(rec=records(st.sampled_from(OUTCOMES)), pad=histograms)
def test_answers_that_change_nothing_earn_nothing(rec, pad):
    padded = dataclasses.replace(rec, move_histogram={m: rec.move_histogram.get(m, 0) + pad.get(m, 0) for m in "WASD"},
                                 illegal_moves=rec.illegal_moves + sum(pad.values()))
    assert rewards.score(ran(padded), SPEC).total == rewards.score(ran(rec), SPEC).total


@settings(max_examples=200, deadline=None)
@given(honest=st.lists(records(st.sampled_from(sorted(rules.HONEST_OUTCOMES))), min_size=1, max_size=4),
       early=st.lists(records(st.sampled_from(["invalid_output", "stuck", "error", "timeout", "crashed"])),
                      min_size=1, max_size=4))
def test_early_ending_programs_score_below_honest_ones(honest, early):
    assert rewards.score(ran(*early), SPEC).total < rewards.score(ran(*honest), SPEC).total


def test_info_keys():
    b = rewards.score(ran(GameRecord(seed=0, outcome="won", score=21000, metrics={"max_tile": 2048}, moves=900,
                                     move_histogram={"W": 300, "A": 300, "S": 300}),
                          GameRecord(seed=1, outcome="stuck", score=100, metrics={"max_tile": 32}, moves=40,
                                     move_histogram={"A": 45})), SPEC)
    assert b.info["format_ok"] == 1 and b.info["compliant"] == 1 and b.info["played"] == 1
    assert b.info["max_tile"] == 2048 and b.info["mean_max_tile"] == 1040 and b.info["won_rate"] == 0.5
    assert b.info["mean_score"] == 10550 and b.info["outcome_stuck"] == 1 and b.info["outcome_won"] == 1
    assert b.source == SOURCE
    failed = rewards.score(Evaluation(completion="", game="2048", format_error=FormatError("empty", "m")), SPEC)
    assert failed.info["format_ok"] == 0 and failed.info["played"] == 0 and failed.source is None
    crashed = rewards.score(ran(GameRecord(seed=0, outcome="error", metrics={"max_tile": 4}, error="x")), SPEC)
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
    import envs.baselines as baselines

    played = baselines.play_games(baselines.make(name), seeds, max_moves=max_moves)
    return tuple(GameRecord(**{k: v for k, v in g.items() if k in RECORD_FIELDS}) for g in played)


def test_defaults_rank_the_baselines_in_true_order():
    """expectimax > greedy > corner > a fixed single move, on the same 8 seeds."""
    seeds = range(8)
    totals = {}
    for name in ("expectimax", "greedy", "corner", "fixed"):
        totals[name] = rewards.score(ran(*_trusted_records(name, seeds)), SPEC).total
    assert totals["expectimax"] > totals["greedy"] > totals["corner"] > totals["fixed"], totals


# ------------------------------------------------------------------ classes of programs, generated
#
# Four classes of strategy programs, each drawn in many textual variants (names, helper
# functions, comments, orders of preference, layout), written in the loop-free style of
# envs.baselines. The default spec must order their totals: an invalid answer < a constant
# legal move < a heuristic that does not check its move changes the board < one that does.

MOVES = ("W", "A", "S", "D")
_NAME_STEMS = ("move", "pick", "best", "choice", "order", "cells", "grid", "rows", "answer", "key",
               "res", "out", "val", "tmp", "prefs", "go")
_COMMENTS = ("# pick a move", "# keep the big tile in a corner", "# simple and fast", "# TODO: smarter",
             "# the board is a list of rows", "# 2048 strategy")


class _Names:
    """Distinct identifiers for one program (a stem and a counter, so no two collide)."""

    def __init__(self, draw):
        self.draw, self.n = draw, 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.draw(st.sampled_from(_NAME_STEMS))}{self.n}"


def _comment(draw, indent: str = "    ") -> list[str]:
    return [indent + draw(st.sampled_from(_COMMENTS))] if draw(st.booleans()) else []


def _returning(draw, names: _Names, expr: str) -> list[str]:
    """Lines of ``strategy``'s body that return ``expr``: directly, through a variable, or a helper."""
    form = draw(st.sampled_from(["direct", "variable", "helper", "lambda"]))
    if form == "direct":
        return [f"    return {expr}"]
    if form == "variable":
        v = names()
        return [f"    {v} = {expr}", f"    return {v}"]
    f = names()
    if form == "helper":
        return [f"    def {f}(rows):", *_comment(draw, "        "), f"        return {expr.replace('board', 'rows')}",
                f"    return {f}(board)"]
    return [f"    {f} = lambda rows: {expr.replace('board', 'rows')}", f"    return {f}(board)"]


def _program(draw, body: list[str]) -> str:
    lines = ["def strategy(board):", *_comment(draw), *body]
    return "\n".join(lines) + "\n"


@st.composite
def invalid_key_programs(draw) -> str:
    """Programs that answer something that is not a move: another string, a near miss, another type."""
    value = draw(st.one_of(
        st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=4)
        .filter(lambda t: t not in MOVES).map(repr),
        st.sampled_from(MOVES).map(lambda m: repr(m.lower())),
        st.sampled_from(MOVES).map(lambda m: repr(m + " ")),
        st.sampled_from(MOVES).map(lambda m: repr(m * 2)),
        st.sampled_from(["None", "0", "3", "1.5", "True", "['W']", "('A',)", "{'move': 'S'}", "b'D'"]),
    ))
    names = _Names(draw)
    if draw(st.booleans()):  # the same wrong answer on both sides of a test of the board
        body = [f"    if board[0][0] == 0:", f"        return {value}", *_returning(draw, names, value)]
    else:
        body = _returning(draw, names, value)
    return _program(draw, body)


@st.composite
def constant_move_programs(draw) -> str:
    """Programs that always answer the same legal move, however it is spelled."""
    move = draw(st.sampled_from(MOVES))
    k = MOVES.index(move)
    expr = draw(st.sampled_from([repr(move), f'"WASD"[{k}]', f'"wasd".upper()[{k}]',
                                 f'{{"up": "W", "left": "A", "down": "S", "right": "D"}}'
                                 f'[{("up", "left", "down", "right")[k]!r}]',
                                 f'{move!r} if board[0][0] > 0 else {move!r}']))
    return _program(draw, _returning(draw, _Names(draw), expr))


# Features of the board that change with (almost) every move that changes it: the sum grows
# by the new tile, empty cells come and go with merges.
_FEATURES = ("sum(map(sum, board)) // 2", "sum(map(lambda r: r.count(0), board))",
             "sum(map(sum, board)) // 4 + board[0][0]")


@st.composite
def unchecked_programs(draw) -> str:
    """Heuristics that choose among several moves by the board but never check a move changes it (they end stuck)."""
    k = draw(st.integers(2, 4))
    order = "".join(draw(st.permutations(MOVES))[:k])
    feature = draw(st.sampled_from(_FEATURES))
    names = _Names(draw)
    prefs, idx = names(), names()
    body = [f"    {prefs} = {order!r}" if draw(st.booleans()) else f"    {prefs} = {list(order)!r}",
            *_comment(draw), f"    {idx} = ({feature}) % len({prefs})"]
    if draw(st.booleans()):  # the corner: its own order while the largest tile sits top-left
        alt = "".join(draw(st.permutations(MOVES))[:k])
        body += [f"    if board[0][0] == max(map(max, board)):", f"        return {alt!r}[{idx}]"]
    body += _returning(draw, names, f"{prefs}[{idx}]")
    return _program(draw, body)


@st.composite
def checked_programs(draw) -> str:
    """Heuristics that answer the first move, in an order of preference, that changes the board (loop-free)."""
    order = "".join(draw(st.permutations(MOVES)))
    names = _Names(draw)
    slides, cols, views, legal = names(), names(), names(), names()
    a, b = draw(st.sampled_from([("a", "b"), ("x", "y"), ("left", "right"), ("here", "nxt")]))
    test = draw(st.sampled_from([f"({a} == 0 and {b} != 0) or ({a} != 0 and {a} == {b})",
                                 f"{b} != 0 and ({a} == 0 or {a} == {b})"]))
    flip = draw(st.sampled_from(["r[::-1]", "list(reversed(r))"]))
    transpose = draw(st.sampled_from(["list(map(list, zip(*board)))", "list(map(lambda c: list(map(lambda r: r[c], board)), range(len(board))))"]))
    body = [
        f"    def {slides}(rows):",
        *_comment(draw, "        "),
        f"        return any(map(lambda r: any(map(lambda {a}, {b}: {test}, r[:-1], r[1:])), rows))",
        f"    {cols} = {transpose}",
        f'    {views} = {{"A": board, "D": list(map(lambda r: {flip}, board)), "W": {cols}, '
        f'"S": list(map(lambda r: {flip}, {cols}))}}',
        *_comment(draw),
        f"    {legal} = list(filter(lambda m: {slides}({views}[m]), {order!r}))",
    ]
    body += _returning(draw, names, f"{legal}[0] if {legal} else {order[0]!r}")
    return _program(draw, body)


CLASS_SEEDS = (0, 1, 2)


def _in_process_total(source: str, seeds=CLASS_SEEDS) -> float:
    """The default spec's total of ``source``, its games played in this process by the one game loop."""
    from envs.play import play_trusted
    from sandbox import check
    from sandbox.restricted import load_strategy

    verdict = check(source)
    assert verdict.ok, (source, verdict)
    fn = load_strategy(source)
    limits = SPEC.limits
    games = play_trusted(fn, "2048", seeds, max_moves=limits.max_moves, stuck_moves=limits.stuck_moves)
    records = tuple(GameRecord(**{k: v for k, v in g.items() if k in RECORD_FIELDS}) for g in games)
    ev = Evaluation(completion=source, game="2048", source=source, verdict=verdict, records=records)
    return rewards.score(ev, SPEC).total


@settings(max_examples=25, deadline=None)
@given(invalid=invalid_key_programs(), constant=constant_move_programs(), unchecked=unchecked_programs(),
       checked=checked_programs())
def test_classes_of_programs_are_ordered(invalid, constant, unchecked, checked):
    """invalid key < constant legal move < heuristic without legality check < heuristic with it."""
    totals = [_in_process_total(p) for p in (invalid, constant, unchecked, checked)]
    assert totals[0] < totals[1] < totals[2] < totals[3], totals


@settings(max_examples=15, deadline=None)
@given(program=st.one_of(invalid_key_programs(), constant_move_programs(), unchecked_programs()),
       checked=checked_programs())
def test_no_early_ending_program_reaches_an_honest_one(program, checked):
    assert _in_process_total(program) < _in_process_total(checked)


def test_classes_through_the_sandbox_match_the_game_loop():
    """A few programs of each class through rewards.evaluate_group (2 workers): same order, same totals as in process."""
    sandbox = pytest.importorskip("sandbox")
    from rewards.audit import fixed_examples

    classes = (invalid_key_programs(), constant_move_programs(), unchecked_programs(), checked_programs())
    drawn = [fixed_examples(c, 2, seed=11) for c in classes]
    sources = [p for group in drawn for p in group]
    with sandbox.WorkerPool(2) as pool:
        out = rewards.evaluate_group([f"```python\n{p}\n```" for p in sources], game="2048", seeds=CLASS_SEEDS,
                                     spec=SPEC, pool=pool)
    totals = [b.total for b in out]
    assert totals == pytest.approx([_in_process_total(p) for p in sources], abs=1e-9)
    by_class = [totals[i:i + 2] for i in range(0, len(totals), 2)]
    for lower, upper in zip(by_class, by_class[1:]):
        assert max(lower) < min(upper), by_class
