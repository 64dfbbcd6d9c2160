"""The GRPO training loop, top to bottom: LoRA policy, rollouts, rewards, advantages, clipped updates.

One step of :func:`train` (all of it in :func:`grpo_step`):

1. draw the step's prompts, evaluation seeds and sampling seed from ``(config.seed, step)``, so a
   resumed run sees exactly the batch an uninterrupted one would;
2. sample ``group_size`` completions per prompt with the rollout backend;
3. score each group with ``reward_fn(completions, seeds) -> list[Breakdown]`` (default: the rewards
   package's ``evaluate_group`` with the configured spec);
4. turn rewards into group-relative advantages;
5. compute the reference log-probs (the same model with its LoRA adapter disabled: one copy of the
   weights) and, for several updates per batch, the old policy's log-probs;
6. ``num_iterations`` optimizer updates, each over the whole batch in ``grad_accum`` micro-batches
   (split further where the prompt changes: the rows of a micro-batch share one prompt, which then
   runs once, see ``train.grpo.sequence_logprobs``), clipped surrogate + beta * KL, grad-norm
   clipping, learning-rate schedule;
7. log every monitoring figure, keep the best programs, checkpoint every ``save_interval`` steps.

Ctrl-C stops at the next safe point (between phases, before the weights change, or after the
step), saves a checkpoint and returns; a second Ctrl-C aborts at once (the last checkpoint stays).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from train.config import TrainConfig, save_config, with_run_dir
from train.grpo import (batched_logprobs, enable_activation_checkpointing, group_advantages, policy_loss,
                        sequence_logprobs)
from train.rollout import Rollout, RolloutBackend, SamplingParams, encode_prompts, make_backend

__all__ = [
    "RunSummary",
    "RewardFn",
    "train",
    "grpo_step",
    "add_lora",
    "make_optimizer",
    "default_reward_fn",
    "step_plan",
    "StepPlan",
    "evaluate_policy",
    "check_trainable_dtype",
]

RewardFn = Callable[[list[str], list[int]], list[Any]]  # (completions, seeds) -> list[Breakdown]


@dataclass
class RunSummary:
    """What a run did: where it wrote, how far it got, and every logged step's metrics."""

    run_dir: str
    steps_done: int
    interrupted: bool = False
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    best: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- setup

def add_lora(model: Any, config: TrainConfig) -> Any:
    """Wrap ``model`` in a peft LoRA adapter (kept as is if it already is a PeftModel)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if isinstance(model, PeftModel):
        return model
    targets: Any = list(config.lora_target_modules)
    if targets == ["all-linear"]:
        targets = "all-linear"
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM", bias="none")
    with warnings.catch_warnings():
        # peft itself reads transformers' deprecated `is_gradient_checkpointing` (peft 0.21,
        # transformers >= 5.24): not our call to change, and not the user's to read.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        policy = get_peft_model(model, lora)
    if config.gradient_checkpointing:
        enable_activation_checkpointing(policy)
    return policy


def _lr_lambda(schedule: str, warmup: int, total: int) -> Callable[[int], float]:
    def f(update: int) -> float:
        if warmup and update < warmup:
            return (update + 1) / warmup
        progress = min(1.0, (update - warmup) / max(1, total - warmup))
        if schedule == "linear":
            return 1.0 - progress
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0
    return f


def make_optimizer(policy: Any, config: TrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over the trainable (LoRA) parameters and its LambdaLR schedule (one tick per optimizer update)."""
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total = config.steps * config.num_iterations
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(config.schedule, config.warmup_steps, total))
    return opt, sched


def default_reward_fn(config: TrainConfig) -> RewardFn:
    """``rewards.evaluate_group`` with the configured spec (the game's default when none), imported lazily."""
    import rewards

    spec = rewards.load_spec(config.reward_spec or None, game=config.game)
    return functools.partial(rewards.evaluate_group, game=config.game, spec=spec)


