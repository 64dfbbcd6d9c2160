"""The cheat generator's own guarantees: every drawn cheat is a cheat by construction."""
from __future__ import annotations

import ast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("RestrictedPython")

from sandbox import check
from sandbox.cheats import _bound_names, _Snippet, _snippet_names, _splice, unshadow
from sandbox.strategies import _RESERVED_NAMES, _clean_module, _unparse

# A violation that uses each name the clean grammar may bind as a variable of its own.
_USES = {name: _Snippet((f"fn_1 = {name}()",)) for name in _RESERVED_NAMES}


@settings(max_examples=60, deadline=None)
@given(module=_clean_module(4, 2), name=st.sampled_from(sorted(_USES)))
def test_clean_part_never_binds_a_name_the_violation_uses(module, name):
    snippet = _USES[name]
    fixed = unshadow(module, snippet)
    assert not (_bound_names(fixed) & _snippet_names(snippet)) - {"strategy", "board"}
    ast.parse(_unparse(fixed))  # still a program


def test_breakpoint_bound_by_the_clean_part_stays_an_escape():
    # The draw that once made the escape test fail: the clean body assigns the builtin's name.
    clean = ast.parse("def strategy(board):\n    breakpoint = 0\n    return 'W' if breakpoint == 0 else 'A'\n")
    snippet = _Snippet(_USES["breakpoint"].lines, slot="top")  # "top" draws nothing

    def no_draw(_):
        raise AssertionError("a top-slot splice draws nothing")

    before = _splice(ast.parse(_unparse(clean)), snippet, no_draw)
    assert "escape" not in check(before).categories  # the bug: the builtin had become a local
    after = _splice(unshadow(clean, snippet), snippet, no_draw)
    assert "escape" in check(after).categories
