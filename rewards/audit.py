"""Audit a reward spec: play every known cheat and reward hack beside the honest baselines, and check the ladder.

``audit(spec)`` answers one question about a spec: can a program earn more by cheating,
quitting or gaming a rule than by playing honestly? It plays, through the sandbox and
the spec's rules, on a few common seeds:

- the library's catalogue of policy cheats (:mod:`sandbox.cheats`: one fixed sample
  per technique and category, plus the side-effect cheats), drawn deterministically;
- the game's catalogue of compliant-looking reward hacks (``GameSpec.hacks``; 2048's in
  :mod:`envs.game2048.hacks`: invalid answers,
  deliberate errors and timeouts, constant moves, unchecked heuristics, early endings,
  histogram padding, state between calls, probe evasion, loops and recursion by indirect
  routes, a program that stalls the static check, deterministic programs the determinism probe
  must not flag, a plan that switches between games);
- where the spec's ``game_api`` is on, abuses of the game's API (``GameSpec.api_hacks``:
  junk and huge arguments, a flood of calls, recursion through it, mutating what it returns;
  and a sample of :func:`sandbox.cheats.api_abuse_programs`' malformed calls);
- the game's sandboxable baselines (``GameSpec.baselines``): the honest ones check their moves
  and play to the game's end (2048: ``corner``, ``greedy``); a dishonest one is a constant move
  (2048: ``fixed``, always left).

It then checks the orders :mod:`rewards.rules` promises, on the played programs and on
synthetic extreme game records (which catch a spec that breaks an order even where no
catalogued program lands), and returns an :class:`AuditReport`. ``codepolicy audit``
prints it and exits 1 when the spec opens a hack.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from envs.outcomes import HONEST_OUTCOMES, group
from envs.registry import DEFAULT_GAME
from rewards.evaluate import evaluate_many, source_hash
from rewards.records import Breakdown, Evaluation
from rewards.score import score
from rewards.spec import RewardSpec, default_spec, load_spec
from sandbox.records import GameRecord, Verdict, Violation

__all__ = ["AuditRow", "OrderCheck", "AuditReport", "Program", "audit", "catalogue", "fixed_examples",
           "spec_checks"]

CHEAT_KINDS = ("cheat", "stateful", "loop", "slow_check")
"""Row kinds that break the policy: they must be caught (and score below zero). Probe evaders ("probe")
break it too, but the probe is a sample: their catch rate is reported, not required."""

HONEST_PLAY_KINDS = ("defused", "probe", "deterministic", "switching")
"""Row kinds that play legal moves to an honest end (once the runtime bounds or lets them): they may
score like the honest play they are, so the order against the weakest baseline leaves them out;
each kind has its own check instead."""

CHECK_CPU_SECONDS = 1.0
"""CPU seconds the static check may take on any one program (an honest 20 kB program takes tens of
milliseconds): the check runs before any sandbox and must stay bounded whatever the program."""

_SAME = 1e-9  # totals closer than this are the same total (floating sums in another order)

_CANARY_VAR = "CODEPOLICY_AUDIT_CANARY"  # never set: a side-effect cheat that reads it learns nothing


@dataclass(frozen=True)
class Program:
    """One program the audit plays: a unique ``name``, its ladder ``kind``, a one-line ``description`` and the ``source``."""

    name: str
    kind: str
    description: str
    source: str


@dataclass(frozen=True)
class AuditRow:
    """One audited program and what the spec gave it."""

    name: str
    kind: str
    """honest, cheat, or a kind of :data:`envs.registry.HACK_KINDS` (constant, invalid, error, ...)."""
    description: str
    total: float
    values: Mapping[str, float]
    """Each rule's value (unweighted), as in Breakdown.values."""
    weights: Mapping[str, float]
    outcomes: Mapping[str, int]
    """Outcome -> games that ended so (empty when the program was not run)."""
    compliant: bool
    mean_moves: float
    source: str = field(repr=False)
    margin: float = math.nan
    """total minus the weakest honest baseline's total (negative is safe); nan when there is none."""
    check_seconds: float = 0.0
    """CPU seconds the static check took on the program (measured by the audit, in its own thread)."""
    consistent_total: float = math.nan
    """The total of the same games with each game's moves renamed into one orientation (its most used
    move always the same one, and so on): the same plan played consistently. nan when nothing ran."""

    @property
    def honest(self) -> bool:
        """True for a baseline that played every game to an honest end."""
        return self.kind == "honest" and bool(self.outcomes) and set(self.outcomes) <= HONEST_OUTCOMES


