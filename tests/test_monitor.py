"""train.monitor: JSONL metrics, resume-safe reading, zero-variance warning, best strategies, curves."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from train.monitor import RunLogger, plot_run, read_best, read_metrics


def _logger(path, **kw):
    return RunLogger(path, total_steps=10, use_tensorboard=False, progress=False, **kw)


def test_log_appends_flushed_json_lines(tmp_path):
    log = _logger(tmp_path)
    log.log(1, {"reward_mean": np.float32(0.5), "kl": torch.tensor(0.01), "compliance": 0.25,
                "bad": float("nan"), "hist": np.array([1, 2])})
    # Flushed: readable before close.
    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert line["step"] == 1 and line["reward_mean"] == pytest.approx(0.5)
    assert line["kl"] == pytest.approx(0.01) and line["bad"] is None and line["hist"] == [1, 2]
    log.log(2, {"reward_mean": 0.7})
    log.close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_read_metrics_keeps_the_last_record_per_step_and_skips_a_cut_line(tmp_path):
    with _logger(tmp_path) as log:
        for s in (1, 2, 3):
            log.log(s, {"reward_mean": float(s)})
    with _logger(tmp_path, initial_step=2) as log:  # resumed from the step-2 checkpoint: step 3 redone
        log.log(3, {"reward_mean": 30.0})
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "rew')
    records = read_metrics(tmp_path)
    assert [(r["step"], r["reward_mean"]) for r in records] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_read_metrics_errors_name_the_run_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_metrics(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        read_metrics(tmp_path)


def test_warns_once_per_stretch_of_zero_variance_groups(tmp_path, capsys):
    # A line on stderr for the person watching, not a Python warning (no progress bar here).
    with _logger(tmp_path) as log, warnings.catch_warnings():
        warnings.simplefilter("error")
        for step, frac in enumerate([0.1, 0.75, 0.9, 0.2, 0.8], 1):
            log.log(step, {"zero_variance_frac": frac})
    messages = [line for line in capsys.readouterr().err.splitlines() if "no learning signal" in line]
    assert len(messages) == 2 and "step 2" in messages[0] and "step 5" in messages[1]
    assert all(m.startswith("warning: ") for m in messages)


def test_headline_figures():
    log = RunLogger.__new__(RunLogger)
    log.metric = "max_tile"  # the game's progress metric (2048's)
    assert log.headline({"reward_mean": 0.1234, "max_tile": 256.0, "compliance": 0.5, "kl": 0.0012}) == {
        "reward": "0.123", "best": "256", "comply": "50%", "kl": "0.0012"}
    log.metric = None  # a logger that knows no game shows no progress figure
    assert "best" not in log.headline({"reward_mean": 0.1, "max_tile": 256.0})


def test_progress_bar_runs(tmp_path, capsys):
    with RunLogger(tmp_path, total_steps=3, use_tensorboard=False, progress=True) as log:
        for s in (0, 1, 2):  # 0-based step indices, as the trainer logs them
            log.log(s, {"reward_mean": 0.5, "max_tile": 64})
    err = capsys.readouterr().err
    assert "3/3" in err and "reward=0.500" in err


def test_save_best_keeps_top_k_deduped_with_scores(tmp_path):
    with _logger(tmp_path, top_k=2) as log:
        a = 'def strategy(board):\n    return "A"\n'
        assert log.save_best(a, 0.5, {"mean_score": 100.0, "max_tile": 64.0}, step=1)
        assert not log.save_best(a, 0.4, {}, step=2)          # same program, lower: ignored
        assert not log.save_best("  " + a.strip() + "\n", 0.5, {})  # same program modulo whitespace
        assert log.save_best('def strategy(board):\n    return "W"\n', 0.9, {"max_tile": 128.0}, step=3)
        assert not log.save_best('def strategy(board):\n    return "S"\n', 0.1, {})  # below the top 2
        assert not log.save_best(None, 5.0, {}) and not log.save_best("", 5.0, {})
    best = read_best(tmp_path)
    assert [e["total"] for e in best] == [0.9, 0.5]
    text = (tmp_path / "best" / "best-2.py").read_text()
    assert text.startswith("# codepolicy best strategy #2\n# total reward: 0.5000 (step 1)")
    assert "mean_score 100" in text and text.rstrip().endswith('return "A"')
    assert not (tmp_path / "best" / "best-3.py").exists()
    compile(text, "best-2.py", "exec")  # the header is a comment: the file is runnable Python


def test_best_survives_a_resume(tmp_path):
    with _logger(tmp_path, top_k=3) as log:
        log.save_best('def strategy(board):\n    return "A"\n', 0.5, {})
    with _logger(tmp_path, top_k=3) as log:
        assert not log.save_best('def strategy(board):\n    return "A"\n', 0.5, {})
        log.save_best('def strategy(board):\n    return "D"\n', 0.7, {})
        assert [e["total"] for e in log.best] == [0.7, 0.5]


@settings(max_examples=25, deadline=None)
@given(entries=st.lists(st.tuples(st.integers(0, 6), st.floats(-2, 2, allow_nan=False)), max_size=20),
       k=st.integers(1, 4))
def test_best_is_the_top_k_of_each_programs_best(tmp_path_factory, entries, k):
    run = tmp_path_factory.mktemp("run")
    with _logger(run, top_k=k) as log:
        for program, total in entries:
            log.save_best(f"def strategy(board):\n    return {program}\n", total, {})
        best_of: dict[int, float] = {}
        for program, total in entries:
            best_of[program] = max(best_of.get(program, -9.0), total)
        want = sorted(best_of.values(), reverse=True)[:k]
        assert [e["total"] for e in log.best] == want
    assert len(list((run / "best").glob("best-*.py"))) == len(want)


def test_plot_run_writes_a_png(tmp_path):
    with _logger(tmp_path) as log:
        for s in range(1, 6):
            log.log(s, {"reward_mean": s / 10, "reward_std": 0.1, "compliance": s / 5, "max_tile": 2.0 ** s,
                        "score_mean": 10.0 * s, "kl": 0.001 * s})
    path = plot_run(tmp_path)
    assert path == tmp_path / "curves.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_run_missing_run_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_run(tmp_path / "nope")


def test_tensorboard_when_installed_writes_beside_the_jsonl(tmp_path):
    pytest.importorskip("tensorboard")  # in the train extra
    with RunLogger(tmp_path, total_steps=1, progress=False) as log:  # on by default when installed
        log.log(1, {"reward_mean": 1.0})
    assert read_metrics(tmp_path)[0]["reward_mean"] == 1.0
    assert any((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_tensorboard_missing_is_one_line_not_a_warning(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as when not installed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with RunLogger(tmp_path, total_steps=1, progress=False) as log:
            log.log(1, {"reward_mean": 1.0})
        with RunLogger(tmp_path / "off", total_steps=1, use_tensorboard=False, progress=False):
            pass  # turned off: not a word
    err = capsys.readouterr().err
    assert err == "train: TensorBoard is not installed (pip install tensorboard); logging to metrics.jsonl only\n"
    assert read_metrics(tmp_path)[0]["reward_mean"] == 1.0 and not (tmp_path / "tensorboard").exists()


def _run(tmp_path, n, kl=None, kl_beta=0.0):
    from train.config import TrainConfig, save_config

    save_config(TrainConfig(kl_beta=kl_beta), tmp_path / "config.toml")
    with _logger(tmp_path) as log:
        for s in range(n):
            log.log(s, {"reward_mean": (-1) ** s * 0.5, "compliance": 0.5, "max_tile": [0.0, 2.0, 16.0][s % 3],
                        "score_mean": 1.0, "kl": kl})


def test_curves_without_kl_drop_the_panel_and_say_why(tmp_path):
    import matplotlib.pyplot as plt

    from train.monitor import draw_run

    _run(tmp_path, 7)
    fig = draw_run(tmp_path)
    try:
        assert [ax.get_ylabel() for ax in fig.axes] == ["reward", "compliance rate", "max tile", "score"]
        assert fig._suptitle.get_text().endswith("KL off (kl_beta = 0)")
        # Whole steps on the x axis; the max-tile axis floored at 0, its ticks on tiles (0 and powers of 2).
        assert all(float(t).is_integer() for t in fig.axes[-1].get_xticks())
        tile_ax = fig.axes[2]
        assert tile_ax.get_ylim()[0] == 0
        assert all(t == 0 or (t >= 2 and float(t).is_integer() and int(t) & (int(t) - 1) == 0)
                   for t in tile_ax.get_yticks())
        # Beside the raw points of each panel's first figure: its moving average (the tile: its best so far).
        labels = [line.get_label() for line in fig.axes[0].get_lines()]
        assert "mean (each step)" in labels and "mean (mean of 3 steps)" in labels
        assert "best so far" in [line.get_label() for line in tile_ax.get_lines()]
    finally:
        plt.close(fig)


def test_curves_with_kl_keep_the_panel(tmp_path):
    import matplotlib.pyplot as plt

    from train.monitor import draw_run

    _run(tmp_path, 3, kl=0.01, kl_beta=0.04)
    fig = draw_run(tmp_path)
    try:
        assert fig.axes[-1].get_ylabel() == "KL to reference" and "KL off" not in fig._suptitle.get_text()
        # Under six steps there is no trend to draw: the raw figures only.
        assert [line.get_label() for line in fig.axes[0].get_lines()] == ["mean"]
    finally:
        plt.close(fig)


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40), window=st.integers(1, 10))
def test_moving_average_is_the_mean_of_the_last_window_values(values, window):
    from train.monitor import moving_average

    smooth = moving_average(values, window)
    assert len(smooth) == len(values)
    for i, v in enumerate(smooth):
        last = values[max(0, i - window + 1): i + 1]
        assert v == pytest.approx(sum(last) / len(last), rel=1e-9, abs=1e-9)
        slack = 1e-12 * max(1.0, *map(abs, last))  # the division's rounding
        assert min(last) - slack <= v <= max(last) + slack
