"""Warm start: rejection-sampling fine-tuning (RAFT, expert iteration) before GRPO.

GRPO learns only from differences inside a group; when no sample of the untrained model plays a
game to its end, the performance rule is zero for every sample and only the format is taught. A
warm start lifts the model onto the first rung with the same reward:

1. sample ``warm_start_samples`` completions of the run's prompt (the run's prefill and fence stop);
2. score them as training does, on games planned from ``(seed, round)``;
3. keep the answers whose program passes the check and ends every game honestly (finished, won or
   at the move limit: never stuck, never an error) with a total of at least ``warm_start_threshold``,
   one copy of each program (by ``rewards.source_hash``);
4. when fewer than ``warm_start_min_kept`` programs are kept so far, fill up with the game's honest
   seed programs (``GameSpec.seed_programs``: baselines written in the prompt's format, opening with the
   answer prefill), and log how many were added;
5. a supervised LoRA update on every kept answer so far: ``warm_start_epochs`` passes of mean token
   negative log-likelihood of the completion (what follows the prefill, then EOS) given the prompt.

Each round is planned from ``(seed, round)`` alone and logged in ``metrics.jsonl`` as a record with a
``warm_start_round`` key (no ``step``: the GRPO curves stay as they were); a checkpoint after every
round carries ``warm_start_rounds_done``, so an interrupted run resumes at the next round. The
sampling budget is ``warm_start_rounds x warm_start_samples`` completions, to set beside GRPO's
``steps x batch`` when the two are compared (``benchmarks/learning_cpu.py``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from train.config import TRAIN_SEED_LIMIT, TrainConfig
from train.logprobs import micro_batches, sequence_logprobs
from train.metrics import reward_figures
from train.rollout import RolloutBackend, SamplingParams, encode_prompts

if TYPE_CHECKING:
    from rewards import Breakdown, RewardFn

__all__ = ["RoundPlan", "round_plan", "keeps", "seed_answers", "sft_batch", "sft_update", "warm_start_round"]

_SALT = 0x5741524D  # "WARM": warm-start seeds never coincide with a GRPO step's


@dataclass(frozen=True)
class RoundPlan:
    """What round ``round`` samples and plays, from ``(seed, round)`` alone."""

    round: int
    sampling_seed: int
    game_seeds: tuple[int, ...]
    shuffle_seed: int


def round_plan(config: TrainConfig, round: int) -> RoundPlan:
    """The round's sampling seed, its training game seeds (below the held-out range) and its shuffle seed."""
    rng = np.random.default_rng([config.seed, _SALT, round])
    games = max(1, config.games_per_completion)
    seeds = tuple(int(s) for s in rng.integers(0, TRAIN_SEED_LIMIT, size=games))
    a, b = (int(x) for x in rng.integers(0, 2**62, size=2))
    return RoundPlan(round, a, seeds, b)


def keeps(breakdown: "Breakdown", threshold: float) -> bool:
    """True for a program worth imitating: compliant, every game ended honestly, total >= ``threshold``."""
    info = breakdown.info or {}
    return (bool(breakdown.source) and bool(info.get("compliant")) and info.get("games", 0) > 0
            and info.get("honest_rate") == 1.0 and float(breakdown.total) >= threshold)


def seed_answers(game: str, prefill: str, game_api: bool) -> list[str]:
    """The game's honest seed programs as answers (fenced) that open with ``prefill``; [] when it has none."""
    import envs

    spec = envs.get(game)
    make = getattr(spec, "seed_programs", None)
    if make is None:
        return []
    answers = [f"```python\n{source.strip()}\n```" for source in make(game_api)]
    return [a for a in answers if a.startswith(prefill)]


def sft_batch(tokenizer: Any, prompt: str, completions: Sequence[str], eos: int, pad: int
              ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """[left-padded prompt | right-padded completion + EOS] ids and mask for one prompt; (ids, mask, completion width)."""
    prompt_ids = encode_prompts(tokenizer, [prompt])[0]
    rows = [tokenizer(c, add_special_tokens=False)["input_ids"] + [eos] for c in completions]
    C = max(len(r) for r in rows)
    P = len(prompt_ids)
    ids = torch.full((len(rows), P + C), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), P + C), dtype=torch.long)
    ids[:, :P] = torch.tensor(prompt_ids)
    mask[:, :P] = 1
    for i, r in enumerate(rows):
        ids[i, P:P + len(r)] = torch.tensor(r)
        mask[i, P:P + len(r)] = 1
    return ids, mask, C


