"""`codepolicy play`: games through the sandbox by default, in-process with --trusted."""
from __future__ import annotations

import json

import pytest

from codepolicy.cli import main
from envs.game2048.baselines import SOURCES


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
    key = lambda g: (g["seed"], g["outcome"], g["score"], g["metrics"]["max_tile"], g["moves"])  # noqa: E731
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
    assert "program file '" in (err := capsys.readouterr().err) and "nope.py' does not exist" in err


# -- program text on the terminal ---------------------------------------------------------------
# A program chooses the text of its exceptions. Printed raw, a lone surrogate made `play` exit 2
# with no results (UnicodeEncodeError), and an escape sequence could clear the screen or a
# carriage return overwrite the line with a forged result.

MESSAGE = "bad \udc80 byte \x1b[2J\rFAKE RESULT"


@pytest.fixture()
def raiser(tmp_path):
    path = tmp_path / "raiser.py"
    # The file holds the escapes as text (ASCII); the message the program raises has the characters.
    path.write_text("def strategy(board):\n    raise ValueError('bad \\udc80 byte \\x1b[2J\\rFAKE RESULT')\n")
    return str(path)


def _assert_shown_safely(out: str) -> None:
    assert "\x1b" not in out and "\r" not in out and "\udc80" not in out
    assert not any(line.startswith("FAKE RESULT") for line in out.splitlines())
    out.encode("utf-8")  # printable on any UTF-8 terminal


@pytest.mark.parametrize("mode", [[], ["--trusted"]], ids=["sandbox", "trusted"])
def test_a_hostile_error_message_is_printed_escaped(raiser, capsys, mode):
    assert main(["play", raiser, "--games", "1", "--workers", "1", *mode]) == 1  # the game ended in an error
    out = capsys.readouterr().out
    _assert_shown_safely(out)
    assert "ValueError: bad \\udc80 byte \\x1b[2J\\x0dFAKE RESULT" in out
    assert "1 games (" in out and ": error 1;" in out


@pytest.mark.parametrize("mode", [[], ["--trusted"]], ids=["sandbox", "trusted"])
def test_a_hostile_error_message_round_trips_through_json(raiser, capsys, mode):
    assert main(["play", raiser, "--games", "1", "--workers", "1", "--json", *mode]) == 1
    out = capsys.readouterr().out
    assert out.isascii() and "\x1b" not in out
    (game,) = json.loads(out)["games"]
    assert game["outcome"] == "error" and MESSAGE in game["error"]  # the exact text, surrogate and all


def test_a_program_that_writes_in_its_board_cannot_forge_the_shown_board(tmp_path, capsys):
    path = tmp_path / "scribbler.py"
    path.write_text("def strategy(board):\n    board[0][0] = '\\x1b[2J\\rFAKE'\n    return 'W'\n")
    assert main(["play", str(path), "--games", "1", "--trusted", "--show", "--max-moves", "3"]) == 0
    out = capsys.readouterr().out
    _assert_shown_safely(out)
    assert "\\x1b[2J\\x0dFAKE" in out


def test_file_names_from_the_input_are_escaped(tmp_path, capsys):
    # An argument that is not valid UTF-8 reaches Python as lone surrogates (surrogateescape).
    path = tmp_path / "evil\udc80\x1b[2J.py"
    path.write_bytes(b"import os\ndef strategy(board):\n    return 'W'\n")
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    _assert_shown_safely(out)
    assert "evil\\udc80\\x1b[2J.py: rejected" in out
    assert main(["play", str(tmp_path / "gone\udc80\x1b[2J.py")]) == 2
    err = capsys.readouterr().err
    _assert_shown_safely(err)
    assert "program file '" in err and "gone\\udc80\\x1b[2J.py' does not exist" in err


def test_printing_never_fails_on_a_terminal_that_cannot_show_a_character(monkeypatch, tmp_path):
    import io
    import sys

    path = tmp_path / "accent.py"
    path.write_text("def strategy(board):\n    raise ValueError('caf\\xe9 \\u2603')\n")
    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict", write_through=True)
    monkeypatch.setattr(sys, "stdout", ascii_out)
    assert main(["play", str(path), "--games", "1", "--trusted"]) == 1
    assert ascii_out.errors == "strict"  # the caller's stream is given back as it was
    shown = ascii_out.buffer.getvalue().decode("ascii")
    assert "ValueError: caf\\xe9 \\u2603" in shown and "1 games (trusted" in shown
