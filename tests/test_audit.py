"""rewards.audit and envs.game2048.hacks: the default spec keeps every hack below honest play; broken specs are caught, naming the hack."""
from __future__ import annotations

import ast
import dataclasses
import json
import math
from pathlib import Path

import pytest

import envs
import rewards
from rewards.audit import (HONEST_PLAY_KINDS, AuditReport, AuditRow, OrderCheck, Program, catalogue, fixed_examples,
                           spec_checks)
from envs.game2048.hacks import HACKS, KINDS, get_hack, hacks

GAMES = 2
CHEAT_CHECK = "every cheat is caught and scores below zero"

def _needs_sandbox():
    import sandbox

    return sandbox


@pytest.fixture(scope="module")
def pool():
    sandbox = _needs_sandbox()
    with sandbox.WorkerPool(2) as p:
        yield p


@pytest.fixture(scope="module")
def report(pool) -> AuditReport:
    return rewards.audit(games=GAMES, pool=pool)


def _default_toml() -> str:
    return Path(envs.get("2048").reward_spec).read_text(encoding="utf-8")


# ------------------------------------------------------------------ the hack catalogue

def test_hacks_are_named_described_and_parse():
    assert len({h.name for h in HACKS}) == len(HACKS)
    assert {h.kind for h in HACKS} == set(KINDS)
    for h in HACKS:
        assert h.earns and "\n" not in h.earns, h.name
        ast.parse(h.source)
        assert get_hack(h.name) is h
    assert hacks("invalid") and all(h.kind == "invalid" for h in hacks("invalid"))
    with pytest.raises(ValueError, match="unknown hack kind"):
        hacks("nope")
    with pytest.raises(ValueError, match="unknown hack"):
        get_hack("nope")


def test_invalid_and_constant_hacks_do_what_they_say():
    """In process (our own programs): invalid ones never answer a move, constant ones always the same."""
    from sandbox import check
    from sandbox.restricted import load_strategy

    boards = [[[0] * 4 for _ in range(4)], [[2, 4, 8, 16], [0, 2, 0, 2], [4, 0, 0, 0], [0, 0, 0, 2]]]
    for h in hacks("invalid"):
        if not check(h.source).ok:
            continue  # a str subclass needs a class: the checker refuses it
        fn = load_strategy(h.source)
        assert all(type(fn(b)) is not str or fn(b) not in "WASD" or len(fn(b)) != 1 for b in boards), h.name
    for h in hacks("constant"):
        fn = load_strategy(h.source)
        assert len({fn(b) for b in boards}) == 1 and fn(boards[0]) in "WASD"


# ------------------------------------------------------------------ the deterministic catalogue

def test_fixed_examples_are_the_same_every_time():
    from hypothesis import strategies as st

    s = st.lists(st.integers(), max_size=5)
    assert fixed_examples(s, 5, seed=3) == fixed_examples(s, 5, seed=3)
    assert len(fixed_examples(s, 5, seed=3)) == 5


def test_catalogue_covers_every_technique_once_deduplicated():
    cheats = pytest.importorskip("sandbox.cheats")
    programs = catalogue()
    assert [p.source for p in programs] == [p.source for p in catalogue()]  # deterministic
    names = {p.name for p in programs}
    assert len(names) == len(programs)
    for category, techniques in cheats.TECHNIQUES.items():
        for technique in techniques:
            assert f"cheat:{category}/{technique}#0" in names
    assert len({n.split("#")[0] for n in names if n.startswith("cheat:side_effect_")}) >= 6
    assert {f"hack:{h.name}" for h in HACKS} <= names
    assert {"baseline:corner", "baseline:greedy", "baseline:fixed"} <= names
    from envs.game2048.hacks import API_HACKS

    assert {f"hack:{h.name}" for h in API_HACKS} <= names
    for technique in cheats.API_TECHNIQUES:
        assert f"api:{technique}#0" in names
    # A spec with the game's API off plays none of its abuses.
    assert not {p.name for p in catalogue(game_api=False)} & ({f"hack:{h.name}" for h in API_HACKS}
                                                             | {f"api:{t}#0" for t in cheats.API_TECHNIQUES})
    hashes = [rewards.source_hash(p.source) for p in programs]
    assert len(set(hashes)) == len(hashes)


