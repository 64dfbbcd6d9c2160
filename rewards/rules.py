"""Reward rules: named, documented functions ``(Evaluation, **params) -> float``, and their registry.

A rule reads what the sandbox produced (format error, verdict, game records) and returns one
number; it never runs code. Parameters are the rule's keyword-only arguments with defaults,
so a spec file can tune them and :mod:`rewards.spec` can type-check them. Register a rule
with ``@rule("name")``; the function itself is returned unchanged, so it stays a plain
function you can call and test.

The built-in rules are shaped so that these orders hold for the weighted total. The first
group holds for any numbers in a spec, by construction; the others hold for the default
numbers and are checked for any spec by ``rewards.audit`` / ``codepolicy audit`` (which plays
cheats, reward hacks and honest baselines, and also scores synthetic extreme records):

Structural (any spec):

- an invalid answer (not a move, or not a str) is graded exactly like a runtime error: the
  outcome groups of :mod:`envs.outcomes` put ``invalid_output`` with ``error``, ``timeout``
  and ``crashed``, and no rule has a separate number for it, so ``return "Q"`` can never
  earn more than ``raise``;
- only moves that changed the board count for diversity (``GameRecord.moved_histogram``),
  so padding the histogram with moves that change nothing earns nothing;
- a program that ran but never changed the board gets the full diversity penalty, so the
  diversity rule never favours a program that made no legal move over one that did;
- a non-compliant program (statically rejected, or caught at run time) earns no performance,
  format-play or diversity reward.

With the default numbers (tests check each one; ``codepolicy audit`` checks them for any spec):

- format failures by reason: empty < no_code < no_function < wrong_signature < syntax_error
  < too_long; then a program that runs: runtime error (incl. invalid output) < bad move
  (stuck) < plays;
- classes of programs: invalid answer <= runtime error < a constant legal move < a heuristic
  that does not check its move changes the board < one that checks (plays to an honest end);
- a game ended early (invalid output, stuck, error, timeout, crash) scores below any honest
  completed game (finished, won, max_moves), however far the early one got;
- a non-compliant program's total is negative, whatever it violated.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from envs.outcomes import BAD_MOVE_OUTCOMES, HONEST_OUTCOMES, RUNTIME_ERROR_OUTCOMES
from envs.registry import UnknownGameError, get as get_game
from rewards.records import Evaluation
from sandbox.records import GameRecord

__all__ = [
    "Rule", "rule", "get_rule", "rule_names", "as_rule", "UnknownRuleError",
    "HONEST_OUTCOMES", "BAD_MOVE_OUTCOMES", "RUNTIME_ERROR_OUTCOMES",
    "compliant", "played_records", "game_option", "game_spec", "progress_of", "moved_counts", "code_lines", "format_rule", "compliance", "performance", "diversity", "length",
]



class UnknownRuleError(KeyError):
    """A rule name nobody registered."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Rule:
    """A registered reward rule: its function, one-line doc, parameters and value bounds."""

    name: str
    fn: Callable[..., float] = field(repr=False)
    doc: str
    params: Mapping[str, Any]
    """Default parameters (the function's keyword-only arguments)."""
    bounds: tuple[float, float] | None = None
    """(lowest, highest) value with any parameters; None when the rule does not say."""

    def __call__(self, evaluation: Evaluation, **params: Any) -> float:
        """The rule's value for ``evaluation`` with ``params`` over the defaults."""
        return float(self.fn(evaluation, **{**self.params, **params}))


_RULES: dict[str, Rule] = {}


def _plain_default(value: Any) -> Any:
    """A read-only mapping default as a plain dict, so rules and specs pickle to workers."""
    return dict(value) if isinstance(value, Mapping) else value


def _make_rule(name: str, fn: Callable[..., float], bounds: tuple[float, float] | None) -> Rule:
    """Build the Rule record of ``fn``: its keyword-only defaults become the parameters."""
    if not callable(fn):
        raise TypeError(f"rule {name!r} must be a function (Evaluation, **params) -> float")
    params: dict[str, Any] = {}
    positional = 0
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            if p.default is p.empty:
                positional += 1
            else:
                params[p.name] = _plain_default(p.default)
        elif p.kind is p.KEYWORD_ONLY:
            if p.default is p.empty:
                raise TypeError(f"rule {name!r}: parameter {p.name!r} needs a default value")
            params[p.name] = _plain_default(p.default)
    if positional != 1:
        raise TypeError(f"rule {name!r} must take exactly one positional argument (the Evaluation)")
    doc = (inspect.getdoc(fn) or "").strip().splitlines()
    if bounds is not None:
        lo, hi = (float(b) for b in bounds)
        if not lo <= hi:
            raise ValueError(f"rule {name!r}: bounds must be (low, high), got {bounds!r}")
        bounds = (lo, hi)
    return Rule(name=name, fn=fn, doc=doc[0] if doc else "", params=params, bounds=bounds)


