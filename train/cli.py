"""``codepolicy train``, ``eval`` and ``plot``: thin layers over train.loop, sampling + rewards, and train.monitor.

torch and transformers are imported inside the handlers, so ``codepolicy --help`` and the other
packages' commands stay fast.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
import typing
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

from sandbox.text import safe_text  # program text and input names on the terminal

__all__ = ["add_commands", "parse_seeds", "resolve_adapter", "sample_completions", "summarize", "format_report",
           "DEFAULT_EVAL_SEEDS"]

# Held-out game seeds for eval: far from the seeds training draws from.
DEFAULT_EVAL_SEEDS = "900000-900003"


def add_commands(subparsers: Any) -> None:
    """Add the ``train``, ``eval`` and ``plot`` subcommands."""
    _add_train(subparsers)
    _add_eval(subparsers)
    p = subparsers.add_parser("plot", help="draw a run's curves (reward, compliance, max tile, score, KL) to a PNG",
                              description="Read RUN_DIR/metrics.jsonl and draw RUN_DIR/curves.png.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", metavar="PNG", help="where to write the PNG (default RUN_DIR/curves.png)")
    p.set_defaults(handler=_plot)


# --- train ------------------------------------------------------------------------------


def _config_fields() -> list[tuple[str, Any, Any]]:
    """(name, type, default) of every TrainConfig field, for the override flags."""
    from train.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    return [(f.name, hints[f.name], f.default) for f in dataclasses.fields(TrainConfig)]


def _add_train(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train", help="GRPO-train a model to write strategy programs (default: SmolLM2-135M on CPU, ~10 min)",
        description="Run GRPO: sample programs, check and play them in the sandbox, score them, update a LoRA "
                    "adapter. Settings come from the preset, then --config, then the flags below.",
    )
    p.add_argument("--config", metavar="TOML", help="a TrainConfig TOML file")
    p.add_argument("--preset", choices=("cpu", "gpu"), default=None,
                   help="base settings (default: the file's preset, else cpu)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its newest checkpoint (its config.toml unless --config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config field")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from train.config import PRESETS, field_choices, field_doc

    fields = p.add_argument_group("config fields (override the preset and --config)")
    for name, tp, default in _config_fields():
        flag = "--" + name.replace("_", "-")
        shown = ",".join(default) if isinstance(default, tuple) else default
        presets = f"cpu preset: {shown}" if shown != "" else "cpu preset: unset"
        if name in PRESETS["gpu"]:
            presets += f"; gpu: {PRESETS['gpu'][name]}"
        text = f"{field_doc(name)} ({presets})".replace("%", "%%")  # argparse formats help with %
        choices = field_choices(name)
        if tp is bool:
            fields.add_argument(flag, dest=f"cfg_{name}", action=argparse.BooleanOptionalAction, default=None,
                                help=text)
        elif choices:
            fields.add_argument(flag, dest=f"cfg_{name}", default=None, choices=choices, help=text)
        else:
            kind = {int: "INT", float: "FLOAT", str: "TEXT"}.get(tp, "A,B,...")
            fields.add_argument(flag, dest=f"cfg_{name}", default=None, metavar=kind, help=text)
    p.set_defaults(handler=_train)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = value
    for key, value in vars(args).items():
        if key.startswith("cfg_") and value is not None:
            out[key[4:]] = value
    return out


def _existing_run(run_dir: Path) -> int | None:
    """The newest checkpoint step in ``run_dir``, or None when it holds no checkpoint."""
    from train.checkpoint import latest_checkpoint

    found = latest_checkpoint(run_dir)
    return int(found.name.split("-")[1]) if found else None


def _train(args: argparse.Namespace) -> int:
    from train.config import load_config, with_run_dir

    overrides = _overrides(args)
    config_path = args.config
    if args.resume:
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"run dir {args.resume!r} does not exist")
        if _existing_run(run_dir) is None:
            raise ValueError(f"run dir {args.resume!r} has no checkpoint to resume from")
        if config_path is None:
            saved = run_dir / "config.toml"
            if not saved.is_file():
                raise FileNotFoundError(f"run dir {args.resume!r} has no config.toml; pass --config")
            config_path = str(saved)
        overrides["output_dir"] = str(run_dir)
    config = with_run_dir(load_config(config_path, overrides, preset=args.preset))
    if not args.resume:
        step = _existing_run(Path(config.output_dir))
        if step is not None:
            raise ValueError(f"run dir {config.output_dir!r} already holds a run (checkpoint at step {step}); "
                             f"continue it with --resume {config.output_dir} or start another with --output-dir DIR")

    from train.loop import train

    _quiet_transformers()
    print(f"train: {safe_text(config.model)} on {safe_text(config.game)}, {config.steps} steps of "
          f"{config.prompts_per_step}x{config.group_size} completions, up to {config.max_new_tokens} new tokens "
          f"-> {safe_text(config.output_dir)}", file=sys.stderr)
    summary = train(config, resume=bool(args.resume), progress=False if args.no_progress else None)
    final = summary.final or {}
    print(f"run dir: {safe_text(summary.run_dir)}")
    stopped = f" (interrupted: continue with --resume {safe_text(summary.run_dir)})" if summary.interrupted else ""
    print(f"steps: {summary.steps_done}/{config.steps}{stopped}, {summary.seconds:.0f} s")
    if summary.history:
        first, last = summary.history[0], summary.history[-1]
        print(f"reward mean: {first.get('reward_mean', float('nan')):.3f} (first step) -> "
              f"{last.get('reward_mean', float('nan')):.3f} (last step); "
              f"compliance {100 * (last.get('compliance') or 0):.0f}%, best max tile {final.get('max_tile', 0):.0f}")
    if summary.best:
        print(f"best program: total {summary.best[0]['total']:.3f} -> "
              f"{safe_text(Path(summary.run_dir) / 'best' / 'best-1.py')}")
    curves = Path(summary.run_dir) / "curves.png"
    if curves.is_file():
        print(f"curves: {safe_text(curves)}")
    return 130 if summary.interrupted else 0


def _quiet_transformers() -> None:
    """The run's output is our own lines: no loading bars or once-per-run notices from transformers.

    Its errors still show. (The notice seen on CPU runs, "use_cache=True is incompatible with
    gradient checkpointing", is transformers switching off a cache the training forward does not use.)
    """
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# --- eval -------------------------------------------------------------------------------


def _add_eval(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval", help="sample programs from a model (and/or its trained adapter) and score them on held-out seeds",
        description="Sample N completions of the game prompt, check and play each program on held-out seeds, and "
                    "report the reward breakdown, compliance rate and max-tile distribution; with --adapter and "
                    "--base-vs-adapter, base model and adapter side by side on the same seeds and sample count.")
    p.add_argument("--model", default=None, help="model name or path (default: the adapter run's model, else smollm2-135m)")
    p.add_argument("--adapter", metavar="RUN_DIR", help="a run dir, a checkpoint folder, or a PEFT adapter folder")
    p.add_argument("--base-vs-adapter", action="store_true", help="also evaluate the base model and compare")
    p.add_argument("--samples", type=int, default=16, metavar="N", help="completions per model")
    p.add_argument("--seeds", default=DEFAULT_EVAL_SEEDS, help="game seeds: 'A-B' (inclusive) or 'A,B,C'")
    p.add_argument("--game", default=None, help="game (default: the run's, else 2048)")
    p.add_argument("--template", default=None, help="prompt template (default: the run's, else default)")
    p.add_argument("--spec", default=None, metavar="TOML", help="reward spec (default: the run's, else the game's)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the run's, else 256")
    p.add_argument("--temperature", type=float, default=None, help="default: the run's, else 1.0")
    p.add_argument("--top-p", type=float, default=None, help="default: the run's, else 1.0")
    p.add_argument("--batch-size", type=int, default=16, help="completions sampled at once")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (the same for both models)")
    p.add_argument("--backend", default="hf", choices=("hf", "lean"), help="rollout backend used to sample")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", metavar="PATH", help="also write the report and every sample as JSON")
    p.add_argument("--show-best", action="store_true", help="print each model's best program")
    p.set_defaults(handler=_eval)


def parse_seeds(text: str) -> list[int]:
    """Seeds from 'A-B' (inclusive range) and/or comma-separated integers; ValueError naming the bad part."""
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            if sep and lo:
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ValueError(f"--seeds: {part!r} is not a seed or an A-B range of seeds") from None
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    return seeds


def resolve_adapter(path: str | Path) -> tuple[Path | None, dict, dict | None]:
    """(PEFT adapter folder or None, the run's config dict, checkpoint state when the adapter is only in it).

    ``path`` may be a run dir (its newest checkpoint), a checkpoint folder, or a PEFT adapter folder.
    """
    from train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint

    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"adapter {str(path)!r} does not exist")
    if (folder / "adapter_config.json").is_file():
        return folder, {}, None
    checkpoint = folder if (folder / "meta.json").is_file() else latest_checkpoint(folder)
    if checkpoint is None:
        raise ValueError(f"adapter {str(path)!r} is neither a PEFT adapter folder nor a run dir with a checkpoint")
    state = load_checkpoint(checkpoint)
    config = state.get("config") or {}
    if (checkpoint / "adapter" / "adapter_config.json").is_file():
        return checkpoint / "adapter", config, None
    if not isinstance(state.get("adapter"), dict) or not isinstance(state.get("adapter_config"), dict):
        raise CheckpointError(f"checkpoint {str(checkpoint)!r} holds no LoRA adapter and no adapter_config")
    return None, config, state


def _attach_adapter(model: Any, adapter_dir: Path | None, state: dict | None) -> Any:
    from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict

    if adapter_dir is not None:
        policy = PeftModel.from_pretrained(model, str(adapter_dir))
    else:
        lora = LoraConfig(**{k: v for k, v in state["adapter_config"].items()
                             if k in {f.name for f in dataclasses.fields(LoraConfig)}})
        policy = get_peft_model(model, lora)
        set_peft_model_state_dict(policy, state["adapter"])
    policy.eval()
    return policy


def sample_completions(model: Any, tokenizer: Any, prompt: str, n: int, *, max_new_tokens: int = 256,
                       temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 16,
                       backend: str = "hf") -> list[str]:
    """``n`` sampled completions of ``prompt``, ``batch_size`` at a time; the same seed gives the same samples."""
    import torch

    from train.rollout import SamplingParams, make_backend

    sampler = make_backend(backend, model, tokenizer, compile=False, record_logprobs=False)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
    texts: list[str] = []
    try:
        with torch.no_grad():
            for chunk, start in enumerate(range(0, n, batch_size)):
                size = min(batch_size, n - start)
                texts.extend(sampler.generate([prompt], size, params, seed * 1_000_003 + chunk).texts)
    finally:
        sampler.close()
    return texts


def summarize(breakdowns: Sequence[Any]) -> dict[str, Any]:
    """Reward statistics, each rule's mean, format/compliance/played rates and the max-tile distribution."""
    totals = [float(b.total) for b in breakdowns]
    infos = [dict(getattr(b, "info", {}) or {}) for b in breakdowns]

    def rate(key: str) -> float:
        return sum(1 for i in infos if i.get(key)) / len(infos) if infos else 0.0

    rules = sorted({k for b in breakdowns for k in b.values})
    played = [i for i in infos if i.get("played")]
    tiles = Counter(int(i.get("max_tile", 0) or 0) for i in infos)
    best = max(range(len(totals)), key=lambda k: totals[k]) if totals else None
    return {
        "samples": len(totals),
        "reward_mean": statistics.fmean(totals) if totals else math.nan,
        "reward_std": statistics.pstdev(totals) if len(totals) > 1 else 0.0,
        "reward_median": statistics.median(totals) if totals else math.nan,
        "reward_max": max(totals) if totals else math.nan,
        "format_ok": rate("format_ok"),
        "compliance": rate("compliant"),
        "played": rate("played"),
        "rules": {k: statistics.fmean(float(b.values.get(k, 0.0)) for b in breakdowns) for k in rules},
        "mean_score_played": statistics.fmean(float(i.get("mean_score", 0.0)) for i in played) if played else 0.0,
        "best_max_tile": max(tiles) if tiles else 0,
        "max_tile_counts": {str(t): tiles[t] for t in sorted(tiles)},
        "best_total": totals[best] if best is not None else math.nan,
        "best_source": getattr(breakdowns[best], "source", None) if best is not None else None,
    }


def format_report(reports: dict[str, dict[str, Any]]) -> str:
    """The summaries of one or more models as a side-by-side text table."""
    names = list(reports)
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, fn: Callable[[dict], str]) -> None:
        rows.append((label, [fn(reports[n]) for n in names]))

    row("samples", lambda r: str(r["samples"]))
    row("reward mean ± std", lambda r: f"{r['reward_mean']:.3f} ± {r['reward_std']:.3f}")
    row("reward median / max", lambda r: f"{r['reward_median']:.3f} / {r['reward_max']:.3f}")
    row("extractable function", lambda r: f"{100 * r['format_ok']:.0f}%")
    row("passes check (compliant)", lambda r: f"{100 * r['compliance']:.0f}%")
    row("played", lambda r: f"{100 * r['played']:.0f}%")
    row("mean score (played)", lambda r: f"{r['mean_score_played']:.0f}")
    row("best max tile", lambda r: str(r["best_max_tile"]))
    for rule in sorted({k for r in reports.values() for k in r["rules"]}):
        row(f"rule {safe_text(rule)}", lambda r, k=rule: f"{r['rules'].get(k, float('nan')):.3f}")
    tiles = sorted({int(t) for r in reports.values() for t in r["max_tile_counts"]})
    for t in tiles:
        row(f"max tile {t if t else 'none'}", lambda r, k=str(t): str(r["max_tile_counts"].get(k, 0)))
    width = max(len(label) for label, _ in rows)
    cols = [max(len(n), *(len(v[i]) for _, v in rows)) for i, n in enumerate(names)]
    lines = [" " * width + "  " + "  ".join(n.rjust(c) for n, c in zip(names, cols))]
    lines += [label.ljust(width) + "  " + "  ".join(v.rjust(c) for v, c in zip(vals, cols)) for label, vals in rows]
    return "\n".join(lines)


def _reward_fn(game: str, spec_path: str | None, seeds: list[int]) -> Callable[[list[str]], list[Any]]:
    import rewards

    spec = rewards.load_spec(spec_path or None, game=game)
    return lambda completions: list(rewards.evaluate_group(completions, game=game, seeds=seeds, spec=spec))


def _eval(args: argparse.Namespace) -> int:
    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {args.samples}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.base_vs_adapter and not args.adapter:
        raise ValueError("--base-vs-adapter needs --adapter RUN_DIR")
    seeds = parse_seeds(args.seeds)
    adapter_dir, run_config, state = (None, {}, None)
    if args.adapter:
        adapter_dir, run_config, state = resolve_adapter(args.adapter)

    def pick(value: Any, key: str, fallback: Any) -> Any:
        if value is not None:
            return value
        got = run_config.get(key)
        return got if got not in (None, "") else fallback

    model_name = pick(args.model, "model", "smollm2-135m")
    game = pick(args.game, "game", "2048")
    template = pick(args.template, "prompt_template", "default")
    spec_path = pick(args.spec, "reward_spec", None)
    sampling = dict(max_new_tokens=int(pick(args.max_new_tokens, "max_new_tokens", 256)),
                    temperature=float(pick(args.temperature, "temperature", 1.0)),
                    top_p=float(pick(args.top_p, "top_p", 1.0)))
    reward_fn = _reward_fn(game, spec_path, seeds)

    from train.model import load_model
    from train.prompts import build_prompt

    _quiet_transformers()
    model, tokenizer = load_model(model_name, args.dtype, args.device)
    prompt = build_prompt(game, tokenizer, template=template)
    plan = ([("base", False)] if args.base_vs_adapter or not args.adapter else []) + \
           ([("adapter", True)] if args.adapter else [])
    reports: dict[str, dict[str, Any]] = {}
    samples: dict[str, list[dict]] = {}
    for name, with_adapter in plan:
        if with_adapter:
            # The base is sampled first, then the adapter is attached to the same weights: one copy.
            model = _attach_adapter(model, adapter_dir, state)
        t0 = time.perf_counter()
        texts = sample_completions(model, tokenizer, prompt, args.samples, seed=args.seed,
                                   batch_size=args.batch_size, backend=args.backend, **sampling)
        t1 = time.perf_counter()
        breakdowns = reward_fn(texts)
        t2 = time.perf_counter()
        reports[name] = summarize(breakdowns)
        reports[name]["sample_seconds"], reports[name]["reward_seconds"] = t1 - t0, t2 - t1
        samples[name] = [{"completion": t, "total": float(b.total), "values": dict(b.values),
                          "info": dict(b.info or {}), "source": b.source} for t, b in zip(texts, breakdowns)]
        print(f"eval: {name}: {len(texts)} samples in {t1 - t0:.1f} s, scored in {t2 - t1:.1f} s", file=sys.stderr)

    print(f"model {safe_text(model_name)}" + (f", adapter {safe_text(args.adapter)}" if args.adapter else "")
          + f"; game {safe_text(game)}; seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}); "
          + f"{args.samples} samples each, temperature {sampling['temperature']}, "
          + f"{sampling['max_new_tokens']} new tokens")
    print(format_report(reports))
    if args.show_best:
        for name, report in reports.items():
            if report["best_source"]:  # the program's own text: escapes and all
                print(f"\n# best program of {name} (total {report['best_total']:.3f})\n"
                      f"{safe_text(report['best_source'], keep_newlines=True)}")
    if args.json:
        out = {"model": model_name, "adapter": args.adapter, "game": game, "seeds": seeds, "sampling": sampling,
               "seed": args.seed, "reports": reports, "samples": samples}
        Path(args.json).write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


# --- plot -------------------------------------------------------------------------------


def _plot(args: argparse.Namespace) -> int:
    from train.monitor import plot_run

    print(safe_text(plot_run(args.run_dir, args.out)))
    return 0
