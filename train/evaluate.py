"""Held-out evaluation: sample a model's programs, score them on games training never plays, report.

Two users, one code path for the figures (``train.metrics.reward_figures``):

- the training loop's periodic check, :func:`evaluate_policy` (figures prefixed ``eval/``);
- ``codepolicy eval``, :func:`evaluate_models`: a model, optionally with a trained LoRA adapter
  (``--adapter RUN_DIR``), optionally beside its base (``--base-vs-adapter``): the same prompt, the
  same sampling seed and the same game seeds for both, so the difference is the adapter's.

Held-out game seeds follow one convention (``train.config.held_out_seeds``): from 2**31 up, a range
training never draws from.
"""
from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from sandbox.text import safe_text  # program text and input names on the terminal
from train.config import TrainConfig, check_model, current_keys, held_out_seeds
from train.metrics import best_index, progress_counts, progress_metric, reward_figures

if TYPE_CHECKING:
    from rewards import Breakdown, RewardFn
    from train.rollout import RolloutBackend

__all__ = [
    "evaluate_policy",
    "evaluate_models",
    "parse_seeds",
    "resolve_adapter",
    "attach_adapter",
    "sample_completions",
    "summarize",
    "format_report",
]


def evaluate_policy(policy: Any, backend: "RolloutBackend", config: TrainConfig, prompts: Sequence[str],
                    reward_fn: "RewardFn", samples: int | None = None, seed: int = 1_000_003) -> dict[str, float]:
    """Sample ``samples`` completions of the first prompt, score them on held-out games; figures as ``eval/*``."""
    import torch

    from train.task import resolve_games, sampling_params
    from train.policy import autocast

    n = samples or config.eval_samples
    policy.eval()
    sampling = sampling_params(config)  # the training prompt's prefill and stop: held-out figures measure the same task
    with torch.no_grad(), autocast(policy):
        rollout = backend.generate([prompts[0]], n, sampling, seed)
    breakdowns = reward_fn([sampling.prefill + t for t in rollout.texts],
                           seeds=held_out_seeds(resolve_games(config)))
    return {f"eval/{k}": v for k, v in reward_figures(breakdowns, config.game).items()}


# ----------------------------------------------------------------------------- codepolicy eval

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
    from codepolicy.files import quote, require_dir
    from train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint

    folder = require_dir(path, "adapter")
    if (folder / "adapter_config.json").is_file():
        return folder, {}, None
    checkpoint = folder if (folder / "meta.json").is_file() else latest_checkpoint(folder)
    if checkpoint is None:
        raise ValueError(f"adapter {quote(path)} is neither a PEFT adapter folder nor a run dir with a checkpoint")
    state = load_checkpoint(checkpoint)
    config = state.get("config") or {}
    if (checkpoint / "adapter" / "adapter_config.json").is_file():
        return checkpoint / "adapter", config, None
    if not isinstance(state.get("adapter"), dict) or not isinstance(state.get("adapter_config"), dict):
        raise CheckpointError(f"checkpoint {str(checkpoint)!r} holds no LoRA adapter and no adapter_config")
    return None, config, state