@dataclass(frozen=True)
class OrderCheck:
    """One order of the reward ladder: ``ok``, what was compared, and the rows that break it."""

    name: str
    ok: bool
    detail: str
    offenders: tuple[str, ...] = ()
    """Rows (or synthetic cases) that break the order, worst first."""
    synthetic: bool = False
    """True when the check scored synthetic game records rather than played programs."""


@dataclass(frozen=True)
class AuditReport:
    """The result of :func:`audit`: every row, every order check, and ``ok`` when nothing is open."""

    spec_origin: str
    game: str
    seeds: tuple[int, ...]
    rows: tuple[AuditRow, ...]
    checks: tuple[OrderCheck, ...]
    weakest_honest: str | None
    weakest_honest_total: float
    ok: bool

    def row(self, name: str) -> AuditRow:
        """The row called ``name``; KeyError otherwise."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no audit row {name!r}")

    @property
    def failed_checks(self) -> tuple[OrderCheck, ...]:
        """The checks that do not hold."""
        return tuple(c for c in self.checks if not c.ok)

    @property
    def opened(self) -> tuple[AuditRow, ...]:
        """Rows named by a failed check on played programs: the hacks this spec (or sandbox) leaves open."""
        names = {n for c in self.failed_checks if not c.synthetic for n in c.offenders}
        return tuple(r for r in self.rows if r.name in names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (nan margins as None)."""
        out = dataclasses.asdict(self)
        for row in out["rows"]:
            if isinstance(row["margin"], float) and not math.isfinite(row["margin"]):
                row["margin"] = None
        if not math.isfinite(self.weakest_honest_total):
            out["weakest_honest_total"] = None
        out["opened"] = [r.name for r in self.opened]
        return out


# ---------------------------------------------------------------------------- the catalogue

def fixed_examples(strategy: Any, count: int, seed: int = 0) -> list[Any]:
    """The first ``count`` examples Hypothesis generates from ``strategy`` under a fixed seed.

    ``strategy.example()`` draws at random; this runs the generate phase only, with
    ``@seed(seed)`` and no example database, so the same Hypothesis version gives the same
    examples in every process. The first one is Hypothesis's simplest example.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as fix_seed

    out: list[Any] = []

    @fix_seed(seed)
    @settings(max_examples=max(1, count), database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck), derandomize=False, print_blob=False)
    @given(strategy)
    def collect(value: Any) -> None:
        out.append(value)

    collect()
    return out[:count]


def _library_cheats(per_technique: int, seed: int, side_effect_path: str) -> list[Program]:
    """A fixed sample of every technique of :mod:`sandbox.cheats`, and of its side-effect cheats."""
    try:
        from sandbox import cheats
    except ImportError as exc:  # Hypothesis is the test extra
        raise ValueError("the library's cheat catalogue needs Hypothesis (pip install 'codepolicy[test]'); "
                         f"audit without it with library=False / --no-library ({exc})") from None
    programs = []
    for category in cheats.CATEGORIES:
        techniques = cheats.TECHNIQUES[category]
        for technique in techniques:
            only = cheats.cheating_strategies(category, exclude=tuple(t for t in techniques if t != technique))
            for k, cheat in enumerate(fixed_examples(only, per_technique, seed)):
                programs.append(Program(f"cheat:{category}/{technique}#{k}", "cheat",
                                        f"a disguised {category} violation ({technique})", cheat.source))
    # The side-effect kinds are drawn together; enough draws to see each kind, then a few of each.
    seen: dict[str, int] = {}
    # The kind is drawn inside the strategy, so draw a few fixed batches to see each one.
    effects = cheats.side_effect_cheats(side_effect_path, _CANARY_VAR)
    drawn = [c for batch in range(3) for c in fixed_examples(effects, 30 * per_technique, seed + batch)]
    for cheat in drawn:
        k = seen.get(cheat.technique, 0)
        if k < per_technique:
            seen[cheat.technique] = k + 1
            programs.append(Program(f"cheat:{cheat.technique}#{k}", "cheat",
                                    f"a side effect ({cheat.category}) that would leak outside the sandbox",
                                    cheat.source))
    return programs


def _baselines(game: str) -> list[Program]:
    """The game's sandboxable baselines (``GameSpec.baselines``): honest ones are the floor every hack must stay
    under (the audit verifies that each one ended every game honestly before it counts); a dishonest one, such
    as 2048's constant move, is a "constant" of its own."""
    import envs

    return [Program(f"baseline:{b.name}", "honest" if b.honest else "constant", b.doc, b.source)
            for b in envs.get(game).baselines if b.sandboxable]


