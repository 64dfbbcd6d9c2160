"""GRPO maths as pure torch functions: advantages, memory-lean log-probs, KL, the clipped policy loss.

Read top to bottom, this is the whole objective:

1. ``group_advantages``: each completion's reward relative to its group (and optionally scaled).
2. ``selective_log_softmax`` / ``sequence_logprobs``: log pi(token) for the sampled tokens only, in chunks, so a
   float32 [batch, seq, vocab] tensor is never built for the whole batch. When every row of a batch has the
   same prompt (the usual case: a group is G samples of one prompt), the prompt runs once at batch 1 and
   only the completions run at batch B over its expanded KV cache (``shared_prompt``): exact, gradients
   included, and most of the work of a 1.4k-token prompt with 128-token completions is gone.
3. ``k3_kl``: the per-token KL estimate to the reference policy.
4. ``policy_loss``: the clipped surrogate, with the normalisation of the chosen variant
   (grpo, dr_grpo, dapo, gspo), written so that summing it over micro-batches gives exactly the loss
   of the whole batch (the normalisers are the whole batch's counts).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
from dataclasses import dataclass
from typing import Any, Iterator

import torch

__all__ = [
    "group_advantages",
    "selective_log_softmax",
    "token_entropy",
    "position_ids_from_mask",
    "shared_prompt",
    "prefix_sharing_supported",
    "sequence_logprobs",
    "batched_logprobs",
    "k3_kl",
    "LossOutput",
    "policy_loss",
    "cache_keyword",
    "enable_activation_checkpointing",
]

# transformers renamed two APIs after 5.17 (the GPU image's version; the supported range is in pyproject.toml):
# a model's forward and ``generate`` take the KV cache as ``cache`` (``past_key_values`` warns, and goes in
# 5.40), and gradient checkpointing is ``activation_checkpointing_enable`` (the old name warns, and goes in 6).
# 5.17 knows only the old names, so no one spelling works on both: the name is chosen at run time, here only.


@functools.lru_cache(maxsize=None)
def _forward_takes_cache(cls: type) -> bool:
    try:
        return "cache" in inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):
        return False


def cache_keyword(model: Any) -> str:
    """The keyword ``model``'s forward (and ``generate``) takes a KV cache by: ``cache``, or ``past_key_values`` before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if _forward_takes_cache(type(base)) else "past_key_values"


def enable_activation_checkpointing(model: Any) -> None:
    """Non-reentrant activation (gradient) checkpointing, under the name this transformers has."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

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


def _mask_for_full_forward(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """None when the only padding is on the right (after each row's last real token), else ``attention_mask``.

    A right pad comes after every real token of its row, so causal attention already hides it from them:
    real positions get the same values with no mask, and with none sdpa runs its causal kernel with
    grouped-query heads instead of copying each K/V head per query head (which any explicit mask forces).
    Only left padding needs the mask.
    """
    real = attention_mask.bool()
    right_only = real[:, 0].all() & ~(~real[:, :-1] & real[:, 1:]).any()
    return None if bool(right_only) else attention_mask  # one host sync (transformers would make its own)


def shared_prompt(input_ids: torch.Tensor, attention_mask: torch.Tensor, n_completion: int) -> torch.Tensor | None:
    """The prompt's real token ids [P] when every row has the same prompt, else None.

    Rows are [left-padded prompt | right-padded completion]. "Same" means the same ids and the same mask
    in the prompt part, the prompt mask is pure left padding and each completion mask pure right padding
    (the layout the shared-prefix path reproduces exactly); anything else returns None.
    """
    P = input_ids.shape[1] - n_completion
    if P <= 0 or input_ids.shape[0] == 0:
        return None
    ids, mask = input_ids[:, :P], attention_mask[:, :P]
    if not (torch.equal(ids, ids[:1].expand_as(ids)) and torch.equal(mask, mask[:1].expand_as(mask))):
        return None
    real = mask[0].bool()
    if not bool(real.any()) or bool((real[:-1] & ~real[1:]).any()):
        return None
    comp = attention_mask[:, P:].bool()
    if bool((~comp[:, :-1] & comp[:, 1:]).any()):
        return None
    return ids[0, real]


def prefix_sharing_supported(model: Any) -> str | None:
    """None if ``sequence_logprobs`` can share a prompt's KV cache with this model, else the reason it cannot."""
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "get_text_config"):
        return "not a transformers model"
    if getattr(cfg, "is_encoder_decoder", False):
        return "an encoder-decoder model"
    impl = getattr(cfg, "_attn_implementation", None) or "sdpa"
    if impl not in ("sdpa", "eager"):
        return f"attention implementation {impl!r} (sdpa or eager needed)"
    text_cfg = cfg.get_text_config(decoder=True)
    if any(t != "full_attention" for t in (getattr(text_cfg, "layer_types", None) or [])):
        return "the model has sliding-window or linear-attention layers"
    if torch.is_grad_enabled():
        for m in model.modules():
            if getattr(m, "gradient_checkpointing", False) and getattr(m, "training", False):
                fn = getattr(m, "_gradient_checkpointing_func", None)
                if getattr(fn, "keywords", {}).get("use_reentrant", True):
                    # Reentrant checkpointing detaches a layer's inner tensors: the prompt's keys would get no gradient.
                    return "reentrant gradient checkpointing"
    return None


