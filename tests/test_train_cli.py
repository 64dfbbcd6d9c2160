"""train.cli: `codepolicy train / eval / plot` on the tiny local model with toy rewards (no sandbox, no hub)."""
from __future__ import annotations

import json
import sys

import pytest

from codepolicy.cli import main
from rewards.records import Breakdown
from train import evaluate as tevaluate


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from train.model import tiny_model_and_tokenizer

    folder = tmp_path_factory.mktemp("tiny")
    model, tok = tiny_model_and_tokenizer(seed=0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _toy(completions, seeds=None):
    """Reward = share of 'A' characters; info mimics rewards' facts."""
    out = []
    for c in completions:
        share = c.count("A") / max(1, len(c))
        out.append(Breakdown(values={"share_a": share}, weights={"share_a": 1.0}, total=share,
                             info={"format_ok": float("def" in c), "compliant": 0.0, "played": 0.0,
                                   "max_tile": 0.0, "mean_score": 0.0},
                             source=c if c.strip() else None))
    return out


def test_light_import():
    import subprocess

    code = "import sys, train.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_parse_seeds():
    assert tevaluate.parse_seeds("5-7, 10") == [5, 6, 7, 10]
    for bad in ("x", "7-5", ""):
        with pytest.raises(ValueError, match="--seeds"):
            tevaluate.parse_seeds(bad)


@pytest.mark.parametrize("argv, message", [
    (["train", "--config", "/no/such.toml"], "config file not found"),
    (["train", "--resume", "/no/such/run"], "does not exist"),
    (["train", "--group-size", "many"], "group_size"),
    (["train", "--set", "novalue"], "KEY=VALUE"),
    (["plot", "/no/such/run"], "does not exist"),
    (["eval", "--adapter", "/no/such/run"], "does not exist"),
    (["eval", "--base-vs-adapter"], "needs --adapter"),
    (["eval", "--seeds", "a-b"], "--seeds"),
])
def test_user_errors_are_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_train_resume_and_eval_end_to_end(tmp_path, tiny_dir, monkeypatch, capsys):
    import train.loop

    monkeypatch.setattr(train.loop, "default_reward_fn", lambda config, ranks=None: _toy)
    run = tmp_path / "run"
    argv = ["train", "--model", str(tiny_dir), "--steps", "2", "--group-size", "2", "--prompts-per-step", "1",
            "--max-new-tokens", "6", "--save-interval", "1", "--lora-rank", "2", "--output-dir", str(run),
            "--rollout-backend", "hf", "--no-progress",
            "--prompt-template", "minimal"]  # the short prompt keeps the tiny model's steps fast
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "steps: 2/2" in out and (run / "curves.png").is_file() and (run / "config.toml").is_file()
    # A second plain `train` into the same dir refuses instead of mixing two runs.
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    # Resume continues to a longer horizon.
    assert main(["train", "--resume", str(run), "--steps", "3", "--no-progress"]) == 0
    assert "steps: 3/3" in capsys.readouterr().out
    assert main(["plot", str(run)]) == 0
    assert capsys.readouterr().out.strip().endswith("curves.png")

    monkeypatch.setattr(tevaluate, "_reward_fn", lambda game, spec: _toy)
    report = tmp_path / "eval.json"
    assert main(["eval", "--adapter", str(run), "--base-vs-adapter", "--samples", "3", "--batch-size", "2",
                 "--seeds", "1-2", "--max-new-tokens", "5", "--json", str(report)]) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if "base" in line)
    assert "adapter" in header and "reward mean" in text and "passes check" in text
    data = json.loads(report.read_text())
    assert set(data["reports"]) == {"base", "adapter"} and data["model"] == str(tiny_dir)
    assert all(len(v) == 3 for v in data["samples"].values()) and data["seeds"] == [1, 2]


def test_eval_samples_are_reproducible(tiny_dir):
    from train.model import load_model

    model, tok = load_model(str(tiny_dir), device="cpu")
    a = tevaluate.sample_completions(model, tok, "def strategy", 3, max_new_tokens=4, seed=5, batch_size=2)
    b = tevaluate.sample_completions(model, tok, "def strategy", 3, max_new_tokens=4, seed=5, batch_size=2)
    assert a == b and len(a) == 3


def test_summarize_and_report():
    report = tevaluate.summarize(_toy(["AAAA", "def x: A", ""]))
    assert report["samples"] == 3 and report["reward_max"] == 1.0 and report["format_ok"] == pytest.approx(1 / 3)
    assert report["max_tile_counts"] == {"0": 3} and report["best_source"] == "AAAA"
    table = tevaluate.format_report({"base": report, "adapter": report})
    assert table.splitlines()[0].split() == ["base", "adapter"] and "max tile none" in table