def rule(name: str, *, bounds: tuple[float, float] | None = None) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator registering ``fn(evaluation, *, param=default, ...) -> float`` as reward rule ``name``.

    Registering a name again replaces the earlier rule (so a notebook cell can be re-run).
    ``bounds`` declares the values the rule can take; :func:`rewards.score` clips to them.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"rule name must be an identifier-like string, got {name!r}")

    def register(fn: Callable[..., float]) -> Callable[..., float]:
        _RULES[name] = _make_rule(name, fn, bounds)
        return fn

    return register


def get_rule(name: str) -> Rule:
    """The rule registered as ``name``; UnknownRuleError naming the known rules otherwise."""
    try:
        return _RULES[name]
    except KeyError:
        raise UnknownRuleError(
            f"unknown rule {name!r}; known rules: {', '.join(sorted(_RULES)) or 'none'}"
        ) from None


def rule_names() -> list[str]:
    """Names of every registered rule, built-in ones first, in registration order."""
    return list(_RULES)


def as_rule(obj: Rule | str | Callable[..., float], name: str | None = None) -> Rule:
    """A Rule from a registered name, a Rule, or a plain function passed directly (not registered)."""
    if isinstance(obj, Rule):
        return obj
    if isinstance(obj, str):
        return get_rule(obj)
    for registered in _RULES.values():
        if registered.fn is obj and (name is None or name == registered.name):
            return registered
    return _make_rule(name or getattr(obj, "__name__", "rule"), obj, None)


# ---------------------------------------------------------------------------- helpers for rules

def compliant(ev: Evaluation) -> bool:
    """True when the program passed the static check and no game was stopped by the runtime guard."""
    return (ev.verdict is not None and ev.verdict.ok
            and not any(r.outcome == "violation" for r in ev.records))


def played_records(ev: Evaluation) -> tuple[GameRecord, ...]:
    """The game records that count for reward: none unless the program is compliant."""
    return ev.records if compliant(ev) else ()


def game_option(ev: Evaluation, name: str, default: Any = None) -> Any:
    """The game option ``name`` that ``ev``'s games were played with.

    In order: the evaluation's ``options`` (the spec's ``[options]`` and the caller's), the
    registered game's default option, ``default`` (for a game without that option).
    """
    if name in ev.options:
        return ev.options[name]
    try:
        return get_game(ev.game).options.get(name, default)
    except UnknownGameError:
        return default


def game_spec(ev: Evaluation) -> Any:
    """The registered spec of ``ev``'s game, or None for a game this process does not know."""
    try:
        return get_game(ev.game)
    except UnknownGameError:
        return None


def progress_of(ev: Evaluation, record: GameRecord, target: float | None = None) -> float:
    """How far ``record`` got towards its game's goal, in [0, 1], by the game's declared progress.

    The game's :class:`envs.registry.Progress` reads its metric from the record's metrics and
    grades it against ``target`` (default: the game's own, from the options the games were
    played with). 0 for a game that declares no progress.
    """
    spec = game_spec(ev)
    if spec is None or spec.progress is None:
        return 0.0
    options = {**spec.options, **ev.options}
    return spec.progress.fraction(spec.progress_value(record.metrics), options, target)


# ---------------------------------------------------------------------------- built-in rules

