"""Fuzzing sandbox.check with random valid Python (hypothesmith) and random bytes: it never raises."""
from __future__ import annotations

import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import Verdict, check
from sandbox.policy import CATEGORIES, Policy

hypothesmith = pytest.importorskip("hypothesmith")

# hypothesmith compiles the programs it generates to validate them; odd but valid code such as
# ``1(2)`` makes CPython's compiler warn while it draws, before the test body runs.
pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")

FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
RELAXED = Policy(allow_loops=True, allow_comprehensions=True, allow_recursion=True,
                                   allow_module_helpers=True, allow_bare_except=True)


def _sane(verdict: Verdict) -> None:
    assert isinstance(verdict, Verdict)
    assert verdict.ok == (not verdict.violations)
    keys = [(v.line, v.col, v.rule) for v in verdict.violations]
    assert keys == sorted(set(keys))
    assert all(v.category in CATEGORIES and v.line >= 1 and v.col >= 1 for v in verdict.violations)


@FUZZ
@given(hypothesmith.from_grammar())
def test_random_grammar_programs_never_raise(source):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ast.parse warns about odd but valid code
        _sane(check(source))
        _sane(check(source, RELAXED))


@settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(hypothesmith.from_node())
def test_random_ast_programs_never_raise(source):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _sane(check(source))
        _sane(check(source, RELAXED))


@FUZZ
@given(st.binary(max_size=500))
def test_random_bytes_never_raise(data):
    _sane(check(data))


@FUZZ
@given(st.sampled_from(["def strategy(board):\n    return ", "x = ", "def strategy(board):\n    "]),
       st.lists(st.sampled_from(["(", "[", "{", "-", "not ", "lambda: ", "await ", "*", "'", "\\", "\0",
                                 "\n", "    ", "if x else ", "9**", ":=", "f'{", "}", ")", "]", "é", "\udcff"]),
                max_size=60),
       st.integers(1, 200))
def test_nasty_fragments_never_raise(head, parts, repeat):
    _sane(check(head + "".join(parts) * repeat))
