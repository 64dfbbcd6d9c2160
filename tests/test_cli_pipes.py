"""What a user meets on the command line, across every subcommand.

- a reader that goes away early (``codepolicy baselines | head -1``): no traceback, exit 141;
- a bad file or folder: one line in one style ('<what> '<path>' <what is wrong>'), exit 2, whichever
  command met it;
- abbreviated options are refused (``--game`` is not ``--games``).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from codepolicy.cli import CLOSED_PIPE_EXIT, build_parser, main
from train.config import TrainConfig, save_config

ROOT = Path(__file__).resolve().parents[1]
STRATEGY = str(ROOT / "examples" / "strategy.py")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}


def _finished_run(folder: Path, steps: int = 2) -> Path:
    """A run dir whose newest checkpoint is its last step: what a finished run leaves (no weights needed)."""
    (folder / "checkpoints" / f"step-{steps:08d}").mkdir(parents=True)
    save_config(TrainConfig(model="tiny-random", steps=steps, output_dir=str(folder)), folder / "config.toml")
    return folder


def _logged_run(folder: Path, tiles: list[float]) -> Path:
    from train.monitor import RunLogger

    with RunLogger(folder, total_steps=len(tiles), use_tensorboard=False, progress=False) as log:
        for step, tile in enumerate(tiles):
            log.log(step, {"reward_mean": step / 10, "reward_std": 0.1, "compliance": 0.5, "max_tile": tile,
                           "score_mean": 3.0, "kl": None})
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {"finished": _finished_run(root / "finished"), "logged": _logged_run(root / "logged", [2, 8, 4, 2])}


def _commands(runs) -> dict[str, list[str]]:
    return {
        "help": ["--help"],
        "envs": ["envs"],
        "bench": ["bench", "--seconds", "0.02", "--num-envs", "8", "--no-cold"],
        "baselines": ["baselines", "--games", "2", "--only", "random", "corner"],
        "check": ["check", STRATEGY],
        "play": ["play", STRATEGY, "--games", "2", "--trusted"],
        "score": ["score", STRATEGY, "--games", "1"],
        "rules": ["rules"],
        "audit": ["audit", "--no-library", "--games", "1"],
        "train": ["train", "--resume", str(runs["finished"])],
        "plot": ["plot", str(runs["logged"]), "--out", str(runs["logged"] / "piped.png")],
        "eval": ["eval", "--model", "tiny-random", "--samples", "1", "--batch-size", "1", "--max-new-tokens", "2",
                 "--seeds", "0", "--device", "cpu"],
    }


def _run_into_closed_pipe(argv: list[str]) -> subprocess.CompletedProcess:
    """Run ``codepolicy argv`` with stdout a pipe whose reader has already gone (the extreme of `| head -0`)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "codepolicy", *argv], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, env=ENV, timeout=300)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("command", ["help", "envs", "bench", "baselines", "check", "play", "score", "rules",
                                     "audit", "train", "plot", "eval"])
def test_a_closed_pipe_ends_every_command_quietly(runs, command):
    done = _run_into_closed_pipe(_commands(runs)[command])
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
    assert "Exception ignored" not in done.stderr  # nothing left to fail at the interpreter's exit
    # --help is printed by argparse, which ignores a closed pipe itself and exits 0.
    assert done.returncode == (0 if command == "help" else CLOSED_PIPE_EXIT), done.stderr