@rule("format", bounds=(-1.0, 1.0))
def format_rule(ev: Evaluation, *, empty: float = -1.0, no_code: float = -0.85, no_function: float = -0.7,
           wrong_signature: float = -0.55, syntax_error: float = -0.4, too_long: float = -0.25,
           not_run: float = 0.0, runtime_error: float = 0.1, bad_move: float = 0.5,
           plays: float = 1.0) -> float:
    """Graded format: failure reason (empty < no code < no function < signature < syntax), then runtime error < bad move < plays.

    Per game: ``plays`` for an honest ending, ``bad_move`` for "stuck", ``runtime_error`` for
    everything else: a raise, a timeout, a crash, an invalid answer, or an outcome this
    module does not know (never reward what we do not understand).
    """
    if ev.format_error is not None:
        by_reason = {"empty": empty, "no_code": no_code, "no_function": no_function,
                     "wrong_signature": wrong_signature, "syntax_error": syntax_error,
                     "too_long": too_long}
        # An unknown reason gets the lowest grade: never reward what we do not understand.
        return by_reason.get(ev.format_error.reason, min(by_reason.values()))
    records = played_records(ev)
    if not records:
        return not_run  # nothing ran (non-compliant, or caught at run time): compliance decides
    total = 0.0
    for r in records:
        if r.outcome in HONEST_OUTCOMES:
            total += plays
        elif r.outcome in BAD_MOVE_OUTCOMES:
            total += bad_move
        else:
            # RUNTIME_ERROR_OUTCOMES, invalid_output included (an invalid answer is a failure to
            # answer), and any outcome name a future runner adds.
            total += runtime_error
    return total / len(records)


_COMPLIANCE_PENALTIES = MappingProxyType({
    "import": 1.0, "escape": 1.0, "file_access": 1.0, "resource": 0.6, "randomness": 0.6,
    "state": 0.4, "loop": 0.3, "structure": 0.3, "syntax": 0.3,
    # An unknown but ordinary attribute (``board.size``): a mistake more than an attack, but it
    # still keeps the total negative (format gives 0 to a program that is not run).
    "attribute": 0.3,
})


@rule("compliance", bounds=(-1.0, 1.0))
def compliance(ev: Evaluation, *, clean_bonus: float = 0.1,
               penalties: Mapping[str, float] = _COMPLIANCE_PENALTIES,
               unknown_category: float = 1.0, runtime_violation: float = 1.0,
               max_penalty: float = 1.0) -> float:
    """Penalty per violated category (import/escape/file access heavy, style light), a small bonus when clean."""
    if ev.verdict is None:
        return 0.0  # nothing to judge: the format rule already graded the failure
    if ev.verdict.ok and not any(r.outcome == "violation" for r in ev.records):
        return clean_bonus
    penalty = sum(penalties.get(c, unknown_category) for c in ev.verdict.categories)
    if any(r.outcome == "violation" for r in ev.records):
        # Passed the static check but tripped the runtime guard: a disguised cheat.
        penalty += runtime_violation
    return -min(max_penalty, penalty)


@rule("performance", bounds=(0.0, 2.0))
def performance(ev: Evaluation, *, target: float | None = None, floor: float | None = None,
                honest_base: float = 0.2, progress_weight: float = 0.5, score_weight: float = 0.3,
                score_scale: float = 0.0, win_bonus: float = 0.3, below_floor_penalty: float = 0.1,
                early_progress: float = 0.05) -> float:
    """Mean over games: honest base + progress and score terms, bonus at the goal, penalty under the floor; early endings get only a sliver.

    Progress is the game's declared metric (``GameSpec.progress``; 2048: the max tile on a log2
    scale, so each doubling is one equal step) as a fraction of the goal: ``target`` overrides the
    goal (default: the game's own, e.g. 2048's ``target`` option the games were played with).
    ``floor`` is the progress value under which an honest game loses ``below_floor_penalty``
    (default: the game's ``Progress.floor``). The score term is the score over ``score_scale``
    (0: the game's ``Progress.score_scale`` for the goal, e.g. 20,480 for the 2048 tile; no score term
    for a game that declares none).
    An early ending earns ``early_progress`` x the progress term when it made at least one
    state-changing move, nothing otherwise.
    """
    records = played_records(ev)
    if not records:
        return 0.0
    spec = game_spec(ev)
    progress = spec.progress if spec is not None else None
    options = {**(spec.options if spec is not None else {}), **ev.options}
    # The game's declaration, read once for all the records: the goal, the floor, the score scale.
    goal = float(target if target is not None else progress.target(options)) if progress is not None else 0.0
    if floor is None:
        floor = progress.floor if progress is not None else 0.0
    if score_scale <= 0:
        score_scale = (progress.score_scale(options, goal)
                       if progress is not None and progress.score_scale is not None else 0.0)
    total = 0.0
    for r in records:
        amount = spec.progress_value(r.metrics) if progress is not None else 0.0
        reached = progress.fraction(amount, options, goal) if progress is not None else 0.0
        if r.outcome in HONEST_OUTCOMES:
            value = honest_base + progress_weight * reached
            if score_scale > 0:
                value += score_weight * min(1.0, max(0.0, r.score) / score_scale)
            if r.outcome == "won" or (progress is not None and reached >= 1.0):
                value += win_bonus
            if progress is not None and amount < floor:
                value -= below_floor_penalty
        elif r.moves > 0:
            # Progress before an early end still grades a little, but stays below every honest
            # game (honest_base - below_floor_penalty > early_progress), so quitting never pays.
            value = early_progress * reached
        else:
            # No move made: what the state shows is the game's start, not progress. Without
            # this, an invalid answer at the first call (its record keeps the start state)
            # would out-earn a timeout (whose record has no state).
            value = 0.0
        total += value
    return min(2.0, max(0.0, total / len(records)))


