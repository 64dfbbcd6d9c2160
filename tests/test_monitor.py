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


def test_warns_once_per_stretch_of_zero_variance_groups(tmp_path):
    with _logger(tmp_path) as log, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step, frac in enumerate([0.1, 0.75, 0.9, 0.2, 0.8], 1):
            log.log(step, {"zero_variance_frac": frac})
    messages = [str(w.message) for w in caught if "no learning signal" in str(w.message)]
    assert len(messages) == 2 and "step 2" in messages[0] and "step 5" in messages[1]


def test_headline_figures():
    log = RunLogger.__new__(RunLogger)
    assert log.headline({"reward_mean": 0.1234, "max_tile": 256.0, "compliance": 0.5, "kl": 0.0012}) == {
        "reward": "0.123", "tile": "256", "comply": "50%", "kl": "0.0012"}


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


def test_tensorboard_requested_but_missing_warns_or_writes(tmp_path):
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        log = RunLogger(tmp_path, total_steps=1, use_tensorboard=True, progress=False)
        log.log(1, {"reward_mean": 1.0})
        log.close()
    assert read_metrics(tmp_path)[0]["reward_mean"] == 1.0
