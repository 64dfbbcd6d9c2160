"""Log-probabilities of sampled completions under the policy: the tensors the GRPO objective differentiates.

The objective (``train.grpo``) needs, for every completion token, log pi(token) at the sampling
temperature: with gradients for the policy being updated, without for the old policy and the
reference. This module computes them, memory-lean, in three layers:

1. ``micro_batches``: the one way a batch of ``[left-padded prompt | right-padded completion]`` rows is
   cut for a forward pass: chunks of at most ``size`` rows that never straddle two prompts, with the
   columns that are padding in every row of the chunk dropped.
2. ``sequence_logprobs`` (one micro-batch, differentiable) and ``batched_logprobs`` (a whole batch,
   no gradient). When every row of a micro-batch has the same prompt (the usual case: a group is G
   samples of one prompt), the prompt runs once at batch 1 and only the completions run at batch B over
   its expanded KV cache: exact, gradients included, and most of the work of a 1.5k-token prompt with
   128-token completions is gone. ``batched_logprobs`` runs a prompt once for all its micro-batches.
3. The machinery: ``selective_log_softmax`` (log pi of the sampled ids in float32, chunk by chunk, so no
   float32 ``[batch, seq, vocab]`` tensor is ever built), ``token_entropy``, and two replay-safe KV-cache
   layers that let activation checkpointing recompute the shared prompt.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from train.compat import cache_keyword, kv_cache_unsupported

__all__ = [
    "MicroBatch",
    "micro_batches",
    "sequence_logprobs",
    "batched_logprobs",
    "prefix_sharing_supported",
    "shared_prompt",
    "selective_log_softmax",
    "token_entropy",
    "position_ids_from_mask",
]


# ----------------------------------------------------------------------------- 1. cutting a batch

@dataclass(frozen=True)
class MicroBatch:
    """Rows ``start:stop`` of a batch, trimmed: the input of one forward pass."""

    start: int
    stop: int
    input_ids: torch.Tensor  # [b, p + width] prompt | completion, all-padding columns dropped
    attention_mask: torch.Tensor  # [b, p + width]
    completion_mask: torch.Tensor  # [b, width] 1 = completion token
    run: int  # index of the run of identical prompts this chunk belongs to

    @property
    def rows(self) -> slice:
        """The batch rows of this micro-batch."""
        return slice(self.start, self.stop)

    @property
    def width(self) -> int:
        """Completion columns kept (the longest completion of the chunk)."""
        return self.completion_mask.shape[1]


def micro_batches(input_ids: torch.Tensor, attention_mask: torch.Tensor, n_completion: int,
                  size: int) -> list[MicroBatch]:
    """The batch's rows in chunks of at most ``size`` that never straddle two prompts, each trimmed.

    Rows are ``[left-padded prompt | right-padded completion]`` with ``n_completion`` completion
    columns. Keeping one prompt per chunk lets that prompt run once (see :func:`sequence_logprobs`);
    trimming drops the leading prompt columns and trailing completion columns that are padding in
    every row of the chunk (no real token sees them, so nothing changes but the work).
    """
    if size < 1:
        raise ValueError(f"micro_batches: size must be >= 1, got {size}")
    N, width = input_ids.shape
    P = width - n_completion
    prompt_ids, prompt_mask = input_ids[:, :P], attention_mask[:, :P]
    same = (prompt_ids[1:] == prompt_ids[:-1]).all(1) & (prompt_mask[1:] == prompt_mask[:-1]).all(1)
    runs = [0] + [i + 1 for i in torch.nonzero(~same).flatten().tolist()] + [N]
    out = []
    for run, (a, b) in enumerate(zip(runs[:-1], runs[1:])):
        for i in range(a, b, size):
            j = min(i + size, b)
            mask, cmask = attention_mask[i:j], attention_mask[i:j, P:]
            kept = max(1, int(cmask.sum(1).max()))
            first = int((mask[:, :P].sum(0) > 0).int().argmax()) if P else 0
            end = P + kept
            out.append(MicroBatch(i, j, input_ids[i:j, first:end], mask[:, first:end], cmask[:, :kept], run))
    return out


# ----------------------------------------------------------------------------- 2. log-probs of a micro-batch

def sequence_logprobs(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      n_completion: int, temperature: float = 1.0,
                      with_entropy: bool = False, share_prompt: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(token) of the last ``n_completion`` tokens of each row ([B, n_completion] float32), and entropy.

    Rows are [left-padded prompt | completion]; only the completion's logits are computed
    (``logits_to_keep``), scaled by the sampling temperature as in the rollout. When all rows share one
    prompt (see :func:`shared_prompt`) and ``share_prompt``, the prompt runs once at batch 1 and its KV cache
    is expanded to the batch: the same values and gradients, the prompt's cost paid once instead of B times.
    """
    prompt = _shared(model, input_ids, attention_mask, n_completion, share_prompt)
    if prompt is not None:
        return _prefix_logprobs(model, _prefix_forward(model, prompt), input_ids, attention_mask, n_completion,
                                temperature, with_entropy)
    targets = input_ids[:, -n_completion:]
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
    """log pi of every completion token of the batch ([N, n_completion] float32, 0 on padding), no gradient.

    For the old-policy and reference passes (and a sampler that records log-probs): the batch is cut by
    :func:`micro_batches`, and a prompt shared by a run of rows runs once for all its micro-batches.
    """
    out = torch.zeros(input_ids.shape[0], n_completion, dtype=torch.float32, device=input_ids.device)
    prefix, prefix_run = None, -1
    for mb in micro_batches(input_ids, attention_mask, n_completion, micro_batch_size):
        if prefix_run != mb.run:  # a new prompt: run it once if these rows share it
            prompt = _shared(model, mb.input_ids, mb.attention_mask, mb.width, share_prompt)
            prefix, prefix_run = (_prefix_forward(model, prompt), mb.run) if prompt is not None else (None, -1)
        if prefix is not None:
            lp, _ = _prefix_logprobs(model, prefix, mb.input_ids, mb.attention_mask, mb.width, temperature, False)
        else:
            lp, _ = sequence_logprobs(model, mb.input_ids, mb.attention_mask, mb.width, temperature,
                                      share_prompt=False)
        out[mb.rows, :mb.width] = lp
    return out