def _hacks(game: str, api: bool) -> list[Program]:
    """The game's reward hacks (``GameSpec.hacks``), and with ``api`` the abuses of its API (``api_hacks``)."""
    import envs

    spec = envs.get(game)
    return [Program(f"hack:{h.name}", h.kind, h.earns, h.source) for h in spec.hacks + (spec.api_hacks if api else ())]


def _api_abuses(game: str, per_technique: int, seed: int) -> list[Program]:
    """A fixed sample of every technique of :func:`sandbox.cheats.api_abuse_programs` (malformed API calls)."""
    from sandbox import cheats

    programs = []
    for technique in cheats.API_TECHNIQUES:
        for k, abuse in enumerate(fixed_examples(cheats.api_abuse_programs(game, technique), per_technique, seed)):
            programs.append(Program(f"api:{technique}#{k}", "error",
                                    f"a game API call with a malformed argument ({technique})", abuse.source))
    return programs


def catalogue(game: str = DEFAULT_GAME, *, library: bool = True, per_technique: int = 1, seed: int = 0,
              side_effect_path: str = "/nonexistent/codepolicy-audit/canary", game_api: bool = True) -> list[Program]:
    """Every program the audit plays for ``game``: baselines, reward hacks, then library cheats; deduplicated by AST.

    ``game_api`` (a spec's switch) adds the abuses of the game's API: its API hacks, and with
    ``library`` a sample of the malformed calls of :func:`sandbox.cheats.api_abuse_programs`.
    """
    import envs

    spec = envs.get(game)  # UnknownGameError names the registered games
    if not spec.baselines or not any(b.sandboxable and b.honest for b in spec.baselines):
        raise ValueError(f"audit: game {game!r} declares no honest sandboxable baseline (GameSpec.baselines): "
                         "nothing to hold the hacks under")
    api = game_api and bool(spec.api)
    programs = _baselines(game) + _hacks(game, api)
    if library:
        programs += _library_cheats(per_technique, seed, side_effect_path)
        if api:
            programs += _api_abuses(game, per_technique, seed)
    out, seen = [], set()
    for p in programs:
        key = source_hash(p.source)
        if key not in seen:  # a program that is another one up to layout runs and shows once
            seen.add(key)
            out.append(p)
    return out


# ---------------------------------------------------------------------------- order checks

def _fmt(x: float) -> str:
    return f"{x:.3f}"


def _order(name: str, lower: Sequence[AuditRow], upper: Sequence[AuditRow], *, strict: bool = True,
           what: tuple[str, str] = ("", "")) -> OrderCheck:
    """max(lower) < min(upper) (or <= when not strict); offenders are the lower rows at or above min(upper)."""
    if not lower or not upper:
        missing = what[0] if not lower else what[1]
        return OrderCheck(name, False, f"nothing to compare: no {missing} program was audited")
    top = max(lower, key=lambda r: r.total)
    bottom = min(upper, key=lambda r: r.total)
    bad = sorted((r for r in lower if (r.total >= bottom.total if strict else r.total > bottom.total)),
                 key=lambda r: -r.total)
    sign = "<" if strict else "<="
    detail = (f"highest {what[0]}: {top.name} {_fmt(top.total)} {sign} lowest {what[1]}: "
              f"{bottom.name} {_fmt(bottom.total)}")
    return OrderCheck(name, not bad, detail, tuple(r.name for r in bad))


