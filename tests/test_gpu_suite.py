"""benchmarks/gpu_suite.py: arguments, budgets, the report's schema, a failing section recorded (CPU, tiny, fast)."""
from __future__ import annotations

import json

import pytest

from bench_module import load


@pytest.fixture(scope="module")
def suite():
    return load("gpu_suite")


def test_budgets_and_sections_parse(suite):
    assert suite.parse_budget("", tiny=False) == suite.GPU_BUDGET
    assert sum(suite.GPU_BUDGET.values()) <= 480  # the suite's 8-minute budget
    assert sum(suite.TINY_BUDGET.values()) < 240  # CI: under 4 minutes
    assert set(suite.parse_budget("30", tiny=True).values()) == {30.0}
    b = suite.parse_budget("rollout=100,learn=50", tiny=False)
    assert b["rollout"] == 100 and b["learn"] == 50 and b["tests"] == suite.GPU_BUDGET["tests"]
    for bad in ("rollout=x", "nope=3", "-1"):
        with pytest.raises(ValueError, match="--budget"):
            suite.parse_budget(bad, tiny=False)
    assert suite.parse_sections("learn,grpo,tests") == ["tests", "grpo_ours", "grpo_trl", "learn"]
    with pytest.raises(ValueError, match="--sections"):
        suite.parse_sections("rollout,speed")
    args = suite.resolve_args(suite.build_parser().parse_args(["--tiny", "--device", "cpu"]))
    assert (args.batches, args.new_tokens, args.learn_steps) == ("2,4", 8, 2)
    args = suite.resolve_args(suite.build_parser().parse_args(["--device", "cuda"]))
    assert (args.batches, args.new_tokens, args.learn_steps) == ("8,64,256", 256, 40)


def test_rollout_plan_measures_the_largest_batch_first(suite):
    plan = suite._rollout_plan([8, 64, 256])
    assert [b for b, _ in plan[:3]] == [256] * 3 and plan[3][0] == 8 and len(plan) == 10
    assert {k for _, k in plan[:9]} == {"lean", "hf-dynamic", "hf-static"}
    assert plan[-1] == (256, "lean-unpacked")  # the GQA packing measured last, at the largest batch


def test_rollout_section_writes_the_report(suite, tmp_path, capsys):
    rc = suite.main(["--device", "cpu", "--tiny", "--sections", "rollout", "--batches", "2", "--new-tokens", "4",
                     "--lean-compile", "off", "--threads", "1", "--out", str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / "gpu_report.json").read_text())
    assert report["schema"] == suite.SCHEMA_VERSION
    for key in ("device_name", "torch", "transformers", "peft", "python"):
        assert report["env"][key]
    assert report["anchors"]["grpo"]["trl_s_per_step"] == 18.6
    r = report["sections"]["rollout"]
    assert r["status"] == "ok", r
    assert {row["backend"] for row in r["rows"]} == {"lean", "hf-dynamic", "hf-static", "lean-unpacked"}
    for row in r["rows"]:
        assert row["batch"] == 2 and row["tokens_per_s"] > 0 and row["ms_per_step"] > 0 and row["peak_gib"] > 0
    assert set(r["ratios"]["2"]) == {"lean_vs_hf-dynamic", "lean_vs_hf-static"}
    table = capsys.readouterr().out
    assert "hf-static" in table and "anchor (H100" in table and "gpu_report.json" in table


def test_a_failing_section_is_recorded_and_the_suite_goes_on(suite, tmp_path):
    argv = ["--device", "cpu", "--sections", "rollout,learn", "--model", str(tmp_path / "no-such-model"),
            "--threads", "1", "--out", str(tmp_path)]
    assert suite.main(argv + ["--strict"]) == 1  # without --strict, 0: errors are reported, not raised
    report = json.loads((tmp_path / "gpu_report.json").read_text())
    for name in ("rollout", "learn"):  # the second ran after the first failed
        s = report["sections"][name]
        assert s["status"] == "error" and "no-such-model" in s["error"], s
        assert s["seconds"] <= s["budget_s"] + 10


def test_render_covers_every_section(suite):
    report = {
        "env": {"device_name": "GPU", "torch": "2", "transformers": "5", "peft": "0.21", "trl": None},
        "args": {"device": "cuda", "tiny": False}, "report_path": "/x/gpu_report.json", "wall_s": 1.0,
        "sections": {
            "tests": {"status": "ok", "seconds": 1, "budget_s": 40, "selected": 2,
                      "counts": dict(passed=2, failed=0, errors=0, skipped=0, deselected=9, xfailed=0, xpassed=0)},
            "rollout": {"status": "timeout", "seconds": 200, "budget_s": 190, "error": "killed", "model": "m",
                        "rows": [{"batch": 256, "backend": "lean", "tokens_per_s": 1e5, "ms_per_step": 2.5,
                                  "compile_s": 30.0, "peak_gib": 3.0},
                                 {"batch": 256, "backend": "hf-dynamic", "tokens_per_s": 3e3, "ms_per_step": 87,
                                  "peak_gib": 2.0},
                                 {"batch": 256, "backend": "hf-static", "skipped": "budget"}],
                        "ratios": {"256": {"lean_vs_hf-dynamic": 33.3}}},
            "grpo_ours": {"status": "ok", "seconds": 9, "budget_s": 60, "s_per_step": 4.0, "peak_gib": 2.0,
                          "peak_rollout_gib": 1.0, "peak_train_gib": 2.0, "argv": ["--arch", "x"]},
            "grpo_trl": {"status": "skipped", "seconds": 1, "budget_s": 60, "skipped": "trl is not installed"},
            "learn": {"status": "ok", "seconds": 100, "budget_s": 130, "steps_done": 40, "model": "m",
                      "reward_mean": {"first": 0.1, "last": 0.5, "first5": 0.1, "last5": 0.4},
                      "logprob_gap": {"mean": 1e-4, "max": 2e-4, "last": 1e-4}},
        },
    }
    text = suite.render(report)
    for needle in ("2 passed", "33.30x vs hf-dynamic", "hf-static   budget", "87 ms/step", "trl is not installed",
                   "40 steps", "logprob_gap", "18.6 s/step"):
        assert needle in text, (needle, text)
