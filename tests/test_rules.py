"""Built-in reward rules on handcrafted evaluations, and the @rule registry."""
from __future__ import annotations

import inspect

import pytest
from hypothesis import given, settings, strategies as st

import rewards
from rewards import rules
from rewards.records import Evaluation
from sandbox.records import FORMAT_REASONS, OUTCOMES, FormatError, GameRecord, Verdict, Violation

SOURCE = 'def strategy(board):\n    return "A"\n'
HONEST = sorted(rules.HONEST_OUTCOMES)
EARLY = [o for o in OUTCOMES if o not in rules.HONEST_OUTCOMES and o != "violation"]


def game(outcome="finished", max_tile=256, score=2500.0, moves=200, hist=None, seed=0, moved=None) -> GameRecord:
    """A record; ``moved`` (board-changing answers) defaults to ``hist`` (every answer moved)."""
    hist = hist if hist is not None else {"W": moves // 4, "A": moves // 4, "S": moves // 4, "D": moves - 3 * (moves // 4)}
    moved = moved if moved is not None else hist
    return GameRecord(seed=seed, outcome=outcome, score=score, metrics={"max_tile": max_tile}, moves=moves, move_histogram=hist,
                      moved_histogram=moved, illegal_moves=sum(hist.values()) - sum(moved.values()))


def ran(*records: GameRecord, source: str = SOURCE) -> Evaluation:
    return Evaluation(completion=source, game="2048", source=source, verdict=Verdict(True), records=tuple(records))


def rejected(*categories: str, records: tuple = ()) -> Evaluation:
    violations = tuple(Violation(rule=f"no-{c}", category=c, line=1, col=0, message=c) for c in categories)
    return Evaluation(completion=SOURCE, game="2048", source=SOURCE, verdict=Verdict(not violations, violations),
                      records=records)


def format_failure(reason: str) -> Evaluation:
    return Evaluation(completion="x", game="2048", format_error=FormatError(reason, reason))


# ------------------------------------------------------------------ format

def test_every_format_reason_has_a_grade_in_order():
    params = inspect.signature(rules.format_rule).parameters
    assert set(FORMAT_REASONS) <= set(params)
    values = [rules.format_rule(format_failure(r)) for r in FORMAT_REASONS]
    assert values == sorted(values) and len(set(values)) == len(values)


def test_format_then_runtime_error_then_bad_move_then_plays():
    # An invalid answer used to sit on the bad-move rung with "stuck", above a raise: returning
    # "Q" paid more than raising. It is a failure to answer, graded as a runtime error.
    ladder = [format_failure(FORMAT_REASONS[-1]), ran(game("error", 4, 0, 0)),
              ran(game("stuck", 4, 0, 3)), ran(game("finished", 32, 100, 20))]
    values = [rules.format_rule(e) for e in ladder]
    assert values == sorted(values) and len(set(values)) == 4
    for failure in ("invalid_output", "timeout", "crashed", "an_outcome_from_the_future"):
        assert rules.format_rule(ran(game(failure, 4, 0, 0))) == rules.format_rule(ladder[1])


@settings(max_examples=60, deadline=None)
@given(tile=st.sampled_from([0, 2, 4, 64, 2048]), moves=st.integers(0, 3000),
       params=st.fixed_dictionaries({"runtime_error": st.floats(-1, 1), "bad_move": st.floats(-1, 1),
                                     "plays": st.floats(-1, 1)}))
def test_an_invalid_answer_is_graded_as_a_runtime_error_under_any_numbers(tile, moves, params):
    """No parameter can make "Q" worth more than a raise: they share one number."""
    invalid = ran(game("invalid_output", tile, 0, moves))
    error = ran(game("error", tile, 0, moves))
    for name in ("format", "performance", "diversity"):
        r = rewards.get_rule(name)
        extra = params if name == "format" else {}
        assert r(invalid, **extra) == r(error, **extra)


def test_unknown_format_reason_gets_the_lowest_grade():
    assert rules.format_rule(format_failure("something_new")) == rules.format_rule(format_failure("empty"))


def test_format_not_run_is_neutral():
    assert rules.format_rule(rejected("import")) == 0.0


# ------------------------------------------------------------------ compliance

def test_compliance_clean_bonus_and_graded_penalties():
    assert rules.compliance(ran(game())) == pytest.approx(0.1)
    # An unknown ordinary attribute (board.size) is a mistake, not an attack: a light penalty.
    assert rules.compliance(rejected("attribute")) == pytest.approx(-0.3)
    assert rules.compliance(format_failure("syntax_error")) == 0.0
    heavy = rules.compliance(rejected("import"))
    light = rules.compliance(rejected("loop"))
    assert heavy < light < 0
    assert rules.compliance(rejected("import", "escape", "loop")) == -1.0  # capped
    assert rules.compliance(rejected("brand_new_category")) == -1.0


def test_runtime_violation_is_non_compliant():
    ev = ran(game(), game("violation", 2, 0, 0, hist={}))
    assert not rules.compliant(ev)
    assert rules.compliance(ev) == -1.0
    assert rules.performance(ev) == 0.0 and rules.format_rule(ev) == 0.0 and rules.diversity(ev) == 0.0


# ------------------------------------------------------------------ performance

def test_strong_beats_weak_beats_non_compliant():
    strong = ran(game(max_tile=2048, score=21000, moves=1000), game("won", 4096, 50000, 2500))
    weak = ran(game(max_tile=128, score=1200, moves=120))
    cheat = rejected("import", records=())
    assert rules.performance(strong) > rules.performance(weak) > rules.performance(cheat) == 0.0


def test_performance_win_bonus_and_floor_penalty():
    at_target = rules.performance(ran(game(max_tile=2048, score=20480)))
    just_below = rules.performance(ran(game(max_tile=1024, score=20479)))
    assert at_target - just_below > 0.3 - 1e-9  # the bonus plus the tile step
    above_floor = rules.performance(ran(game(max_tile=64, score=300)))
    below_floor = rules.performance(ran(game(max_tile=32, score=299)))
    assert above_floor - below_floor > 0.1 - 1e-9


def test_performance_target_is_the_games_target_option():
    """The rule grades against the target the games were played with, unless the spec sets its own."""
    def with_options(options, *records):
        return Evaluation(completion=SOURCE, game="2048", source=SOURCE, verdict=Verdict(True), records=records,
                          options=options)

    reached_512 = game(max_tile=512, score=4096)
    assert rules.game_option(ran(reached_512), "target") == 2048  # the registered game's default
    assert rules.game_option(with_options({"target": 512}), "target") == 512
    assert rules.game_option(Evaluation(completion="", game="no_such_game"), "target", 7) == 7
    assert rules.performance(ran(reached_512)) == rules.performance(ran(reached_512), target=2048)
    assert rules.performance(with_options({"target": 512}, reached_512)) == \
        rules.performance(ran(reached_512), target=512)
    # An explicit target wins over the option.
    assert rules.performance(with_options({"target": 512}, reached_512), target=2048) == \
        rules.performance(ran(reached_512))


def test_spec_options_target_reaches_the_performance_rule():
    text = rewards.default_spec().to_toml().replace("target = 2048", "target = 512")
    spec = rewards.RewardSpec.from_text(text)
    assert spec.options["target"] == 512 and "target" not in spec.term("performance").params
    reached_512 = game(max_tile=512, score=4096)
    ev = Evaluation(completion=SOURCE, game="2048", source=SOURCE, verdict=Verdict(True), records=(reached_512,),
                    options=dict(spec.options))
    graded = rewards.score(ev, spec).values["performance"]
    assert graded == rules.performance(ev, target=512) > rules.performance(ev, target=2048)
    # honest base + full tile term + full score term (scale (log2(512) - 1) * 512) + win bonus
    assert graded == pytest.approx(0.2 + 0.5 + 0.3 + 0.3)
    # A rule target in the spec still wins over the option, and round-trips.
    pinned = rewards.RewardSpec.from_text(text.replace("[rules.performance]\n", "[rules.performance]\ntarget = 2048\n"))
    assert pinned.term("performance").params["target"] == 2048
    assert rewards.score(ev, pinned).values["performance"] == rules.performance(ev, target=2048)
    assert rewards.RewardSpec.from_text(pinned.to_toml()).to_dict() == pinned.to_dict()
    with pytest.raises(rewards.SpecError, match="rules.performance.target must be a number"):
        rewards.RewardSpec.from_text(text.replace("[rules.performance]\n", "[rules.performance]\ntarget = \"big\"\n"))


@settings(max_examples=200, deadline=None)
@given(honest=st.sampled_from(HONEST), early=st.sampled_from(EARLY),
       h_tile=st.sampled_from([2, 4, 8, 16, 32]), e_tile=st.sampled_from([2, 64, 1024, 2048, 8192]),
       h_score=st.floats(0, 200), e_score=st.floats(0, 1e6), e_moves=st.integers(0, 10000))
def test_an_early_end_scores_below_any_honest_game(honest, early, h_tile, e_tile, h_score, e_score, e_moves):
    honest_ev = ran(game(honest, h_tile, h_score, 10))
    early_ev = ran(game(early, e_tile, e_score, e_moves))
    assert rules.performance(early_ev) < rules.performance(honest_ev)
    assert rules.format_rule(early_ev) < rules.format_rule(honest_ev)


# ------------------------------------------------------------------ diversity and length

def test_an_early_end_before_any_move_earns_no_progress():
    """The tiles of a game that never moved are the spawns: no sliver, so "Q" cannot out-earn a timeout."""
    for outcome in ("invalid_output", "error", "stuck"):
        assert rules.performance(ran(game(outcome, 4, 8, 0, hist={}))) == 0.0
        assert rules.performance(ran(game(outcome, 4, 8, 1, hist={"A": 1}))) > 0.0
    assert rules.performance(ran(GameRecord(seed=0, outcome="timeout"))) == 0.0


def test_no_board_changing_move_gets_the_full_diversity_penalty():
    """A program that ran but never changed the board is not "varied": -1, like a single move."""
    for outcome in ("invalid_output", "error", "timeout", "stuck"):
        assert rules.diversity(ran(game(outcome, 2, 0, 0, hist={}))) == -1.0
    # Answered four different moves, none of which changed anything: still -1.
    assert rules.diversity(ran(game("stuck", 2, 0, 0, hist={"W": 1, "A": 2, "S": 1, "D": 1},
                                    moved={"W": 0, "A": 0, "S": 0, "D": 0}))) == -1.0
    assert rules.diversity(format_failure("syntax_error")) == 0.0  # not run: format grades it


def test_only_board_changing_moves_count_for_diversity():
    """Answers that changed nothing used to flatten the histogram; they count for nothing."""
    moved = {"W": 0, "A": 100, "S": 0, "D": 0}
    padded = ran(game("stuck", 64, 500, 100, hist={"W": 30, "A": 100, "S": 30, "D": 30}, moved=moved))
    plain = ran(game("stuck", 64, 500, 100, hist=dict(moved), moved=moved))
    assert rules.diversity(padded) == rules.diversity(plain) == -1.0
    # A record without moved_histogram (an older runner) falls back to the answers.
    old = GameRecord(seed=0, outcome="finished", moves=100, move_histogram={"W": 25, "A": 25, "S": 25, "D": 25})
    assert rules.moved_counts(old) == old.move_histogram and rules.diversity(ran(old)) == 0.0


@settings(max_examples=100, deadline=None)
@given(moved=st.dictionaries(st.sampled_from("WASD"), st.integers(0, 500)),
       pad=st.dictionaries(st.sampled_from("WASD"), st.integers(0, 500)))
def test_padding_never_raises_diversity(moved, pad):
    moves = sum(moved.values())
    hist = {m: moved.get(m, 0) + pad.get(m, 0) for m in "WASD"}
    padded = ran(game("stuck", 16, 0, moves, hist=hist, moved=dict(moved)))
    plain = ran(game("stuck", 16, 0, moves, hist=dict(moved), moved=dict(moved)))
    assert rules.diversity(padded) == rules.diversity(plain)


def test_single_move_strategy_gets_the_diversity_penalty():
    single = ran(game("stuck", 8, 16, 6, hist={"A": 11}))
    assert rules.diversity(single) == -1.0
    balanced = ran(game(hist={"W": 30, "A": 30, "S": 20, "D": 20}))
    assert rules.diversity(balanced) == 0.0
    lopsided = ran(game(hist={"A": 80, "W": 15, "S": 5}))
    assert -1.0 < rules.diversity(lopsided) < 0.0
    assert rules.diversity(rejected("loop")) == 0.0


_HISTOGRAMS = st.lists(st.dictionaries(st.sampled_from("WASD"), st.integers(0, 400)), min_size=1, max_size=6)


def _relabelled(hist: dict, order: str) -> dict:
    """``hist`` with its moves renamed: the k-th most used move becomes ``order[k]`` (one plan's orientation)."""
    ranked = sorted("WASD", key=lambda m: (-hist.get(m, 0), "WASD".index(m)))
    return {order[k]: hist.get(m, 0) for k, m in enumerate(ranked)}


def _games(hists: list) -> Evaluation:
    return ran(*(game(moves=sum(h.values()), hist=dict(h), moved=dict(h), seed=i) for i, h in enumerate(hists)))


@settings(max_examples=150, deadline=None)
@given(hists=_HISTOGRAMS, order=st.permutations("WASD"))
def test_switching_plans_between_games_never_beats_one_plan_played_consistently(hists, order):
    """Each game's moves renamed into one orientation (the same plan every game) scores the same diversity."""
    consistent = [_relabelled(h, "".join(order)) for h in hists]
    assert rules.diversity(_games(hists)) == pytest.approx(rules.diversity(_games(consistent)), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(hists=_HISTOGRAMS)
def test_diversity_never_exceeds_its_most_varied_game(hists):
    """Judged per game: the value is a mean of the games' own values, so never above the best game."""
    played = [h for h in hists if sum(h.values()) > 0]
    value = rules.diversity(_games(hists))
    if played:
        assert min(rules.diversity(_games([h])) for h in played) - 1e-12 <= value
        assert value <= max(rules.diversity(_games([h])) for h in played) + 1e-12


def test_a_corner_per_game_is_as_one_sided_as_a_fixed_corner():
    """Four lopsided games pointing four ways are four lopsided games, not a varied program."""
    fixed = [{"A": 70, "W": 20, "D": 6, "S": 4}] * 4
    switching = [{"A": 70, "W": 20, "D": 6, "S": 4}, {"D": 70, "W": 20, "A": 6, "S": 4},
                 {"A": 70, "S": 20, "D": 6, "W": 4}, {"D": 70, "S": 20, "A": 6, "W": 4}]
    assert rules.diversity(_games(switching)) == rules.diversity(_games(fixed)) < 0.0


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from("WASD"), st.integers(0, 1000)))
def test_diversity_is_bounded(hist):
    assert -1.0 <= rules.diversity(ran(game(hist=hist))) <= 0.0


