"""Rollouts: sample G completions per prompt and record what the GRPO update needs.

One interface, three backends:

- ``HFBackend``: transformers ``generate`` (left-padded batch, sampling, dynamic KV cache). The reference
  implementation; its per-token log-probs are recomputed with the trainer's own function.
- ``LeanBackend``: our own decoding loop. On the CPU it runs Llama-family models through the fused decoder
  of ``train.fused_decode`` (merged LoRA weights, Numba kernels, one copy of each prompt's keys and values).
  Otherwise it runs the model's forward with one preallocated ``StaticCache``.
  The batch and the prompt length are padded to buckets and the cache is kept at the largest shape of
  the run, so every step of every rollout has the same shapes; on a GPU the one-token decode step is
  compiled with CUDA graphs (``torch.compile`` mode "reduce-overhead"), which removes the per-step
  Python and kernel-launch overhead that bounds ``generate``. Any other ``torch.compile`` backend can
  be named (``compile_backend="aot_eager"`` is how the CPU tests drive the compiled path); a compile
  that fails at run time falls back to eager decoding with one line on stderr. Log-probs come for
  free from the logits it samples from.
- ``VLLMBackend``: a colocated vLLM ``LLM`` on the same GPU; the LoRA adapter is saved and pushed each
  step, and the engine sleeps while we train. Used only when vLLM is installed. Its engine and
  sampling arguments are built by plain functions (``vllm_engine_kwargs``, ``vllm_sampling_kwargs``)
  that tests call without vLLM.

Every backend returns a :class:`Rollout`: prompt and completion token ids (completions right-padded),
masks, per-token log-probs under ``softmax(logits / temperature)`` (top-p is a sampling filter, as in
TRL, not part of the policy), decoded texts, lengths and truncation flags (no EOS within max_new_tokens).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import sys
import tempfile
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Sequence

import torch

from train.compat import cache_keyword, kv_cache_unsupported
from train.fused_decode import FusedDecoder, padded_rows
from train.fused_decode import unsupported as fused_unsupported
from train.logprobs import batched_logprobs, position_ids_from_mask
from train.stopping import END_REASONS, FenceStop, fence_state

__all__ = [
    "SamplingParams",
    "Rollout",
    "gather_rows",
    "RolloutBackend",
    "HFBackend",
    "LeanBackend",
    "VLLMBackend",
    "make_backend",
    "sample_tokens",
    "vllm_available",
    "vllm_lora_ranks",
    "vllm_max_lora_rank",
    "vllm_engine_kwargs",
    "vllm_sampling_kwargs",
    "vllm_prompt_seeds",
    "vllm_logprobs_are_policy",
]


@dataclass(frozen=True)
class SamplingParams:
    """How completions are sampled."""

    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    stop_at_fence: bool = False
    """Stop a row at the code fence that closes the answer's block (see ``train.stopping``), as at an EOS."""
    prefill: str = ""
    """The text the prompts end with inside the answer (an answer prefill): fences are counted from it."""


@dataclass
class Rollout:
    """A batch of sampled completions, rows grouped by prompt (the n samples of prompt i are contiguous)."""

    prompt_ids: torch.Tensor  # [N, P] left-padded
    prompt_mask: torch.Tensor  # [N, P] 1 = real token
    completion_ids: torch.Tensor  # [N, C] right-padded after EOS (EOS itself kept)
    completion_mask: torch.Tensor  # [N, C] 1 = token of the completion (EOS included)
    logprobs: torch.Tensor | None  # [N, C] float32 log pi_old(token), 0 on padding; None if not recorded
    texts: list[str]  # decoded completions, special tokens skipped
    lengths: torch.Tensor  # [N] completion tokens (mask sum)
    truncated: torch.Tensor  # [N] bool: hit max_new_tokens without an EOS (or a closing fence, when stopping there)
    seconds: float = 0.0  # wall time of the generation
    ends: list[str] = dataclasses.field(default_factory=list)  # per row: "eos", "fence" or "length"

    @property
    def input_ids(self) -> torch.Tensor:
        """[prompt | completion] token ids, the trainer's input."""
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """Mask matching ``input_ids``."""
        return torch.cat([self.prompt_mask, self.completion_mask], dim=1)

    @property
    def num_tokens(self) -> int:
        """Completion tokens generated (padding excluded)."""
        return int(self.lengths.sum())


def gather_rows(rollouts: Sequence[Rollout], picks: Sequence[tuple[int, int]], pad: int) -> Rollout:
    """One rollout of the rows ``picks`` = ``(which rollout, row)`` in that order, re-padded to a common width.

    Prompts stay left-padded and completions right-padded (the widest of the picked rows sets each width);
    log-probs are kept when every source has them. The seconds are the sources' total.
    """
    if not picks:
        raise ValueError("gather_rows: no rows picked")
    P = max(rollouts[k].prompt_ids.shape[1] for k, _ in picks)
    C = max(rollouts[k].completion_ids.shape[1] for k, _ in picks)
    first = rollouts[picks[0][0]]
    dev = first.completion_ids.device
    n = len(picks)
    p_ids = torch.full((n, P), pad, dtype=torch.long, device=dev)
    p_mask = torch.zeros((n, P), dtype=first.prompt_mask.dtype, device=dev)
    c_ids = torch.full((n, C), pad, dtype=torch.long, device=dev)
    c_mask = torch.zeros((n, C), dtype=first.completion_mask.dtype, device=dev)
    keep_lp = all(r.logprobs is not None for r in rollouts)
    lp = torch.zeros((n, C), dtype=torch.float32, device=dev) if keep_lp else None
    for i, (k, row) in enumerate(picks):
        r = rollouts[k]
        p, c = r.prompt_ids.shape[1], r.completion_ids.shape[1]
        p_ids[i, P - p:], p_mask[i, P - p:] = r.prompt_ids[row], r.prompt_mask[row]
        c_ids[i, :c], c_mask[i, :c] = r.completion_ids[row], r.completion_mask[row]
        if lp is not None:
            lp[i, :c] = r.logprobs[row]
    ends = [rollouts[k].ends[row] for k, row in picks] if all(r.ends for r in rollouts) else []
    return Rollout(p_ids, p_mask, c_ids, c_mask, lp, [rollouts[k].texts[row] for k, row in picks],
                   torch.stack([rollouts[k].lengths[row] for k, row in picks]),
                   torch.stack([rollouts[k].truncated[row] for k, row in picks]),
                   sum(r.seconds for r in rollouts), ends)


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    for src in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(src, int):
            ids.add(src)
        elif src is not None:
            ids.update(int(i) for i in src)
    if not ids:
        raise ValueError("the tokenizer has no eos_token_id: completions could never end")
    return sorted(ids)


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def encode_prompts(tokenizer: Any, prompts: Sequence[str] | Sequence[Sequence[int]]) -> list[list[int]]:
    """Token ids of each prompt (texts are tokenized as is: chat templates already hold their special tokens)."""
    out = []
    for p in prompts:
        ids = tokenizer(p, add_special_tokens=False)["input_ids"] if isinstance(p, str) else [int(t) for t in p]
        if not ids:
            raise ValueError("an empty prompt cannot be completed")
        out.append(ids)
    return out