def _played_checks(rows: Sequence[AuditRow]) -> list[OrderCheck]:
    by_kind: dict[str, list[AuditRow]] = {}
    for r in rows:
        by_kind.setdefault(r.kind, []).append(r)
    declared = by_kind.get("honest", [])
    honest = [r for r in declared if r.honest]
    checks = []
    not_honest = [r for r in declared if not r.honest]
    checks.append(OrderCheck(
        "honest baselines play to an honest end", bool(honest) and not not_honest,
        (f"{len(honest)} of {len(declared)} honest baselines ended every game honestly"
         + ("; the others ended " + ", ".join(f"{r.name}: {', '.join(sorted(r.outcomes))}" for r in not_honest)
            if not_honest else "")),
        tuple(r.name for r in not_honest)))
    # Policy cheats and stateful programs are refused by the static check or the runtime guard
    # every time. A program whose answers depend on the hash seed or on addresses is caught by
    # the determinism probe only when its two secret hash seeds (or heaps) make it answer
    # differently on a sampled board, which is likely but not certain in a given pool; what must
    # hold every time for it is the last order below (it never reaches honest play).
    cheats = [r for r in rows if r.kind in CHEAT_KINDS]
    caught = [r for r in cheats if r.total >= 0 or r.compliant]
    checks.append(OrderCheck(
        "every cheat is caught and scores below zero", not caught,
        f"{len(cheats) - len(caught)} of {len(cheats)} policy cheats and stateful programs "
        "were caught with a negative total" + (f"; not: {', '.join(r.name for r in caught[:6])}" if caught else ""),
        tuple(r.name for r in sorted(caught, key=lambda r: -r.total))))
    probes = by_kind.get("probe", [])
    escaped = [r for r in probes if r.compliant]
    checks.append(OrderCheck(
        "probe-evading programs are caught (reported, not required: the probe is a sample)", True,
        f"{len(probes) - len(escaped)} of {len(probes)} caught by the determinism probe in this pool"
        + (f"; escaped: {', '.join(r.name for r in escaped)}" if escaped else ""),
        tuple(r.name for r in escaped)))
    invalid, errors = by_kind.get("invalid", []), by_kind.get("error", [])
    # Compliant ones only: a non-compliant invalid answer (a str subclass needs a class) is
    # graded by the compliance rule, not the format ladder.
    invalid_ran = [r for r in invalid if r.compliant]
    checks.append(_order("an invalid answer is no better than a runtime error", invalid_ran, errors,
                         strict=False, what=("invalid answer", "runtime error")))
    constant = by_kind.get("constant", [])
    checks.append(_order("no legal move < a constant legal move", invalid_ran + errors, constant,
                         what=("program without a legal move", "constant move")))
    unchecked = by_kind.get("unchecked", [])
    checks.append(_order("a constant legal move < a heuristic without legality check", constant, unchecked,
                         what=("constant move", "unchecked heuristic")))
    checks.append(_order("a heuristic without legality check < an honest baseline", unchecked, honest,
                         what=("unchecked heuristic", "honest baseline")))
    defused = by_kind.get("defused", [])
    unfinished = [r for r in defused if not r.outcomes or not set(r.outcomes) <= HONEST_OUTCOMES]
    checks.append(OrderCheck(
        "defused tricks run bounded to an honest end", not unfinished,
        f"{len(defused) - len(unfinished)} of {len(defused)} ended every game honestly"
        + (f"; not: {', '.join(f'{r.name} ({sorted(r.outcomes)})' for r in unfinished)}" if unfinished else ""),
        tuple(r.name for r in unfinished)))
    deterministic = by_kind.get("deterministic", [])
    flagged = [r for r in deterministic if not r.compliant or not r.outcomes
               or not set(r.outcomes) <= HONEST_OUTCOMES]
    checks.append(OrderCheck(
        "deterministic programs are never called random (set-order ties, a slow load)",
        bool(deterministic) and not flagged,
        f"{len(deterministic) - len(flagged)} of {len(deterministic)} stayed compliant and ended every game honestly"
        + (f"; not: {', '.join(f'{r.name} ({sorted(r.outcomes)})' for r in flagged)}" if flagged else ""),
        tuple(r.name for r in flagged)))
    checks.append(_switching(rows))
    checks.append(_check_time(rows))
    # A defused trick is honest play once the runtime has bounded it, a probe-evading program
    # that escaped this pool's probe played legal moves deterministically within the pool, and
    # the deterministic and plan-switching programs are honest play: they may score like the
    # honest play they are (each kind has its own check above).
    others = [r for r in rows if not r.honest and r.kind not in HONEST_PLAY_KINDS]
    checks.append(_order("no cheat, hack or early ending reaches the weakest honest baseline", others, honest,
                         what=("other program", "honest baseline")))
    checks.append(_format_rungs(rows))
    return checks


def _switching(rows: Sequence[AuditRow]) -> OrderCheck:
    """Switching plans between games earns nothing: every played row's total is at most that of its own
    games with each game's moves renamed into one orientation (the same plan played consistently).

    Exact, whatever the games: the two totals differ only by what the histograms' orientation
    across games is worth. Rows of kind ``switching`` must be among the rows compared.
    """
    name = "switching plans between games never beats one plan played consistently"
    played = [r for r in rows if math.isfinite(r.consistent_total)]
    bad = sorted((r for r in played if r.total > r.consistent_total + _SAME),
                 key=lambda r: r.consistent_total - r.total)
    switchers = [r for r in played if r.kind == "switching"]
    gain = max(played, key=lambda r: r.total - r.consistent_total, default=None)
    detail = (f"{len(played)} played programs, {len(switchers)} switching plans between games; "
              + (f"largest gain from switching: {gain.name} {gain.total - gain.consistent_total:+.3f}"
                 if gain is not None else "nothing played"))
    return OrderCheck(name, bool(switchers) and not bad, detail, tuple(r.name for r in bad))


