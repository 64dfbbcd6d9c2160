"""The GRPO family compared on our task: the same CPU run, seeds and budget, one objective at a time.

    python benchmarks/rlvr_compare.py                                  # grpo, dapo, gdpo, cispo; 8 steps each
    python benchmarks/rlvr_compare.py --variants grpo,sapo,rloo --steps 40
    python benchmarks/rlvr_compare.py --model tiny-random --steps 2 --eval-samples 4   # a smoke run

Each variant is the ``cpu-long`` preset (``--preset``) with ``--steps`` steps (warm-up scaled to the same share
of them, at least one) and ``num_iterations = 2``
(with one update per batch the ratio is exactly 1 and clipping, CISPO's cap and SAPO's gate never act),
the same seed, prompts and games, and the settings of :data:`VARIANTS`. A run ends with a held-out
evaluation of ``--eval-samples`` completions (the same held-out games for every variant). Printed and
written to ``--out`` (default benchmarks/results/rlvr_compare.json): per variant the held-out extractable
(format_ok), compliant and played shares and the mean reward at the end with their 95% intervals, the mean
training reward of the last quarter of the steps, and along the way the mean share of zero-variance groups
(of the fresh samples and of the trained batch), of clipped/gated tokens and of truncated completions, plus
training seconds. Runs go to ``--runs`` (one folder per variant); a finished run is re-read, not retrained.
Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OUT = Path(__file__).resolve().parent / "results" / "rlvr_compare.json"

# Each variant's settings on top of the preset (full DAPO: token loss, clip-higher, dynamic sampling, overlong).
VARIANTS: dict[str, dict[str, Any]] = {
    "grpo": {"loss_variant": "grpo", "advantage_scale": "group"},
    "dr_grpo": {"loss_variant": "dr_grpo", "advantage_scale": "none"},
    "dapo": {"loss_variant": "dapo", "clip_eps_high": 0.28, "dynamic_sampling_rounds": 2, "overlong_buffer": 48},
    "gdpo": {"loss_variant": "grpo", "advantage_scale": "gdpo"},
    "cispo": {"loss_variant": "cispo", "clip_eps_high": 0.28},
    "sapo": {"loss_variant": "sapo"},
    "rloo": {"loss_variant": "grpo", "advantage_scale": "rloo"},
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default="grpo,dapo,gdpo,cispo", help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--steps", type=int, default=8, help="steps per variant (the budget; default 8)")
    p.add_argument("--preset", default="cpu-long", help="TrainConfig preset (default cpu-long)")
    p.add_argument("--model", default=None, help="model (default: the preset's)")
    p.add_argument("--eval-samples", type=int, default=32, help="held-out completions at the end of each run")
    p.add_argument("--runs", default="runs/rlvr-compare", help="folder of the runs (one per variant; resumed)")
    p.add_argument("--out", default=str(OUT), help="the JSON to write")
    return p


def _mean(rows: list[dict], key: str, part: slice = slice(None)) -> float | None:
    values = [float(r[key]) for r in rows[part] if isinstance(r.get(key), (int, float))]
    return statistics.fmean(values) if values else None


def wilson(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson interval of a proportion observed as ``share`` of ``n`` trials."""
    if n <= 0:
        return (0.0, 1.0)
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def intervals(held_out: dict[str, float], n: int) -> dict[str, list[float]]:
    """95% intervals of the held-out figures: Wilson for the shares, mean +- 1.96 SE for the reward."""
    out = {k: list(wilson(float(held_out[k]), n)) for k in ("format_ok", "compliance", "played") if k in held_out}
    if "reward_mean" in held_out and "reward_std" in held_out and n > 0:
        half = 1.96 * float(held_out["reward_std"]) / math.sqrt(n)
        out["reward_mean"] = [float(held_out["reward_mean"]) - half, float(held_out["reward_mean"]) + half]
    return out


