"""The GRPO objective as pure torch functions: advantages, the KL estimate, the clipped policy loss.

Read top to bottom, this is the whole objective (the log-probs it takes come from ``train.logprobs``):

1. ``group_advantages``: each completion's reward relative to its group (and optionally scaled).
2. ``k3_kl``: the per-token KL estimate to the reference policy.
3. ``policy_loss``: the clipped surrogate, with the normalisation of the chosen variant
   (grpo, dr_grpo, dapo, gspo), written so that summing it over micro-batches gives exactly the loss
   of the whole batch (the normalisers are the whole batch's counts).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterable

import torch

__all__ = ["group_advantages", "k3_kl", "LossOutput", "policy_loss"]


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group",
                     eps: float = 1e-4) -> tuple[torch.Tensor, int]:
    """Per-completion advantages and the number of groups whose rewards are all equal.

    ``rewards`` is flat [num_groups * group_size], groups contiguous. ``scale``: "group" divides by the
    group's std (GRPO), "batch" by the whole batch's std, "none" keeps ``r - mean`` (Dr. GRPO).
    A group with equal rewards gets advantages exactly 0 (no signal), whatever the float rounding.
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
    else:
        raise ValueError(f"unknown advantage scale {scale!r}; choose group, batch or none")
    flat_group = r.max(dim=1).values == r.min(dim=1).values
    adv = torch.where(flat_group[:, None], torch.zeros_like(adv), adv)
    return adv.reshape(-1).to(torch.float32), int(flat_group.sum())


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || ref): exp(ref - logp) - (ref - logp) - 1 (>= 0, 0 when equal)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


@dataclass(frozen=True)
class LossOutput:
    """The loss of one micro-batch and sums over its tokens for monitoring (add them up, then divide)."""

    loss: torch.Tensor
    tokens: float  # completion tokens in this micro-batch (mask sum)
    kl_sum: float  # sum of per-token k3 KL (0 when no reference)
    clip_low: float  # tokens whose ratio was clipped below (A < 0 and ratio < 1 - eps_low)
    clip_high: float  # tokens clipped above (A > 0 and ratio > 1 + eps_high)
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
                total_tokens: float | None = None, max_new_tokens: int | None = None) -> LossOutput:
    """The clipped GRPO surrogate (+ beta * k3 KL) of one micro-batch, normalised for the whole batch.

    Shapes: logp/old_logp/ref_logp/mask [B, T], advantages [B]. Per token the objective is
    ``min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A)`` with ``rho = exp(logp - old_logp)``
    (for ``gspo`` rho is the sequence's ratio, exp of its mean token log-ratio). Normalisation:

    - ``grpo``: mean over each sequence's tokens, then mean over the batch's sequences;
    - ``dr_grpo``: sum over tokens / (batch sequences * max_new_tokens);
    - ``dapo``: sum over tokens / the batch's token count (use eps_high > eps_low, "clip-higher");
    - ``gspo``: like grpo, with the sequence-level ratio.

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
    elif variant not in ("grpo", "dr_grpo", "dapo"):
        raise ValueError(f"unknown loss variant {variant!r}; choose grpo, dr_grpo, dapo or gspo")
    ratio = torch.exp(log_ratio)
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    per_token = -torch.min(ratio * adv, clipped * adv)
    kl = None
    if beta > 0.0:
        if ref_logp is None:
            raise ValueError("policy_loss: beta > 0 needs ref_logp")
        kl = k3_kl(logp, ref_logp)
        per_token = per_token + beta * kl

    n_seq = total_sequences if total_sequences is not None else logp.shape[0]
    if variant in ("grpo", "gspo"):
        loss = ((per_token * mask).sum(1) / seq_len).sum() / n_seq
    elif variant == "dr_grpo":
        width = max_new_tokens if max_new_tokens is not None else logp.shape[1]
        loss = (per_token * mask).sum() / (n_seq * width)
    else:  # dapo
        n_tok = total_tokens if total_tokens is not None else float(mask.sum().clamp(min=1.0))
        loss = (per_token * mask).sum() / n_tok

    with torch.no_grad():
        r = ratio.detach()
        low = ((r < 1.0 - eps_low) & (adv < 0)).to(mask.dtype) * mask
        high = ((r > 1.0 + eps_high) & (adv > 0)).to(mask.dtype) * mask
        return LossOutput(
            loss=loss,
            tokens=float(mask.sum()),
            kl_sum=float((kl.detach() * mask).sum()) if kl is not None else 0.0,
            clip_low=float(low.sum()),
            clip_high=float(high.sum()),
            ratio_sum=float((r * mask).sum()),
        )