def _check_time(rows: Sequence[AuditRow]) -> OrderCheck:
    """The static check took at most CHECK_CPU_SECONDS of CPU on every program."""
    slow = sorted((r for r in rows if r.check_seconds > CHECK_CPU_SECONDS), key=lambda r: -r.check_seconds)
    top = max(rows, key=lambda r: r.check_seconds, default=None)
    detail = (f"slowest: {top.name} {top.check_seconds:.3f} s of CPU (bound {CHECK_CPU_SECONDS:g} s)"
              if top is not None else "no program")
    return OrderCheck("the static check runs in bounded time on every program", not slow, detail,
                      tuple(r.name for r in slow))


def _consistent(ev: Evaluation) -> Evaluation:
    """``ev`` with each game's moves renamed into one orientation: its k-th most used move becomes the
    game's k-th action (ties in action order), in both histograms, so every game plays "the same plan"."""
    records = []
    for r in ev.records:
        moved = dict(r.moved_histogram or r.move_histogram)
        actions = list(moved) or list(r.move_histogram)
        ranked = sorted(actions, key=lambda m: (-moved.get(m, 0), actions.index(m)))
        rename = dict(zip(ranked, actions))
        records.append(dataclasses.replace(
            r, moved_histogram={rename[m]: n for m, n in r.moved_histogram.items()},
            move_histogram={rename.get(m, m): n for m, n in r.move_histogram.items()}))
    return dataclasses.replace(ev, records=tuple(records))


def _check_cpu_seconds(source: str, policy: Any = None) -> float:
    """CPU seconds (this thread's: other processes' load does not count) the static check takes on ``source``."""
    from sandbox.check import check

    start = time.thread_time()
    check(source, policy)
    return time.thread_time() - start


def _ending(row: AuditRow) -> str | None:
    """The outcome group every game of ``row`` ended in, or None (mixed, or not run)."""
    groups = {group(o) for o in row.outcomes}
    return groups.pop() if len(groups) == 1 and row.compliant else None


def _format_rungs(rows: Sequence[AuditRow]) -> OrderCheck:
    """The format rule's own ladder on played programs: runtime error < bad move < plays.

    Totals can stay ordered while a rung breaks (the rule is clipped to its bounds, so
    ``bad_move = 3.0`` pays a stuck game exactly what an honest one gets); the rung is a
    promise of the rules, and a broken one hands every stuck program the honest grade.
    """
    name = "format grade: runtime error < bad move (stuck) < plays"
    if not any("format" in r.values for r in rows):
        return OrderCheck(name, True, "the spec has no format rule")

    def grade(r: AuditRow) -> float:
        return r.weights.get("format", 0.0) * r.values.get("format", 0.0)

    rungs = [[r for r in rows if _ending(r) == g] for g in ("runtime_error", "bad_move", "honest")]
    labels = ("runtime error", "stuck", "honest")
    bad: list[AuditRow] = []
    details = []
    for (lower, upper), (lo, hi) in zip(zip(rungs, rungs[1:]), zip(labels, labels[1:])):
        if not lower or not upper:
            details.append(f"no {lo if not lower else hi} program to compare")
            continue
        floor = min(grade(r) for r in upper)
        bad += [r for r in lower if grade(r) >= floor]
        details.append(f"{lo} {_fmt(max(grade(r) for r in lower))} < {hi} {_fmt(floor)}")
    ok = not bad and len(details) == 2 and all(" < " in d for d in details)
    return OrderCheck(name, ok, "weighted format grade: " + "; ".join(details),
                      tuple(r.name for r in sorted(bad, key=lambda r: -grade(r))))


# ---------------------------------------------------------------------------- synthetic records

_SYNTH_SOURCE = 'def strategy(board):\n    return "A"\n'


def _synthetic_evaluation(spec: RewardSpec, game: str, records: Iterable[GameRecord],
                          verdict: Verdict = Verdict(True)) -> Evaluation:
    """An evaluation of records as if played under ``spec`` (its options when ``game`` is its game)."""
    return Evaluation(completion=_SYNTH_SOURCE, game=game, source=_SYNTH_SOURCE, verdict=verdict,
                      records=tuple(records), options=dict(spec.options) if game == spec.game else {})


