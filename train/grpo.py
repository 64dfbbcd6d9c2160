"""The GRPO objective as pure torch functions: advantages, the KL estimate, the clipped policy loss.

Read top to bottom, this is the whole objective (the log-probs it takes come from ``train.logprobs``):

1. Rewards to advantages:
   - ``overlong_penalty``: DAPO's soft length penalty near ``max_new_tokens``, added to the reward;
   - ``group_advantages``: each completion's reward relative to its group: GRPO's std scaling, the
     batch's std, none (Dr. GRPO), or RLOO's leave-one-out baseline;
   - ``gdpo_advantages``: GDPO, for several reward rules: each rule normalised within its group on its
     own, the weighted sum then normalised over the batch.
2. ``k3_kl``: the per-token KL estimate to the reference policy.
3. ``sampler_correction``: truncated importance sampling (TIS) for the gap between the sampler's
   log-probs and the trainer's (bf16 kernels, vLLM).
4. ``policy_loss``: the per-token objective of the chosen variant (grpo, dr_grpo, dapo, gspo: the clipped
   surrogate; cispo: a clipped, stop-gradient weight on log pi; sapo: a soft sigmoid gate), with its
   normalisation, written so that summing it over micro-batches gives exactly the loss of the whole
   batch (the normalisers are the whole batch's counts).

Sources: GRPO (Shao et al. 2024, DeepSeekMath), Dr. GRPO (Liu et al. 2025), DAPO (Yu et al. 2025),
GSPO (Zheng et al. 2025), CISPO (MiniMax-M1 report, 2025), SAPO (soft adaptive policy optimisation,
2025), GDPO (group reward-decoupled normalisation, 2026), RLOO (Ahmadian et al. 2024), TIS (truncated
importance sampling for the rollout/trainer mismatch, Yao et al. 2025). TRL's ``GRPOTrainer`` implements grpo, dr_grpo,
dapo, cispo and sapo; ``tests/test_grpo_trl.py`` checks ours against it on the same tensors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Iterable, Sequence

import torch

from train.config import ADVANTAGE_SCALES, LOSS_VARIANTS
from train.config import SAMPLER_CORRECTIONS as _CONFIG_CORRECTIONS

__all__ = ["overlong_penalty", "group_advantages", "gdpo_advantages", "k3_kl", "sampler_correction", "LossOutput",
           "policy_loss", "LOSS_VARIANTS", "ADVANTAGE_SCALES", "SAMPLER_CORRECTIONS"]

SAMPLER_CORRECTIONS = tuple(m for m in _CONFIG_CORRECTIONS if m != "none")
# SAPO's gate: a token counts as gated once its gradient weight 4 s (1 - s), s = sigmoid(tau (rho - 1)),
# falls below one half, i.e. |tau (rho - 1)| > 2 acosh(sqrt 2) = 1.7627.
_SAPO_GATED = 2.0 * math.acosh(math.sqrt(2.0))


def overlong_penalty(lengths: torch.Tensor, max_new_tokens: int, buffer: int, factor: float = 1.0) -> torch.Tensor:
    """DAPO's soft overlong punishment, per completion (0 or negative; add it to the reward).

    With ``L = max_new_tokens`` and a buffer of ``b`` tokens: 0 up to ``L - b`` tokens, then falling linearly
    to ``-factor`` at ``L`` (a completion cut off at the limit gets the whole ``-factor``). ``buffer = 0``: none.
    """
    lengths = lengths.to(torch.float64)
    if buffer <= 0:
        return torch.zeros_like(lengths)
    if buffer > max_new_tokens:
        raise ValueError(f"overlong buffer ({buffer}) must be <= max_new_tokens ({max_new_tokens})")
    start = max_new_tokens - buffer
    return -factor * ((lengths - start).clamp(min=0.0, max=float(buffer)) / buffer)


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group",
                     eps: float = 1e-4) -> tuple[torch.Tensor, int]:
    """Per-completion advantages and the number of groups whose rewards are all equal.

    ``rewards`` is flat [num_groups * group_size], groups contiguous. ``scale``: "group" divides by the
    group's std (GRPO), "batch" by the whole batch's std, "none" keeps ``r - mean`` (Dr. GRPO), "rloo"
    subtracts the mean of the *other* completions of the group, ``r_i - mean_{j != i} r_j``, which is
    ``G / (G - 1) * (r_i - mean)`` (RLOO). A group with equal rewards gets advantages exactly 0 (no
    signal), whatever the float rounding. (GDPO needs each rule's rewards: :func:`gdpo_advantages`.)
    """
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be flat with a multiple of group_size={group_size} entries, "
                         f"got shape {tuple(rewards.shape)}")
    r = rewards.double().view(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if scale == "group":
        adv = centred / (r.std(dim=1, keepdim=True) + eps)
    elif scale == "batch":
        adv = centred / (r.std() + eps) if r.numel() > 1 else centred
    elif scale == "none":
        adv = centred
    elif scale == "rloo":
        if group_size < 2:
            raise ValueError("rloo advantages need groups of at least 2 completions")
        adv = centred * (group_size / (group_size - 1))
    else:
        raise ValueError(f"unknown advantage scale {scale!r}; choose group, batch, none or rloo "
                         f"(gdpo needs each rule's rewards: gdpo_advantages)")
    flat_group = r.max(dim=1).values == r.min(dim=1).values
    adv = torch.where(flat_group[:, None], torch.zeros_like(adv), adv)
    return adv.reshape(-1).to(torch.float32), int(flat_group.sum())


def gdpo_advantages(values: torch.Tensor, weights: Sequence[float], group_size: int,
                    eps: float = 1e-4) -> tuple[torch.Tensor, int]:
    """GDPO advantages from each rule's rewards, and the number of groups where no rule varies.

    ``values`` is [num_groups * group_size, num_rules] (groups contiguous), ``weights`` one per rule. Each
    rule is centred and divided by its std *within the group*, on its own; the weighted sum of those is
    then normalised over the whole batch. Summing the rules first (GRPO) maps different combinations of
    rule values to one reward and one advantage; normalising each rule first keeps them apart. A rule
    that does not vary within a group contributes 0 to that group; a group where no rule varies gets 0.
    """
    if values.ndim != 2 or values.shape[0] % group_size or values.shape[1] != len(weights):
        raise ValueError(f"values must be [num_groups * {group_size}, {len(weights)}] (one column per weight), "
                         f"got shape {tuple(values.shape)}")
    v = values.double().view(-1, group_size, values.shape[1])
    flat_rule = v.max(dim=1, keepdim=True).values == v.min(dim=1, keepdim=True).values
    per_rule = (v - v.mean(dim=1, keepdim=True)) / (v.std(dim=1, keepdim=True) + eps)
    per_rule = torch.where(flat_rule, torch.zeros_like(per_rule), per_rule)
    w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
    summed = (per_rule * w).sum(-1).reshape(-1)
    adv = (summed - summed.mean()) / (summed.std() + eps) if summed.numel() > 1 else summed
    flat_group = flat_rule.all(dim=2).view(-1)
    adv = torch.where(flat_group.repeat_interleave(group_size), torch.zeros_like(adv), adv)
    return adv.to(torch.float32), int(flat_group.sum())


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || ref): exp(ref - logp) - (ref - logp) - 1 (>= 0, 0 when equal)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


def sampler_correction(old_logp: torch.Tensor, sampler_logp: torch.Tensor, mask: torch.Tensor, cap: float,
                       mode: str = "token_truncate") -> tuple[torch.Tensor, torch.Tensor]:
    """Importance weights for the sampler/trainer mismatch; ``(weights, ratios)``, both without gradient.

    The rollout was sampled by the sampler's numerics, the loss is differentiated under the trainer's:
    the ratio ``pi_trainer(token) / pi_sampler(token)`` (``old_logp`` is the trainer's log-prob of the policy
    that sampled) corrects the gradient. ``mode`` (as TRL's ``vllm_importance_sampling_mode``):
    ``token_*`` a ratio per token, ``sequence_*`` one per sequence (the product over its tokens);
    ``*_truncate`` caps the ratio at ``cap`` (TIS), ``*_mask`` zeroes the tokens/sequences above it.
    Shapes [B, T] (token) or [B, 1] (sequence); padding tokens get ratio 1.
    """
    if mode not in SAMPLER_CORRECTIONS:
        raise ValueError(f"unknown sampler correction {mode!r}; choose {', '.join(SAMPLER_CORRECTIONS)}")
    if cap <= 0:
        raise ValueError(f"sampler correction cap must be > 0, got {cap}")
    with torch.no_grad():
        diff = (old_logp.float() - sampler_logp.float()) * mask.float()
        if mode.startswith("sequence"):
            diff = diff.sum(dim=1, keepdim=True)
        ratio = torch.exp(diff)
        if mode.endswith("truncate"):
            weights = ratio.clamp(max=cap)
        else:
            weights = torch.where(ratio > cap, torch.zeros_like(ratio), ratio)
    return weights, ratio


@dataclass(frozen=True)
class LossOutput:
    """The loss of one micro-batch and sums over its tokens for monitoring (add them up, then divide)."""

    loss: torch.Tensor
    tokens: float  # completion tokens in this micro-batch (mask sum)
    kl_sum: float  # sum of per-token k3 KL (0 when no reference)
    # Tokens whose gradient the variant cut or damped: clipped surrogate: clipped below (A < 0 and
    # ratio < 1 - eps_low) / above (A > 0 and ratio > 1 + eps_high); cispo: weight capped (ratio >
    # 1 + eps_high, any A; counted as high); sapo: gate weight under 1/2, below / above ratio 1.
    clip_low: float
    clip_high: float
    ratio_sum: float  # sum of per-token ratios (mean ~ 1 on the first iteration)

    @staticmethod
    def total(outputs: Iterable["LossOutput"]) -> "LossOutput":
        """The micro-batches' outputs added up: the whole batch's loss (detached) and token sums."""
        outputs = list(outputs)
        if not outputs:
            raise ValueError("LossOutput.total: no micro-batch outputs")
        sums = {f.name: sum(float(getattr(o, f.name)) for o in outputs) for f in fields(LossOutput) if f.name != "loss"}
        loss = torch.stack([o.loss.detach().reshape(()) for o in outputs]).sum()
        return LossOutput(loss=loss, **sums)


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                variant: str = "grpo", eps_low: float = 0.2, eps_high: float = 0.2, beta: float = 0.0,
                ref_logp: torch.Tensor | None = None, total_sequences: int | None = None,
                total_tokens: float | None = None, max_new_tokens: int | None = None,
                sapo_tau_pos: float = 1.0, sapo_tau_neg: float = 1.05,
                is_weights: torch.Tensor | None = None) -> LossOutput:
    """The policy objective (+ beta * k3 KL) of one micro-batch, normalised for the whole batch.

    Shapes: logp/old_logp/ref_logp/mask [B, T], advantages [B]; ``rho = exp(logp - old_logp)``. Per token:

    - ``grpo``, ``dr_grpo``, ``dapo``: the clipped surrogate ``min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A)``;
    - ``gspo``: the same with the sequence's ratio (exp of its mean token log-ratio) on every token;
    - ``cispo``: ``sg(min(rho, 1 + eps_high)) * A * log pi``: the importance weight is clipped and carries no
      gradient, so every token keeps a gradient (the clipped surrogate drops the clipped ones);
    - ``sapo``: ``sigmoid(tau * (rho - 1)) * 4 / tau * A``, a soft gate (gradient weight 1 at rho = 1, fading
      smoothly away from it) instead of a hard clip; ``tau`` is ``sapo_tau_pos`` for A > 0, else ``sapo_tau_neg``.

    Normalisation:

    - ``grpo``, ``gspo``, ``sapo``: mean over each sequence's tokens, then mean over the batch's sequences;
    - ``dr_grpo``: sum over tokens / (batch sequences * max_new_tokens);
    - ``dapo``, ``cispo``: sum over tokens / the batch's token count (for dapo use eps_high > eps_low,
      "clip-higher").

    ``is_weights`` ([B, T] or [B, 1], from :func:`sampler_correction`) multiply the policy term (not the KL).
    ``total_sequences`` / ``total_tokens`` are the whole batch's counts (default: this micro-batch's), so
    summing the losses of the micro-batches gives the loss of the batch exactly.
    """
    mask = mask.to(logp.dtype)
    adv = advantages.to(logp.dtype)[:, None]
    seq_len = mask.sum(1).clamp(min=1.0)
    log_ratio = logp - old_logp
    if variant == "gspo":
        seq_log_ratio = (log_ratio * mask).sum(1, keepdim=True) / seq_len[:, None]
        # Value: the sequence ratio on every token; gradient: that ratio times the mean token gradient.
        log_ratio = logp - logp.detach() + seq_log_ratio.detach()
    elif variant not in LOSS_VARIANTS:
        raise ValueError(f"unknown loss variant {variant!r}; choose {', '.join(LOSS_VARIANTS)}")
    ratio = torch.exp(log_ratio)
    r = ratio.detach()
    if variant == "cispo":
        per_token = -torch.clamp(r, max=1.0 + eps_high) * adv * logp
        low = torch.zeros_like(r)
        high = (r > 1.0 + eps_high).to(mask.dtype)
    elif variant == "sapo":
        tau = torch.where(adv > 0, torch.full_like(adv, sapo_tau_pos), torch.full_like(adv, sapo_tau_neg))
        per_token = -torch.sigmoid(tau * (ratio - 1.0)) * (4.0 / tau) * adv
        gated = (tau * (r - 1.0)).abs() > _SAPO_GATED
        low, high = (gated & (r < 1.0)).to(mask.dtype), (gated & (r > 1.0)).to(mask.dtype)
    else:
        clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
        per_token = -torch.min(ratio * adv, clipped * adv)
        low = ((r < 1.0 - eps_low) & (adv < 0)).to(mask.dtype)
        high = ((r > 1.0 + eps_high) & (adv > 0)).to(mask.dtype)
    if is_weights is not None:
        per_token = per_token * is_weights.to(per_token.dtype).detach()
    kl = None
    if beta > 0.0:
        if ref_logp is None:
            raise ValueError("policy_loss: beta > 0 needs ref_logp")
        kl = k3_kl(logp, ref_logp)
        per_token = per_token + beta * kl

    n_seq = total_sequences if total_sequences is not None else logp.shape[0]
    if variant in ("grpo", "gspo", "sapo"):
        loss = ((per_token * mask).sum(1) / seq_len).sum() / n_seq
    elif variant == "dr_grpo":
        width = max_new_tokens if max_new_tokens is not None else logp.shape[1]
        loss = (per_token * mask).sum() / (n_seq * width)
    else:  # dapo, cispo
        n_tok = total_tokens if total_tokens is not None else float(mask.sum().clamp(min=1.0))
        loss = (per_token * mask).sum() / n_tok

    return LossOutput(
        loss=loss,
        tokens=float(mask.sum()),
        kl_sum=float((kl.detach() * mask).sum()) if kl is not None else 0.0,
        clip_low=float((low * mask).sum()),
        clip_high=float((high * mask).sum()),
        ratio_sum=float((r * mask).sum()),
    )
