"""The GRPO training loop as one story: sample programs, score them, turn scores into a LoRA update.

:func:`grpo_step` is one step, in data-flow order, each figure logged where it is computed:

1. plan: the step's prompts, game seeds and sampling seed come from ``(config.seed, step)`` alone, so a
   resumed run sees exactly the batch an uninterrupted one would (:func:`step_plan`);
2. rollout: ``group_size`` completions per prompt from the rollout backend (``train.rollout``);
3. rewards: each group through ``reward_fn(completions, seeds=...) -> list[Breakdown]``, all of a group on
   the same games (default: ``rewards.group_reward_fn`` with the configured spec: extract, check, play
   in the sandbox, score); with DAPO's dynamic sampling, groups without signal are replaced by groups
   of extra sampling rounds;
4. advantages: rewards (plus DAPO's overlong penalty) relative to their group (``train.grpo``:
   ``group_advantages``, or ``gdpo_advantages`` per reward rule);
5. log-probs without gradient: the reference (the same weights with the LoRA adapter off) when the KL
   term is on, and the old policy when one batch makes several updates (``train.logprobs``);
6. updates: ``num_iterations`` passes over the batch in micro-batches that never straddle two prompts
   (``train.logprobs.micro_batches``: a shared prompt runs once), the variant's objective + beta * KL
   (``train.grpo.policy_loss``, weighted by ``sampler_correction`` when on), grad-norm clipping, the
   learning-rate schedule.

:func:`train` is the run: model and LoRA policy, resume, then steps with held-out evaluation, logging,
best programs and checkpoints. Ctrl-C stops at the next safe point (``train.interrupt``), saves a
checkpoint and returns; a second Ctrl-C aborts at once (the last checkpoint stays).

Under ``torchrun`` each rank runs this same story on its share of the step's groups and the ranks meet
at four points: the stop checks, the gathered rewards, the batch's token count, and the summed
gradients (``train.distributed``); one process is the special case where each meeting is the identity.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from train.config import TRAIN_SEED_LIMIT, TrainConfig, save_config, with_run_dir
from train.distributed import SINGLE, Ranks
from train.grpo import (LossOutput, gdpo_advantages, group_advantages, overlong_penalty, policy_loss,
                        sampler_correction)
from train.interrupt import Abandon, StopRequest, deferred_sigint
from train.logprobs import batched_logprobs, micro_batches, sequence_logprobs
from train.metrics import progress_metric, reward_figures
from train.policy import add_lora, autocast, check_trainable_dtype, device_of, make_optimizer
from train.rollout import Rollout, RolloutBackend, encode_prompts, gather_rows, make_backend
from train.stopping import END_REASONS
from train.task import resolve_games, reward_spec, sampling_params

if TYPE_CHECKING:
    from rewards import Breakdown, RewardFn

__all__ = [
    "RunSummary",
    "StepPlan",
    "step_plan",
    "grpo_step",
    "train",
    "default_reward_fn",
]


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


# ----------------------------------------------------------------------------- 1. the step's plan

@dataclass(frozen=True)
class StepPlan:
    """Everything random about one step, derived from (seed, step) alone."""

    prompt_indices: tuple[int, ...]  # one per group
    game_seeds: tuple[tuple[int, ...], ...]  # the games each group is scored on
    sampling_seed: int
    torch_seed: int  # for dropout and anything else drawing from torch's global RNG


def step_plan(config: TrainConfig, step: int, num_prompts: int, round: int = 0) -> StepPlan:
    """The step's prompts, game seeds and sampling seeds: the data position is just the step number.

    ``round`` > 0 is an extra round of DAPO's dynamic sampling within the step: fresh groups, as fixed.
    """
    games = resolve_games(config)
    rng = np.random.default_rng([config.seed, step] if round == 0 else [config.seed, step, round])
    idx = tuple(int(i) for i in rng.integers(0, num_prompts, size=config.prompts_per_step))
    seeds = tuple(tuple(int(s) for s in rng.integers(0, TRAIN_SEED_LIMIT, size=games))
                  for _ in range(config.prompts_per_step))
    s1, s2 = (int(x) for x in rng.integers(0, 2**62, size=2))
    return StepPlan(idx, seeds, s1, s2)


def default_reward_fn(config: TrainConfig, ranks: Ranks = SINGLE) -> "RewardFn":
    """The configured reward: ``rewards.group_reward_fn`` with the spec (the game's default when none).

    Its games run on the sandbox's shared local pool, or on the pool ``reward_pool`` / ``reward_workers``
    ask for (``sandbox.make_pool``: a local pool of that size, or a Ray pool), which the caller closes.
    With several ranks on one node and no ``reward_workers``, each rank's local pool gets its share of
    the node's cores, not all of them.
    """
    import os

    import rewards

    spec = reward_spec(config)
    workers = config.reward_workers or None
    if workers is None and config.reward_pool == "local" and ranks.local_world > 1:
        workers = max(1, (os.cpu_count() or 1) // ranks.local_world)
    pool = None
    if config.reward_pool != "local" or workers:
        import sandbox

        pool = sandbox.make_pool(config.reward_pool, workers, game=config.game)
    return rewards.group_reward_fn(config.game, spec, pool=pool)


# ----------------------------------------------------------------------------- one step

def _peak_gb(dev: torch.device) -> float:
    """Peak GPU memory since the last reset (0 on the CPU), then reset for the next phase."""
    if dev.type != "cuda":
        return 0.0
    torch.cuda.synchronize(dev)
    peak = torch.cuda.max_memory_allocated(dev) / 2**30
    torch.cuda.reset_peak_memory_stats(dev)
    return peak


def reward_matrix(breakdowns: Sequence["Breakdown"], lengths: torch.Tensor,
                  config: TrainConfig) -> tuple[torch.Tensor, list[float]]:
    """The rewards the advantages are computed from: ``([N, K] values, K weights)``.

    One column, the total plus DAPO's overlong penalty, for every advantage scale but ``gdpo``, which gets
    one column per reward rule (and one for the overlong penalty when it is on), with the rules' weights.
    """
    shaping = overlong_penalty(lengths, config.max_new_tokens, config.overlong_buffer, config.overlong_penalty)
    if config.advantage_scale != "gdpo":
        # Totals pass through float32, as in every run measured so far: those runs reproduce bit for bit.
        totals = torch.tensor([float(b.total) for b in breakdowns], dtype=torch.float32).double()
        return (totals + shaping)[:, None], [1.0]
    names = list(breakdowns[0].values)
    values = torch.tensor([[float(b.values[n]) for n in names] for b in breakdowns], dtype=torch.float64)
    weights = [float(breakdowns[0].weights[n]) for n in names]
    if config.overlong_buffer:
        values, weights = torch.cat([values, shaping[:, None]], dim=1), weights + [1.0]
    return values, weights


def flat_groups(values: torch.Tensor, group_size: int) -> list[bool]:
    """Per group: True when no reward column varies within it (no learning signal)."""
    v = values.view(-1, group_size, values.shape[1])
    return (v.max(dim=1).values == v.min(dim=1).values).all(dim=1).tolist()


def _sample_and_score(policy: Any, backend: RolloutBackend, config: TrainConfig, prompts: Sequence[str],
                      reward_fn: "RewardFn", plan: StepPlan, mine: range, ranks: Ranks,
                      stop: StopRequest | None) -> tuple[Rollout, list["Breakdown"], float]:
    """This rank's groups of ``plan``: sampled, then scored one group per call; (rollout, breakdowns, seconds)."""
    G = config.group_size
    first_row = mine.start * G
    sampling = sampling_params(config)
    with autocast(policy):
        rollout = backend.generate([prompts[plan.prompt_indices[g]] for g in mine], G, sampling, plan.sampling_seed,
                                   stream=(first_row, config.batch_size) if ranks.active else None)
    if stop is not None and ranks.any(stop.requested):
        raise Abandon
    t0 = time.perf_counter()
    # The reward reads the whole answer: the prefill the prompts end with, then what the model wrote.
    answers = [sampling.prefill + text for text in rollout.texts]
    local: list[Breakdown] = []
    for k, g in enumerate(mine):
        group = reward_fn(answers[k * G:(k + 1) * G], seeds=list(plan.game_seeds[g]))
        if len(group) != G:
            raise ValueError(f"reward_fn returned {len(group)} results for a group of {G} completions")
        local.extend(group)
    return rollout, local, time.perf_counter() - t0


def _dynamic_sampling(policy: Any, backend: RolloutBackend, config: TrainConfig, prompts: Sequence[str],
                      reward_fn: "RewardFn", step: int, mine: range, ranks: Ranks, stop: StopRequest | None,
                      rollout: Rollout, local: list["Breakdown"]
                      ) -> tuple[Rollout, list["Breakdown"], list["Breakdown"], int]:
    """DAPO's dynamic sampling on this rank: replace groups without signal by groups of extra rounds.

    Extra rounds (at most ``dynamic_sampling_rounds``, each planned from ``(seed, step, round)``, so a resumed
    run redoes them exactly) go on while any rank has fewer informative groups than its share. The rank then
    trains on its informative groups in sampling order, filled up with flat ones when the rounds ran out
    (they carry no policy gradient but keep the batch size). Returns (rollout, its breakdowns, the extra
    rounds' breakdowns, rounds). With several ranks each rank selects among its own groups.
    """
    G = config.group_size
    rollouts, scored = [rollout], [local]
    flat = [(0, k, f) for k, f in enumerate(flat_groups(reward_matrix(local, rollout.lengths, config)[0], G))]
    rounds = 0
    while rounds < config.dynamic_sampling_rounds and ranks.any(sum(not f for *_, f in flat) < len(mine)):
        rounds += 1
        plan = step_plan(config, step, len(prompts), round=rounds)
        extra, extra_local, _ = _sample_and_score(policy, backend, config, prompts, reward_fn, plan, mine, ranks, stop)
        rollouts.append(extra)
        scored.append(extra_local)
        values = reward_matrix(extra_local, extra.lengths, config)[0]
        flat += [(rounds, k, f) for k, f in enumerate(flat_groups(values, G))]
    chosen = ([(r, k) for r, k, f in flat if not f] + [(r, k) for r, k, f in flat if f])[:len(mine)]
    picks = [(r, k * G + j) for r, k in chosen for j in range(G)]
    trained = gather_rows(rollouts, picks, backend.pad)
    return trained, [scored[r][row] for r, row in picks], [b for part in scored[1:] for b in part], rounds


def _summed(ranks: Ranks, out: LossOutput) -> LossOutput:
    """One pass's totals over every rank's micro-batches (its own when there is one rank)."""
    names = [f.name for f in dataclasses.fields(LossOutput) if f.name != "loss"]
    values = ranks.sum([float(out.loss)] + [float(getattr(out, n)) for n in names])
    return LossOutput(loss=torch.tensor(values[0]), **dict(zip(names, values[1:])))


def grpo_step(policy: Any, backend: RolloutBackend, optimizer: torch.optim.Optimizer, scheduler: Any,
              config: TrainConfig, prompts: Sequence[str], reward_fn: "RewardFn", step: int,
              stop: StopRequest | None = None,
              ranks: Ranks = SINGLE) -> tuple[dict[str, float], Rollout, list["Breakdown"]]:
    """One GRPO step (rollout, rewards, advantages, updates); returns (metrics, rollout, breakdowns).

    ``rollout`` is this rank's share of the batch; ``breakdowns`` and ``metrics`` are the whole batch's.
    Raises :class:`train.interrupt.Abandon` when ``stop`` was requested before the weights changed.
    """
    check_trainable_dtype(policy)
    dev = device_of(policy)
    G, T = config.group_size, config.temperature
    t_step = time.perf_counter()
    metrics: dict[str, float] = {}
    _peak_gb(dev)

    # 1. Plan: the whole batch's, and this rank's groups of it (all of them on one process).
    plan = step_plan(config, step, len(prompts))
    torch.manual_seed(plan.torch_seed)
    mine = ranks.groups(config.prompts_per_step)
    rows = slice(mine.start * G, mine.stop * G)  # this rank's rows of the batch

    # 2-3. Rollout (eval mode: no dropout while sampling; a rank's rows draw their share of the batch's random
    # stream), then rewards, one call per group: all its completions play the same games.
    policy.eval()
    rollout, local, reward_seconds = _sample_and_score(policy, backend, config, prompts, reward_fn, plan, mine,
                                                       ranks, stop)
    metrics["peak_mem_rollout_gb"] = _peak_gb(dev)
    # Every rank gets every group's rewards: the logged figures describe the policy's fresh samples.
    shares = ranks.gather((local, rollout.lengths.tolist(), rollout.truncated.tolist(), rollout.num_tokens,
                           rollout.ends))
    breakdowns = [b for share in shares for b in share[0]]
    lengths = torch.tensor([n for share in shares for n in share[1]], dtype=torch.float32)
    truncated = torch.tensor([t for share in shares for t in share[2]], dtype=torch.float32)
    ends = [e for share in shares for e in share[4]]
    for reason in END_REASONS:  # how the completions ended: EOS, the closing fence, the length limit
        metrics[f"end_{reason}_share"] = ends.count(reason) / max(len(ends), 1)
    # A step waits for its slowest rank: times are maxima, counts are sums.
    rollout_seconds, metrics["reward_seconds"] = ranks.max([rollout.seconds, reward_seconds])
    metrics["rollout_seconds"] = rollout_seconds
    metrics["rollout_tokens_per_s"] = sum(share[3] for share in shares) / max(rollout_seconds, 1e-9)
    metrics["completion_len_mean"] = float(lengths.mean())
    metrics["completion_len_max"] = float(lengths.max())
    metrics["truncation_rate"] = float(truncated.mean())
    metrics.update(reward_figures(breakdowns, config.game))
    if stop is not None and ranks.any(stop.requested):
        raise Abandon

    # 3b. DAPO's dynamic sampling (optional): groups without signal replaced by groups of extra rounds.
    trained_lengths = lengths
    if config.dynamic_sampling_rounds:
        # The fresh samples' share of flat groups, before selection (zero_variance_frac below is the trained one's).
        fresh = flat_groups(reward_matrix(breakdowns, lengths, config)[0], G)
        metrics["sampled_zero_variance_frac"] = sum(fresh) / config.prompts_per_step
        rollout, local, extra, rounds = _dynamic_sampling(policy, backend, config, prompts, reward_fn, step, mine,
                                                          ranks, stop, rollout, local)
        shares = ranks.gather((local, rollout.lengths.tolist(), extra))
        trained = [b for share in shares for b in share[0]]
        trained_lengths = torch.tensor([n for share in shares for n in share[1]], dtype=torch.float32)
        breakdowns = breakdowns + [b for share in shares for b in share[2]]  # every program sampled: best kept
        metrics["dynamic_rounds"] = rounds
        metrics["groups_sampled"] = (rounds + 1) * config.prompts_per_step
    else:
        trained = breakdowns

    # 4. Advantages, over the whole batch (a "batch" scale needs every group); this rank keeps its rows.
    values, weights = reward_matrix(trained, trained_lengths, config)
    if config.advantage_scale == "gdpo":
        adv, flat = gdpo_advantages(values, weights, G)
    else:
        adv, flat = group_advantages(values[:, 0], G, config.advantage_scale)
    adv = adv[rows].to(dev)
    if config.overlong_buffer:
        metrics["overlong_penalty_mean"] = float(
            overlong_penalty(lengths, config.max_new_tokens, config.overlong_buffer, config.overlong_penalty).mean())
    metrics["zero_variance_groups"] = flat
    metrics["zero_variance_frac"] = flat / config.prompts_per_step

    # 5. Log-probs without gradient: the reference (adapter off) and the old policy.
    t0 = time.perf_counter()
    ids, attn = rollout.input_ids, rollout.attention_mask
    C, mb = rollout.completion_ids.shape[1], config.micro_batch_size
    ref_logp = old_logp = None
    with autocast(policy):
        if config.kl_beta > 0:
            with policy.disable_adapter():
                ref_logp = batched_logprobs(policy, ids, attn, C, mb, T)
        if config.num_iterations > 1:
            old_logp = batched_logprobs(policy, ids, attn, C, mb, T)

    # 6. Updates: num_iterations passes over the batch, one backward per micro-batch. The normalisers are the
    # whole batch's, so the ranks' gradients add up to the one-process gradient.
    policy.train()
    batches = micro_batches(ids, attn, C, mb)
    total_tokens = ranks.sum([float(rollout.completion_mask.sum())])[0]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    correct = config.sampler_correction != "none"
    if correct and rollout.logprobs is None:
        raise ValueError(f"sampler_correction = {config.sampler_correction!r} needs the sampler's log-probs, which the "
                         f"{backend.name} backend does not report here; use the lean or vllm backend, or 'none'")
    passes: list[list[LossOutput]] = []
    entropy_sum = gap_sum = 0.0
    # Sampler-correction ratios of the policy that sampled (sum, count, max, count over the cap).
    is_sum = is_count = is_max = is_over = 0.0
    grad_norm = 0.0
    trained_tokens = 0
    for it in range(config.num_iterations):
        optimizer.zero_grad(set_to_none=True)
        passes.append([])
        for b in batches:
            mask = b.completion_mask.to(torch.float32)
            with autocast(policy):
                logp, ent = sequence_logprobs(policy, b.input_ids, b.attention_mask, b.width, T,
                                              with_entropy=(it == 0))
            old = old_logp[b.rows, :b.width] if old_logp is not None else logp.detach()
            ref = ref_logp[b.rows, :b.width] if ref_logp is not None else None
            is_weights = None
            if correct:  # pi_trainer / pi_sampler of the sampled tokens, capped or masked
                sampled = rollout.logprobs[b.rows, :b.width].to(dev)
                is_weights, ratio = sampler_correction(old, sampled, mask, config.sampler_correction_cap,
                                                       config.sampler_correction)
                if it == 0:
                    counted = mask if config.sampler_correction.startswith("token") else torch.ones_like(ratio)
                    is_sum += float((ratio * counted).sum())
                    is_count += float(counted.sum())
                    is_max = max(is_max, float((ratio * counted).max()))
                    is_over += float(((ratio > config.sampler_correction_cap) * counted).sum())
            out = policy_loss(logp, old, adv[b.rows], mask, variant=config.loss_variant,
                              eps_low=config.clip_eps_low, eps_high=config.clip_eps_high, beta=config.kl_beta,
                              ref_logp=ref, total_sequences=config.batch_size, total_tokens=total_tokens,
                              max_new_tokens=config.max_new_tokens, sapo_tau_pos=config.sapo_tau_pos,
                              sapo_tau_neg=config.sapo_tau_neg, is_weights=is_weights)
            out.loss.backward()
            passes[-1].append(out)
            trained_tokens += int(b.attention_mask.sum())
            if it == 0:  # properties of the policy that sampled: measured before any update
                entropy_sum += float((ent * mask).sum())
                if rollout.logprobs is not None:
                    sampled = rollout.logprobs[b.rows, :b.width].to(dev)
                    gap_sum += float(((logp.detach() - sampled).abs() * mask).sum())
        ranks.sum_grads(params)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
        optimizer.step()
        scheduler.step()
    metrics["peak_mem_train_gb"] = _peak_gb(dev)
    train_seconds = time.perf_counter() - t0
    backend.sync()

    totals = [_summed(ranks, LossOutput.total(p)) for p in passes]
    entropy_sum, gap_sum, trained_tokens = ranks.sum([entropy_sum, gap_sum, trained_tokens])
    first, last = totals[0], totals[-1]
    n_tok = max(first.tokens, 1.0)
    metrics["loss"] = sum(float(t.loss) for t in totals) / len(totals)
    # KL to the reference before this step's update; without a KL term there is no reference pass (None, not 0).
    metrics["kl"] = first.kl_sum / n_tok if config.kl_beta > 0 else None
    metrics["entropy"] = entropy_sum / n_tok
    if rollout.logprobs is not None:
        # Sampler vs trainer log-prob disagreement (bf16 kernels, dropout): should stay small.
        metrics["logprob_gap"] = gap_sum / n_tok
    if correct:
        is_sum, is_count, is_over = ranks.sum([is_sum, is_count, is_over])
        metrics["sampler_ratio_mean"] = is_sum / max(is_count, 1.0)
        metrics["sampler_ratio_max"] = ranks.max([is_max])[0]
        metrics["sampler_over_cap_frac"] = is_over / max(is_count, 1.0)
    # Clipping acts from the second pass over a batch on: read it on the last pass.
    metrics["clip_frac"] = (last.clip_low + last.clip_high) / n_tok
    metrics["clip_low_frac"] = last.clip_low / n_tok
    metrics["clip_high_frac"] = last.clip_high / n_tok
    metrics["ratio_mean"] = last.ratio_sum / n_tok
    metrics["grad_norm"] = grad_norm
    metrics["lr"] = scheduler.get_last_lr()[0]
    train_seconds, metrics["peak_mem_rollout_gb"], metrics["peak_mem_train_gb"] = ranks.max(
        [train_seconds, metrics["peak_mem_rollout_gb"], metrics["peak_mem_train_gb"]])
    metrics["train_seconds"] = train_seconds
    metrics["train_tokens_per_s"] = trained_tokens / max(train_seconds, 1e-9)
    metrics["peak_memory_gb"] = max(metrics["peak_mem_rollout_gb"], metrics["peak_mem_train_gb"])
    metrics["step_seconds"] = time.perf_counter() - t_step
    return metrics, rollout, breakdowns


# ----------------------------------------------------------------------------- the run

def _default_prompts(config: TrainConfig, tokenizer: Any) -> list[str]:
    from train.prompts import build_prompt

    return [build_prompt(config.game, tokenizer, template=config.prompt_template,
                         prefill=sampling_params(config).prefill)]


def _warm_start(policy: Any, backend: RolloutBackend, config: TrainConfig, prompt: str, reward_fn: "RewardFn",
                logger: Any, done: int, kept_answers: list[str], stop: StopRequest, ranks: Ranks,
                save: Any) -> int:
    """The warm start's remaining rounds (``train.warm_start``), each logged and checkpointed; the rounds done.

    Every rank runs the same rounds (same seeds, same weights, so the same samples and updates); rank 0 logs.
    A stop request ends it at a round's boundary, with the checkpoint of the rounds done.
    """
    from rewards import source_hash
    from sandbox import extract
    from train.prompts import uses_api
    from train.warm_start import seed_answers, warm_start_round

    sampling = sampling_params(config)
    kept = {source_hash(extract(a)): a for a in kept_answers}
    seeds = lambda: seed_answers(config.game, sampling.prefill, uses_api(config.prompt_template))  # noqa: E731
    for r in range(done, config.warm_start_rounds):
        figures, breakdowns = warm_start_round(policy, backend, config, prompt, sampling, reward_fn, r, kept, seeds)
        if logger is not None:
            logger.log_warm_start(r, figures)
        save(0, warm_start_rounds_done=r + 1, warm_start_kept=list(kept.values()))
        if ranks.any(stop.requested):
            return r + 1
    return config.warm_start_rounds


def _check_prefill(prompts: Sequence[str], prefill: str) -> None:
    """Every prompt must end with the run's answer prefill: the reward prepends it to what the model wrote."""
    for i, p in enumerate(prompts):
        if isinstance(p, str) and not p.endswith(prefill):
            raise ValueError(f"train: prompt {i} does not end with the run's answer prefill {prefill!r}; build it "
                             f"with train.prompts.build_prompt(..., prefill=...) or set answer_prefill to none")


def train(config: TrainConfig, reward_fn: "RewardFn | None" = None, model: Any = None, tokenizer: Any = None, *,
          prompts: Sequence[str] | None = None, resume: bool = False, progress: bool | None = None,
          model_path: str | None = None) -> RunSummary:
    """Run GRPO as configured; returns the run's summary (Ctrl-C saves a checkpoint and returns early).

    ``model``/``tokenizer`` default to ``train.model.load_model(config.model, ...)``; ``reward_fn`` to
    :func:`default_reward_fn`; ``prompts`` to the game's prompt from ``train.prompts`` (given prompts must end
    with the configured answer prefill, which the reward prepends to each completion). ``resume``
    continues from the newest checkpoint in ``config.output_dir`` (the same next batch, bit for bit).
    Started by a launcher (``torchrun``), it joins the process group and trains data-parallel
    (``train.distributed``); ``model``, when given, must be the same on every rank.
    """
    from train import distributed

    ranks, device, joined_here = distributed.setup(config.device)
    try:
        return _train(config, ranks, device, reward_fn, model, tokenizer, prompts=prompts, resume=resume,
                      progress=progress, model_path=model_path)
    finally:
        distributed.teardown(joined_here)


def _train(config: TrainConfig, ranks: Ranks, device: str, reward_fn: "RewardFn | None", model: Any,
           tokenizer: Any, *, prompts: Sequence[str] | None, resume: bool, progress: bool | None,
           model_path: str | None) -> RunSummary:
    """:func:`train` on this rank: rank 0 writes, every rank trains its share of each step."""
    from train.checkpoint import load_latest, restore_training_state, save_checkpoint, training_state
    from train.evaluate import evaluate_policy
    from train.monitor import RunLogger
    from train.threads import use_threads

    started = time.perf_counter()
    ranks.groups(config.prompts_per_step)  # a batch that does not split over the ranks fails here, not mid-run
    # The run directory is rank 0's (a timestamped name could differ by a second between ranks).
    config = dataclasses.replace(config, output_dir=ranks.broadcast(with_run_dir(config).output_dir))
    config = dataclasses.replace(config, games_per_completion=resolve_games(config))  # recorded as played
    run_dir = Path(config.output_dir)
    if ranks.main:
        run_dir.mkdir(parents=True, exist_ok=True)

    use_threads(config.threads)
    # Model and LoRA policy (the reference is the same weights with the adapter off), optimizer.
    if model is None:
        from train.model import is_tiny, load_model, resolve_model
        from train.rollout import vllm_available

        if ranks.active and config.rollout_backend == "vllm" and ranks.main:
            # Not built yet: each rank's engine would need its own GPU and vLLM's external launcher.
            print("train: the vllm backend does not run under torchrun yet; every rank samples with the lean loop",
                  file=sys.stderr)
        if config.rollout_backend in ("auto", "vllm") and vllm_available() and not is_tiny(config.model):
            model_path = model_path or resolve_model(config.model)  # vLLM loads the weights itself
        model, tokenizer = load_model(config.model, config.dtype, device)
    if tokenizer is None:
        raise ValueError("train: a model was given without its tokenizer")
    check_trainable_dtype(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # the LoRA A matrices' initialisation
        policy = add_lora(model, config)
    optimizer, scheduler = make_optimizer(policy, config)

    start_step = 0
    state = None
    if resume:  # every rank reads the same checkpoint
        state = load_latest(run_dir)
        if state is not None:
            start_step = restore_training_state(state, policy, optimizer, scheduler)
    # Warm-start rounds already done, and the answers they kept (a checkpoint without the key is past them).
    warm_done = config.warm_start_rounds if state is not None else 0
    warm_kept: list[str] = []
    if state is not None and "warm_start_rounds_done" in state:
        warm_done, warm_kept = int(state["warm_start_rounds_done"]), list(state.get("warm_start_kept", []))
    # Rank 0's adapter on every rank: the ranks start equal, and equal gradients keep them so.
    ranks.broadcast_params(p for group in optimizer.param_groups for p in group["params"])
    if ranks.main:
        save_config(config, run_dir / "config.toml")

    prompts = list(prompts) if prompts is not None else _default_prompts(config, tokenizer)
    _check_prefill(prompts, sampling_params(config).prefill)
    own_pool = None  # a sandbox pool this run made for itself, closed when it ends
    if reward_fn is None:
        reward_fn = default_reward_fn(config, ranks)
        own_pool = getattr(reward_fn, "pool", None)
    # Under torchrun every rank samples with the lean loop (or hf when asked): vLLM per rank is not built yet.
    backend_name = "lean" if ranks.active and config.rollout_backend in ("auto", "vllm") else config.rollout_backend
    backend = make_backend(backend_name, policy, tokenizer, compile=config.rollout_compile,
                           compile_backend=config.rollout_compile_backend or None,
                           model_path=model_path, lora_rank=config.lora_rank,
                           gpu_memory_utilization=config.vllm_gpu_memory_utilization,
                           max_model_len=4096, record_logprobs=False)
    # The largest rollout of the run (training share or evaluation), known now: a fixed-shape backend sizes
    # its cache for it once, so every step (and a resumed run) samples at one shape, compiled once.
    eval_rows = config.eval_samples if config.eval_interval and ranks.main else 0
    backend.reserve(max(config.batch_size // ranks.world, eval_rows),
                    max(len(r) for r in encode_prompts(tokenizer, prompts)), config.max_new_tokens)
    # Rank 0 logs for the run; the other ranks' logger writes nothing.
    logger = (RunLogger(run_dir, total_steps=config.steps, initial_step=start_step, progress=progress,
                        metric=progress_metric(config.game)) if ranks.main else None)
    summary = RunSummary(run_dir=str(run_dir), steps_done=start_step)

    def save(step: int, **extra: Any) -> None:
        if ranks.main:
            save_checkpoint(run_dir, training_state(policy, optimizer, scheduler, config, step) | extra)

    try:
        # Under a launcher one Ctrl-C may reach a rank twice (the terminal's and the launcher's copy).
        with deferred_sigint(repeat_grace=2.0 if ranks.active else 0.0) as stop:
            if warm_done < config.warm_start_rounds:
                warm_done = _warm_start(policy, backend, config, prompts[0], reward_fn, logger, warm_done, warm_kept,
                                        stop, ranks, save)
                summary.interrupted = warm_done < config.warm_start_rounds
            for step in range(start_step, config.steps if not summary.interrupted else start_step):
                try:
                    metrics, rollout, breakdowns = grpo_step(policy, backend, optimizer, scheduler, config,
                                                             prompts, reward_fn, step, stop, ranks)
                except Abandon:
                    save(step)  # nothing of this step touched the weights: resume redoes it
                    summary.interrupted = True
                    break
                evaluated = bool(config.eval_interval) and (step + 1) % config.eval_interval == 0
                if logger is not None:
                    for b in breakdowns:
                        if b.source:
                            logger.save_best(b.source, float(b.total), b.info, step=step)
                    if evaluated:  # on rank 0 alone; the others wait for it at the next step's gather
                        metrics.update(evaluate_policy(policy, backend, config, prompts, reward_fn))
                    # A step with an evaluation is always logged: its eval/* figures exist nowhere else.
                    if evaluated or step % config.log_interval == 0 or step == config.steps - 1:
                        summary.history.append(logger.log(step, metrics))
                summary.steps_done = step + 1
                summary.final = metrics
                if ranks.any(stop.requested):
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
        if logger is not None:
            logger.close()
        backend.close()
        if own_pool is not None:
            own_pool.close()
    if not ranks.main:
        summary.seconds = time.perf_counter() - started
        return summary
    if not summary.interrupted and summary.steps_done:
        try:
            from train.monitor import plot_run

            plot_run(run_dir)
        except Exception as exc:  # a plot is a convenience: never lose a finished run over it
            print(f"train: could not draw the curves: {exc}", file=sys.stderr)
    summary.best = logger.best
    summary.seconds = time.perf_counter() - started
    return summary