def moved_counts(record: GameRecord) -> Mapping[str, int]:
    """Action -> times it changed the board in ``record``.

    Records from a runner that does not report ``moved_histogram`` (an empty mapping) fall
    back to ``move_histogram``, which also counts answers that changed nothing. A pure
    strategy can pad that histogram with at most ``stuck_moves`` such answers, since the
    same board always gets the same answer, so the fallback is off by at most one streak.
    """
    return record.moved_histogram if record.moved_histogram else record.move_histogram


@rule("diversity", bounds=(-1.0, 0.0))
def diversity(ev: Evaluation, *, max_share: float = 0.6, share_penalty: float = 1.0,
              min_entropy: float = 0.3, entropy_penalty: float = 0.5, actions: int | None = None) -> float:
    """Penalty, judged within each game, when one move's share of the board-changing moves exceeds max_share or their entropy is below min_entropy; -1 when none changed the board.

    Each game is judged on its own histogram, and the games' penalties are averaged weighted
    by their board-changing moves. Per game, not pooled: a plan is played within a game, so a
    program that builds in a different corner in each game is exactly as one-sided as one
    that always builds in the same corner. Pooled histograms would call the switcher varied
    (its lopsided games point different ways) and pay it for changing plans between games,
    not for varied play; per game, relabelling the moves of any game changes nothing, so
    switching plans between games can never beat the same plan played consistently.

    Only moves that changed the board count (``moved_histogram``): answers that change
    nothing would otherwise flatten the histogram for free. A program that ran and never
    changed the board gets the full penalty: returning ``"Q"`` or raising at the first call
    must not look more varied than returning ``"A"``. A program that did not run (format
    error, non-compliant) gets 0: the format and compliance rules grade it.
    """
    records = played_records(ev)
    if not records:
        return 0.0
    if actions is None:  # the entropy is normalised by the game's own number of actions
        spec = game_spec(ev)
        actions = len(spec.actions) if spec is not None else max(len(moved_counts(r)) for r in records)
    if sum(max(0, int(r.moves)) for r in records) <= 0:
        return -1.0
    weighted = 0.0
    weight = 0
    for r in records:
        counts = [max(0, int(n)) for n in moved_counts(r).values()]
        total = sum(counts)
        if total > 0:  # a game without a board-changing move shows no plan (the others decide)
            weighted += total * _one_sidedness(counts, total, max_share, share_penalty, min_entropy,
                                               entropy_penalty, actions)
            weight += total
    if weight <= 0:
        return -1.0  # moves reported but no histogram of them: nothing shows variety
    return max(-1.0, weighted / weight)


def _one_sidedness(counts: list[int], total: int, max_share: float, share_penalty: float,
                   min_entropy: float, entropy_penalty: float, actions: int) -> float:
    """The diversity penalty (<= 0) of one histogram of ``total`` board-changing moves."""
    value = 0.0
    share = max(counts) / total
    if share > max_share and max_share < 1.0:
        value -= share_penalty * (share - max_share) / (1.0 - max_share)
    if min_entropy > 0 and actions > 1:
        entropy = -sum(c / total * math.log(c / total) for c in counts if c > 0)
        normalised = entropy / math.log(actions)
        if normalised < min_entropy:
            value -= entropy_penalty * (min_entropy - normalised) / min_entropy
    return max(-1.0, value)


def code_lines(source: str) -> int:
    """Lines of code: not blank and not only a comment."""
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))


@rule("length", bounds=(-1.0, 0.0))
def length(ev: Evaluation, *, budget_lines: int = 60, per_line: float = 0.02) -> float:
    """Penalty per line of code over the budget (blank and comment lines are free), at most -1."""
    if ev.source is None:
        return 0.0
    over = code_lines(ev.source) - budget_lines
    return -min(1.0, per_line * over) if over > 0 else 0.0