def test_a_reader_that_stops_after_one_line(tmp_path):
    # More output than a pipe holds (64 KiB), so the program is still writing when the reader leaves.
    proc = subprocess.Popen([sys.executable, "-m", "codepolicy", "play", STRATEGY, "--trusted", "--games", "1300",
                             "--max-moves", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == CLOSED_PIPE_EXIT
    assert first.split()[:2] == [b"seed", b"outcome"] and "Traceback" not in err and "Exception" not in err


# ------------------------------------------------------------------------------ bad files

def _bad_path(tmp_path: Path, kind: str) -> str:
    if kind == "missing":
        return str(tmp_path / "nope.toml")
    if kind == "folder":
        (tmp_path / "a-folder").mkdir()
        return str(tmp_path / "a-folder")
    if kind == "binary":
        (tmp_path / "blob.bin").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00 not text")
        return str(tmp_path / "blob.bin")
    if kind == "unreadable":
        # Exists, and reading it fails (EIO) even as root, where a chmod 000 file would still read.
        if not Path("/proc/self/mem").exists():
            pytest.skip("no /proc/self/mem on this system")
        return "/proc/self/mem"
    if kind == "a file":
        (tmp_path / "notes.txt").write_text("not a folder\n")
        return str(tmp_path / "notes.txt")
    raise AssertionError(kind)


FILE_WORDS = {"missing": "does not exist", "folder": "is a folder, not a file", "binary": "is not UTF-8 text",
              "unreadable": "cannot be read"}

# (argv with PATH where the user's file goes, the name the message gives it)
FILE_COMMANDS = [
    (["check", "PATH"], "program file"),
    (["check", "PATH", "--completion"], "completion file"),
    (["play", "PATH", "--trusted"], "program file"),
    (["score", "PATH"], "program file"),
    (["score", STRATEGY, "--spec", "PATH"], "reward spec"),
    (["rules", "--spec", "PATH"], "reward spec"),
    (["audit", "--spec", "PATH"], "reward spec"),
    (["train", "--config", "PATH"], "config file"),
    (["train", "--reward-spec", "PATH"], "reward spec"),
    (["eval", "--spec", "PATH"], "reward spec"),
]


@pytest.mark.parametrize("kind", list(FILE_WORDS))
@pytest.mark.parametrize("argv, what", FILE_COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_a_bad_file_reads_the_same_in_every_command(tmp_path, monkeypatch, capsys, argv, what, kind):
    import train.model

    def no_model(*a, **k):
        raise AssertionError("a model was loaded for a run whose inputs are wrong")

    monkeypatch.setattr(train.model, "load_model", no_model)
    monkeypatch.chdir(tmp_path)  # `train` would make runs/ here
    path = _bad_path(tmp_path, kind)
    assert main([path if a == "PATH" else a for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    # One line; the detail after the words (the bad byte's offset, the system's reason) is in parentheses.
    assert "\n" not in err and err.startswith(f"codepolicy {argv[0]}: error: {what} '{path}' {FILE_WORDS[kind]}")
    assert err.endswith({"binary": ")", "unreadable": ")"}.get(kind, FILE_WORDS[kind]))
    assert not (tmp_path / "runs").exists()


FOLDER_WORDS = {"missing": "does not exist", "a file": "is a file, not a folder"}
FOLDER_COMMANDS = [(["train", "--resume", "PATH"], "run dir"), (["plot", "PATH"], "run dir"),
                   (["eval", "--adapter", "PATH"], "adapter")]


@pytest.mark.parametrize("kind", list(FOLDER_WORDS))
@pytest.mark.parametrize("argv, what", FOLDER_COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_a_bad_folder_reads_the_same_in_every_command(tmp_path, capsys, argv, what, kind):
    path = _bad_path(tmp_path, kind)
    assert main([path if a == "PATH" else a for a in argv]) == 2
    assert capsys.readouterr().err.strip() == f"codepolicy {argv[0]}: error: {what} '{path}' {FOLDER_WORDS[kind]}"


def test_output_paths_are_refused_before_any_work(tmp_path, runs, monkeypatch, capsys):
    import train.evaluate

    monkeypatch.setattr(train.evaluate, "evaluate_models", lambda **k: pytest.fail("eval ran with a bad --json"))
    assert main(["eval", "--json", str(tmp_path)]) == 2
    assert f"--json '{tmp_path}' is a folder, not a file" in capsys.readouterr().err
    assert main(["eval", "--json", str(tmp_path / "no" / "r.json")]) == 2
    assert f"folder of --json '{tmp_path / 'no'}' does not exist" in capsys.readouterr().err
    assert main(["plot", str(runs["logged"]), "--out", str(tmp_path)]) == 2
    assert f"--out '{tmp_path}' is a folder, not a file" in capsys.readouterr().err


# ------------------------------------------------------------------------------ options

def test_no_parser_accepts_an_abbreviated_option():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    assert not parser.allow_abbrev and subparsers.choices
    assert all(not p.allow_abbrev for p in subparsers.choices.values())


def test_a_near_miss_option_names_the_option_meant(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "--second", "0.5"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "codepolicy bench: error: unrecognized arguments: --second 0.5" in err
    assert "did you mean --seconds?" in err and "invalid float value" not in err