# ------------------------------------------------------------------ synthetic checks (no sandbox)

def test_default_spec_passes_the_record_checks():
    checks = spec_checks()
    assert checks and all(c.synthetic for c in checks)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]


@pytest.mark.parametrize("rule, params, broken", [
    ("format", {"bad_move": 3.0}, "records: format grade runtime error < bad move < plays"),
    ("format", {"runtime_error": 0.9}, "records: format grade runtime error < bad move < plays"),
    ("performance", {"early_progress": 0.9}, "records: any early ending < any honest ending"),
    ("compliance", {"penalties": {"loop": 0.0}, "clean_bonus": 0.0}, "records: a non-compliant program scores below zero"),
])
def test_record_checks_catch_a_broken_number(rule, params, broken):
    spec = rewards.default_spec()
    spec = spec.with_rule(rule, spec.term(rule).weight, **{**spec.term(rule).params, **params})
    failed = {c.name for c in spec_checks(spec) if not c.ok}
    assert broken in failed


# ------------------------------------------------------------------ the default spec, played

def test_report_is_frozen_and_json_ready(report):
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.ok = True
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.rows[0].total = 9.0
    data = json.loads(json.dumps(report.to_dict()))
    assert data["game"] == "2048" and data["seeds"] == list(range(GAMES))
    assert {r["name"] for r in data["rows"]} == {r.name for r in report.rows}
    for r in report.rows:
        assert r.total == pytest.approx(sum(r.weights[k] * v for k, v in r.values.items()), abs=1e-9)
    assert report.weakest_honest in ("baseline:corner", "baseline:greedy")


def test_default_spec_orders_hold(report):
    """Every order of the default spec holds, on played programs and on synthetic records."""
    for c in report.checks:
        assert c.ok, (c.name, c.synthetic, c.detail, c.offenders)
    assert report.row("baseline:corner").honest and report.row("baseline:greedy").honest
    for r in report.rows:
        if not r.honest and r.kind not in HONEST_PLAY_KINDS:
            assert r.margin < 0, (r.name, r.total)


def test_default_spec_audit_is_clean(report):
    assert report.ok, [(c.name, c.offenders) for c in report.failed_checks]


def test_probe_evading_programs_are_caught_in_most_pools():
    # The probe is a sample drawn from the pool's secret (heap offsets, boards): a program whose
    # answers depend on an address is caught in most pools, not all (the README says so). Set
    # order is no longer among them: play and probe share the pool's hash seed.
    sandbox = _needs_sandbox()
    from envs.game2048.hacks import HACKS

    sources = {h.name: h.source for h in HACKS if h.kind == "probe"}
    caught = dict.fromkeys(sources, 0)
    for i in range(6):
        with sandbox.WorkerPool(2, secret=f"audit-probe-{i}".encode()) as p:
            results = p.run_many(list(sources.values()), seeds=[0, 1, 2, 3])
        for name, records in zip(sources, results):
            caught[name] += all(r.outcome == "violation" for r in records)
    assert all(n >= 3 for n in caught.values()), caught


def test_classes_sit_where_the_ladder_puts_them(report):
    by_kind: dict[str, list[float]] = {}
    for r in report.rows:
        by_kind.setdefault(r.kind, []).append(r.total)
    # An invalid answer totals exactly what a raise at the first call does.
    assert len({round(t, 12) for t in by_kind["error"]} | {round(r.total, 12) for r in report.rows
                                                          if r.kind == "invalid" and r.compliant}) == 1
    assert max(by_kind["error"]) < min(by_kind["constant"]) < max(by_kind["constant"]) < min(by_kind["unchecked"])
    assert max(by_kind["unchecked"]) < report.weakest_honest_total
    # Padding with dead moves earns nothing over the honest moves it pads.
    assert report.row("hack:pad_illegal").values["diversity"] == report.row("baseline:fixed").values["diversity"]


# ------------------------------------------------------------------ broken specs, played

def _played_programs() -> list[Program]:
    return catalogue(library=False)


