"""Learning on the CPU, measured: a long GRPO run, then the base model and the trained adapter side by side.

    python benchmarks/learning_cpu.py                     # train (preset cpu-long), evaluate, write the JSON
    python benchmarks/learning_cpu.py --skip-train        # evaluate the run already in --run-dir
    python benchmarks/learning_cpu.py --preset cpu --samples 16 --best-games 10   # a short smoke run

1. Train with ``codepolicy train --preset cpu-long`` (held-out ``eval/*`` curves every ``eval_interval``
   steps). A run dir that already holds a checkpoint is resumed, so an interrupted benchmark goes on
   where it stopped (the wall time of each part is recorded).
2. ``codepolicy eval --base-vs-adapter``: ``--samples`` completions per side (default 128), the same prompt,
   sampling seed and held-out games (``train.config.held_out_seeds``) for both.
3. The best program of each side (highest total in step 2) plays ``--best-games`` more held-out games
   (default 100) in the sandbox, beside the corner and greedy baselines (``envs.baselines.SOURCES``,
   played through the same sandbox) on the same seeds.
4. What held learning back, from the run's own log: zero-variance groups, entropy, compliance and the
   played share at the start and the end of the run, and how the failures split over the reward ladder.

Writes ``--out`` (default benchmarks/results/learning_cpu.json) and copies the run's ``curves.png`` beside
it. Timings are wall seconds on whatever machine runs it; the JSON says how many CPU threads torch used.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parent / "results" / "learning_cpu.json"
# Held-out games for the best programs: past the ones the sampled completions were scored on.
BEST_GAMES_OFFSET = 1000


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu-long", help="TrainConfig preset of the run (default cpu-long)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--run-dir", default="runs/learning-cpu", help="where the run writes (resumed if it has one)")
    p.add_argument("--skip-train", action="store_true", help="only evaluate the run in --run-dir")
    p.add_argument("--samples", type=int, default=128, help="completions per side in the comparison")
    p.add_argument("--best-games", type=int, default=100, help="held-out games the best programs play")
    p.add_argument("--batch-size", type=int, default=16, help="completions sampled at once in the comparison")
    p.add_argument("--out", default=str(OUT), help="the JSON to write")
    return p


def _overrides(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"learning_cpu: --set {item!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = value
    return out


def run_training(preset: str, run_dir: Path, overrides: dict[str, str]) -> dict[str, Any]:
    """Train (or resume) the run in ``run_dir``; returns what the run reports."""
    from train.checkpoint import latest_checkpoint
    from train.config import load_config
    from train.loop import train

    resume = run_dir.is_dir() and latest_checkpoint(run_dir) is not None
    if resume:  # the run's own config (with the overrides it was started with)
        config = load_config(run_dir / "config.toml", {"output_dir": str(run_dir)})
    else:
        config = load_config(None, {**overrides, "output_dir": str(run_dir)}, preset=preset)
    started = time.perf_counter()
    summary = train(config, resume=resume, progress=False)
    return {"resumed": resume, "steps_done": summary.steps_done, "interrupted": summary.interrupted,
            "seconds_this_part": time.perf_counter() - started}


def _window(rows: list[dict], key: str, first: bool, n: int = 10) -> float | None:
    values = [float(r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    chunk = values[:n] if first else values[-n:]
    return statistics.fmean(chunk) if chunk else None


def learning_diagnostics(run_dir: Path) -> dict[str, Any]:
    """Start-vs-end means (first and last 10 logged steps) of the figures that say what holds learning back."""
    from train.monitor import read_metrics

    rows = read_metrics(run_dir)
    keys = ("reward_mean", "reward_std", "compliance", "played", "format_ok", "zero_variance_frac", "entropy",
            "completion_len_mean", "truncation_rate", "kl", "clip_frac", "step_seconds")
    out: dict[str, Any] = {k: {"first_10": _window(rows, k, True), "last_10": _window(rows, k, False)} for k in keys}
    evals = [r for r in rows if "eval/reward_mean" in r]
    out["eval_curve"] = [{"step": r["step"], **{k[5:]: r[k] for k in r if k.startswith("eval/")}} for r in evals]
    # Training steps only: held-out evaluations and checkpoint writes are outside step_seconds.
    out["step_seconds_sum"] = sum(float(r.get("step_seconds") or 0.0) for r in rows)
    return out


def _ladder(samples: list[dict]) -> dict[str, int]:
    """How the completions split over the reward ladder's rungs (the first failure of each)."""
    rungs: Counter[str] = Counter()
    for s in samples:
        info = s["info"]
        if not info.get("format_ok"):
            rungs["no extractable strategy"] += 1
        elif not info.get("compliant"):
            rungs["fails the check"] += 1
        elif not info.get("played"):
            rungs["runtime error before a move"] += 1
        elif info.get("honest_rate", 0.0) < 1.0:
            rungs["plays, then stuck or errors"] += 1
        else:
            rungs["plays every game to an honest end"] += 1
    return dict(rungs)