def _synthetic(spec: RewardSpec, game: str, records: Iterable[GameRecord],
               verdict: Verdict = Verdict(True)) -> float:
    return score(_synthetic_evaluation(spec, game, records, verdict), spec).total


@dataclass(frozen=True)
class _Grid:
    """What synthetic records of one game look like: its actions and progress values from low to beyond the goal.

    ``levels`` are (lowest, low, middle, goal, beyond) values of the game's progress metric: for 2048 (a log2
    scale, target 2048) the tiles 2, 16, 256, 2048, 8192; ``small`` is the least an honest game ends with.
    A game without a progress metric gets zeros (the records differ in outcome, moves and score only).
    """

    actions: tuple[str, ...]
    metric: str | None
    levels: tuple[float, float, float, float, float]
    small: float

    def record(self, outcome: str, level: float, moves: int, one_way: bool, score_value: float = 0.0,
               padding: int = 0, direction: str | None = None) -> GameRecord:
        """A game that ended ``outcome`` at progress ``level`` after ``moves`` moves, all one way or spread evenly
        (the remainder on ``direction``), with ``padding`` answers per other action that changed nothing."""
        direction = direction if direction is not None else self.actions[1 % len(self.actions)]
        k = len(self.actions)
        if one_way:
            moved = {m: (moves if m == direction else 0) for m in self.actions}
        else:
            moved = {m: moves // k for m in self.actions}
            moved[direction] += moves - k * (moves // k)
        answered = {m: n + (padding if m != direction else 0) for m, n in moved.items()}
        metrics = {self.metric: float(level)} if self.metric else {}
        return GameRecord(seed=0, outcome=outcome, score=score_value, moves=moves, move_histogram=answered,
                          moved_histogram=moved, illegal_moves=(k - 1) * padding, metrics=metrics)


def _grid(spec: RewardSpec, game: str) -> _Grid:
    """The synthetic-record grid of ``game``, its progress values read from its declaration and the spec's options."""
    import envs

    g = envs.get(game)
    progress = g.progress
    if progress is None:
        return _Grid(tuple(g.actions), None, (0.0, 0.0, 0.0, 0.0, 0.0), 0.0)
    options = {**g.options, **(spec.options if game == spec.game else {})}
    goal = float(progress.target(options))
    if progress.scale == "log2":
        low = tuple(min(v, goal / 2) for v in (2.0, 16.0, 256.0))
        return _Grid(tuple(g.actions), progress.metric, (low[0], low[1], low[2], goal, 4 * goal), min(4.0, goal / 2))
    start, span = progress.start, goal - progress.start
    return _Grid(tuple(g.actions), progress.metric,
                 (start, start + 0.1 * span, start + 0.5 * span, goal, goal + span), start)


def spec_checks(spec: RewardSpec | None = None, game: str | None = None) -> list[OrderCheck]:
    """The ladder's orders checked on a grid of synthetic extreme game records: no sandbox, milliseconds.

    Part of every :func:`audit`; on its own it tells a spec author at once whether the
    numbers break an order for *some* game, even one no catalogued program plays.
    """
    spec = spec if spec is not None else default_spec(game or DEFAULT_GAME)
    return _synthetic_checks(spec, game or spec.game)


def _level(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"


def _synthetic_checks(spec: RewardSpec, game: str) -> list[OrderCheck]:
    """Orders that must hold for any game records, checked on a grid of extreme ones."""
    early_outcomes = ("stuck", "invalid_output", "error", "timeout", "crashed")
    grid = _grid(spec, game)
    _record = grid.record
    tiles = grid.levels
    low, mid, goal, beyond = grid.levels[1], grid.levels[2], grid.levels[3], grid.levels[4]
    what = (grid.metric or "progress").replace("_", " ")
    early: list[tuple[str, float]] = []
    for o in early_outcomes:
        for t in tiles:
            for moves in (0, 1, 3000):
                for one_way in (True, False):
                    rec = _record(o, t, moves, one_way, score_value=10.0 * t * max(1, moves))
                    early.append((f"{o} {what} {_level(t)} after {moves} moves", _synthetic(spec, game, [rec])))
    honest: list[tuple[str, float]] = []
    for o in ("finished", "max_moves", "won"):
        for t in ((goal, beyond) if o == "won" else (grid.small, low, goal)):
            for moves in (20, 5000):
                for one_way in (True, False):
                    rec = _record(o, t, moves, one_way)
                    honest.append((f"{o} {what} {_level(t)} after {moves} moves, score 0", _synthetic(spec, game, [rec])))
    checks = []
    worst_honest = min(honest, key=lambda x: x[1])
    bad = sorted((e for e in early if e[1] >= worst_honest[1]), key=lambda x: -x[1])
    best_early = max(early, key=lambda x: x[1])
    checks.append(OrderCheck(
        "records: any early ending < any honest ending", not bad,
        f"best early: {best_early[0]} {_fmt(best_early[1])} < worst honest: {worst_honest[0]} "
        f"{_fmt(worst_honest[1])}", tuple(name for name, _ in bad[:8]), synthetic=True))

    bad = []
    for t in tiles:
        for moves in (0, 1, 3000):
            invalid = _synthetic(spec, game, [_record("invalid_output", t, moves, True)])
            error = _synthetic(spec, game, [_record("error", t, moves, True)])
            if invalid > error:
                bad.append(f"invalid_output {what} {_level(t)} after {moves} moves: {_fmt(invalid)} > error {_fmt(error)}")
    checks.append(OrderCheck("records: an invalid answer is no better than a runtime error", not bad,
                             "invalid_output vs error on the same board and moves", tuple(bad[:8]), synthetic=True))

    bad = []
    for o in early_outcomes:
        for t in tiles:
            none = _synthetic(spec, game, [_record(o, t, 0, True)])
            some = _synthetic(spec, game, [_record(o, t, 1, True)])
            if none > some:
                bad.append(f"{o} {what} {_level(t)}: no move {_fmt(none)} > one move {_fmt(some)}")
    checks.append(OrderCheck("records: a game without a legal move is no better than one with", not bad,
                             "the same ending with 0 vs 1 board-changing moves", tuple(bad[:8]), synthetic=True))

    bad = []
    for o in early_outcomes + ("finished", "max_moves"):
        for one_way in (True, False):
            plain = _synthetic(spec, game, [_record(o, mid, 300, one_way)])
            padded = _synthetic(spec, game, [_record(o, mid, 300, one_way, padding=100)])
            if padded > plain:
                bad.append(f"{o}{' one-way' if one_way else ''}: padded {_fmt(padded)} > plain {_fmt(plain)}")
    checks.append(OrderCheck("records: answers that change nothing earn nothing", not bad,
                             "the same game with and without 300 answers that changed nothing",
                             tuple(bad[:8]), synthetic=True))

    bad = []
    for o in ("finished", "stuck", "error"):
        for t in (low, mid, goal):
            ways = [_record(o, t, 300, True, direction=d) for d in grid.actions]
            same = [_record(o, t, 300, True, direction=grid.actions[0]) for _ in ways]
            switching, consistent = _synthetic(spec, game, ways), _synthetic(spec, game, same)
            if switching > consistent + _SAME:
                bad.append(f"{o} {what} {_level(t)}: {len(ways)} one-way games in {len(ways)} directions {_fmt(switching)} > "
                           f"all in one {_fmt(consistent)}")
    checks.append(OrderCheck("records: switching plans between games earns nothing", not bad,
                             "four one-way games pointing four ways vs the same four pointing one way",
                             tuple(bad[:8]), synthetic=True))

    if "format" in spec.names:
        bad = []
        weight = spec.term("format").weight
        for t in tiles:
            for moves in (1, 3000):
                grades = []
                for o in ("error", "stuck", "finished"):
                    ev = _synthetic_evaluation(spec, game, [_record(o, t, moves, False)])
                    grades.append(weight * score(ev, spec).values["format"])
                if not grades[0] < grades[1] < grades[2]:
                    bad.append(f"{what} {_level(t)} after {moves} moves: error {_fmt(grades[0])}, stuck {_fmt(grades[1])}, "
                               f"finished {_fmt(grades[2])}")
        checks.append(OrderCheck("records: format grade runtime error < bad move < plays", not bad,
                                 "the weighted format grade of the same game ended by an error, stuck or honestly",
                                 tuple(bad[:8]), synthetic=True))

    from sandbox.policy import CATEGORIES

    bad = []
    best = _record("won", beyond, 5000, False, score_value=1e6)
    for category in tuple(CATEGORIES) + ("attribute", "unknown_category"):
        v = Violation(rule="audit", category=category, line=1, col=1, message="audit")
        total = _synthetic(spec, game, [], Verdict(False, (v,)))
        if total >= 0:
            bad.append(f"{category}: {_fmt(total)}")
    caught = _synthetic(spec, game, [best, GameRecord(seed=1, outcome="violation", error="audit")])
    if caught >= 0:
        bad.append(f"caught at run time after a won game: {_fmt(caught)}")
    checks.append(OrderCheck("records: a non-compliant program scores below zero", not bad,
                             "one violation of each category, and a runtime violation beside a won game",
                             tuple(bad[:8]), synthetic=True))
    return checks


# ---------------------------------------------------------------------------- the audit

def _row(p: Program, ev: Evaluation, b: Breakdown, spec: RewardSpec, check_seconds: float) -> AuditRow:
    outcomes: dict[str, int] = {}
    for r in ev.records:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    n = len(ev.records)
    consistent = score(_consistent(ev), spec).total if any(r.moves > 0 for r in ev.records) else math.nan
    return AuditRow(name=p.name, kind=p.kind, description=p.description, total=b.total, values=dict(b.values),
                    weights=dict(b.weights), outcomes=outcomes, compliant=bool(b.info.get("compliant", 0.0)),
                    mean_moves=sum(r.moves for r in ev.records) / n if n else 0.0, source=p.source,
                    check_seconds=check_seconds, consistent_total=consistent)


def audit(spec: RewardSpec | str | Path | None = None, game: str | None = None, *,
          seeds: Sequence[int] | None = None, games: int = 3, pool: Any = None, workers: int = 2,
          library: bool = True, per_technique: int = 1, draw_seed: int = 0,
          programs: Sequence[Program] | None = None) -> AuditReport:
    """Play every catalogued cheat, reward hack and baseline under ``spec`` and check the ladder's orders.

    ``spec`` is a RewardSpec, a TOML path, or None for ``game``'s default spec; ``game``
    defaults to the spec's. Every program plays the same ``seeds`` (default ``0..games-1``)
    in the sandbox, with the spec's limits and options, on ``pool`` (default: a new pool of
    ``workers`` processes, closed afterwards). ``library=False`` leaves out the
    :mod:`sandbox.cheats` catalogue (it needs Hypothesis); ``per_technique`` samples are
    drawn of each of its techniques with Hypothesis seed ``draw_seed``. ``programs``
    replaces the whole catalogue (tests). Same inputs, same report.
    """
    if spec is None or isinstance(spec, (str, Path)):
        spec = load_spec(spec, game=game or DEFAULT_GAME) if spec is not None else default_spec(game or DEFAULT_GAME)
    game = game or spec.game
    if seeds is None:
        if games < 1:
            raise ValueError(f"audit: games must be at least 1, got {games}")
        seeds = tuple(range(games))
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("audit: seeds is empty; give at least one seed")
    scratch = tempfile.mkdtemp(prefix="codepolicy-audit-")
    own_pool = None
    try:
        # The policy of the spec's game_api switch: the game's API on (its abuses are played) or off.
        from sandbox.policy import game_policy

        policy = game_policy(game, spec.game_api)
        if programs is None:
            programs = catalogue(game, library=library, per_technique=per_technique, seed=draw_seed,
                                 side_effect_path=str(Path(scratch) / "canary"), game_api=spec.game_api)
        names = [p.name for p in programs]
        if len(set(names)) != len(names):
            raise ValueError("audit: program names must be unique")
        if pool is None:
            import sandbox

            pool = own_pool = sandbox.WorkerPool(workers)
        completions = [f"```python\n{p.source}\n```\n" for p in programs]
        check_seconds = [_check_cpu_seconds(p.source, policy) for p in programs]
        evaluations = evaluate_many(completions, game, seeds, spec=spec, pool=pool, policy=policy)
    finally:
        if own_pool is not None:
            own_pool.close()
        shutil.rmtree(scratch, ignore_errors=True)
    rows = [_row(p, ev, score(ev, spec), spec, t) for p, ev, t in zip(programs, evaluations, check_seconds)]
    honest = [r for r in rows if r.honest]
    weakest = min(honest, key=lambda r: r.total) if honest else None
    floor = weakest.total if weakest is not None else math.nan
    rows = [dataclasses.replace(r, margin=r.total - floor) for r in rows]
    checks = _played_checks(rows) + _synthetic_checks(spec, game)
    return AuditReport(spec_origin=spec.origin, game=game, seeds=seeds, rows=tuple(rows), checks=tuple(checks),
                       weakest_honest=weakest.name if weakest else None, weakest_honest_total=floor,
                       ok=all(c.ok for c in checks))
