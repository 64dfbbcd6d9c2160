"""``codepolicy train``, ``eval`` and ``plot``: thin layers over train.loop.train, train.evaluate.evaluate_models
and train.monitor.plot_run.

torch and transformers are imported inside the handlers, so ``codepolicy --help`` and the other
packages' commands stay fast.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from pathlib import Path
from typing import Any

from codepolicy.files import quote  # every path in a message is quoted the same way
from sandbox.text import safe_text  # program text and input names on the terminal
from train.prompts import PREFILLS, TEMPLATES

__all__ = ["add_commands", "run_report"]


def add_commands(subparsers: Any) -> None:
    """Add the ``train``, ``eval`` and ``plot`` subcommands."""
    _add_train(subparsers)
    _add_eval(subparsers)
    p = subparsers.add_parser("plot", allow_abbrev=False,
                              help="draw a run's curves (reward, compliance, max tile, score, KL) to a PNG",
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
        "train", allow_abbrev=False,
        help="GRPO-train a model to write strategy programs (default: SmolLM2-135M on CPU, 10 to 15 min)",
        description="Run GRPO: sample programs, check and play them in the sandbox, score them, update a LoRA "
                    "adapter. Settings come from the preset, then --config, then the flags below.",
    )
    p.add_argument("--config", metavar="TOML", help="a TrainConfig TOML file")
    from train.config import PRESETS, field_choices, field_doc

    p.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="base settings (default: the file's preset, else cpu; cpu-long: the learning benchmark's run, "
                        "about 95 min on 2 CPU cores; gpu: a real run on one GPU)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its newest checkpoint (its config.toml unless --config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config field")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    fields = p.add_argument_group("config fields (override the preset and --config)")
    for name, tp, default in _config_fields():
        flag = "--" + name.replace("_", "-")
        shown = ",".join(default) if isinstance(default, tuple) else default
        presets = f"cpu preset: {shown}" if shown != "" else "cpu preset: unset"
        for other in PRESETS:
            if name in PRESETS[other]:
                presets += f"; {other}: {PRESETS[other][name]}"
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


def _check_run_inputs(config: Any) -> None:
    """Every input of a run that can be wrong, checked before a model loads or a folder is made.

    The config's values were checked when it loaded; here: the game, the model, the reward spec,
    the engines the config names, and the run folder.
    """
    import importlib.util

    import envs
    from codepolicy.files import check_writable_dir
    from rewards.cli import load_user_spec
    from train.config import check_model

    envs.get(config.game)
    check_model(config.model)
    spec = load_user_spec(config.reward_spec, game=config.game)
    if config.reward_spec and spec.game != config.game:
        raise ValueError(f"reward spec {quote(config.reward_spec)} is for game {spec.game!r}, "
                         f"the run plays {config.game!r}")
    if config.rollout_backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ValueError("config field 'rollout_backend' is 'vllm', which is not installed "
                         "(pip install 'codepolicy[vllm]'), or use 'auto'")
    if config.reward_pool == "ray" and importlib.util.find_spec("ray") is None:
        raise ValueError("config field 'reward_pool' is 'ray', which is not installed (pip install 'codepolicy[ray]')")
    if config.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("config field 'device' is 'cuda' but no CUDA GPU is visible; use 'auto' or 'cpu'")
    check_writable_dir(config.output_dir, "run dir")


def _train(args: argparse.Namespace) -> int:
    from codepolicy.files import require_dir
    from train.config import load_config, with_run_dir

    overrides = _overrides(args)
    config_path = args.config
    done = None
    if args.resume:
        run_dir = require_dir(args.resume, "run dir")
        done = _existing_run(run_dir)
        if done is None:
            raise ValueError(f"run dir {quote(args.resume)} has no checkpoint to resume from")
        if config_path is None:
            saved = run_dir / "config.toml"
            if not saved.is_file():
                raise FileNotFoundError(f"run dir {quote(args.resume)} has no config.toml; pass --config")
            config_path = str(saved)
        overrides["output_dir"] = str(run_dir)
    config = with_run_dir(load_config(config_path, overrides, preset=args.preset))
    if done is not None and done >= config.steps:
        # Nothing to train: say so without loading the model (raise --steps to go on).
        print(f"run dir {safe_text(quote(args.resume))} is already complete ({done}/{config.steps} steps); "
              f"to train it further: --resume {safe_text(args.resume)} --steps N with N > {done}")
        return 0
    if not args.resume:
        step = _existing_run(Path(config.output_dir))
        if step is not None:
            raise ValueError(f"run dir {quote(config.output_dir)} already holds a run (checkpoint at step {step}); "
                             f"continue it with --resume {config.output_dir} or start another with --output-dir DIR")
    _check_run_inputs(config)

    from train.distributed import launched
    from train.loop import train

    _quiet_transformers()
    ranks = int(os.environ.get("WORLD_SIZE", "1"))
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 speaks for the run
        summary = train(config, resume=bool(args.resume), progress=False)
        return 130 if summary.interrupted else 0
    print(f"train: {safe_text(config.model)} on {safe_text(config.game)}, {config.steps} steps of "
          f"{config.prompts_per_step}x{config.group_size} completions, up to {config.max_new_tokens} new tokens"
          f"{f' on {ranks} ranks' if launched() else ''} -> {safe_text(config.output_dir)}", file=sys.stderr)
    summary = train(config, resume=bool(args.resume), progress=False if args.no_progress else None)
    print(run_report(summary, config.steps, config.game))
    return 130 if summary.interrupted else 0


def run_report(summary: Any, steps: int, game: str | None = None) -> str:
    """The lines ``codepolicy train`` ends with: where the run is, how far it got, its figures (with ``game``'s
    progress metric), its best program."""
    lines = [f"run dir: {safe_text(summary.run_dir)}"]
    stopped = f" (interrupted: continue with --resume {safe_text(summary.run_dir)})" if summary.interrupted else ""
    lines.append(f"steps: {summary.steps_done}/{steps}{stopped}, {summary.seconds:.0f} s")
    records = _run_records(summary)
    if records:
        first, last = records[0], records[-1]
        from train.metrics import progress_metric

        metric = progress_metric(game)
        # The best progress of the whole run (a resumed run's earlier steps included), not the last step's.
        best = max((float(r[metric]) for r in records if isinstance(r.get(metric), (int, float))),
                   default=0.0) if metric else None
        lines.append(f"reward mean: {first.get('reward_mean', float('nan')):.3f} (first step) -> "
                     f"{last.get('reward_mean', float('nan')):.3f} (last step); compliance "
                     f"{100 * (last.get('compliance') or 0):.0f}% (last step)"
                     + (f", best {metric.replace('_', ' ')} {best:g}" if metric else ""))
    if summary.best:
        lines.append(f"best program: total {summary.best[0]['total']:.3f} -> "
                     f"{safe_text(Path(summary.run_dir) / 'best' / 'best-1.py')}")
    curves = Path(summary.run_dir) / "curves.png"
    if curves.is_file():
        lines.append(f"curves: {safe_text(curves)}")
    return "\n".join(lines)


def _run_records(summary: Any) -> list[dict]:
    """Every step the run logged, this session's and (after --resume) the earlier sessions', oldest first.

    The run's metrics file holds them all; a step that was run but not logged (log_interval > 1) still
    counts through ``summary.final``, the last step's figures.
    """
    from train.monitor import read_metrics

    try:
        records = read_metrics(summary.run_dir)
    except (OSError, ValueError):  # no metrics file: this session's own history is all there is
        records = list(summary.history)
    if summary.final and summary.steps_done and not any(r.get("step") == summary.steps_done - 1 for r in records):
        records.append({**summary.final, "step": summary.steps_done - 1})
    return records


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
        "eval", allow_abbrev=False,
        help="sample programs from a model (and/or its trained adapter) and score them on held-out seeds",
        description="Sample N completions of the game prompt, check and play each program on held-out seeds, and "
                    "report the reward breakdown, compliance rate and max-tile distribution; with --adapter and "
                    "--base-vs-adapter, base model and adapter side by side on the same seeds and sample count.")
    p.add_argument("--model", default=None, help="model name or path (default: the adapter run's model, else smollm2-135m)")
    p.add_argument("--adapter", metavar="RUN_DIR", help="a run dir, a checkpoint folder, or a PEFT adapter folder")
    p.add_argument("--base-vs-adapter", action="store_true", help="also evaluate the base model and compare")
    p.add_argument("--samples", type=int, default=16, metavar="N",
                   help="completions per model (default 16)")
    p.add_argument("--seeds", default=None, help="game seeds: 'A-B' (inclusive) or 'A,B,C' (default: held-out "
                                                 "seeds from 2**31 on, as many as the run's games per completion, "
                                                 "else the spec's games)")
    p.add_argument("--game", default=None, help="game (default: the run's, else 2048)")
    p.add_argument("--template", default=None, choices=tuple(TEMPLATES),
                   help="prompt template (default: the run's, else the cpu preset's)")
    p.add_argument("--prefill", default=None, choices=("auto", *PREFILLS),
                   help="text that opens the model's answer, by name (default: the run's, else auto: the template's)")
    p.add_argument("--stop-at-fence", default=None, action=argparse.BooleanOptionalAction,
                   help="end each completion at its closing code fence (default: the run's, else on)")
    p.add_argument("--spec", default=None, metavar="TOML", help="reward spec (default: the run's, else the game's)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the run's, else the cpu preset's")
    p.add_argument("--temperature", type=float, default=None, help="default: the run's, else the cpu preset's")
    p.add_argument("--top-p", type=float, default=None, help="default: the run's, else the cpu preset's")
    p.add_argument("--batch-size", type=int, default=16, metavar="N",
                   help="completions sampled at once (default 16)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed, the same for both models (default 0)")
    p.add_argument("--backend", default="lean", choices=("hf", "lean"),
                   help="rollout backend used to sample: lean (our decoding loop: the fused CPU decoder, or CUDA "
                        "graphs on a GPU) or hf (transformers' generate) (default lean)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="CPU threads for sampling (default 0: torch's default, every core or OMP_NUM_THREADS)")
    p.add_argument("--dtype", default="auto",
                   help="weights' dtype: auto, float32 (fp32), bfloat16 (bf16) or float16 (fp16) "
                        "(default auto: bfloat16 on a GPU, float32 on the CPU)")
    p.add_argument("--device", default="auto",
                   help="where the model runs: auto, cpu, cuda or cuda:N (default auto: cuda when a GPU is "
                        "visible, else cpu)")
    p.add_argument("--json", metavar="PATH", help="also write the report and every sample as JSON to PATH")
    p.add_argument("--show-best", action="store_true", help="print each model's best program")
    p.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from train.evaluate import evaluate_models, format_report, parse_seeds

    from train.threads import use_threads

    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.json:  # refused now, not after minutes of sampling
        from codepolicy.files import FileError, MissingFileError, check_writable_dir

        if Path(args.json).is_dir():
            raise FileError(f"--json {quote(args.json)} is a folder, not a file", "is_dir")
        if not Path(args.json).parent.is_dir():
            raise MissingFileError(f"folder of --json {quote(Path(args.json).parent)} does not exist")
        check_writable_dir(Path(args.json).parent, "folder of --json")
    _quiet_transformers()
    use_threads(args.threads)
    result = evaluate_models(model=args.model, adapter=args.adapter, base_vs_adapter=args.base_vs_adapter,
                             samples=args.samples, seeds=seeds, game=args.game, template=args.template,
                             spec=args.spec, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                             top_p=args.top_p, prefill=args.prefill, stop_at_fence=args.stop_at_fence,
                             batch_size=args.batch_size, seed=args.seed, backend=args.backend,
                             dtype=args.dtype, device=args.device)
    seeds, sampling = result["seeds"], result["sampling"]
    print(f"model {safe_text(result['model'])}" + (f", adapter {safe_text(args.adapter)}" if args.adapter else "")
          + f"; game {safe_text(result['game'])}; seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}); "
          + f"{args.samples} samples each, temperature {sampling['temperature']}, "
          + f"{sampling['max_new_tokens']} new tokens")
    print(format_report(result["reports"]))
    if args.show_best:
        for name, report in result["reports"].items():
            if report["best_source"]:  # the program's own text: escapes and all
                print(f"\n# best program of {name} (total {report['best_total']:.3f})\n"
                      f"{safe_text(report['best_source'], keep_newlines=True)}")
    if args.json:
        from codepolicy.files import write_text

        write_text(args.json, json.dumps(result, indent=2, default=str) + "\n", "--json")
    return 0


# --- plot -------------------------------------------------------------------------------


def _plot(args: argparse.Namespace) -> int:
    from train.monitor import plot_run

    print(safe_text(plot_run(args.run_dir, args.out)))
    return 0
