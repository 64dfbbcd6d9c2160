"""Properties of sandbox.strategies and sandbox.cheats, and the policy/runner properties they exist for.

* generated clean programs are valid, deterministic, never raise and always answer a move
  (executed here in-process: they are our own trusted output);
* every clean program passes ``sandbox.check``, loads under the restricted runtime and runs there
  without a single sandbox violation (what the check accepts, the runtime accepts), and plays to
  an honest game record through ``sandbox.run``;
* every cheat is rejected by ``sandbox.check`` with its category among the verdict's;
* cheats that would touch a file or read an environment variable leave no trace when run.
"""
from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import unicodedata
import warnings
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.cheats import (
    CATEGORIES,
    TECHNIQUES,
    Cheat,
    _spell,
    cheating_strategies,
    side_effect_cheats,
)
from sandbox.strategies import MOVES, clean_strategies

from sandbox.check import check
from sandbox.runner import run


def _identity(test):
    return test


# Both modules always import now; the markers stay as names so the tests read as before.
needs_check = needs_run = _identity

TILES = (0, 0, 0, 2, 4, 8, 16, 32, 64, 128, 1024, 2048, 4096)
boards = st.lists(st.lists(st.sampled_from(TILES), min_size=4, max_size=4), min_size=4, max_size=4)


def _load(source: str):
    namespace: dict = {}
    exec(compile(source, "<generated>", "exec"), namespace)  # our own generated, trusted code
    return namespace["strategy"]


# -- the generators themselves -------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clean_strategies(), st.lists(boards, min_size=1, max_size=4))
def test_clean_programs_answer_a_move_deterministically(source, board_list):
    tree = ast.parse(source)
    # Module level: constants and helpers, then strategy last.
    kinds = [type(n).__name__ for n in tree.body if not isinstance(n, ast.Expr)]
    assert kinds[-1] == "FunctionDef" and tree.body[-1].name == "strategy"
    assert set(kinds) <= {"FunctionDef", "Assign", "AnnAssign"}
    strategy = _load(source)
    for board in board_list:
        with contextlib.redirect_stdout(io.StringIO()):
            first = strategy([row[:] for row in board])
            second = strategy([row[:] for row in board])
        assert type(first) is str and first in MOVES
        assert first == second


@settings(max_examples=60, deadline=None)
@given(clean_strategies())
def test_clean_programs_compile_under_restricted_python(source):
    # The sandbox's own transformer: plain RestrictedPython 9 refuses `x[i] += 1`, `match`,
    # annotated assignments and a variable named `printed`, which the policy allows.
    from sandbox.restricted import compile_strategy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # "prints but never reads 'printed'"
        compile_strategy(source)


@settings(max_examples=20, deadline=None)
@given(clean_strategies(module_level=False))
def test_clean_programs_without_module_level_code(source):
    tree = ast.parse(source)
    assert [type(n).__name__ for n in tree.body if not isinstance(n, ast.Expr)] == ["FunctionDef"]


@settings(max_examples=200, deadline=None)
@given(cheating_strategies())
def test_cheats_are_valid_python_with_a_known_category(cheat):
    assert isinstance(cheat, Cheat)
    assert cheat.category in CATEGORIES and cheat.technique in TECHNIQUES[cheat.category]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        compile(cheat.source, "<cheat>", "exec")  # a syntax error would be caught for the wrong reason
    assert "def strategy(" in cheat.source


@pytest.mark.parametrize("category", CATEGORIES)
def test_each_category_draws_only_its_own_cheats(category):
    @settings(max_examples=10, deadline=None, database=None)
    @given(cheating_strategies(category))
    def inner(cheat):
        assert cheat.category == category

    inner()


def test_bad_arguments_are_one_clear_error():
    with pytest.raises(ValueError, match="unknown category 'loops'"):
        cheating_strategies("loops")
    with pytest.raises(ValueError, match="every technique"):
        cheating_strategies("resource", exclude=TECHNIQUES["resource"])
    with pytest.raises(ValueError, match="max_statements"):
        clean_strategies(max_statements=-1)


@settings(max_examples=100, deadline=None)
@given(st.data(), st.sampled_from(["open", "eval", "__import__", "getattr", "hash"]))
def test_lookalike_spellings_normalise_to_the_name(data, name):
    spelled = data.draw(st.composite(lambda draw: _spell(draw, name))())
    assert unicodedata.normalize("NFKC", spelled) == name
    assert ast.parse(spelled, mode="eval").body.id == name


