"""Learning on the CPU, measured: GRPO, the warm start, or both, then the base model and each adapter side by side.

    python benchmarks/learning_cpu.py                     # train (preset cpu-long), evaluate, write the JSON
    python benchmarks/learning_cpu.py --arms grpo,warm,both   # the three ways at one sampling budget
    python benchmarks/learning_cpu.py --skip-train        # evaluate the runs already in --run-dir
    python benchmarks/learning_cpu.py --preset cpu --samples 16 --best-games 10   # a short smoke run

1. Train each arm with the preset (held-out ``eval/*`` curves every ``eval_interval`` steps), in
   ``--run-dir``/<arm>. An arm's run dir that already holds a checkpoint is resumed, so an interrupted
   benchmark goes on where it stopped (the wall time of each part is recorded). The arms share one
   sampling budget, the preset's warm-start samples plus its GRPO samples (``warm_start_rounds x
   warm_start_samples + steps x batch``): ``both`` is the preset as it is; ``grpo`` spends the warm
   start's samples on more GRPO steps; ``warm`` spends GRPO's samples on more warm-start rounds.
2. ``codepolicy eval``: ``--samples`` completions of the base model and of each arm's adapter (default
   128), the same prompt, prefill, sampling seed and held-out games (``train.config.held_out_seeds``).
   Rates come with 95% Wilson intervals, the mean game score per sample (0 for a program that plays
   no game) with a 95% normal interval.
3. The best program of each side (highest total in step 2) plays ``--best-games`` more held-out games
   (default 100) in the sandbox, beside the prompt example's own program and the corner and greedy
   baselines (``envs.game2048.baselines.SOURCES``) on the same seeds.
4. What held learning back, from each run's own log: zero-variance groups, entropy, compliance, the
   played share and how completions ended at the start and the end of the run, and how the failures
   split over the reward ladder.
5. The learning targets, each met or missed with its figure, on the last arm named.

Writes ``--out`` (default benchmarks/results/learning_cpu.json) and copies each run's ``curves.png`` beside
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
    p.add_argument("--run-dir", default="runs/learning-cpu", help="where the arms' runs write (each resumed if it has one)")
    p.add_argument("--arms", default="both", help="comma-separated arms: grpo, warm, both (default both: the preset)")
    p.add_argument("--skip-train", action="store_true", help="only evaluate the runs in --run-dir")
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


ARMS = ("grpo", "warm", "both")


def arm_overrides(arm: str, preset: str, overrides: dict[str, str]) -> dict[str, Any]:
    """The config fields of ``arm``: the preset's sampling budget spent on GRPO, on the warm start, or on both."""
    from train.config import load_config

    base = load_config(None, dict(overrides), preset=preset)
    warm, grpo = base.warm_start_rounds * base.warm_start_samples, base.steps * base.batch_size
    if arm == "both":
        return {}
    if arm == "grpo":
        return {"warm_start_rounds": 0, "steps": base.steps + -(-warm // base.batch_size)}
    if arm == "warm":
        return {"steps": 0, "warm_start_rounds": base.warm_start_rounds + -(-grpo // base.warm_start_samples),
                "eval_interval": 0}
    raise SystemExit(f"learning_cpu: unknown arm {arm!r}; choose from {', '.join(ARMS)}")


def run_training(preset: str, run_dir: Path, overrides: dict[str, Any]) -> dict[str, Any]:
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
            "completion_len_mean", "truncation_rate", "end_eos_share", "end_fence_share", "end_length_share",
            "kl", "clip_frac", "step_seconds", "rollout_seconds", "reward_seconds", "train_seconds")
    out: dict[str, Any] = {k: {"first_10": _window(rows, k, True), "last_10": _window(rows, k, False)} for k in keys}
    evals = [r for r in rows if "eval/reward_mean" in r]
    out["eval_curve"] = [{"step": r["step"], **{k[5:]: r[k] for k in r if k.startswith("eval/")}} for r in evals]
    # Training steps only: held-out evaluations and checkpoint writes are outside step_seconds.
    out["step_seconds_sum"] = sum(float(r.get("step_seconds") or 0.0) for r in rows)
    from train.monitor import read_warm_start

    out["warm_start"] = [{k: v for k, v in r.items() if k != "time"} for r in read_warm_start(run_dir)]
    return out


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """The 95% Wilson score interval of a rate of k in n."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def mean_interval(xs: list[float], z: float = 1.96) -> list[float]:
    """The mean and its 95% normal interval: [mean, low, high]."""
    if not xs:
        return [0.0, 0.0, 0.0]
    m = statistics.fmean(xs)
    half = z * statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else 0.0
    return [m, m - half, m + half]


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
    n = len(samples)
    count = lambda test: sum(1 for s in samples if test(s["info"]))  # noqa: E731
    honest = count(lambda i: i.get("compliant") and i.get("games", 0) > 0 and i.get("honest_rate", 0.0) >= 1.0)
    return {
        "samples": report["samples"],
        "format_ok_interval": wilson(count(lambda i: i.get("format_ok")), n),
        "compliant_interval": wilson(count(lambda i: i.get("compliant")), n),
        "honest_end_interval": wilson(honest, n),
        # Per sample: the mean score of its games (0 for a program that plays none).
        "mean_score_interval": mean_interval([float(s["info"].get("mean_score", 0.0)) for s in samples]),
        "compliant_rate": report.get("compliance", 0.0),
        "played_rate": report.get("played", 0.0),
        "format_ok_rate": report.get("format_ok", 0.0),
        "honest_end_rate": honest / max(1, n),
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


def play_on_held_out(sources: dict[str, str | None], games: int, game_api: bool = True) -> dict[str, Any]:
    """Mean score, max tile and outcomes of each program on ``games`` held-out seeds, through the sandbox."""
    import sandbox
    from train.config import held_out_seeds

    seeds = held_out_seeds(games, offset=BEST_GAMES_OFFSET)
    names = [n for n, s in sources.items() if s]
    records = sandbox.run_many([sources[n] for n in names], "2048", seeds,
                               policy=sandbox.game_policy("2048", game_api))
    out: dict[str, Any] = {"seeds": [seeds[0], seeds[-1]]}
    for name, recs in zip(names, records):
        out[name] = {
            "mean_score": statistics.fmean(r.score for r in recs),
            "mean_max_tile": statistics.fmean(r.metrics.get("max_tile", 0.0) for r in recs),
            "best_max_tile": max(r.metrics.get("max_tile", 0.0) for r in recs),
            "outcomes": dict(Counter(r.outcome for r in recs)),
        }
    for name, src in sources.items():
        if not src:
            out[name] = None
    return out


def _targets(base: dict[str, Any], trained: dict[str, Any], played: dict[str, Any], warm_best: float | None
             ) -> dict[str, dict[str, Any]]:
    """Each learning target: its figure and whether it is met."""
    def best(name: str) -> float:
        return played[name]["mean_score"] if played.get(name) else 0.0

    out = {
        "format >= 90%": (trained["format_ok_rate"], trained["format_ok_rate"] >= 0.9),
        "compliant >= 70%": (trained["compliant_rate"], trained["compliant_rate"] >= 0.7),
        "all games end honestly >= 50% of samples": (trained["honest_end_rate"], trained["honest_end_rate"] >= 0.5),
        "mean score above base, intervals apart": (
            [base["mean_score_interval"], trained["mean_score_interval"]],
            trained["mean_score_interval"][1] > base["mean_score_interval"][2]),
        "best program above the prompt example's": (
            [best("trained_best"), best("example")], best("trained_best") > best("example")),
        "moonshot: best program above corner": ([best("trained_best"), best("corner")],
                                                best("trained_best") > best("corner")),
    }
    if warm_best is not None:
        out["best program above the warm start's best"] = ([best("trained_best"), warm_best],
                                                           best("trained_best") > warm_best)
    return {k: {"figure": v, "met": bool(m)} for k, (v, m) in out.items()}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # our own lines only: no loading bars
    hf_logging.disable_progress_bar()

    from envs.game2048.baselines import SOURCES
    from train.config import load_config
    from train.evaluate import evaluate_models
    from train.prompts import template_examples, uses_api

    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    overrides = _overrides(args.set)
    root = Path(args.run_dir)
    run_dirs = {arm: root / arm if len(arms) > 1 or arm != "both" else root for arm in arms}
    result: dict[str, Any] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                              "machine": {"python": platform.python_version(), "torch": torch.__version__,
                                          "threads": torch.get_num_threads(), "cpus": os.cpu_count()},
                              "arms": {}}
    for arm in arms:
        fields = {**overrides, **arm_overrides(arm, args.preset, overrides)}
        if not args.skip_train:
            result["arms"][arm] = {"training": run_training(args.preset, run_dirs[arm], fields)}
        else:
            result["arms"][arm] = {}
    config = load_config(run_dirs[arms[-1]] / "config.toml")
    api = uses_api(config.prompt_template)

    from train.config import held_out_seeds
    from train.task import resolve_games

    seeds = held_out_seeds(resolve_games(config))  # every side plays the same held-out games
    t0 = time.perf_counter()
    # The base model answers the runs' own prompt: template, prefill, stop, length, temperature, spec.
    base_eval = evaluate_models(model=config.model, game=config.game, template=config.prompt_template,
                                spec=config.reward_spec or None, max_new_tokens=config.max_new_tokens,
                                temperature=config.temperature, top_p=config.top_p, prefill=config.answer_prefill,
                                stop_at_fence=config.stop_at_fence, seeds=seeds, samples=args.samples,
                                batch_size=args.batch_size, backend="lean")
    base = _side(base_eval["reports"]["base"], base_eval["samples"]["base"])
    result["comparison"] = {"seeds": [base_eval["seeds"][0], base_eval["seeds"][-1], len(base_eval["seeds"])],
                            "sampling": base_eval["sampling"], "prefill": base_eval["prefill"],
                            "stop_at_fence": base_eval["stop_at_fence"]}
    result["base"] = base
    sides: dict[str, dict[str, Any]] = {}
    for arm in arms:
        compared = evaluate_models(adapter=str(run_dirs[arm]), seeds=seeds, samples=args.samples,
                                   batch_size=args.batch_size, backend="lean")
        sides[arm] = _side(compared["reports"]["adapter"], compared["samples"]["adapter"])
        arm_config = load_config(run_dirs[arm] / "config.toml")
        diagnostics = learning_diagnostics(run_dirs[arm])
        result["arms"][arm].update({
            "config": (run_dirs[arm] / "config.toml").read_text(encoding="utf-8"),
            "steps": arm_config.steps, "warm_start_rounds": arm_config.warm_start_rounds,
            "samples_budget": arm_config.steps * arm_config.batch_size
                              + arm_config.warm_start_rounds * arm_config.warm_start_samples,
            "step_seconds_sum": diagnostics.pop("step_seconds_sum"),
            "trained": sides[arm], "diagnostics": diagnostics})
    result["comparison"]["seconds"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    examples = template_examples(config.game, config.prompt_template)
    programs = {"base_best": base["best_source"], "example": examples[-1] if examples else None,
                "corner": SOURCES["corner"], "greedy": SOURCES["greedy"]}
    programs.update({f"{arm}_best": side["best_source"] for arm, side in sides.items()})
    played = play_on_held_out(programs, args.best_games, game_api=api)
    for arm, side in sides.items():
        side["best_mean_score"] = played[f"{arm}_best"]["mean_score"] if played.get(f"{arm}_best") else 0.0
    base["best_mean_score"] = played["base_best"]["mean_score"] if played.get("base_best") else 0.0
    result["best_programs_on_held_out"] = played
    result["best_games_seconds"] = time.perf_counter() - t0
    last = arms[-1]
    warm_best = sides["warm"]["best_mean_score"] if "warm" in sides and last != "warm" else None
    result["targets"] = _targets(base, sides[last], {**played, "trained_best": played.get(f"{last}_best")},
                                 warm_best)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    for arm in arms:
        curves = run_dirs[arm] / "curves.png"
        if curves.is_file():
            shutil.copyfile(curves, out.with_name(f"{out.stem}_{arm}_curves.png" if len(arms) > 1
                                                  else f"{out.stem}_curves.png"))

    print(f"{'':28}{'base':>10}" + "".join(f"{arm:>10}" for arm in arms))
    for key in ("format_ok_rate", "compliant_rate", "played_rate", "honest_end_rate", "reward_mean", "mean_score",
                "mean_max_tile", "best_mean_score"):
        print(f"{key:28}{base[key]:>10.3f}" + "".join(f"{sides[a][key]:>10.3f}" for a in arms))
    print(f"on the same {args.best_games} held-out games: the prompt example "
          f"{played['example']['mean_score'] if played.get('example') else float('nan'):.0f}, "
          f"corner {played['corner']['mean_score']:.0f}, greedy {played['greedy']['mean_score']:.0f}")
    for name, t in result["targets"].items():
        print(f"target {name}: {'met' if t['met'] else 'missed'} ({t['figure']})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
