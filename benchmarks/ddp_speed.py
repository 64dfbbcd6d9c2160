"""Data-parallel training speed: one process vs ``torchrun --nproc_per_node N`` on this machine.

The same run (``codepolicy train`` with the same config, seed and total batch) is started as one process
with all the machine's cores as torch threads, then under ``torchrun`` with N ranks of ``cores / N``
threads each (gloo on the CPU, NCCL on GPUs when ``--device cuda``). Printed per layout: median seconds a
step (the first step, which compiles and warms caches, left out), and its rollout / reward / update
parts (the slowest rank's), then the ratio to one process measured in the same run. The losses of the
two layouts are compared as well (they must agree to rounding: the same update).

    python benchmarks/ddp_speed.py                          # SmolLM2-135M on the CPU, 1 vs 2 ranks
    python benchmarks/ddp_speed.py --model tiny-random      # the machinery only, in seconds
    python benchmarks/ddp_speed.py --ranks 8 --device cuda --preset gpu --steps 4   # one 8-GPU node

Writes ``--out`` (default benchmarks/results/ddp_speed.json). Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "results" / "ddp_speed.json"
PARTS = ("step_seconds", "rollout_seconds", "reward_seconds", "train_seconds")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m",
                   help="model name (default smollm2-135m; tiny-random for a smoke run)")
    p.add_argument("--preset", default="cpu", help="TrainConfig preset (default cpu)")
    p.add_argument("--ranks", type=int, default=2, help="ranks of the data-parallel layout (default 2)")
    p.add_argument("--steps", type=int, default=4, help="steps a layout runs (the first is not timed)")
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per rank)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config overrides for both layouts (default: 2 groups of 4, 96 new tokens)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads in all (default: all cores)")
    p.add_argument("--out", default=str(OUT), help="the JSON to write")
    return p


def _command(ranks: int, args: argparse.Namespace, run_dir: Path) -> list[str]:
    train = ["-m", "codepolicy", "train", "--model", args.model, "--preset", args.preset, "--steps", str(args.steps),
             "--device", args.device, "--no-progress", "--set", f"output_dir={run_dir}", "--set", "eval_interval=0",
             "--set", "save_interval=0"]
    defaults = {"prompts_per_step": str(2 * args.ranks), "group_size": "4", "max_new_tokens": "96"}
    given = {item.partition("=")[0].strip() for item in args.set}
    for key, value in defaults.items():
        if key not in given:
            train += ["--set", f"{key}={value}"]
    for item in args.set:
        train += ["--set", item]
    if ranks == 1:
        return [sys.executable, *train]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", *train]


def run_layout(ranks: int, args: argparse.Namespace, root: Path) -> dict:
    """Run one layout; its per-step figures from rank 0's metrics.jsonl."""
    run_dir = root / f"ranks-{ranks}"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                           "MASTER_PORT", "LOCAL_WORLD_SIZE")}
    threads = max(1, args.threads // ranks)
    env.update(OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    done = subprocess.run(_command(ranks, args, run_dir), env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"ddp_speed: the {ranks}-rank run failed:\n{done.stderr[-2000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    timed = rows[1:] or rows
    out = {"ranks": ranks, "threads_per_rank": threads, "wall_seconds": wall, "steps": len(rows),
           "losses": [r["loss"] for r in rows]}
    for key in PARTS:
        out[key] = statistics.median(float(r[key]) for r in timed)
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.ranks < 2:
        raise SystemExit("ddp_speed: --ranks must be at least 2 (it is compared with one process)")
    with tempfile.TemporaryDirectory(prefix="ddp-speed-") as tmp:
        layouts = [run_layout(1, args, Path(tmp)), run_layout(args.ranks, args, Path(tmp))]
    one, many = layouts
    gap = max(abs(a - b) for a, b in zip(one["losses"], many["losses"]))
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "device": args.device},
        "model": args.model, "preset": args.preset, "overrides": args.set,
        "layouts": layouts,
        "step_ratio": one["step_seconds"] / many["step_seconds"],
        "max_loss_difference": gap,
    }
    print(f"{'layout':>16}{'step s':>9}{'rollout':>9}{'reward':>9}{'update':>9}{'wall s':>9}")
    for lay in layouts:
        name = f"{lay['ranks']} x {lay['threads_per_rank']} threads"
        print(f"{name:>16}{lay['step_seconds']:>9.2f}{lay['rollout_seconds']:>9.2f}{lay['reward_seconds']:>9.2f}"
              f"{lay['train_seconds']:>9.2f}{lay['wall_seconds']:>9.1f}")
    print(f"speed-up of {args.ranks} ranks over one process (median step): {result['step_ratio']:.2f}x; "
          f"largest loss difference between the layouts: {gap:.2e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