def attach_adapter(model: Any, adapter_dir: Path | None, state: dict | None) -> Any:
    """``model`` with the LoRA adapter of ``resolve_adapter``'s result attached, in eval mode."""
    from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict

    with warnings.catch_warnings():
        # peft reads transformers' deprecated `is_gradient_checkpointing` (see train.policy.add_lora).
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
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
                       backend: str = "lean", prefill: str = "", stop_at_fence: bool = False,
                       on_batch: Callable[[int, int], None] | None = None) -> list[str]:
    """``n`` answers to ``prompt``, sampled ``batch_size`` at a time; the same seed gives the same samples.

    ``prompt`` ends with ``prefill`` (the answer's opening, see ``train.prompts.answer_prefill``); each answer
    is the prefill followed by the sampled completion, which stops at its closing fence with ``stop_at_fence``.
    ``on_batch(done, batches)`` is called after each batch (progress for the caller to show).
    """
    import torch

    from train.rollout import SamplingParams, make_backend

    if not prompt.endswith(prefill):
        raise ValueError(f"sample_completions: the prompt does not end with the answer prefill {prefill!r}")
    sampler = make_backend(backend, model, tokenizer, compile=False, record_logprobs=False)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                            stop_at_fence=stop_at_fence, prefill=prefill)
    texts: list[str] = []
    batches = -(-n // batch_size)
    try:
        with torch.no_grad():
            for chunk, start in enumerate(range(0, n, batch_size)):
                size = min(batch_size, n - start)
                texts.extend(prefill + t for t in sampler.generate([prompt], size, params, seed * 1_000_003 + chunk).texts)
                if on_batch is not None:
                    on_batch(chunk + 1, batches)
    finally:
        sampler.close()
    return texts


def summarize(breakdowns: Sequence["Breakdown"], game: str | None = None) -> dict[str, Any]:
    """A model's report: :func:`train.metrics.reward_figures`, the distribution of ``game``'s progress metric
    (``progress_metric`` and ``progress_counts``: 2048's best max tiles) and its best program."""
    best = best_index(breakdowns)
    return {
        "samples": len(breakdowns),
        **reward_figures(breakdowns, game),
        "progress_metric": progress_metric(game),
        "progress_counts": progress_counts(breakdowns, game),
        "best_total": float(breakdowns[best].total) if best is not None else float("nan"),
        "best_source": breakdowns[best].source if best is not None else None,
    }


def format_report(reports: dict[str, dict[str, Any]]) -> str:
    """The summaries of one or more models as a side-by-side text table."""
    names = list(reports)
    rows: list[tuple[str, list[str]]] = []
    nan = float("nan")

    def row(label: str, fn: Callable[[dict], str]) -> None:
        rows.append((label, [fn(reports[n]) for n in names]))

    row("samples", lambda r: str(r["samples"]))
    row("reward mean ± std", lambda r: f"{r.get('reward_mean', nan):.3f} ± {r.get('reward_std', nan):.3f}")
    row("reward median / max", lambda r: f"{r.get('reward_median', nan):.3f} / {r.get('reward_max', nan):.3f}")
    row("extractable function", lambda r: f"{100 * r.get('format_ok', 0.0):.0f}%")
    row("passes check (compliant)", lambda r: f"{100 * r.get('compliance', 0.0):.0f}%")
    row("played", lambda r: f"{100 * r.get('played', 0.0):.0f}%")
    row("mean score (played)", lambda r: f"{r.get('score_mean_played', 0.0):.0f}")
    metric = next((r.get("progress_metric") for r in reports.values() if r.get("progress_metric")), None)
    label = (metric or "").replace("_", " ")
    if metric:
        row(f"best {label}", lambda r: f"{float(r.get(metric, 0.0)):g}")
    for key in sorted({k for r in reports.values() for k in r if k.startswith("rule/")}):
        row(f"rule {safe_text(key[5:])}", lambda r, k=key: f"{r.get(k, nan):.3f}")
    values = sorted({k for r in reports.values() for k in r.get("progress_counts", {})}, key=float)
    for v in values:
        row(f"{label} {v if float(v) else 'none'}", lambda r, k=v: str(r.get("progress_counts", {}).get(k, 0)))
    width = max(len(label) for label, _ in rows)
    cols = [max(len(n), *(len(v[i]) for _, v in rows)) for i, n in enumerate(names)]
    lines = [" " * width + "  " + "  ".join(n.rjust(c) for n, c in zip(names, cols))]
    lines += [label.ljust(width) + "  " + "  ".join(v.rjust(c) for v, c in zip(vals, cols)) for label, vals in rows]
    return "\n".join(lines)


def _say(text: str) -> None:
    """One progress line of ``codepolicy eval`` on stderr (the report itself goes to stdout)."""
    print(f"eval: {text}", file=sys.stderr, flush=True)


def _reward_fn(game: str, spec: Any) -> "RewardFn":
    """The comparison's reward (a seam the tests replace with a toy one)."""
    import rewards

    return rewards.group_reward_fn(game, spec)


def evaluate_models(*, model: str | None = None, adapter: str | None = None, base_vs_adapter: bool = False,
                    samples: int = 16, seeds: Sequence[int] | None = None, game: str | None = None,
                    template: str | None = None, spec: str | None = None, max_new_tokens: int | None = None,
                    temperature: float | None = None, top_p: float | None = None, prefill: str | None = None,
                    stop_at_fence: bool | None = None, batch_size: int = 16,
                    seed: int = 0, backend: str = "lean", dtype: str = "auto", device: str = "auto",
                    progress: Callable[[str], None] | None = _say) -> dict[str, Any]:
    """Sample and score a model (and/or its adapter) on held-out games; the result ``codepolicy eval`` prints.

    Settings left None come from the adapter's run (its config), else from the cpu preset (``TrainConfig()``:
    model, game, template, answer prefill, fence stop, new tokens, temperature, top-p) and the game's default spec,
    its game API switched on exactly for the templates that list it; the games are
    ``held_out_seeds``, as many as the run's games per completion (else the spec's ``games``). Returns a JSON-ready dict: the settings,
    ``reports`` (name -> :func:`summarize`) and ``samples`` (name -> every completion with its scores).
    ``progress`` gets one line per phase and side (loading, each sampling batch, scoring; stderr by
    default, None for none). Every input is checked before the model loads.
    """
    say = progress or (lambda text: None)
    if samples < 1:
        raise ValueError(f"--samples must be >= 1, got {samples}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if base_vs_adapter and not adapter:
        raise ValueError("--base-vs-adapter needs --adapter RUN_DIR")
    adapter_dir, run_config, state = resolve_adapter(adapter) if adapter else (None, {}, None)
    run_config = current_keys(run_config)

    def pick(value: Any, key: str, fallback: Any) -> Any:
        if value is not None:
            return value
        got = run_config.get(key)
        return got if got not in (None, "") else fallback

    defaults = TrainConfig()  # the cpu preset: what `codepolicy train` would have used
    model_name = pick(model, "model", defaults.model)
    game = pick(game, "game", defaults.game)
    template = pick(template, "prompt_template", defaults.prompt_template)
    spec_path = pick(spec, "reward_spec", None)
    sampling = dict(max_new_tokens=int(pick(max_new_tokens, "max_new_tokens", defaults.max_new_tokens)),
                    temperature=float(pick(temperature, "temperature", defaults.temperature)),
                    top_p=float(pick(top_p, "top_p", defaults.top_p)))
    prefill_name = pick(prefill, "answer_prefill", defaults.answer_prefill)
    stop = bool(pick(stop_at_fence, "stop_at_fence", defaults.stop_at_fence))
    import envs
    from rewards.cli import load_user_spec
    from train.prompts import answer_prefill
    from train.task import with_template_api

    envs.get(game)
    check_model(model_name)
    prefill_text = answer_prefill(template, prefill_name)
    reward_spec = with_template_api(load_user_spec(spec_path, game=game), template)
    reward_fn = _reward_fn(game, reward_spec)
    if seeds is None:
        seeds = held_out_seeds(int(run_config.get("games_per_completion") or 0) or reward_spec.games)
    seeds = [int(s) for s in seeds]

    from train.model import load_model
    from train.prompts import build_prompt

    say(f"loading {safe_text(model_name)}")
    loaded, tokenizer = load_model(model_name, dtype, device)
    prompt = build_prompt(game, tokenizer, template=template, prefill=prefill_text)
    plan = ([("base", False)] if base_vs_adapter or not adapter else []) + ([("adapter", True)] if adapter else [])
    reports: dict[str, dict[str, Any]] = {}
    scored: dict[str, list[dict]] = {}
    for name, with_adapter in plan:
        if with_adapter:
            # The base is sampled first, then the adapter is attached to the same weights: one copy.
            loaded = attach_adapter(loaded, adapter_dir, state)
        t0 = time.perf_counter()
        say(f"{name}: sampling {samples} completions of up to {sampling['max_new_tokens']} tokens, "
            f"{-(-samples // batch_size)} batches of up to {batch_size}")

        def batch_done(done: int, batches: int, name: str = name, t0: float = t0) -> None:
            say(f"{name}: sampled batch {done}/{batches} ({time.perf_counter() - t0:.0f} s)")

        texts = sample_completions(loaded, tokenizer, prompt, samples, seed=seed, batch_size=batch_size,
                                   backend=backend, prefill=prefill_text, stop_at_fence=stop, on_batch=batch_done,
                                   **sampling)
        t1 = time.perf_counter()
        say(f"{name}: scoring {len(texts)} completions on {len(seeds)} game{'s' if len(seeds) != 1 else ''} each")
        breakdowns = reward_fn(texts, seeds=seeds)
        t2 = time.perf_counter()
        reports[name] = summarize(breakdowns, game) | {"sample_seconds": t1 - t0, "reward_seconds": t2 - t1}
        scored[name] = [{"answer": t, "total": float(b.total), "values": dict(b.values),
                         "info": dict(b.info or {}), "source": b.source} for t, b in zip(texts, breakdowns)]
        say(f"{name}: {len(texts)} samples in {t1 - t0:.1f} s, scored in {t2 - t1:.1f} s")
    return {"model": model_name, "adapter": adapter, "game": game, "template": template, "prefill": prefill_text,
            "stop_at_fence": stop, "seeds": seeds, "sampling": sampling, "seed": seed, "reports": reports, "samples": scored}