def _cache_layers() -> tuple[type, type, type]:
    """Two replay-safe KV-cache layers (built lazily: transformers is imported only when a model is used)."""
    global _LAYERS
    if _LAYERS is None:
        from transformers.cache_utils import Cache, DynamicLayer

        class RecordLayer(DynamicLayer):
            """Prompt pass: keeps the first keys/values it sees and returns its input unchanged.

            Returning the input (not a concatenation) makes a checkpointed layer's backward replay compute
            exactly what the forward did; the stored tensors are those of the forward, with their graph.
            """

            def update(self, key_states, value_states, *args, **kwargs):
                if not self.is_initialized:
                    self.dtype, self.device = key_states.dtype, key_states.device
                    self.keys, self.values = key_states, value_states
                    self.is_initialized = True
                return key_states, value_states

        class PrefixLayer(DynamicLayer):
            """Completion pass: the prompt's keys/values (batch 1, expanded: a view) before the new ones; stores nothing."""

            def __init__(self, keys: torch.Tensor, values: torch.Tensor):
                super().__init__()
                self.keys, self.values = keys, values
                self.dtype, self.device = keys.dtype, keys.device
                self.is_initialized = True

            def update(self, key_states, value_states, *args, **kwargs):
                B = key_states.shape[0]
                k = torch.cat([self.keys.expand(B, -1, -1, -1).to(key_states.dtype), key_states], dim=-2)
                v = torch.cat([self.values.expand(B, -1, -1, -1).to(value_states.dtype), value_states], dim=-2)
                return k, v

        _LAYERS = (Cache, RecordLayer, PrefixLayer)
    return _LAYERS


_LAYERS: tuple[type, type, type] | None = None


@contextlib.contextmanager
def _keep_cache_under_checkpointing(model: Any) -> Iterator[None]:
    """transformers drops the KV cache inside checkpointed layers (a replay would write it twice); ours is replay-safe."""
    layers = [m for m in model.modules()
              if getattr(m, "gradient_checkpointing", False) and hasattr(type(m), "_can_checkpoint_with_cache")]
    for m in layers:
        m._can_checkpoint_with_cache = True
    try:
        yield
    finally:
        for m in layers:
            del m._can_checkpoint_with_cache  # back to the class's value


