"""`codepolicy play`: games through the sandbox by default, in-process with --trusted."""
from __future__ import annotations

import json

import pytest

from codepolicy.cli import main
from envs.baselines import SOURCES


@pytest.fixture()
def greedy(tmp_path):
    path = tmp_path / "greedy.py"
    path.write_text(SOURCES["greedy"])
    return str(path)


def test_play_through_the_sandbox_json(greedy, capsys):
    assert main(["play", greedy, "--games", "2", "--seed", "3", "--json", "--workers", "1",
                 "--max-moves", "40"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "sandbox" and [g["seed"] for g in out["games"]] == [3, 4]
    assert all(g["outcome"] == "max_moves" and g["moves"] == 40 for g in out["games"])
    assert out["summary"]["games"] == 2 and out["summary"]["outcomes"] == {"max_moves": 2}
    assert len(out["games"][0]["final_view"]) == 4


def test_trusted_and_sandbox_agree(greedy, capsys):
    args = ["play", greedy, "--games", "2", "--json", "--size", "3", "--workers", "1"]
    assert main(args) == 0
    sandboxed = json.loads(capsys.readouterr().out)["games"]
    assert main(args + ["--trusted"]) == 0
    trusted = json.loads(capsys.readouterr().out)["games"]
    key = lambda g: (g["seed"], g["outcome"], g["score"], g["max_tile"], g["moves"])  # noqa: E731
    assert list(map(key, sandboxed)) == list(map(key, trusted))


def test_show_prints_the_final_board(greedy, capsys):
    assert main(["play", greedy, "--games", "1", "--show", "--workers", "1", "--max-moves", "5"]) == 0
    out = capsys.readouterr().out
    assert "final board:" in out and "1 games (sandbox): max_moves 1" in out


def test_rejected_program_exits_1_without_running(tmp_path, capsys):
    path = tmp_path / "cheat.py"
    path.write_text("import os\ndef strategy(board):\n    return 'W'\n")
    assert main(["play", str(path), "--games", "2", "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert out.count("violation") >= 2 and "static check" in out


@pytest.mark.parametrize("args, message", [
    (["--games", "0"], "--games"), (["--size", "12"], "size"), (["--move-seconds", "-1"], "--move-seconds"),
    (["--game", "chess"], "unknown game"),
])
def test_usage_errors_exit_2(greedy, capsys, args, message):
    assert main(["play", greedy, *args]) == 2
    assert message in capsys.readouterr().err


def test_missing_file_exits_2(tmp_path, capsys):
    assert main(["play", str(tmp_path / "nope.py")]) == 2
    assert "no such file" in capsys.readouterr().err
