"""train.cli: `codepolicy train / eval / plot` on the tiny local model with toy rewards (no sandbox, no hub)."""
from __future__ import annotations

import json
import sys

import pytest

from codepolicy.cli import main
from rewards.records import Breakdown
from train import evaluate as tevaluate
from train.cli import run_report


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
    (["train", "--config", "/no/such.toml"], "config file '/no/such.toml' does not exist"),
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
    # Resuming a finished run says so, without loading the model.
    import train.model

    with monkeypatch.context() as m:
        m.setattr(train.model, "load_model", lambda *a, **k: pytest.fail("a finished run loaded its model"))
        assert main(["train", "--resume", str(run)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == (f"run dir '{run}' is already complete (3/3 steps); to train it further: "
                   f"--resume {run} --steps N with N > 3")
    assert main(["plot", str(run)]) == 0
    assert capsys.readouterr().out.strip().endswith("curves.png")

    monkeypatch.setattr(tevaluate, "_reward_fn", lambda game, spec: _toy)
    report = tmp_path / "eval.json"
    assert main(["eval", "--adapter", str(run), "--base-vs-adapter", "--samples", "3", "--batch-size", "2",
                 "--seeds", "1-2", "--max-new-tokens", "5", "--json", str(report)]) == 0
    text, err = capsys.readouterr()
    # Progress per phase and side, on stderr: each sampling batch, then the scoring.
    for side in ("base", "adapter"):
        assert f"eval: {side}: sampled batch 1/2" in err and f"eval: {side}: sampled batch 2/2" in err
        assert f"eval: {side}: scoring 3 completions on 2 games each" in err
    assert err.index("eval: base: scoring") < err.index("eval: adapter: sampling")
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
    report = tevaluate.summarize(_toy(["AAAA", "def x: A", ""]), "2048")
    assert report["samples"] == 3 and report["reward_max"] == 1.0 and report["format_ok"] == pytest.approx(1 / 3)
    assert report["progress_counts"] == {"0": 3} and report["best_source"] == "AAAA"
    table = tevaluate.format_report({"base": report, "adapter": report})
    assert table.splitlines()[0].split() == ["base", "adapter"] and "max tile none" in table


def test_eval_help_states_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split()).split("options:", 1)[1]  # the options, not the usage line
    for flag, default in (("--samples N", "(default 16)"), ("--batch-size N", "(default 16)"),
                          ("--backend {hf,lean}", "(default lean)"), ("--threads N", "(default 0"), ("--dtype DTYPE", "(default auto"),
                          ("--device DEVICE", "(default auto"), ("--seed SEED", "(default 0)")):
        after = text.split(flag, 1)[1]
        assert default in after.split(" --", 1)[0], flag


def test_run_report_gives_the_best_tile_of_the_whole_run(tmp_path):
    from train.loop import RunSummary
    from train.monitor import RunLogger

    tiles = [2.0, 8.0, 4.0, 2.0]  # the best (8) is neither the last step's nor in the resumed session
    with RunLogger(tmp_path, total_steps=2, use_tensorboard=False, progress=False) as log:
        for step in (0, 1):
            log.log(step, {"reward_mean": -0.5, "compliance": 0.25, "max_tile": tiles[step]})
    with RunLogger(tmp_path, total_steps=4, initial_step=2, use_tensorboard=False, progress=False) as log:
        history = [log.log(step, {"reward_mean": 0.25, "compliance": 0.5, "max_tile": tiles[step]}) for step in (2, 3)]
    summary = RunSummary(run_dir=str(tmp_path), steps_done=4, history=history, final=dict(history[-1]))
    report = run_report(summary, steps=4, game="2048")
    assert "reward mean: -0.500 (first step) -> 0.250 (last step)" in report
    assert report.splitlines()[2].endswith("compliance 50% (last step), best max tile 8")


@pytest.mark.parametrize("flags, message", [
    (["--game", "chess"], "unknown game 'chess'"),
    (["--model", "./no-such-model"], "model folder './no-such-model' does not exist"),
    (["--model", "no-such-model"], "model 'no-such-model' is neither a local folder nor a Hub id"),
    (["--model", "NOTES"], "model 'NOTES' is a file, not a folder"),
    (["--output-dir", "NOTES"], "run dir 'NOTES' is a file, not a folder"),
    (["--output-dir", "NOTES/run"], "run dir 'NOTES/run' cannot be made: 'NOTES' is a file, not a folder"),
    (["--reward-spec", "SPEC"], "reward spec 'SPEC' is for game 'othello', the run plays '2048'"),
])
def test_bad_run_inputs_are_refused_before_a_model_loads_or_a_folder_is_made(tmp_path, monkeypatch, capsys,
                                                                              flags, message):
    import train.model

    monkeypatch.setattr(train.model, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "NOTES").write_text("a file\n")
    if "SPEC" in flags:  # a spec written for another game than the run's
        from rewards import default_spec

        (tmp_path / "SPEC").write_text(default_spec("2048").to_toml().replace('game = "2048"', 'game = "othello"'))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["train", *flags, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"codepolicy train: error: {message}") and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no runs/, no run dir, no config.toml