# ----------------------------------------------------------------------------- 3. the machinery

# Float32 elements per chunk in the log-softmax loops (~64 MB): bounds the temporary memory
# whatever the vocabulary size.
_CHUNK_ELEMENTS = 1 << 24


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


# ----------------------------------------------------------------------------- the shared prompt's KV cache

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
    """None if :func:`sequence_logprobs` can share a prompt's KV cache with this model, else the reason it cannot."""
    why = kv_cache_unsupported(model)
    if why is not None or not torch.is_grad_enabled():
        return why
    for m in model.modules():
        if getattr(m, "gradient_checkpointing", False) and getattr(m, "training", False):
            fn = getattr(m, "_gradient_checkpointing_func", None)
            if getattr(fn, "keywords", {}).get("use_reentrant", True):
                # Reentrant checkpointing detaches a layer's inner tensors: the prompt's keys would get no gradient.
                return "reentrant gradient checkpointing"
    return None


def _shared(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_completion: int,
            share_prompt: bool) -> torch.Tensor | None:
    """The prompt to run once for these rows, or None (one row, sharing off, unsupported, or prompts differ)."""
    if not share_prompt or input_ids.shape[0] < 2 or prefix_sharing_supported(model) is not None:
        return None
    return shared_prompt(input_ids, attention_mask, n_completion)


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


def _prefix_logprobs(model: Any, prefix: tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor],
                     input_ids: torch.Tensor, attention_mask: torch.Tensor, n_completion: int, temperature: float,
                     with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """sequence_logprobs of rows that share the prompt whose keys and values ``prefix`` holds."""
    targets = input_ids[:, -n_completion:]
    pieces = _completion_logits(model, prefix, targets, attention_mask[:, -n_completion:])
    return _pieces_logprobs(pieces, targets, temperature, with_entropy)


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