def sft_update(policy: Any, ids: torch.Tensor, mask: torch.Tensor, width: int, config: TrainConfig,
               generator: torch.Generator) -> float:
    """``warm_start_epochs`` passes of token-mean NLL over the rows in shuffled micro-batches; the mean loss."""
    params = [p for p in policy.parameters() if p.requires_grad]
    # A fresh optimizer each round: rounds are independent, so a resumed run needs no optimizer state for them.
    optimizer = torch.optim.AdamW(params, lr=config.warm_start_lr, weight_decay=0.0)
    dev = next(policy.parameters()).device
    policy.train()
    losses: list[float] = []
    for _ in range(config.warm_start_epochs):
        order = torch.randperm(ids.shape[0], generator=generator)
        for mb in micro_batches(ids[order].to(dev), mask[order].to(dev), width, config.micro_batch_size):
            logp, _ = sequence_logprobs(policy, mb.input_ids, mb.attention_mask, mb.width)
            target = mb.attention_mask[:, -mb.width:].float()
            loss = -(logp * target).sum() / target.sum().clamp(min=1.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            losses.append(float(loss.detach()))
    policy.eval()
    return float(np.mean(losses)) if losses else float("nan")


def warm_start_round(policy: Any, backend: RolloutBackend, config: TrainConfig, prompt: str,
                     sampling: SamplingParams, reward_fn: "RewardFn", round: int, kept: dict[str, str],
                     seeds_for_fill: Callable[[], list[str]]) -> tuple[dict[str, Any], list["Breakdown"]]:
    """One round: sample, score, keep, fill up, fine-tune. ``kept`` (source hash -> answer) grows in place.

    Returns the round's logged figures and the breakdowns of its samples.
    """
    from rewards import source_hash
    from sandbox import extract

    plan = round_plan(config, round)
    t0 = time.perf_counter()
    policy.eval()
    with torch.no_grad():
        rollout = backend.generate([prompt], config.warm_start_samples, sampling, plan.sampling_seed)
    t1 = time.perf_counter()
    answers = [sampling.prefill + t for t in rollout.texts]
    breakdowns: list[Breakdown] = []
    G = config.group_size
    for k in range(0, len(answers), G):
        breakdowns.extend(reward_fn(answers[k:k + G], seeds=list(plan.game_seeds)))
    t2 = time.perf_counter()
    own = 0
    for answer, b in zip(answers, breakdowns):
        if keeps(b, config.warm_start_threshold) and source_hash(b.source) not in kept:
            kept[source_hash(b.source)] = answer
            own += 1
    seeded = 0
    if len(kept) < config.warm_start_min_kept:
        # Too few of the model's own programs play: honest seed programs fill up (scored like any sample).
        fill = [(h, a) for h, a in ((source_hash(extract(a)), a) for a in seeds_for_fill()) if h not in kept]
        rng = np.random.default_rng(plan.shuffle_seed)
        for i in rng.permutation(len(fill))[:config.warm_start_min_kept - len(kept)]:
            h, answer = fill[int(i)]
            kept[h] = answer
            seeded += 1
    loss = float("nan")
    if kept:
        completions = [a[len(sampling.prefill):] for a in kept.values()]
        ids, mask, width = sft_batch(backend.tokenizer, prompt, completions, backend.eos[0], backend.pad)
        loss = sft_update(policy, ids, mask, width, config, torch.Generator().manual_seed(plan.shuffle_seed % 2**63))
    backend.sync()
    t3 = time.perf_counter()
    figures = {f"warm/{k}": v for k, v in reward_figures(breakdowns, config.game).items()}
    figures.update({"warm/kept_own": own, "warm/seeded": seeded, "warm/kept_total": len(kept), "warm/sft_loss": loss,
                    "warm/sample_seconds": t1 - t0, "warm/reward_seconds": t2 - t1, "warm/sft_seconds": t3 - t2})
    for reason in ("eos", "fence", "length"):
        figures[f"warm/end_{reason}_share"] = rollout.ends.count(reason) / max(len(rollout.ends), 1)
    return figures, breakdowns