def _left_pad(rows: list[list[int]], width: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids, mask


@dataclass(frozen=True)
class _Finished:
    """Sampled tokens cut where each row ended (see :func:`_finish`)."""

    ids: torch.Tensor
    mask: torch.Tensor
    logprobs: torch.Tensor | None
    texts: list[str]
    lengths: torch.Tensor
    truncated: torch.Tensor
    ends: list[str]


def _finish(tokens: torch.Tensor, logprobs: torch.Tensor | None, eos: list[int], pad: int,
            tokenizer: Any, fence: FenceStop | None = None) -> _Finished:
    """Cut sampled tokens after each row's end: its first EOS or, with ``fence``, the token closing the answer.

    ids, mask and logprobs stay on the tokens' device; lengths and truncated are CPU tensors. The whole
    batch crosses to the host in one copy (tokens, lengths and end reasons together), not one sync per row.
    """
    N, T = tokens.shape
    dev = tokens.device
    is_eos = torch.isin(tokens, torch.tensor(eos, device=dev))
    no_end = torch.full((N,), T, dtype=torch.long, device=dev)
    first_eos = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), no_end)
    first_fence = fence.first_close(tokens) if fence is not None else no_end
    end = torch.minimum(first_eos, first_fence)
    lengths = torch.where(end < T, end + 1, end)
    # 0: eos, 1: fence, 2: length (END_REASONS order); an EOS can hold no backtick, so the two never tie.
    reason = torch.where(first_eos < T, torch.where(first_fence < first_eos, 1, 0),
                         torch.where(first_fence < T, 1, 2))
    host = torch.cat([tokens.long(), lengths[:, None], reason.long()[:, None]], dim=1).cpu()
    host_lengths, host_reason = host[:, T].clone(), host[:, T + 1]
    width = max(int(host_lengths.max()) if N else 0, 1)
    mask = (torch.arange(width, device=dev)[None, :] < lengths[:, None]).long()
    ids = torch.where(mask.bool(), tokens[:, :width], torch.full_like(tokens[:, :width], pad)).contiguous()
    if logprobs is not None:
        logprobs = (logprobs[:, :width] * mask).float().contiguous()
    texts = [tokenizer.decode(host[i, :n].tolist(), skip_special_tokens=True)
             for i, n in enumerate(host_lengths.tolist())]
    return _Finished(ids, mask, logprobs, texts, host_lengths, host_reason == 2,
                     [END_REASONS[r] for r in host_reason.tolist()])


def _fence(sampling: "SamplingParams", tokenizer: Any, device: torch.device | str = "cpu") -> FenceStop | None:
    return FenceStop(tokenizer, sampling.prefill, device) if sampling.stop_at_fence else None