def _prefix_forward(model: Any, prompt: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """Run the prompt once at batch 1: each layer's keys and values [1, H, P, D] and the last position's logits [1, V]."""
    Cache, RecordLayer, _ = _cache_layers()
    cache = Cache(layer_class_to_replicate=RecordLayer)
    ids = prompt[None]
    pos = torch.arange(ids.shape[1], device=ids.device)[None]
    with _keep_cache_under_checkpointing(model):
        out = model(input_ids=ids, position_ids=pos, use_cache=True, logits_to_keep=1, **{cache_keyword(model): cache})
    return [layer.keys for layer in cache.layers], [layer.values for layer in cache.layers], out.logits[:, -1]


def _completion_logits(model: Any, prefix: tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor],
                       completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> list[torch.Tensor]:
    """Logits predicting each completion token, as [B, 1, V] (the prompt's last, expanded) then [B, C - 1, V].

    Two pieces rather than one concatenated tensor: no copy of the [B, C, V] logits (nor of their gradient).
    """
    keys, values, last = prefix
    Cache, _, PrefixLayer = _cache_layers()
    B, C = completion_ids.shape
    P = keys[0].shape[-2]
    first = last[:, None, :].expand(B, 1, last.shape[-1])
    if C == 1:
        return [first]
    # Completion token t is predicted from position P + t - 1: feed all but the last completion token.
    feed = completion_ids[:, :-1]
    mask = torch.cat([torch.ones(B, P, dtype=completion_mask.dtype, device=completion_mask.device),
                      completion_mask[:, :-1]], dim=1)
    pos = (P + torch.arange(C - 1, device=feed.device))[None].expand(B, -1)
    cache = Cache(layers=[PrefixLayer(k, v) for k, v in zip(keys, values)])
    with _keep_cache_under_checkpointing(model):
        out = model(input_ids=feed, attention_mask=mask, position_ids=pos, use_cache=True,
                    **{cache_keyword(model): cache})
    return [first, out.logits]


def _pieces_logprobs(pieces: list[torch.Tensor], targets: torch.Tensor, temperature: float,
                     with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    logp, ent, t0 = [], [], 0
    for lg in pieces:
        t1 = t0 + lg.shape[1]
        logp.append(selective_log_softmax(lg, targets[:, t0:t1], temperature))
        if with_entropy:
            ent.append(token_entropy(lg, temperature))
        t0 = t1
    return torch.cat(logp, dim=1), (torch.cat(ent, dim=1) if with_entropy else None)


def _shared(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_completion: int,
            share_prompt: bool) -> torch.Tensor | None:
    if not share_prompt or input_ids.shape[0] < 2 or prefix_sharing_supported(model) is not None:
        return None
    return shared_prompt(input_ids, attention_mask, n_completion)


def sequence_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      n_completion: int, temperature: float = 1.0,
                      with_entropy: bool = False, share_prompt: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(token) of the last ``n_completion`` tokens of each row ([B, n_completion] float32), and entropy.

    Rows are [left-padded prompt | completion]; only the completion's logits are computed
    (``logits_to_keep``), scaled by the sampling temperature as in the rollout. When all rows share one
    prompt (see :func:`shared_prompt`) and ``share_prompt``, the prompt runs once at batch 1 and its KV cache
    is expanded to the batch: the same values and gradients, the prompt's cost paid once instead of B times.
    """
    targets = input_ids[:, -n_completion:]
    prompt = _shared(model, input_ids, attention_mask, n_completion, share_prompt)
    if prompt is not None:
        pieces = _completion_logits(model, _prefix_forward(model, prompt), targets,
                                    attention_mask[:, -n_completion:])
        return _pieces_logprobs(pieces, targets, temperature, with_entropy)
    out = model(input_ids=input_ids, attention_mask=_mask_for_full_forward(attention_mask),
                position_ids=position_ids_from_mask(attention_mask),
                use_cache=False, logits_to_keep=n_completion + 1)
    logits = out.logits[:, :-1]  # position t predicts token t+1
    logp = selective_log_softmax(logits, targets, temperature)
    ent = token_entropy(logits, temperature) if with_entropy else None
    return logp, ent


@torch.no_grad()
def batched_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     n_completion: int, micro_batch_size: int, temperature: float = 1.0,
                     share_prompt: bool = True) -> torch.Tensor:
    """sequence_logprobs over micro-batches without gradients (old-policy and reference passes).

    A prompt shared by the whole batch runs once, for all micro-batches.
    """
    prompt = _shared(model, input_ids, attention_mask, n_completion, share_prompt)
    prefix = _prefix_forward(model, prompt) if prompt is not None else None
    parts = []
    for i in range(0, input_ids.shape[0], micro_batch_size):
        ids, mask = input_ids[i:i + micro_batch_size], attention_mask[i:i + micro_batch_size]
        if prefix is not None:
            targets = ids[:, -n_completion:]
            pieces = _completion_logits(model, prefix, targets, mask[:, -n_completion:])
            lp, _ = _pieces_logprobs(pieces, targets, temperature, False)
        else:
            lp, _ = sequence_logprobs(model, ids, mask, n_completion, temperature, share_prompt=False)
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