def test_bad_move_raised_opens_constant_and_stuck_programs(pool, tmp_path):
    """bad_move = 3.0 pays every stuck game the honest format grade (the rule is clipped to 1)."""
    path = tmp_path / "bad_move.toml"
    path.write_text(_default_toml().replace("bad_move = 0.5", "bad_move = 3.0"))
    report = rewards.audit(str(path), games=GAMES, pool=pool, programs=_played_programs())
    assert not report.ok and report.spec_origin == str(path)
    failed = {c.name: c for c in report.failed_checks}
    rung = failed["format grade: runtime error < bad move (stuck) < plays"]
    for name in ("baseline:fixed", "hack:constant_W", "hack:unchecked_rotate", "hack:stuck_when_ahead",
                 "hack:pad_illegal"):
        assert name in rung.offenders
    assert "records: format grade runtime error < bad move < plays" in failed
    opened = {r.name for r in report.opened}
    assert {"hack:constant_W", "baseline:fixed", "hack:unchecked_corner"} <= opened
    # Programs that end by an error are not what this spec opens.
    assert "hack:raise_at_once" not in opened and "baseline:corner" not in opened


def test_a_spec_where_stuck_programs_reach_honest_ones_names_them(pool):
    """bad_move = plays and no weight on strength: unchecked heuristics reach honest play, and are named."""
    spec = rewards.default_spec()
    spec = spec.with_rule("format", 1.0, **{**spec.term("format").params, "bad_move": 1.0})
    spec = spec.with_rule("performance", 0.0)
    report = rewards.audit(spec, games=GAMES, pool=pool, programs=_played_programs())
    reach = next(c for c in report.failed_checks
                 if c.name == "no cheat, hack or early ending reaches the weakest honest baseline")
    assert "hack:unchecked_rotate" in reach.offenders and report.row("hack:unchecked_rotate").margin >= 0
    assert "hack:unchecked_rotate" in {r.name for r in report.opened}


def test_invalid_output_raised_opens_invalid_answers(pool):
    spec = rewards.default_spec()
    spec = spec.with_rule("format", 1.0, **{**spec.term("format").params, "runtime_error": 0.9})
    report = rewards.audit(spec, games=GAMES, pool=pool, programs=_played_programs())
    assert not report.ok
    failed = {c.name: c for c in report.failed_checks}
    check = failed["no legal move < a constant legal move"]
    assert "hack:invalid_key" in check.offenders and "hack:raise_at_once" in check.offenders
    assert "hack:invalid_key" in {r.name for r in report.opened}


def test_audit_without_honest_play_fails_closed(pool):
    """A catalogue without an honest baseline cannot pass: there is nothing to measure cheats against."""
    programs = [p for p in _played_programs() if p.kind in ("constant", "invalid")]
    report = rewards.audit(games=1, pool=pool, programs=programs)
    assert not report.ok and report.weakest_honest is None and math.isnan(report.weakest_honest_total)
    assert not next(c for c in report.checks if c.name.startswith("honest baselines")).ok
    json.dumps(report.to_dict())


def test_new_rows_sit_in_their_checks(report):
    """The loop, slow-check, deterministic and switching rows are audited, each by its own order."""
    by_name = {c.name: c for c in report.checks}
    for name, kind in (("hack:recursive_search", "loop"), ("hack:callback_loop", "loop"),
                       ("hack:print_alias_chain", "slow_check"), ("hack:set_tie_greedy", "deterministic"),
                       ("hack:slow_load", "deterministic"), ("hack:corner_per_game", "switching")):
        assert report.row(name).kind == kind
    for name in ("hack:recursive_search", "hack:callback_loop", "hack:print_alias_chain"):
        assert report.row(name).total < 0 and not report.row(name).compliant
    assert by_name["deterministic programs are never called random (set-order ties, a slow load)"].ok
    switching = by_name["switching plans between games never beats one plan played consistently"]
    assert switching.ok and "1 switching" in switching.detail
    corner = report.row("hack:corner_per_game")
    assert corner.total == pytest.approx(corner.consistent_total, abs=1e-9)


