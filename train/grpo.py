"""GRPO maths as pure torch functions: advantages, memory-lean log-probs, KL, the clipped policy loss.

Read top to bottom, this is the whole objective:

1. ``group_advantages``: each completion's reward relative to its group (and optionally scaled).
2. ``selective_log_softmax`` / ``sequence_logprobs``: log pi(token) for the sampled tokens only, in chunks, so a
   float32 [batch, seq, vocab] tensor is never built for the whole batch.
3. ``k3_kl``: the per-token KL estimate to the reference policy.
4. ``policy_loss``: the clipped surrogate, with the normalisation of the chosen variant
   (grpo, dr_grpo, dapo, gspo), written so that summing it over micro-batches gives exactly the loss
   of the whole batch (the normalisers are the whole batch's counts).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "group_advantages",
    "selective_log_softmax",
    "token_entropy",
    "position_ids_from_mask",
    "sequence_logprobs",
    "batched_logprobs",
    "k3_kl",
    "LossOutput",
    "policy_loss",
]

# Float32 elements per chunk in the log-softmax loops (~64 MB): bounds the temporary memory
# whatever the vocabulary size.
_CHUNK_ELEMENTS = 1 << 24


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


def _rows_per_chunk(vocab: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(vocab, 1))


class _SelectiveLogSoftmax(torch.autograd.Function):
    """log_softmax(logits / T).gather(ids) in float32, chunk by chunk, with a chunked backward.

    Saves only the logits (already alive as the model's output) and the log-normaliser per token,
    so neither pass holds a float32 copy of the whole [B, T, V] tensor.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, ids: torch.Tensor, temperature: float) -> torch.Tensor:  # type: ignore[override]
        B, T, V = logits.shape
        out = torch.empty(B, T, dtype=torch.float32, device=logits.device)
        lse = torch.empty(B, T, dtype=torch.float32, device=logits.device)
        step = _rows_per_chunk(V)
        for b in range(B):
            for t0 in range(0, T, step):
                x = logits[b, t0:t0 + step].float() / temperature
                chunk_lse = torch.logsumexp(x, dim=-1)
                lse[b, t0:t0 + step] = chunk_lse
                out[b, t0:t0 + step] = x.gather(-1, ids[b, t0:t0 + step, None]).squeeze(-1) - chunk_lse
        ctx.save_for_backward(logits, ids, lse)
        ctx.temperature = temperature
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        logits, ids, lse = ctx.saved_tensors
        T_ = ctx.temperature
        B, T, V = logits.shape
        grad = torch.empty_like(logits)
        step = _rows_per_chunk(V)
        for b in range(B):
            for t0 in range(0, T, step):
                g_out = grad_out[b, t0:t0 + step].float()
                # d logp(y) / d x = onehot(y) - softmax(x); x = logits / T.
                p = torch.exp(logits[b, t0:t0 + step].float() / T_ - lse[b, t0:t0 + step, None])
                g = -p * g_out[:, None]
                g.scatter_add_(-1, ids[b, t0:t0 + step, None], g_out[:, None])
                grad[b, t0:t0 + step] = (g / T_).to(grad.dtype)
        return grad, None, None


def selective_log_softmax(logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """float32 log-probabilities of ``ids`` under ``softmax(logits / temperature)``; equals log_softmax().gather().

    ``logits`` is [..., V] (any float dtype) and ``ids`` the matching [...] integer tensor. Differentiable.
    """
    if logits.shape[:-1] != ids.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and ids {tuple(ids.shape)} do not match")
    lead = ids.shape
    lg = logits.reshape(-1, *logits.shape[-2:]) if logits.ndim >= 3 else logits.reshape(1, -1, logits.shape[-1])
    ix = ids.reshape(lg.shape[:2]).long()
    return _SelectiveLogSoftmax.apply(lg, ix, float(temperature)).reshape(lead)


@torch.no_grad()
def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """float32 entropy of softmax(logits / temperature) per position ([..., V] -> [...]), chunked, no grad."""
    V = logits.shape[-1]
    flat = logits.reshape(-1, V)
    out = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
    step = _rows_per_chunk(V)
    for r0 in range(0, flat.shape[0], step):
        logp = torch.log_softmax(flat[r0:r0 + step].float() / temperature, dim=-1)
        out[r0:r0 + step] = -(logp.exp() * logp).sum(-1)
    return out.reshape(logits.shape[:-1])


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding: 0 at each row's first real token (pads get 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def sequence_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      n_completion: int, temperature: float = 1.0,
                      with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(token) of the last ``n_completion`` tokens of each row ([B, n_completion] float32), and entropy.

    Rows are [left-padded prompt | completion]; only the completion's logits are computed
    (``logits_to_keep``), scaled by the sampling temperature as in the rollout.
    """
    out = model(input_ids=input_ids, attention_mask=attention_mask,
                position_ids=position_ids_from_mask(attention_mask),
                use_cache=False, logits_to_keep=n_completion + 1)
    logits = out.logits[:, :-1]  # position t predicts token t+1
    targets = input_ids[:, -n_completion:]
    logp = selective_log_softmax(logits, targets, temperature)
    ent = token_entropy(logits, temperature) if with_entropy else None
    return logp, ent


@torch.no_grad()
def batched_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     n_completion: int, micro_batch_size: int, temperature: float = 1.0) -> torch.Tensor:
    """sequence_logprobs over micro-batches without gradients (old-policy and reference passes)."""
    parts = []
    for i in range(0, input_ids.shape[0], micro_batch_size):
        lp, _ = sequence_logprobs(model, input_ids[i:i + micro_batch_size],
                                  attention_mask[i:i + micro_batch_size], n_completion, temperature)
        parts.append(lp)
    return torch.cat(parts)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || ref): exp(ref - logp) - (ref - logp) - 1 (>= 0, 0 when equal)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


@dataclass
class LossOutput:
    """The loss of one micro-batch and sums over its tokens for monitoring (add them up, then divide)."""

    loss: torch.Tensor
    tokens: float  # completion tokens in this micro-batch (mask sum)
    kl_sum: float  # sum of per-token k3 KL (0 when no reference)
    clip_low: float  # tokens whose ratio was clipped below (A < 0 and ratio < 1 - eps_low)
    clip_high: float  # tokens clipped above (A > 0 and ratio > 1 + eps_high)
    ratio_sum: float  # sum of per-token ratios (mean ~ 1 on the first iteration)


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