def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume) one variant; its figures from its metrics.jsonl."""
    from train.checkpoint import latest_checkpoint
    from train.config import load_config
    from train.loop import train
    from train.monitor import read_metrics

    run_dir = Path(args.runs) / name
    # A budget shorter than the preset's keeps its warm-up share (cpu-long: 5 of 60 steps), at least one step.
    preset = load_config(None, {}, preset=args.preset)
    warmup = min(preset.warmup_steps, max(1, round(preset.warmup_steps * args.steps / preset.steps)))
    overrides = {**VARIANTS[name], "steps": args.steps, "warmup_steps": warmup, "num_iterations": 2,
                 "eval_interval": args.steps,
                 "eval_samples": args.eval_samples, "save_interval": max(1, args.steps // 4),
                 "output_dir": str(run_dir)}
    if args.model:
        overrides["model"] = args.model
    resume = run_dir.is_dir() and latest_checkpoint(run_dir) is not None
    config = (load_config(run_dir / "config.toml", {"output_dir": str(run_dir)}) if resume
              else load_config(None, overrides, preset=args.preset))
    started = time.perf_counter()
    summary = train(config, resume=resume, progress=False)
    rows = read_metrics(run_dir)
    final = next((r for r in reversed(rows) if "eval/reward_mean" in r), {})
    quarter = slice(-max(1, len(rows) // 4), None)
    held_out = {k[5:]: v for k, v in final.items() if k.startswith("eval/")}
    return {
        "settings": VARIANTS[name], "steps_done": summary.steps_done, "resumed": resume,
        "seconds_this_part": time.perf_counter() - started,
        # Summed over every logged step, so a run resumed (or only re-read) still reports its training time.
        "train_seconds": sum(float(r.get("step_seconds", 0.0)) for r in rows),
        "held_out": held_out,
        "held_out_95": intervals(held_out, config.eval_samples),
        "train_reward_last_quarter": _mean(rows, "reward_mean", quarter),
        # Fresh samples' flat groups (before DAPO's selection) and the trained batch's (after it).
        "sampled_zero_variance_frac_mean": _mean(rows, "sampled_zero_variance_frac") if VARIANTS[name].get(
            "dynamic_sampling_rounds") else _mean(rows, "zero_variance_frac"),
        "zero_variance_frac_mean": _mean(rows, "zero_variance_frac"),
        "clip_frac_mean": _mean(rows, "clip_frac"),
        # Completions cut at max_new_tokens: what DAPO's overlong shaping acts on.
        "truncation_rate_mean": _mean(rows, "truncation_rate"),
        "truncation_rate_last_quarter": _mean(rows, "truncation_rate", quarter),
        "overlong_penalty_mean": _mean(rows, "overlong_penalty_mean"),
        "dynamic_rounds_mean": _mean(rows, "dynamic_rounds"),
        "step_seconds_mean": _mean(rows, "step_seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"rlvr_compare: unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    results = {name: run_variant(name, args) for name in names}
    out = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"python": platform.python_version(), "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "cpus": os.cpu_count()},
           "preset": args.preset, "steps": args.steps, "eval_samples": args.eval_samples, "variants": results}
    keys = ("format_ok", "compliance", "played", "reward_mean")
    print(f"held out ({args.eval_samples} samples; [95% interval]) and along the way (means over the steps)")
    print(f"{'variant':8}" + "".join(f"{k:>22}" for k in keys) + f"{'flat sampled':>13}{'flat trained':>13}"
          f"{'clip/gate':>10}{'train s':>9}")
    for name, r in results.items():
        held, band = r["held_out"], r["held_out_95"]
        cells = ""
        for k in keys:
            lo, hi = band.get(k, (float("nan"), float("nan")))
            cells += f"{held.get(k, float('nan')):>8.3f} [{lo:5.2f},{hi:5.2f}]"
        print(f"{name:8}{cells}{r['sampled_zero_variance_frac_mean'] or 0:>13.3f}"
              f"{r['zero_variance_frac_mean'] or 0:>13.3f}{r['clip_frac_mean'] or 0:>10.3f}{r['train_seconds']:>9.0f}")
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