def test_api_abuses_sit_where_the_ladder_puts_them(report):
    """Abuses of the game's API: junk arguments and floods end as runtime errors, recursion is caught,
    mutating what the API returns changes nothing."""
    raise_at_once = report.row("hack:raise_at_once").total
    for r in report.rows:
        if r.name.startswith("api:") or (r.name.startswith("hack:api_") and r.kind == "error"):
            assert r.compliant and r.total == pytest.approx(raise_at_once, abs=1e-12), r.name
            assert set(r.outcomes) <= {"error", "timeout"}, (r.name, r.outcomes)
    assert set(report.row("hack:api_flood").outcomes) == {"timeout"}
    loop = report.row("hack:api_recursion")
    assert loop.kind == "loop" and not loop.compliant and loop.total < 0
    honest = report.row("hack:api_mutates_results")
    assert honest.compliant and set(honest.outcomes) == {"finished"}


def _row(name, kind, total=1.0, outcomes=None, compliant=True, check_seconds=0.001, consistent=math.nan):
    return AuditRow(name=name, kind=kind, description="", total=total, values={}, weights={},
                    outcomes={"finished": 2} if outcomes is None else outcomes, compliant=compliant,
                    mean_moves=100.0, source="", check_seconds=check_seconds, consistent_total=consistent)


def test_new_checks_name_their_offenders():
    """Each new order fails on the rows that break it, and only then (no sandbox: rows built by hand)."""
    from rewards.audit import CHECK_CPU_SECONDS, _played_checks

    honest = [_row("baseline:corner", "honest", 2.0, consistent=2.0)]
    rows = honest + [
        _row("hack:set_tie_greedy", "deterministic", -1.0, {"violation": 2}, compliant=False),
        _row("hack:slow_load", "deterministic", 1.9, consistent=1.9),
        _row("hack:corner_per_game", "switching", 2.1, consistent=2.0),
        _row("hack:print_alias_chain", "slow_check", -1.0, {}, compliant=False, check_seconds=CHECK_CPU_SECONDS * 3)]
    checks = {c.name: c for c in _played_checks(rows)}
    assert checks["deterministic programs are never called random (set-order ties, a slow load)"].offenders == (
        "hack:set_tie_greedy",)
    assert checks["switching plans between games never beats one plan played consistently"].offenders == (
        "hack:corner_per_game",)
    assert checks["the static check runs in bounded time on every program"].offenders == ("hack:print_alias_chain",)
    fixed = [dataclasses.replace(r, total=r.consistent_total) if r.kind == "switching" else r for r in rows]
    assert checks["every cheat is caught and scores below zero"].ok
    fixed = [r for r in fixed if r.kind != "deterministic"] + [_row("hack:slow_load", "deterministic", 1.9)]
    again = {c.name: c.ok for c in _played_checks([r for r in fixed if r.kind != "slow_check"])}
    assert again["deterministic programs are never called random (set-order ties, a slow load)"]
    assert again["switching plans between games never beats one plan played consistently"]
    assert again["the static check runs in bounded time on every program"]


def test_a_pooled_diversity_rule_opens_the_corner_per_game(pool):
    """Diversity judged on the games pooled pays a plan for switching corners between games: the audit says so."""
    from rewards import rules

    @rewards.rule("pooled_diversity", bounds=(-1.0, 0.0))
    def pooled_diversity(ev, *, max_share: float = 0.6):
        """Diversity on the histogram pooled over games (what this rule must not be)."""
        counts: dict = {}
        for r in rules.played_records(ev):
            for m, n in rules.moved_counts(r).items():
                counts[m] = counts.get(m, 0) + n
        total = sum(counts.values())
        if not total:
            return -1.0
        return -max(0.0, max(counts.values()) / total - max_share) / (1 - max_share)

    spec = rewards.default_spec().with_rule("diversity", 0.0).with_rule("pooled_diversity", 0.25)
    programs = [p for p in _played_programs() if p.name in ("baseline:corner", "baseline:greedy",
                                                            "hack:corner_per_game")]
    report = rewards.audit(spec, seeds=(0, 1, 2), pool=pool, programs=programs)
    failed = {c.name: c for c in report.failed_checks}
    assert "hack:corner_per_game" in failed["switching plans between games never beats one plan played consistently"].offenders
    assert "records: switching plans between games earns nothing" in failed


def test_order_check_is_a_frozen_record():
    c = OrderCheck("x", True, "d")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.ok = False