# -- the checker against them ----------------------------------------------------------------------

# Cheats the current checker lets through (or rejects without naming their category), found by
# these properties and reported to the lead: (category, technique, predicate on the NFKC-normalised
# source picking out the uncaught form, exact source, reason). The property test lets exactly those
# sources pass; test_known_checker_gaps pins one exact source per gap as a strict xfail, so closing
# the gap turns into a failure that says to remove the entry.
def _address_gap(form: str, why: str, marker: str = "") -> tuple[str, str, Callable[[str], bool], str, str]:
    source = f"def strategy(board):\n    f = lambda: 0\n    return 'WASD'[int({form}[-4], 16) % 4]\n"
    return ("randomness", "address", lambda src: (marker or form) in src, source, why)


# Gaps found by these properties and since closed in check.py, kept as regressions: the text of
# a function, bound method or iterator holds its memory address (randomness); `pow` reached
# through an alias, default argument, container, walrus or *args wrapper; and
# `__builtins__['__import__']('os')`, rejected as escape but not as import.
CLOSED_GAPS = [
    _address_gap("str([abs, lambda: 1])", "a function inside a container passed to str()"),
    _address_gap("'{}'.format(lambda: 0)", "str.format of a function"),
    _address_gap("'%s' % (lambda: 0,)", "%-formatting of a function"),
    _address_gap("str(board.copy)", "str() of a bound method"),
    _address_gap("str((zip(board[0], board[1]),))", "an iterator inside a container passed to str()"),
    _address_gap("str({0: f})", "a function-valued name inside a container passed to str()", "str({0: "),
]
KNOWN_GAPS: list[tuple[str, str, Callable[[str], bool], str, str]] = []

# Module-level constants bound to immutable literals and helper functions are legal since issue
# 11 (not cheats): the catalogue's module_code technique draws only the forms that stay refused.
_NOW_ALLOWED_MODULE_CODE = re.compile(r"^(\w+ = 4|\w+, \w+ = 1, 2|def \w+\(\):)$", re.MULTILINE)


def _known_gap(cheat: Cheat) -> bool:
    normal = unicodedata.normalize("NFKC", cheat.source)
    return any(cheat.category == cat and cheat.technique == tech and pred(normal)
               for cat, tech, pred, _, _ in KNOWN_GAPS)


@needs_check
@settings(max_examples=100, deadline=None)
@given(clean_strategies())
def test_clean_programs_pass_check(source):
    verdict = check(source)
    assert verdict.ok, "\n".join(map(str, verdict.violations)) + "\n" + source


