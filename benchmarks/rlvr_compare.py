"""The GRPO family compared on our task: the same CPU run, seeds and budget, one objective at a time.

    python benchmarks/rlvr_compare.py                                  # grpo, dapo, gdpo, cispo; 24 steps each
    python benchmarks/rlvr_compare.py --variants grpo,sapo,rloo --steps 40
    python benchmarks/rlvr_compare.py --model tiny-random --steps 2 --eval-samples 4   # a smoke run

Each variant is the ``cpu-long`` preset (``--preset``) with ``--steps`` steps and ``num_iterations = 2``
(with one update per batch the ratio is exactly 1 and clipping, CISPO's cap and SAPO's gate never act),
the same seed, prompts and games, and the settings of :data:`VARIANTS`. A run ends with a held-out
evaluation of ``--eval-samples`` completions (the same held-out games for every variant). Printed and
written to ``--out`` (default benchmarks/results/rlvr_compare.json): per variant the held-out extractable
(format_ok), compliant and played shares and the mean reward at the end, the mean training reward of the last
quarter of the steps, and along the way the mean share of zero-variance groups and of clipped/gated
tokens, plus wall seconds. Runs go to ``--runs`` (one folder per variant, resumed when present).
Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import datetime
import json
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
    p.add_argument("--steps", type=int, default=24, help="steps per variant (the budget; default 24)")
    p.add_argument("--preset", default="cpu-long", help="TrainConfig preset (default cpu-long)")
    p.add_argument("--model", default=None, help="model (default: the preset's)")
    p.add_argument("--eval-samples", type=int, default=64, help="held-out completions at the end of each run")
    p.add_argument("--runs", default="runs/rlvr-compare", help="folder of the runs (one per variant; resumed)")
    p.add_argument("--out", default=str(OUT), help="the JSON to write")
    return p


def _mean(rows: list[dict], key: str, part: slice = slice(None)) -> float | None:
    values = [float(r[key]) for r in rows[part] if isinstance(r.get(key), (int, float))]
    return statistics.fmean(values) if values else None


def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume) one variant; its figures from its metrics.jsonl."""
    from train.checkpoint import latest_checkpoint
    from train.config import load_config
    from train.loop import train
    from train.monitor import read_metrics

    run_dir = Path(args.runs) / name
    overrides = {**VARIANTS[name], "steps": args.steps, "num_iterations": 2, "eval_interval": args.steps,
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
    return {
        "settings": VARIANTS[name], "steps_done": summary.steps_done, "resumed": resume,
        "seconds_this_part": time.perf_counter() - started,
        "held_out": {k[5:]: v for k, v in final.items() if k.startswith("eval/")},
        "train_reward_last_quarter": _mean(rows, "reward_mean", quarter),
        "zero_variance_frac_mean": _mean(rows, "zero_variance_frac"),
        "clip_frac_mean": _mean(rows, "clip_frac"),
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
    print(f"{'variant':10}" + "".join(f"{k:>17}" for k in keys) + f"{'zero-var':>10}{'clip/gate':>10}")
    for name, r in results.items():
        held = r["held_out"]
        cells = "".join(f"{held.get(k, float('nan')):>17.3f}" for k in keys)
        print(f"{name:10}{cells}{r['zero_variance_frac_mean'] or 0:>10.3f}{r['clip_frac_mean'] or 0:>10.3f}")
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