def _default_prompts(config: TrainConfig, tokenizer: Any) -> list[str]:
    from train.prompts import build_prompt

    return [build_prompt(config.game, tokenizer, template=config.prompt_template)]


@dataclass(frozen=True)
class StepPlan:
    """Everything random about one step, derived from (seed, step) alone."""

    prompt_indices: tuple[int, ...]  # one per group
    eval_seeds: tuple[tuple[int, ...], ...]  # the games each group is scored on
    sampling_seed: int
    torch_seed: int  # for dropout and anything else drawing from torch's global RNG


def step_plan(config: TrainConfig, step: int, num_prompts: int) -> StepPlan:
    """The step's prompts, evaluation seeds and sampling seeds: the data position is just the step number."""
    rng = np.random.default_rng([config.seed, step])
    idx = tuple(int(i) for i in rng.integers(0, num_prompts, size=config.prompts_per_step))
    seeds = tuple(tuple(int(s) for s in rng.integers(0, 2**31 - 1, size=config.seeds_per_eval))
                  for _ in range(config.prompts_per_step))
    s1, s2 = (int(x) for x in rng.integers(0, 2**62, size=2))
    return StepPlan(idx, seeds, s1, s2)


def _autocast(policy: Any) -> contextlib.AbstractContextManager:
    """Half-precision autocast when the base weights are bf16 (fp32 LoRA weights then run in it), GPU or CPU.

    The CPU takes the same path as the GPU so that the CPU tests exercise it. (fp16 weights reach here only
    for sampling: training refuses them, see :func:`check_trainable_dtype`.)
    """
    p = next(policy.parameters())
    dtypes = {q.dtype for q in policy.parameters()}
    half = torch.bfloat16 if torch.bfloat16 in dtypes else torch.float16 if torch.float16 in dtypes else None
    if half is not None and p.device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=p.device.type, dtype=half)
    return contextlib.nullcontext()


def check_trainable_dtype(policy: Any) -> None:
    """Refuse float16 weights for training: fp16 autocast without a gradient scaler lets small gradients underflow."""
    if any(p.dtype == torch.float16 for p in policy.parameters()):
        raise ValueError("train: the model's weights are float16, which trains without a gradient scaler here "
                         "(small gradients underflow to zero); load it in bfloat16 (GPU) or float32 "
                         "(config field 'dtype')")


def _device(policy: Any) -> torch.device:
    return next(policy.parameters()).device


def _reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def _peak_gb(dev: torch.device) -> float:
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else 0.0


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


class _Stop:
    """Ctrl-C handling: the first SIGINT asks for a stop at the next safe point, the second aborts."""

    def __init__(self) -> None:
        self.requested = False

    def handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after the current phase and saving a checkpoint (Ctrl-C again to abort now)",
              file=sys.stderr)