@needs_check
@pytest.mark.parametrize("category", CATEGORIES)
def test_cheats_are_rejected_with_their_category(category):
    # STRATEGIES_EXAMPLES=400 for a deeper hunt than the default run affords.
    @settings(max_examples=int(os.environ.get("STRATEGIES_EXAMPLES", 50)), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(cheating_strategies(category))
    def inner(cheat):
        verdict = check(cheat.source)
        if category in verdict.categories:
            assert not verdict.ok
            return
        if _known_gap(cheat):
            return
        raise AssertionError(f"{cheat.technique}: {category} not among {sorted(verdict.categories)}\n"
                             f"{cheat.source}")

    inner()


@needs_check
@pytest.mark.parametrize("source", [
    "x_1 = 4\ndef strategy(board):\n    return 'W'\n",
    "x_1, y_2 = 1, 2\ndef strategy(board):\n    return 'W'\n",
    "def x_1():\n    return 'W'\ndef strategy(board):\n    return x_1()\n",
])
def test_module_code_forms_now_allowed(source):
    assert _NOW_ALLOWED_MODULE_CODE.search(source)
    assert check(source).ok, check(source).violations


@needs_check
@pytest.mark.parametrize("category,source", [
    pytest.param(c, s, marks=pytest.mark.xfail(strict=True, reason=why), id=f"{c}-{t}")
    for c, t, _, s, why in KNOWN_GAPS] + [
    pytest.param(c, s, id=f"closed-{c}-{t}-{i}") for i, (c, t, _, s, why) in enumerate(CLOSED_GAPS)])
def test_known_checker_gaps(category, source):
    compile(source, "<gap>", "exec")
    assert category in check(source).categories


# -- the restricted runtime against them -------------------------------------------------------------

RUNTIME_EXAMPLES = int(os.environ.get("STRATEGIES_EXAMPLES", 120))


@needs_check
@settings(max_examples=RUNTIME_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clean_strategies(), st.lists(boards, min_size=3, max_size=5))
def test_what_check_accepts_the_runtime_runs_without_violations(source, board_list):
    """Issue 11's invariant: honest code never passes the check and then fails as a violation.

    Each program is loaded by the worker's own loader and called armed, as the worker calls it,
    on fresh copies of random boards: ordinary exceptions would be allowed, violations are not.
    """
    from sandbox.restricted import GUARD, LoadError, SandboxViolation, load_strategy

    verdict = check(source)
    assert verdict.ok, "\n".join(map(str, verdict.violations)) + "\n" + source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        try:
            strategy = load_strategy(source)
        except LoadError as exc:
            raise AssertionError(f"{exc.outcome}: {exc.message}\n{source}") from None
    for board in board_list:
        GUARD.violation = ""
        try:
            GUARD.armed = True
            strategy([row[:] for row in board])
        except SandboxViolation as exc:
            raise AssertionError(f"{exc}\n{source}") from None
        except Exception:  # noqa: BLE001 - an ordinary exception is the program's own business
            pass
        finally:
            GUARD.armed = False
        assert not GUARD.violation, f"{GUARD.violation}\n{source}"


# -- the runner against them ------------------------------------------------------------------------

HONEST = {"finished", "won", "max_moves", "stuck"}

# Clean programs the current runner fails on, found by these properties and reported to the lead:
# (substring identifying the construct, exact source for the strict xfail test, reason).
KNOWN_RUNNER_GAPS: list[tuple[str, str, str]] = [
    # Closed: the worker gave RestrictedPython no `_apply_`, so `max(*row)` raised NameError.
]


def _runner_gap(source: str) -> bool:
    return any(marker in source for marker, _, _ in KNOWN_RUNNER_GAPS)


@needs_run
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clean_strategies())
def test_clean_programs_play_to_an_honest_record(source):
    from sandbox.records import Limits

    records = run(source, game="2048", seeds=(0, 1), limits=Limits(max_moves=40))
    assert len(records) == 2
    if _runner_gap(source):
        return
    for record in records:
        assert record.outcome in HONEST, (record, source)
        assert record.moves + record.illegal_moves >= 1
        assert sum(record.move_histogram.values()) == record.moves + record.illegal_moves


@needs_run
@pytest.mark.parametrize("source", [
    pytest.param(s, marks=pytest.mark.xfail(strict=True, reason=why)) for _, s, why in KNOWN_RUNNER_GAPS]
    or [pytest.param("", marks=pytest.mark.skip(reason="no known runner gaps"))])
def test_known_runner_gaps(source):
    from sandbox.records import Limits

    assert check is None or check(source).ok
    records = run(source, game="2048", seeds=(0,), limits=Limits(max_moves=10))
    assert all(r.outcome in HONEST for r in records), records


ENV_VAR = "CODEPOLICY_TEST_CANARY"


def _run_side_effect_cheat(folder, data, policy):
    from sandbox.records import Limits

    target = folder / "pwned"
    cheat = data.draw(side_effect_cheats(str(target), ENV_VAR, canary="leaked"))
    os.environ[ENV_VAR] = "leaked"  # set in the parent only: a worker must neither see nor read it
    try:
        records = run(cheat.source, game="2048", seeds=(0,), limits=Limits(max_moves=20), policy=policy)
    finally:
        del os.environ[ENV_VAR]
    assert not target.exists(), cheat.source
    assert list(folder.iterdir()) == [], cheat.source
    for record in records:
        assert record.move_histogram.get("D", 0) == 0, (record, cheat.source)  # "D" only if the canary leaked
    return records, cheat


@needs_run
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_side_effect_cheats_leave_no_trace_past_the_runtime_layers(tmp_path_factory, data):
    """Static check skipped (UNCHECKED): RestrictedPython, the builtins and the audit hook must hold."""
    from sandbox.runner import UNCHECKED

    records, cheat = _run_side_effect_cheat(tmp_path_factory.mktemp("target"), data, UNCHECKED)
    for record in records:
        assert record.outcome in {"violation", "error"}, (record, cheat.source)


@needs_run
@needs_check
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_side_effect_cheats_are_stopped_before_running(tmp_path_factory, data):
    records, cheat = _run_side_effect_cheat(tmp_path_factory.mktemp("target"), data, None)
    for record in records:
        assert record.outcome == "violation", (record, cheat.source)  # run re-checks before executing