def test_length_penalty_counts_code_lines_only():
    body = "".join(f"    x{i} = {i}\n" for i in range(70))
    long_source = "def strategy(board):\n" + body + "    # comment\n\n" + '    return "A"\n'
    assert rules.code_lines(long_source) == 72
    assert rules.length(ran(source=long_source)) == pytest.approx(-0.02 * 12)
    assert rules.length(ran()) == 0.0
    assert rules.length(format_failure("no_code")) == 0.0


# ------------------------------------------------------------------ registry

def test_rule_decorator_registers_and_returns_the_function():
    @rewards.rule("test_moves_made", bounds=(0.0, 1.0))
    def moves_made(ev: Evaluation, *, scale: float = 100.0) -> float:
        """Mean moves per game over scale, capped at 1."""
        return min(1.0, sum(r.moves for r in ev.records) / max(1, len(ev.records)) / scale)

    assert moves_made(ran(game(moves=50))) == 0.5  # still a plain function
    r = rewards.get_rule("test_moves_made")
    assert r.doc == "Mean moves per game over scale, capped at 1."
    assert r.params == {"scale": 100.0} and r.bounds == (0.0, 1.0)
    assert r(ran(game(moves=50)), scale=25.0) == 1.0
    assert "test_moves_made" in rewards.rule_names()
    assert rewards.as_rule(moves_made) is r


def test_a_plain_function_can_be_used_directly():
    def short(ev, *, limit: int = 3):
        """Anything."""
        return 1.0
    r = rewards.as_rule(short)
    assert r.name == "short" and r.params == {"limit": 3} and r.bounds is None


def test_bad_rules_are_refused():
    with pytest.raises(TypeError, match="one positional"):
        rewards.rule("two_args")(lambda ev, other: 0.0)
    with pytest.raises(TypeError, match="needs a default"):
        def no_default(ev, *, p):
            return 0.0
        rewards.rule("no_default")(no_default)
    with pytest.raises(ValueError, match="identifier"):
        rewards.rule("has space")
    with pytest.raises(rewards.UnknownRuleError, match="unknown rule 'nope'.*format"):
        rewards.get_rule("nope")


def test_builtin_rules_are_documented_and_bounded():
    for name in ("format", "compliance", "performance", "diversity", "length"):
        r = rewards.get_rule(name)
        assert r.doc and r.bounds is not None
