"""The files in examples/ do what the README says they do."""
from __future__ import annotations

from pathlib import Path

import sandbox

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_example_strategy_is_compliant_and_plays():
    source = (EXAMPLES / "strategy.py").read_text()
    assert sandbox.check(source).ok
    records = sandbox.run(source, seeds=(0, 1))
    assert [r.outcome for r in records] == ["finished", "finished"]
    assert all(r.moves > 20 and r.illegal_moves == 0 for r in records)


def test_example_cheat_is_rejected_for_each_cheat():
    verdict = sandbox.check((EXAMPLES / "cheat.py").read_text())
    assert not verdict.ok
    assert {"import", "state", "file_access", "loop", "randomness"} <= verdict.categories


def test_example_completion_extracts_to_a_compliant_program():
    source = sandbox.extract((EXAMPLES / "completion.txt").read_text())
    assert source.startswith("def strategy(board):") and sandbox.check(source).ok