def sample_tokens(logits: torch.Tensor, temperature: float, top_p: float,
                  generator: torch.Generator | None, rows: int | None = None,
                  stream: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row from softmax(logits / T) filtered to the top-p nucleus; (tokens, log pi(token)).

    The returned log-prob is under the unfiltered temperature-scaled policy, the distribution the
    trainer differentiates. With ``rows``, only the first ``rows`` rows draw random numbers (the rest,
    batch padding, take their most likely token), so the real rows' draws do not depend on how far the
    batch was padded. With ``stream = (first, total)`` the real rows are rows ``first ..`` of a batch of
    ``total`` rows: the whole batch's random numbers are drawn and these rows take theirs, so a row samples
    the same tokens whether its batch is sampled in one call or split over ranks.
    """
    x = logits.float() / temperature
    logp = torch.log_softmax(x, dim=-1)
    probs = logp.exp()
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the top token always stays).
        drop = (sorted_p.cumsum(-1) - sorted_p) >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    # Inverse-CDF draw: one uniform per row against the cumulative mass, in float64 so that each token's
    # interval is its own probability to ~1e-16. An exact draw from p with no host sync, and one random
    # number per row (the exponential race it replaces drew one per vocabulary entry: 30% of a CPU decode step).
    B = probs.shape[0]
    real = B if rows is None else min(rows, B)
    if stream is not None:
        first, total = stream
        u = torch.rand(total, dtype=torch.float64, device=probs.device, generator=generator)[first:first + real]
    else:
        u = torch.rand(real, dtype=torch.float64, device=probs.device, generator=generator)
    cdf = probs.double().cumsum_(-1)
    # u < 1, so u * total mass < the last entry and the first entry above it has positive mass (the clamp
    # only guards float rounding of that product).
    drawn = torch.searchsorted(cdf[:real], (u * cdf[:real, -1])[:, None], right=True).squeeze(-1)
    drawn = drawn.clamp_(max=probs.shape[1] - 1)
    if real < B:  # batch padding rows take their most likely token and draw nothing
        tok = probs.argmax(dim=-1)
        tok[:real] = drawn
    else:
        tok = drawn
    return tok, logp.gather(-1, tok[:, None]).squeeze(-1)


class RolloutBackend:
    """Interface: ``generate(prompts, n, sampling, seed, stream=None) -> Rollout``; ``sync()`` after weights change.

    ``stream = (first, total)`` says the call samples rows ``first ..`` of a batch of ``total`` rows that
    share ``seed`` (one rank's share of a step, see ``train.distributed``). The lean and vLLM backends
    then sample each row exactly as the whole batch in one call would; transformers ``generate`` cannot
    (its sampler draws for the rows it holds), so the hf backend only offsets its seed by ``first``.
    """

    name = "base"

    def __init__(self, model: Any, tokenizer: Any):
        self.model = model
        self.tokenizer = tokenizer
        self.eos = _eos_ids(model, tokenizer)
        self.pad = _pad_id(tokenizer)

    @property
    def device(self) -> torch.device:
        """The device of the model's weights."""
        return next(self.model.parameters()).device

    def generate(self, prompts: Sequence[str] | Sequence[Sequence[int]], n: int, sampling: SamplingParams,
                 seed: int, stream: tuple[int, int] | None = None) -> Rollout:
        """Sample ``n`` completions of each prompt (rows grouped by prompt)."""
        raise NotImplementedError

    def sync(self) -> None:
        """Make the next rollout use the current weights (a no-op when the backend shares the model)."""

    def reserve(self, rows: int, prompt_tokens: int, new_tokens: int) -> None:
        """Announce the run's largest rollout (rows, prompt tokens, new tokens); fixed-shape backends size for it."""

    def close(self) -> None:
        """Release what the backend holds."""


class HFBackend(RolloutBackend):
    """transformers ``generate``: left-padded batch, sampling, dynamic KV cache, through the peft model.

    When every row has the same prompt, the prompt is prefilled once and its cache repeated per row.
    """

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, record_logprobs: bool = True, logprob_batch_size: int = 16,
                 share_prompt: bool = True):
        super().__init__(model, tokenizer)
        self.record_logprobs = record_logprobs
        self.share_prompt = share_prompt  # prefill a prompt shared by every row once
        self.logprob_batch_size = logprob_batch_size

    @torch.no_grad()
    def generate(self, prompts, n, sampling, seed, stream=None):
        from transformers import GenerationConfig

        start = time.perf_counter()
        rows = [r for r in encode_prompts(self.tokenizer, prompts) for _ in range(n)]
        ids, mask = _left_pad(rows, max(len(r) for r in rows), self.pad)
        ids, mask = ids.to(self.device), mask.to(self.device)
        gen_cfg = GenerationConfig(
            do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0,
            max_new_tokens=sampling.max_new_tokens, min_new_tokens=0,
            eos_token_id=self.eos, pad_token_id=self.pad,
        )
        extra: dict[str, Any] = {}
        if self.share_prompt and len(rows) > 1 and len(rows[0]) > 1 and all(r == rows[0] for r in rows):
            # One prompt for every row: prefill all but its last token once, repeat the cache per row;
            # generate then runs only the last prompt token and the new ones (same sampling stream).
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config)
            self.model(input_ids=ids[:1, :-1], use_cache=True, logits_to_keep=1, **{cache_keyword(self.model): cache})
            cache.batch_repeat_interleave(len(rows))
            extra[cache_keyword(self.model)] = cache
        fence = _fence(sampling, self.tokenizer, self.device)
        if fence is not None:
            extra["stopping_criteria"] = _fence_criteria(fence, ids.shape[1])
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            # A share of a batch (stream) gets a stream of its own: the same seed on every rank would
            # sample the same completions of the same prompt.
            torch.manual_seed((int(seed) + (stream[0] if stream else 0)) % 2**63)
            out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_cfg, **extra)
        done = _finish(out[:, ids.shape[1]:], None, self.eos, self.pad, self.tokenizer, fence)
        logprobs = None
        if self.record_logprobs:
            # generate's scores are post-filter; the trainer's function on the same rows is exact.
            full_ids = torch.cat([ids, done.ids], 1)
            full_mask = torch.cat([mask, done.mask], 1)
            logprobs = batched_logprobs(self.model, full_ids, full_mask, done.ids.shape[1],
                                        self.logprob_batch_size, sampling.temperature) * done.mask
        return Rollout(ids, mask, done.ids, done.mask, logprobs, done.texts, done.lengths, done.truncated,
                       time.perf_counter() - start, done.ends)


def _fence_criteria(fence: FenceStop, prompt_width: int) -> Any:
    """transformers stopping criteria ending each row at its closing fence (generate has no counting stop)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _CloseFence(StoppingCriteria):
        def __init__(self) -> None:
            self.state: tuple[torch.Tensor, torch.Tensor] | None = None
            self.closed: torch.Tensor | None = None
            self.seen = prompt_width

        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
            if self.state is None:
                self.state = fence.start(input_ids.shape[0], input_ids.device)
                self.closed = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            # One call per generated token: count the tokens added since the last call.
            for k in range(self.seen, input_ids.shape[1]):
                self.state, hit = fence.advance(self.state, input_ids[:, k])
                self.closed = self.closed | hit
            self.seen = input_ids.shape[1]
            return self.closed.clone()

    return StoppingCriteriaList([_CloseFence()])


def _bucket(x: int, buckets: Sequence[int]) -> int:
    for b in buckets:
        if x <= b:
            return b
    step = buckets[-1]
    return int(math.ceil(x / step) * step)


# ----------------------------------------------------------------------------- grouped-query decode attention

# The decode step needs a mask (the static cache holds slots not written yet), and with a mask transformers'
# sdpa path copies every key/value head once per query head it serves (repeat_kv) whenever it is traced by
# torch.compile: 3x the K/V traffic per step for SmolLM2's 9 query heads over 3 KV heads. For one query token
# the query heads of a group can instead be laid along the query axis, which attends to the KV head as is.
_DECODE_ATTENTION = "codepolicy_decode_sdpa"
_SDPA_FORWARD: Callable[..., Any] | None = None


def _decode_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """sdpa for one query token with grouped-query heads packed along the query axis (no K/V copy per head).

    query [B, H, 1, D] becomes [B, Hkv, H / Hkv, D] and attends to key/value [B, Hkv, L, D] under a mask shared
    by all heads ([B, 1, 1, L]): the arithmetic of repeating K/V per head, without the copy. Any other call
    goes to transformers' own sdpa function.
    """
    B, H, q, D = query.shape
    Hkv = key.shape[1]
    if (q == 1 and H != Hkv and H % Hkv == 0 and dropout == 0.0 and kwargs.get("position_bias") is None
            and kwargs.get("softcap") is None and (attention_mask is None or attention_mask.shape[1] == 1)):
        packed = query.reshape(B, Hkv, H // Hkv, D)
        out = torch.nn.functional.scaled_dot_product_attention(packed, key, value, attn_mask=attention_mask,
                                                               scale=scaling)
        return out.reshape(B, H, 1, value.shape[-1]).transpose(1, 2).contiguous(), None
    assert _SDPA_FORWARD is not None
    return _SDPA_FORWARD(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                         is_causal=is_causal, **kwargs)


def _register_decode_attention() -> bool:
    """Register the packed decode attention with transformers; False where this transformers has no such registry."""
    global _SDPA_FORWARD
    try:
        from transformers import AttentionInterface
        from transformers.integrations.sdpa_attention import sdpa_attention_forward
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
    except ImportError:
        return False
    _SDPA_FORWARD = sdpa_attention_forward
    AttentionInterface.register(_DECODE_ATTENTION, _decode_attention)
    # Masks are built by us (4D) and passed as is, but a model may still look its mask function up by name.
    AttentionMaskInterface.register(_DECODE_ATTENTION, sdpa_mask)
    return True


@contextlib.contextmanager
def _attention_implementation(config: Any, name: str) -> Iterator[None]:
    """The model's attention implementation set to ``name`` for the duration (the config is the model's own)."""
    old = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = old


class _DropRecompileLimit(logging.Filter):
    """Drops dynamo's several-line "hit config.recompile_limit" warning: our one line says it instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "hit config." not in str(record.msg) or "limit" not in record.getMessage()