@contextlib.contextmanager
def _deferred_sigint() -> Iterator[_Stop]:
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals can only be handled in the main thread
        return
    previous = signal.signal(signal.SIGINT, stop.handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


class _Abandon(Exception):
    """Raised inside a step when a stop was requested before any weight changed."""


# ----------------------------------------------------------------------------- one step

def _trim(ids: torch.Tensor, mask: torch.Tensor, cmask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Drop the columns that are padding in every row of a micro-batch: leading prompt pads, trailing completion pads."""
    width = max(1, int(cmask.sum(1).max()))
    first = int((mask[:, : mask.shape[1] - cmask.shape[1]].sum(0) > 0).int().argmax())
    end = mask.shape[1] - cmask.shape[1] + width
    return ids[:, first:end], mask[:, first:end], width


def _prompt_runs(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> list[int]:
    """Row indices where a run of identical prompts starts (plus the end): the shared-prefix path needs one prompt."""
    same = (prompt_ids[1:] == prompt_ids[:-1]).all(1) & (prompt_mask[1:] == prompt_mask[:-1]).all(1)
    return [0] + [i + 1 for i in torch.nonzero(~same).flatten().tolist()] + [prompt_ids.shape[0]]


def _micro_batches(runs: list[int], size: int) -> list[tuple[int, int]]:
    """Chunks of at most ``size`` rows that never straddle two prompts (each runs its prompt once)."""
    out = []
    for a, b in zip(runs[:-1], runs[1:]):
        out.extend((i, min(i + size, b)) for i in range(a, b, size))
    return out


def _logprobs_by_prompt(policy: Any, ids: torch.Tensor, attn: torch.Tensor, runs: list[int], n_completion: int,
                        micro_batch_size: int, temperature: float) -> torch.Tensor:
    """batched_logprobs run per run of identical prompts, so each prompt is computed once."""
    return torch.cat([batched_logprobs(policy, ids[a:b], attn[a:b], n_completion, micro_batch_size, temperature)
                      for a, b in zip(runs[:-1], runs[1:])])


def _mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else 0.0


def _reward_metrics(breakdowns: Sequence[Any], rewards: torch.Tensor) -> dict[str, float]:
    """Reward statistics, each rule's mean and the game facts (compliance, tiles, scores) of the batch."""
    m: dict[str, float] = {
        "reward_mean": float(rewards.mean()),
        "reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
        "reward_min": float(rewards.min()),
        "reward_max": float(rewards.max()),
    }
    rules = sorted({k for b in breakdowns for k in getattr(b, "values", {})})
    for k in rules:
        m[f"rule/{k}"] = _mean([float(b.values.get(k, 0.0)) for b in breakdowns])
    infos = [getattr(b, "info", {}) or {} for b in breakdowns]

    def col(key: str) -> list[float]:
        return [float(i[key]) for i in infos if key in i and i[key] is not None]

    for name, key in (("format_ok", "format_ok"), ("compliance", "compliant"), ("played", "played"),
                      ("won_rate", "won_rate"), ("mean_max_tile", "mean_max_tile")):
        if col(key):
            m[name] = _mean(col(key))
    if col("max_tile"):
        m["max_tile"] = max(col("max_tile"))
    if col("mean_score"):
        m["score_mean"] = _mean(col("mean_score"))
        m["score_max"] = max(col("mean_score"))
    return m


def grpo_step(policy: Any, backend: RolloutBackend, optimizer: torch.optim.Optimizer, scheduler: Any,
              config: TrainConfig, prompts: Sequence[str], reward_fn: RewardFn, step: int,
              stop: _Stop | None = None) -> tuple[dict[str, float], Rollout, list[Any]]:
    """One GRPO step (rollout, rewards, advantages, updates); returns (metrics, rollout, breakdowns)."""
    check_trainable_dtype(policy)
    dev = _device(policy)
    plan = step_plan(config, step, len(prompts))
    torch.manual_seed(plan.torch_seed)
    G, B, mb = config.group_size, config.batch_size, config.micro_batch_size
    t_step = time.perf_counter()
    metrics: dict[str, float] = {}

    # 2. Rollouts (eval mode: no dropout while sampling).
    policy.eval()
    _reset_peak(dev)
    sampling = SamplingParams(config.max_new_tokens, config.temperature, config.top_p)
    with _autocast(policy):
        rollout = backend.generate([prompts[i] for i in plan.prompt_indices], G, sampling, plan.sampling_seed)
    _sync(dev)
    metrics["rollout_seconds"] = rollout.seconds
    metrics["rollout_tokens_per_s"] = rollout.num_tokens / max(rollout.seconds, 1e-9)
    metrics["peak_mem_rollout_gb"] = _peak_gb(dev)
    if stop is not None and stop.requested:
        raise _Abandon

    # 3. Rewards, one call per group (all its completions play the same seeds).
    t0 = time.perf_counter()
    breakdowns: list[Any] = []
    for g in range(config.prompts_per_step):
        group = reward_fn(rollout.texts[g * G:(g + 1) * G], list(plan.eval_seeds[g]))
        if len(group) != G:
            raise ValueError(f"reward_fn returned {len(group)} results for a group of {G} completions")
        breakdowns.extend(group)
    metrics["reward_seconds"] = time.perf_counter() - t0
    rewards = torch.tensor([float(b.total) for b in breakdowns], dtype=torch.float32)
    metrics.update(_reward_metrics(breakdowns, rewards))
    if stop is not None and stop.requested:
        raise _Abandon

    # 4. Advantages.
    adv, flat_groups = group_advantages(rewards, G, config.advantage_scale)
    adv = adv.to(dev)
    metrics["zero_variance_groups"] = flat_groups
    metrics["zero_variance_frac"] = flat_groups / config.prompts_per_step

    # 5. Reference and old-policy log-probs (no grad, eval mode, micro-batched).
    t0 = time.perf_counter()
    _reset_peak(dev)
    ids, attn = rollout.input_ids, rollout.attention_mask
    cmask = rollout.completion_mask.to(torch.float32)
    C = cmask.shape[1]
    total_tokens = float(cmask.sum())
    ref_logp = old_logp = None
    runs = _prompt_runs(rollout.prompt_ids, rollout.prompt_mask)
    with _autocast(policy):
        if config.kl_beta > 0:
            with policy.disable_adapter():
                ref_logp = _logprobs_by_prompt(policy, ids, attn, runs, C, mb, config.temperature)
        if config.num_iterations > 1:
            old_logp = _logprobs_by_prompt(policy, ids, attn, runs, C, mb, config.temperature)

    # 6. Policy updates: num_iterations passes over the batch, grad_accum micro-batches each.
    policy.train()
    sums = dict(loss=0.0, kl=0.0, clip_low=0.0, clip_high=0.0, ratio=0.0, tokens=0.0, entropy=0.0, gap=0.0)
    grad_norms = []
    trained_tokens = 0
    for it in range(config.num_iterations):
        optimizer.zero_grad(set_to_none=True)
        for i, j in _micro_batches(runs, mb):
            m_ids, m_attn, width = _trim(ids[i:j], attn[i:j], cmask[i:j])
            m_mask = cmask[i:j, :width]
            with _autocast(policy):
                logp, ent = sequence_logprobs(policy, m_ids, m_attn, width, config.temperature,
                                              with_entropy=(it == 0))
            old = old_logp[i:j, :width] if old_logp is not None else logp.detach()
            ref = ref_logp[i:j, :width] if ref_logp is not None else None
            out = policy_loss(logp, old, adv[i:j], m_mask, variant=config.loss_variant,
                              eps_low=config.clip_eps_low, eps_high=config.clip_eps_high, beta=config.kl_beta,
                              ref_logp=ref, total_sequences=B, total_tokens=total_tokens,
                              max_new_tokens=config.max_new_tokens)
            out.loss.backward()
            trained_tokens += int(m_attn.sum())
            sums["loss"] += out.loss.item() / config.num_iterations
            if it == 0:
                sums["kl"] += out.kl_sum
                sums["tokens"] += out.tokens
                sums["entropy"] += float((ent * m_mask).sum())
                if rollout.logprobs is not None:
                    sums["gap"] += float(((logp.detach() - rollout.logprobs[i:j, :width].to(dev)).abs()
                                          * m_mask).sum())
            if it == config.num_iterations - 1:
                sums["clip_low"] += out.clip_low
                sums["clip_high"] += out.clip_high
                sums["ratio"] += out.ratio_sum
        params = [p for g in optimizer.param_groups for p in g["params"]]
        grad_norms.append(float(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)))
        optimizer.step()
        scheduler.step()
    _sync(dev)
    train_seconds = time.perf_counter() - t0
    backend.sync()

    # 7. Monitoring figures.
    n_tok = max(sums["tokens"], 1.0)
    lengths = rollout.lengths.float()
    metrics.update({
        "loss": sums["loss"],
        # Without a KL term there is no reference pass, so there is no KL to report (None, not 0).
        "kl": sums["kl"] / n_tok if config.kl_beta > 0 else None,
        "clip_frac": (sums["clip_low"] + sums["clip_high"]) / n_tok,
        "clip_low_frac": sums["clip_low"] / n_tok,
        "clip_high_frac": sums["clip_high"] / n_tok,
        "ratio_mean": sums["ratio"] / n_tok,
        "entropy": sums["entropy"] / n_tok,
        "grad_norm": grad_norms[-1],
        "lr": scheduler.get_last_lr()[0],
        "completion_len_mean": float(lengths.mean()),
        "completion_len_max": float(lengths.max()),
        "truncation_rate": float(rollout.truncated.float().mean()),
        "train_seconds": train_seconds,
        "train_tokens_per_s": trained_tokens / max(train_seconds, 1e-9),
        "peak_mem_train_gb": _peak_gb(dev),
        "step_seconds": time.perf_counter() - t_step,
    })
    if rollout.logprobs is not None:
        # Sampler vs trainer log-prob disagreement (bf16 kernels, dropout): should stay small.
        metrics["logprob_gap"] = sums["gap"] / n_tok
    metrics["peak_memory_gb"] = max(metrics["peak_mem_rollout_gb"], metrics["peak_mem_train_gb"])
    return metrics, rollout, breakdowns


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate_policy(policy: Any, backend: RolloutBackend, config: TrainConfig, prompts: Sequence[str],
                    reward_fn: RewardFn, samples: int | None = None, seed: int = 1_000_003) -> dict[str, float]:
    """Sample ``samples`` completions of the first prompt on held-out seeds; reward figures prefixed ``eval/``."""
    n = samples or config.eval_samples
    policy.eval()
    sampling = SamplingParams(config.max_new_tokens, config.temperature, config.top_p)
    # Held-out game seeds: far from the training draws' typical values and fixed across evaluations.
    seeds = [2**31 + seed + k for k in range(config.seeds_per_eval)]
    with _autocast(policy):
        rollout = backend.generate([prompts[0]], n, sampling, seed)
    breakdowns = list(reward_fn(rollout.texts, seeds))
    rewards = torch.tensor([float(b.total) for b in breakdowns])
    return {f"eval/{k}": v for k, v in _reward_metrics(breakdowns, rewards).items()}


# ----------------------------------------------------------------------------- the run

def _checkpoint_state(policy: Any, optimizer: Any, scheduler: Any, config: TrainConfig, step: int) -> dict:
    from peft import get_peft_model_state_dict

    from train.checkpoint import rng_state

    adapter_config = policy.peft_config["default"].to_dict()
    adapter_config = {k: (sorted(v) if isinstance(v, (set, frozenset)) else v) for k, v in adapter_config.items()}
    return {
        "step": step,
        "data_position": step,  # the batch of step s depends only on (seed, s)
        "adapter": {k: v.detach().cpu() for k, v in get_peft_model_state_dict(policy).items()},
        "adapter_config": adapter_config,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "config": dataclasses.asdict(config),
    }


def _restore(state: dict, policy: Any, optimizer: Any, scheduler: Any) -> int:
    from peft import set_peft_model_state_dict

    from train.checkpoint import set_rng_state

    dev = _device(policy)
    set_peft_model_state_dict(policy, {k: v.to(dev) for k, v in state["adapter"].items()})
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if "rng" in state:
        set_rng_state(state["rng"])
    return int(state["data_position"] if "data_position" in state else state["step"])


def train(config: TrainConfig, reward_fn: RewardFn | None = None, model: Any = None, tokenizer: Any = None, *,
          prompts: Sequence[str] | None = None, resume: bool = False, progress: bool | None = None,
          model_path: str | None = None) -> RunSummary:
    """Run GRPO as configured; returns the run's summary (Ctrl-C saves a checkpoint and returns early).

    ``model``/``tokenizer`` default to ``train.model.load_model(config.model, ...)``; ``reward_fn`` to
    :func:`default_reward_fn`; ``prompts`` to the game's prompt from ``train.prompts``. ``resume``
    continues from the newest checkpoint in ``config.output_dir`` (the same next batch, bit for bit).
    """
    from train.checkpoint import load_latest, save_checkpoint
    from train.monitor import RunLogger

    started = time.perf_counter()
    config = with_run_dir(config)
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    # 1. Model, LoRA policy (the reference is the same weights with the adapter off), optimizer.
    if model is None:
        from train.model import load_model, resolve_model
        from train.rollout import vllm_available

        if config.rollout_backend in ("auto", "vllm") and vllm_available():
            model_path = model_path or resolve_model(config.model)  # vLLM loads the weights itself
        model, tokenizer = load_model(config.model, config.dtype, config.device)
    if tokenizer is None:
        raise ValueError("train: a model was given without its tokenizer")
    check_trainable_dtype(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # the LoRA A matrices' initialisation
        policy = add_lora(model, config)
    optimizer, scheduler = make_optimizer(policy, config)

    start_step = 0
    if resume:
        state = load_latest(run_dir)
        if state is not None:
            start_step = _restore(state, policy, optimizer, scheduler)
    save_config(config, run_dir / "config.toml")

    prompts = list(prompts) if prompts is not None else _default_prompts(config, tokenizer)
    reward_fn = reward_fn if reward_fn is not None else default_reward_fn(config)
    backend = make_backend(config.rollout_backend, policy, tokenizer, compile=config.rollout_compile,
                           compile_backend=config.rollout_compile_backend or None,
                           model_path=model_path, lora_rank=config.lora_rank,
                           gpu_memory_utilization=config.vllm_gpu_memory_utilization,
                           max_model_len=4096, record_logprobs=False)
    # The largest rollout of the run (training batch or evaluation), known now: a fixed-shape backend sizes
    # its cache for it once, so every step (and a resumed run) samples at one shape, compiled once.
    eval_rows = config.eval_samples if config.eval_interval else 0
    backend.reserve(max(config.batch_size, eval_rows), max(len(r) for r in encode_prompts(tokenizer, prompts)),
                    config.max_new_tokens)
    logger = RunLogger(run_dir, total_steps=config.steps, initial_step=start_step, progress=progress)
    summary = RunSummary(run_dir=str(run_dir), steps_done=start_step)

    def save(step: int) -> None:
        save_checkpoint(run_dir, _checkpoint_state(policy, optimizer, scheduler, config, step))

    try:
        with _deferred_sigint() as stop:
            step = start_step
            for step in range(start_step, config.steps):
                try:
                    metrics, rollout, breakdowns = grpo_step(policy, backend, optimizer, scheduler, config,
                                                             prompts, reward_fn, step, stop)
                except _Abandon:
                    save(step)  # nothing of this step touched the weights: resume redoes it
                    summary.interrupted = True
                    break
                for b in breakdowns:
                    if getattr(b, "source", None):
                        logger.save_best(b.source, float(b.total), getattr(b, "info", None), step=step)
                if config.eval_interval and (step + 1) % config.eval_interval == 0:
                    metrics.update(evaluate_policy(policy, backend, config, prompts, reward_fn))
                if step % config.log_interval == 0 or step == config.steps - 1:
                    summary.history.append(logger.log(step, metrics))
                summary.steps_done = step + 1
                summary.final = metrics
                if stop.requested:
                    save(step + 1)
                    summary.interrupted = True
                    break
                if config.save_interval and (step + 1) % config.save_interval == 0:
                    save(step + 1)
            else:
                already = config.save_interval and summary.steps_done % config.save_interval == 0
                if summary.steps_done > start_step and not already:
                    save(summary.steps_done)
    finally:
        logger.close()
        backend.close()
    if not summary.interrupted:
        try:
            from train.monitor import plot_run

            plot_run(run_dir)
        except Exception as exc:  # a plot is a convenience: never lose a finished run over it
            print(f"train: could not draw the curves: {exc}", file=sys.stderr)
    summary.best = logger.best
    summary.seconds = time.perf_counter() - started
    return summary
