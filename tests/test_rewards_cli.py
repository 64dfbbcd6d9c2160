"""``codepolicy rules`` and ``codepolicy score``: output, JSON, and one-line errors."""
from __future__ import annotations

import json


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


def test_score_prints_table_and_json(capsys, tmp_path):
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


# ------------------------------------------------------------------ codepolicy audit

def _default_toml() -> str:
    from pathlib import Path

    import envs

    return Path(envs.get("2048").reward_spec).read_text(encoding="utf-8")


def test_audit_json_reports_rows_checks_and_exit_status(capsys):
    rc = main(["audit", "--json", "--no-library", "--games", "1"])
    data = json.loads(capsys.readouterr().out)
    assert rc == (0 if data["ok"] else 1)
    names = {r["name"] for r in data["rows"]}
    assert {"baseline:corner", "baseline:fixed", "hack:invalid_key", "hack:constant_W"} <= names
    assert data["weakest_honest"] in ("baseline:corner", "baseline:greedy")
    assert all({"name", "ok", "detail", "offenders"} <= set(c) for c in data["checks"])


def test_audit_of_a_broken_spec_exits_1_and_names_the_hack(capsys, tmp_path):
    path = tmp_path / "generous.toml"
    path.write_text(_default_toml().replace("bad_move = 0.5", "bad_move = 3.0"))
    assert main(["audit", "--spec", str(path), "--no-library", "--games", "1"]) == 1
    out = capsys.readouterr().out
    assert "generous.toml" in out and "weakest honest baseline: baseline:" in out
    assert "FAIL  format grade" in out and "audit FAILED" in out
    assert "opens hack:constant_W" in out and "opens baseline:fixed" in out


def test_audit_bad_arguments_are_one_line_exit_2(capsys, tmp_path):
    assert main(["audit", "--games", "0"]) == 2
    assert "--games must be at least 1" in capsys.readouterr().err
    assert main(["audit", "--spec", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.toml" in err
