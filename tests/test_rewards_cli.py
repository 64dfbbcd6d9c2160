"""``codepolicy rules`` and ``codepolicy score``: output, JSON, and one-line errors."""
from __future__ import annotations

import json

import pytest

from codepolicy.cli import main


def test_rules_lists_every_rule_with_weight_and_doc(capsys):
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    for name, weight in (("format", "1.00"), ("compliance", "1.00"), ("performance", "2.00"),
                         ("diversity", "0.25"), ("length", "0.10")):
        line = next(l for l in out.splitlines() if l.startswith(name + " "))
        assert weight in line and len(line.split()) > 3
    assert main(["rules", "--params"]) == 0
    assert "syntax_error = -0.4" in capsys.readouterr().out


def test_rules_toml_is_a_loadable_spec(capsys, tmp_path):
    assert main(["rules", "--toml"]) == 0
    path = tmp_path / "copy.toml"
    path.write_text(capsys.readouterr().out)
    assert main(["rules", "--spec", str(path)]) == 0


def test_bad_spec_is_one_line_exit_2(capsys, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[rules.formt]\nweight = 1\n")
    assert main(["rules", "--spec", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.toml" in err and "unknown rule 'formt'" in err
    assert main(["score", str(tmp_path / "missing.py")]) == 2
    assert "missing.py" in capsys.readouterr().err


def _needs_sandbox():
    import sandbox
    if not all(hasattr(sandbox, n) for n in ("extract", "check", "run", "run_many", "WorkerPool")):
        pytest.skip("sandbox.run / run_many not available yet")


def test_score_prints_table_and_json(capsys, tmp_path):
    _needs_sandbox()
    program = tmp_path / "up.py"
    program.write_text('def strategy(board):\n    return "W" if board[0][0] == 0 else "A"\n')
    assert main(["score", str(program), "--games", "2"]) == 0
    out = capsys.readouterr().out
    assert "total" in out and "performance" in out and "seeds 0..1" in out
    assert main(["score", str(program), "--games", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["records"]) == 2 and set(data["values"]) == set(data["weights"])
    completion = tmp_path / "completion.txt"
    completion.write_text("Sure! I will not write code today.")
    assert main(["score", str(completion), "--completion", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format_error"]["reason"] == "no_code" and data["records"] == []