_DYNAMO_LOGGER = "torch._dynamo.convert_frame"


def _root_cause(exc: BaseException) -> str:
    """'Type: first line' of the innermost cause (a compile error wraps the real one several times)."""
    seen = {id(exc)}
    while True:
        inner = getattr(exc, "inner_exception", None) or exc.__cause__
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        exc = inner
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


# ----------------------------------------------------------------------------- the lean decoding loop

class LeanBackend(RolloutBackend):
    """Our decoding loop: one preallocated StaticCache, bucketed fixed shapes, a compiled decode step (CUDA graphs).

    Shapes: the batch is padded to the next of ``batch_buckets`` (extra rows repeat row 0 and are
    dropped), the prompt to a multiple of ``prompt_bucket``; the cache holds prompt bucket +
    max_new_tokens positions. One cache is kept for the whole run, sized for the largest shape seen (or
    announced with :meth:`reserve`); a smaller rollout runs at the cache's shape (more padded rows, unused
    trailing slots), so the compiled step sees one shape and never recompiles; :meth:`close` frees it.
    One attention mask row per sequence marks its valid keys (real prompt tokens and everything
    generated); the causal limit is the current cache index. Each distinct prompt is prefilled once at
    batch 1 and copied into the cache rows of its samples (``share_prompt``).

    ``compile``: None compiles on a GPU only; ``compile_backend`` names the ``torch.compile`` backend
    (default inductor, with CUDA graphs on a GPU; "aot_eager" compiles on the CPU). A compile or compiled
    run that fails (no C compiler for triton's launcher, dynamo's recompile limit, ...) switches to eager
    decoding with one line on stderr; the rollout in progress continues. ``pack_gqa``: decode attention
    with grouped-query heads packed (sdpa models only).

    ``fused``: on the CPU, uncompiled, a model :mod:`train.fused_decode` supports decodes through its
    fused decoder instead of the transformers forward and the static cache above (None: whenever it can;
    False: never; True: always, an error where it cannot). Rows are then padded to a multiple of 8, each
    distinct prompt is prefilled once, and the loop stops as soon as every row has ended.
    """

    name = "lean"

    def __init__(self, model: Any, tokenizer: Any, compile: bool | None = None,
                 batch_buckets: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
                 prompt_bucket: int = 64, check_every: int = 16, share_prompt: bool = True,
                 compile_backend: str | Callable[..., Any] | None = None, pack_gqa: bool = True,
                 fused: bool | None = None):
        super().__init__(model, tokenizer)
        why = kv_cache_unsupported(model)
        if why is not None:
            raise ValueError(f"lean rollout backend: {why}")
        on_gpu = self.device.type == "cuda"
        self.compile = on_gpu if compile is None else bool(compile)
        # On the CPU, uncompiled, a Llama-family model decodes through train.fused_decode (merged LoRA weights,
        # Numba kernels, one copy of each prompt's keys and values); fused=False keeps the transformers forward.
        self._fused: FusedDecoder | None = None
        why_not = fused_unsupported(model) if fused is not False else "turned off"
        if fused and why_not is not None:
            raise ValueError(f"lean rollout backend: the fused CPU decoder cannot run this model: {why_not}")
        if why_not is None and (fused or not self.compile):
            self._fused = FusedDecoder(model)
        self.compile_backend = compile_backend if compile_backend is not None else "inductor"
        # CUDA graphs are what make the compiled step fast; they exist for CUDA tensors under inductor only.
        self._cudagraphs = self.compile and on_gpu and self.compile_backend == "inductor"
        self.batch_buckets = tuple(batch_buckets)
        self.prompt_bucket = prompt_bucket
        self.check_every = check_every
        # Rows with the same prompt (a group's G samples) are prefilled once and share the prompt's KV entries.
        self.share_prompt = share_prompt
        self._cache: Any = None
        self._cache_shape = (0, 0)  # (batch, length) of the cache
        self._reserved = (0, 0)  # the least shape to allocate (see reserve)
        impl = getattr(model.config, "_attn_implementation", "sdpa")
        self._bool_mask = impl == "sdpa"
        self._pack_gqa = pack_gqa and impl == "sdpa" and _register_decode_attention()
        self._cache_kw = cache_keyword(model)  # chosen outside the compiled step
        self._compiled: Callable[..., torch.Tensor] | None = None
        if self.compile:
            try:
                mode = {"mode": "reduce-overhead"} if self._cudagraphs else {}
                # dynamic=False: one static graph per shape, what CUDA graphs need (the cache keeps one shape).
                self._compiled = torch.compile(self._decode_step, backend=self.compile_backend, fullgraph=False,
                                               dynamic=False, **mode)
            except Exception as exc:  # e.g. a backend name torch does not know
                self._give_up_compile(exc)

    # -- compile ----------------------------------------------------------------------------------

    def _give_up_compile(self, exc: BaseException) -> None:
        """One line on stderr, then eager decoding for the rest of the run."""
        _say(f"compiled decode step failed ({_root_cause(exc)}); decoding eagerly from now on")
        self._compiled = None
        self.compile = self._cudagraphs = False

    @contextlib.contextmanager
    def _decoding(self) -> Iterator[None]:
        """The decode loop's settings: packed GQA attention; a recompile limit that raises (and falls back)."""
        with contextlib.ExitStack() as stack:
            if self._pack_gqa:
                stack.enter_context(_attention_implementation(self.model.config, _DECODE_ATTENTION))
            if self._compiled is not None and hasattr(torch._dynamo.config, "fail_on_recompile_limit_hit"):
                # Past the limit dynamo would quietly run the step uncompiled after a several-line warning;
                # raising lets _decode_logits switch to eager and say so in one line.
                stack.enter_context(torch._dynamo.config.patch(fail_on_recompile_limit_hit=True))
                drop, logger = _DropRecompileLimit(), logging.getLogger(_DYNAMO_LOGGER)
                logger.addFilter(drop)
                stack.callback(logger.removeFilter, drop)
            yield

    def _decode_logits(self, tok: torch.Tensor, pos: torch.Tensor, index: torch.Tensor, key_valid: torch.Tensor,
                       cache: Any, filled: int) -> torch.Tensor:
        """One decode step, compiled when possible; ``filled`` is the number of cache slots written before it."""
        if self._compiled is not None:
            try:
                if self._cudagraphs:
                    torch.compiler.cudagraph_mark_step_begin()
                logits = self._compiled(tok, pos, index, key_valid, cache)
                # A CUDA graph's output buffer is overwritten by its next replay: keep a copy.
                return logits.clone() if self._cudagraphs else logits
            except Exception as exc:
                self._give_up_compile(exc)
                for layer in cache.layers:
                    # A partly run step may have advanced the write position; the eager step rewrites the same slot.
                    layer.cumulative_length.fill_(filled)
        return self._decode_step(tok, pos, index, key_valid, cache)

    # -- the static cache -------------------------------------------------------------------------

    def _prompt_width(self, tokens: int) -> int:
        return int(math.ceil(tokens / self.prompt_bucket) * self.prompt_bucket)

    def reserve(self, rows: int, prompt_tokens: int, new_tokens: int) -> None:
        """Size the cache for the largest rollout of the run up front (allocated at the next generate).

        Every rollout then runs at one shape from the first step on: one compile, and a resumed run
        samples at the same shapes as an uninterrupted one.
        """
        shape = (_bucket(rows, self.batch_buckets), self._prompt_width(prompt_tokens) + new_tokens)
        self._reserved = (max(self._reserved[0], shape[0]), max(self._reserved[1], shape[1]))

    def _static_cache(self, batch: int, length: int) -> tuple[Any, int, int]:
        """The run's one cache, reset, with its (batch, length) >= the request; grown (reallocated) if too small."""
        from transformers import StaticCache

        B, L = self._cache_shape
        if self._cache is None or batch > B or length > L:
            B = max(batch, B, self._reserved[0])
            L = max(length, L, self._reserved[1])
            self._cache = None  # free the old buffers before allocating the larger ones
            self._cache = StaticCache(config=self.model.config, max_cache_len=L)
            self._cache_shape = (B, L)
        else:
            self._cache.reset()
        return self._cache, B, L

    def close(self) -> None:
        """Free the static cache, the fused decoder's buffers and the compiled step's code cache (all rebuilt on use)."""
        self._cache = None
        self._cache_shape = (0, 0)
        if self._fused is not None:
            self._fused.release()
        if self._compiled is not None:
            try:
                # Dynamo keeps compiled graphs (and what they reference) per code object, across instances.
                torch._dynamo.reset_code(LeanBackend._decode_step.__code__)
            except Exception:
                pass

    # -- decoding ---------------------------------------------------------------------------------

    def _prefill_shared(self, distinct: dict[tuple[int, ...], list[int]], cache: Any, B: int, P: int) -> torch.Tensor:
        """Prefill each distinct prompt once at batch 1 and copy its keys/values into all its rows of the static cache.

        A prompt of length p fills slots P - p .. P - 1 (left padding, as the batched prefill lays it out);
        the pad slots stay zero and masked. Returns the first step's logits [B, V].
        """
        from transformers import DynamicCache

        dev = self.device
        logits: torch.Tensor | None = None
        for prompt, row_list in distinct.items():
            p = len(prompt)
            small = DynamicCache(config=self.model.config)
            out = self.model(input_ids=torch.tensor([prompt], device=dev),
                             position_ids=torch.arange(p, device=dev)[None], **{self._cache_kw: small},
                             use_cache=True, logits_to_keep=1)
            if logits is None:
                logits = out.logits.new_zeros(B, out.logits.shape[-1])
                first = small.layers[0].keys
                cache.early_initialization(batch_size=B, num_heads=[l.keys.shape[1] for l in small.layers],
                                           head_dim=[l.keys.shape[-1] for l in small.layers],
                                           dtype=first.dtype, device=dev)
            idx = torch.tensor(row_list, device=dev)
            logits[idx] = out.logits[0, -1]
            for big, one in zip(cache.layers, small.layers):
                # In place: the static buffers' addresses are what a compiled decode step reads.
                big.keys[idx, :, P - p:P] = one.keys[0]
                big.values[idx, :, P - p:P] = one.values[0]
        for big in cache.layers:
            big.cumulative_length.fill_(P)  # the next write (first decode step) goes to slot P
        assert logits is not None
        return logits

    def _mask(self, allowed: torch.Tensor) -> torch.Tensor:
        if self._bool_mask:
            return allowed
        dtype = next(self.model.parameters()).dtype
        zero = torch.zeros((), dtype=dtype, device=allowed.device)
        return torch.where(allowed, zero, torch.finfo(dtype).min)

    def _decode_step(self, tok: torch.Tensor, pos: torch.Tensor, index: torch.Tensor, key_valid: torch.Tensor,
                     cache: Any) -> torch.Tensor:
        """Logits [B, V] of the next token after feeding ``tok`` at cache slot ``index``."""
        L = key_valid.shape[1]
        allowed = key_valid & (torch.arange(L, device=key_valid.device) <= index)[None, :]
        out = self.model(input_ids=tok[:, None], attention_mask=self._mask(allowed[:, None, None, :]),
                         position_ids=pos[:, None], use_cache=True, logits_to_keep=1, **{self._cache_kw: cache})
        return out.logits[:, -1]

    @property
    def fused(self) -> bool:
        """True when rollouts decode through the fused CPU decoder (``train.fused_decode``)."""
        return self._fused is not None

    @torch.no_grad()
    def _generate_fused(self, rows: list[list[int]], sampling: SamplingParams, seed: int,
                        stream: tuple[int, int] | None, start: float) -> Rollout:
        """The decoding loop over the fused CPU decoder: each distinct prompt prefilled once, rows padded to 8."""
        dec = self._fused
        assert dec is not None
        dec.refresh()  # a no-op unless the weights changed since the last rollout
        N = len(rows)
        distinct: dict[tuple[int, ...], int] = {}
        row_prompt = [distinct.setdefault(tuple(r), len(distinct)) for r in rows]
        first_logits = dec.prefill(list(distinct))
        B = padded_rows(N)
        row_prompt += [row_prompt[0]] * (B - N)  # padding rows repeat row 0 and are dropped
        T = sampling.max_new_tokens
        dec.start(row_prompt, T)
        next_pos = torch.tensor([len(rows[i if i < N else 0]) for i in range(B)])  # position of the first new token
        fence = _fence(sampling, self.tokenizer)
        # No device to sync with: the loop checks for "all rows ended" after every step.
        tokens, logps = self._sample_loop(first_logits[row_prompt], lambda tok, t: dec.step(tok, next_pos + t, t),
                                          N, T, sampling, seed, stream, fence, check_every=1)
        ids, pmask = _left_pad(rows, max(len(r) for r in rows), self.pad)
        done = _finish(tokens, logps, self.eos, self.pad, self.tokenizer, fence)
        return Rollout(ids, pmask, done.ids, done.mask, done.logprobs, done.texts, done.lengths, done.truncated,
                       time.perf_counter() - start, done.ends)

    def _sample_loop(self, logits: torch.Tensor, next_logits: Callable[[torch.Tensor, int], torch.Tensor], N: int,
                     T: int, sampling: SamplingParams, seed: int, stream: tuple[int, int] | None,
                     fence: FenceStop | None, check_every: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample up to T tokens for a batch whose first N rows are real; (tokens, log-probs) [N, steps].

        ``logits`` are the first token's; ``next_logits(tok, t)`` runs the model on step t's tokens. A row is done
        at its EOS or, with a ``fence`` (on the logits' device), at its closing fence; done rows take the pad token.
        Whether every real row is done is checked every ``check_every`` steps (on a GPU each check is a sync).
        """
        B, dev = logits.shape[0], logits.device
        gen = torch.Generator(device=dev).manual_seed(int(seed))
        eos = torch.tensor(self.eos, device=dev)
        fence_state = fence.start(B, dev) if fence is not None else None
        tokens = torch.full((B, T), self.pad, dtype=torch.long, device=dev)
        logps = torch.zeros((B, T), dtype=torch.float32, device=dev)
        done = torch.zeros(B, dtype=torch.bool, device=dev)
        pad_tok = torch.full((B,), self.pad, dtype=torch.long, device=dev)
        steps = 0
        for t in range(T):
            # Only the N real rows draw random numbers: the same seed samples the same tokens at any padding.
            tok, lp = sample_tokens(logits, sampling.temperature, sampling.top_p, gen, rows=N, stream=stream)
            tok = torch.where(done, pad_tok, tok)
            tokens[:, t] = tok
            logps[:, t] = lp
            done = done | torch.isin(tok, eos)
            if fence is not None:
                fence_state, closed = fence.advance(fence_state, tok)
                done = done | closed
            steps = t + 1
            if t == T - 1 or ((t + 1) % check_every == 0 and bool(done[:N].all())):
                break
            logits = next_logits(tok, t)
        return tokens[:N, :steps], logps[:N, :steps]

    @torch.no_grad()
    def generate(self, prompts, n, sampling, seed, stream=None):
        start = time.perf_counter()
        dev = self.device
        rows = [r for r in encode_prompts(self.tokenizer, prompts) for _ in range(n)]
        if self._fused is not None:
            return self._generate_fused(rows, sampling, seed, stream, start)
        N = len(rows)
        P = self._prompt_width(max(len(r) for r in rows))
        T = sampling.max_new_tokens
        cache, B, L = self._static_cache(_bucket(N, self.batch_buckets), P + T)
        rows = rows + [rows[0]] * (B - N)
        ids, pmask = _left_pad(rows, P, self.pad)
        ids, pmask = ids.to(dev), pmask.to(dev)

        # Slots P + T .. L - 1 (a cache longer than this rollout needs) are never reached by the causal limit.
        key_valid = torch.ones(B, L, dtype=torch.bool, device=dev)
        key_valid[:, :P] = pmask.bool()
        distinct: dict[tuple[int, ...], list[int]] = {}
        for i, r in enumerate(rows):
            distinct.setdefault(tuple(r), []).append(i)
        if self.share_prompt and len(distinct) < B:
            logits = self._prefill_shared(distinct, cache, B, P)
        else:
            ar = torch.arange(L, device=dev)
            q = torch.arange(P, device=dev)
            # Prefill: causal over real prompt tokens; a left pad attends only to itself (no empty softmax row).
            allowed = ((key_valid[:, None, :] & (ar[None, None, :] <= q[None, :, None]))
                       | (ar[None, None, :] == q[None, :, None]))
            logits = self.model(input_ids=ids, attention_mask=self._mask(allowed[:, None]),
                                position_ids=position_ids_from_mask(pmask), **{self._cache_kw: cache},
                                use_cache=True, logits_to_keep=1).logits[:, -1]

        next_pos = pmask.sum(1)  # position of the first generated token
        # Cache slots of the generated tokens, made once: no host-to-device copy inside the loop.
        slots = torch.arange(P, P + T, device=dev)
        fence = _fence(sampling, self.tokenizer, dev)
        with self._decoding():
            tokens, logps = self._sample_loop(
                logits, lambda tok, t: self._decode_logits(tok, next_pos + t, slots[t], key_valid, cache, P + t),
                N, T, sampling, seed, stream, fence, check_every=self.check_every)
        done = _finish(tokens, logps, self.eos, self.pad, self.tokenizer, fence)
        return Rollout(ids[:N], pmask[:N], done.ids, done.mask, done.logprobs, done.texts, done.lengths,
                       done.truncated, time.perf_counter() - start, done.ends)


def vllm_available() -> bool:
    """True when vLLM can be imported."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


# max_lora_rank values every vLLM >= 0.8 accepts; newer ones declare theirs (MaxLoRARanks, which adds 1).
_VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def vllm_lora_ranks() -> tuple[int, ...]:
    """The ``max_lora_rank`` values the installed vLLM accepts (a safe list when it does not say, or is absent)."""
    try:
        from vllm.config.lora import MaxLoRARanks  # type: ignore[import-not-found]

        ranks = tuple(sorted(int(r) for r in typing.get_args(MaxLoRARanks)))
        if ranks:
            return ranks
    except Exception:
        pass
    return _VLLM_LORA_RANKS


def vllm_max_lora_rank(rank: int, allowed: Sequence[int] | None = None) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds an adapter of ``rank`` (vLLM refuses any other value)."""
    ranks = sorted(allowed if allowed is not None else vllm_lora_ranks())
    for r in ranks:
        if r >= rank:
            return r
    raise ValueError(f"config field 'lora_rank' ({rank}) is above vLLM's largest max_lora_rank ({ranks[-1]}); "
                     f"use lora_rank <= {ranks[-1]} or rollout_backend = \"lean\"")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _weights_dtype(model: Any) -> torch.dtype:
    """The dtype of the frozen base weights (the LoRA weights may be float32 over a bf16 model)."""
    frozen = [p.dtype for p in model.parameters() if not p.requires_grad and p.is_floating_point()]
    return frozen[0] if frozen else next(model.parameters()).dtype


def _vllm_engine_fields() -> set[str]:
    """The keyword arguments the installed vLLM's engine takes (``LLM(**kw)`` passes them to ``EngineArgs``)."""
    from vllm.engine.arg_utils import EngineArgs  # type: ignore[import-not-found]

    return {f.name for f in dataclasses.fields(EngineArgs)}


def vllm_engine_kwargs(model_path: str, *, lora_rank: int, dtype: torch.dtype, gpu_memory_utilization: float = 0.3,
                       max_model_len: int = 4096, engine_fields: Collection[str] | None = None,
                       lora_ranks: Sequence[int] | None = None) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for a colocated engine that samples the policy the trainer trains.

    ``max_lora_rank`` is rounded up to a value vLLM accepts; ``dtype`` is the trainer's, named explicitly
    ("auto" would run a float32 checkpoint folder in float16 while the trainer runs bfloat16). When the
    engine has ``logprobs_mode`` (``engine_fields``: the installed vLLM's, looked up when None), it is asked for
    processed log-probs (after temperature), the trainer's quantity; older engines report raw ones.
    """
    kw: dict[str, Any] = dict(
        model=model_path, enable_lora=True, max_lora_rank=vllm_max_lora_rank(lora_rank, lora_ranks), max_loras=1,
        gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len, enable_sleep_mode=True,
        dtype=_dtype_name(dtype), seed=0,
    )
    fields = engine_fields if engine_fields is not None else _vllm_engine_fields()
    if "logprobs_mode" in fields:
        kw["logprobs_mode"] = "processed_logprobs"
    return kw


def vllm_logprobs_are_policy(sampling: SamplingParams, processed: bool) -> bool:
    """True when vLLM's log-prob of a sampled token is log softmax(logits / T), what the trainer computes.

    Processed log-probs are taken after temperature *and* the top-p filter (a renormalised nucleus), so
    they are the policy's only without top-p; raw ones are before temperature, so only at T = 1.
    """
    if processed:
        return sampling.top_p >= 1.0
    return sampling.temperature == 1.0


def vllm_sampling_kwargs(n: int, sampling: SamplingParams, seed: int, logprobs: bool) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams``: n samples, our temperature/top-p/length, the seed; the sampled
    token's log-prob (``logprobs=0``) only when it will be used."""
    kw: dict[str, Any] = dict(n=n, temperature=sampling.temperature, top_p=sampling.top_p,
                              max_tokens=sampling.max_new_tokens, seed=int(seed))
    if logprobs:
        kw["logprobs"] = 0
    if sampling.stop_at_fence:
        run, fences = fence_state(sampling.prefill)
        if run == 0 and fences % 2 == 1:
            # The prefill left the answer's block open: its next fence closes it. vLLM's stop strings cannot
            # count fences, so an answer that must first open a block samples on and is cut after sampling.
            kw["stop"] = ["```"]
            kw["include_stop_str_in_output"] = True
    return kw


def vllm_prompt_seeds(seed: int, prompts: int, n: int, first_row: int = 0) -> list[int]:
    """One vLLM seed per prompt: row ``r`` of the batch samples from ``seed + r``.

    vLLM seeds the ``n`` samples of a request ``seed + 0 .. seed + n - 1``, so one seed for every prompt
    would give two groups of the same prompt the same completions. Seeding each prompt at its first row
    keeps every row's seed distinct, and a rank's share (``first_row``) samples as the whole batch would.
    """
    return [(int(seed) + first_row + i * n) % 2**63 for i in range(prompts)]


class VLLMBackend(RolloutBackend):
    """A colocated vLLM engine on the same GPU; the current LoRA adapter is pushed before each rollout.

    The engine loads the base weights from ``model_path`` (vLLM cannot share the training copy) in the
    trainer's dtype, keeps ``gpu_memory_utilization`` of the GPU, and sleeps (level 1: KV cache freed,
    weights offloaded) while the trainer runs. Log-probs: vLLM's own when they are the policy's (see
    :func:`vllm_logprobs_are_policy`), else recomputed with the trainer's function when
    ``record_logprobs``, else None.
    """

    name = "vllm"

    def __init__(self, model: Any, tokenizer: Any, model_path: str, lora_rank: int,
                 gpu_memory_utilization: float = 0.3, max_model_len: int = 4096, dtype: torch.dtype | None = None,
                 record_logprobs: bool = True, logprob_batch_size: int = 16):
        super().__init__(model, tokenizer)
        from vllm import LLM  # type: ignore[import-not-found]

        kwargs = vllm_engine_kwargs(model_path, lora_rank=lora_rank, dtype=dtype or _weights_dtype(model),
                                    gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
        self._processed = "logprobs_mode" in kwargs
        self.record_logprobs = record_logprobs
        self.logprob_batch_size = logprob_batch_size
        self.llm = LLM(**kwargs)
        self._adapter_dir = Path(tempfile.mkdtemp(prefix="codepolicy-lora-"))
        self._version = 0
        self._asleep = False
        self.sync()

    def sync(self) -> None:
        """Save the current adapter; the next rollout loads it under a new id (vLLM caches by id)."""
        self._version += 1
        path = self._adapter_dir / f"v{self._version}"
        self.model.save_pretrained(str(path))
        self._lora_path = str(path)

    def sleep(self) -> None:
        """Free vLLM's GPU memory for training."""
        if not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = True

    def generate(self, prompts, n, sampling, seed, stream=None):
        from vllm import SamplingParams as VSP  # type: ignore[import-not-found]
        from vllm.lora.request import LoRARequest  # type: ignore[import-not-found]

        start = time.perf_counter()
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False
        rows = encode_prompts(self.tokenizer, prompts)
        own_logprobs = vllm_logprobs_are_policy(sampling, self._processed)
        params = [VSP(**vllm_sampling_kwargs(n, sampling, s, logprobs=own_logprobs))
                  for s in vllm_prompt_seeds(seed, len(rows), n, stream[0] if stream else 0)]
        lora = LoRARequest(f"policy-v{self._version}", self._version, self._lora_path)
        outs = self.llm.generate([{"prompt_token_ids": r} for r in rows], params, lora_request=lora,
                                 use_tqdm=False)
        comp: list[list[int]] = []
        lps: list[list[float]] = []
        for o in outs:
            for c in o.outputs:
                comp.append(list(c.token_ids))
                lps.append([d[t].logprob for d, t in zip(c.logprobs or [], c.token_ids)] if c.logprobs else [])
        T = max(1, max(len(c) for c in comp))
        tokens = torch.full((len(comp), T), self.pad, dtype=torch.long)
        lp = torch.zeros((len(comp), T), dtype=torch.float32)
        for i, (c, l) in enumerate(zip(comp, lps)):
            tokens[i, :len(c)] = torch.tensor(c, dtype=torch.long)
            if l:
                lp[i, :len(l)] = torch.tensor(l, dtype=torch.float32)
        done = _finish(tokens, lp, self.eos, self.pad, self.tokenizer, _fence(sampling, self.tokenizer))
        c_ids, c_mask, c_lp, texts, lengths, truncated = (done.ids, done.mask, done.logprobs, done.texts,
                                                          done.lengths, done.truncated)
        ids, mask = _left_pad([r for r in rows for _ in range(n)], max(len(r) for r in rows), self.pad)
        self.sleep()
        dev = self.device
        ids, mask, c_ids, c_mask = ids.to(dev), mask.to(dev), c_ids.to(dev), c_mask.to(dev)
        logprobs: torch.Tensor | None = c_lp.to(dev) if own_logprobs else None
        if logprobs is None and self.record_logprobs:
            # vLLM's figure is not the policy's here (top-p renormalised, or raw at T != 1): the trainer's is exact.
            logprobs = batched_logprobs(self.model, torch.cat([ids, c_ids], 1), torch.cat([mask, c_mask], 1),
                                        c_ids.shape[1], self.logprob_batch_size, sampling.temperature) * c_mask
        return Rollout(ids, mask, c_ids, c_mask, logprobs, texts, lengths, truncated, time.perf_counter() - start,
                       done.ends)

    def close(self) -> None:
        import shutil

        shutil.rmtree(self._adapter_dir, ignore_errors=True)


def _say(msg: str) -> None:
    print(f"rollout: {msg}", file=sys.stderr)


def make_backend(name: str, model: Any, tokenizer: Any, *, compile: bool = True,
                 compile_backend: str | Callable[..., Any] | None = None, model_path: str | None = None,
                 lora_rank: int = 16, gpu_memory_utilization: float = 0.3, max_model_len: int = 4096,
                 record_logprobs: bool = True) -> RolloutBackend:
    """The rollout backend by name: ``auto`` (vLLM when installed on a GPU, else lean, else hf), hf, lean, vllm.

    A backend that cannot run here falls back (vllm -> lean -> hf) with a one-line message on stderr.
    The lean decode step is compiled when ``compile`` and either a GPU (inductor with CUDA graphs) or a
    named ``compile_backend`` (any device: "aot_eager" is the CPU stand-in for the GPU path).
    """
    on_gpu = next(model.parameters()).device.type == "cuda"
    if name in ("auto", "vllm"):
        why = None
        if not vllm_available():
            why = "vLLM is not installed (pip install 'codepolicy[vllm]')"
        elif not on_gpu:
            why = "vLLM needs a GPU"
        elif model_path is None:
            why = "vLLM needs the model's path and was given an in-memory model"
        if why is None:
            return VLLMBackend(model, tokenizer, model_path, lora_rank, gpu_memory_utilization, max_model_len,
                               record_logprobs=record_logprobs)
        if name == "vllm":
            _say(f"{why}; using the transformers backend instead")
        name = "lean"
    if name == "lean":
        why = kv_cache_unsupported(model)
        if why is None:
            return LeanBackend(model, tokenizer, compile=compile and (on_gpu or compile_backend is not None),
                               compile_backend=compile_backend)
        _say(f"lean decoding loop unavailable ({why}); using transformers generate")
        name = "hf"
    if name == "hf":
        return HFBackend(model, tokenizer, record_logprobs=record_logprobs)
    raise ValueError(f"unknown rollout backend {name!r}; choose auto, hf, lean or vllm")