def _side(report: dict[str, Any], samples: list[dict]) -> dict[str, Any]:
    return {
        "samples": report["samples"],
        "compliant_rate": report.get("compliance", 0.0),
        "played_rate": report.get("played", 0.0),
        "format_ok_rate": report.get("format_ok", 0.0),
        "honest_end_rate": sum(1 for s in samples if s["info"].get("honest_rate", 0.0) >= 1.0) / max(1, len(samples)),
        "reward_mean": report.get("reward_mean"),
        "reward_std": report.get("reward_std"),
        "mean_score": report.get("score_mean", 0.0),
        "mean_score_played": report.get("score_mean_played", 0.0),
        "mean_max_tile": report.get("mean_max_tile", 0.0),
        "best_max_tile": report.get("max_tile", 0.0),
        "ladder": _ladder(samples),
        "best_total": report.get("best_total"),
        "best_source": report.get("best_source"),
    }


def play_on_held_out(sources: dict[str, str | None], games: int) -> dict[str, Any]:
    """Mean score, max tile and outcomes of each program on ``games`` held-out seeds, through the sandbox."""
    import sandbox
    from train.config import held_out_seeds

    seeds = held_out_seeds(games, offset=BEST_GAMES_OFFSET)
    names = [n for n, s in sources.items() if s]
    records = sandbox.run_many([sources[n] for n in names], "2048", seeds)
    out: dict[str, Any] = {"seeds": [seeds[0], seeds[-1]]}
    for name, recs in zip(names, records):
        out[name] = {
            "mean_score": statistics.fmean(r.score for r in recs),
            "mean_max_tile": statistics.fmean(r.max_tile for r in recs),
            "best_max_tile": max(r.max_tile for r in recs),
            "outcomes": dict(Counter(r.outcome for r in recs)),
        }
    for name, src in sources.items():
        if not src:
            out[name] = None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # our own lines only: no loading bars
    hf_logging.disable_progress_bar()

    from envs.baselines import SOURCES
    from train.evaluate import evaluate_models

    run_dir = Path(args.run_dir)
    result: dict[str, Any] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                              "machine": {"python": platform.python_version(), "torch": torch.__version__,
                                          "threads": torch.get_num_threads(), "cpus": os.cpu_count()}}
    if not args.skip_train:
        result["training"] = run_training(args.preset, run_dir, _overrides(args.set))
    config_text = (run_dir / "config.toml").read_text(encoding="utf-8")
    from train.config import load_config

    config = load_config(run_dir / "config.toml")
    diagnostics = learning_diagnostics(run_dir)

    t0 = time.perf_counter()
    compared = evaluate_models(adapter=str(run_dir), base_vs_adapter=True, samples=args.samples,
                               batch_size=args.batch_size, backend="lean")
    compare_seconds = time.perf_counter() - t0
    reports, samples = compared["reports"], compared["samples"]
    base, trained = _side(reports["base"], samples["base"]), _side(reports["adapter"], samples["adapter"])

    t0 = time.perf_counter()
    played = play_on_held_out({"base_best": base["best_source"], "trained_best": trained["best_source"],
                               "corner": SOURCES["corner"], "greedy": SOURCES["greedy"]}, args.best_games)
    base["best_mean_score"] = played["base_best"]["mean_score"] if played["base_best"] else 0.0
    trained["best_mean_score"] = played["trained_best"]["mean_score"] if played["trained_best"] else 0.0

    result.update({
        "steps": config.steps,
        # The whole training part (steps, held-out evals, checkpoints) when this invocation trained it in
        # one go; otherwise the sum of the logged step times (which leaves out evals and checkpoints).
        "wall_seconds": (result["training"]["seconds_this_part"]
                         if "training" in result and not result["training"]["resumed"]
                         else diagnostics["step_seconds_sum"]),
        "step_seconds_sum": diagnostics.pop("step_seconds_sum"),
        "config": config_text,
        "comparison": {"seeds": [compared["seeds"][0], compared["seeds"][-1], len(compared["seeds"])],
                       "sampling": compared["sampling"], "seconds": compare_seconds},
        "base": base,
        "trained": trained,
        "best_programs_on_held_out": played,
        "baselines": {"corner": played["corner"]["mean_score"], "greedy": played["greedy"]["mean_score"]},
        "best_games_seconds": time.perf_counter() - t0,
        "diagnostics": diagnostics,
        "targets": {"compliant_rate>=0.5": trained["compliant_rate"] >= 0.5,
                    "played_rate>=0.25": trained["played_rate"] >= 0.25,
                    "trained_best>base_best": trained["best_mean_score"] > base["best_mean_score"],
                    "moonshot: trained_best>corner": trained["best_mean_score"] > played["corner"]["mean_score"]},
    })
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    curves = run_dir / "curves.png"
    if curves.is_file():
        shutil.copyfile(curves, out.with_name(out.stem + "_curves.png"))

    print(f"{'':28}{'base':>10}{'trained':>10}")
    for key in ("compliant_rate", "played_rate", "honest_end_rate", "reward_mean", "mean_score", "mean_max_tile",
                "best_mean_score"):
        print(f"{key:28}{base[key]:>10.3f}{trained[key]:>10.3f}")
    print(f"baselines on the same {args.best_games} held-out games: corner {played['corner']['mean_score']:.0f}, "
          f"greedy {played['greedy']['mean_score']:.0f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
