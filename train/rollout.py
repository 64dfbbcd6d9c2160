"""Rollouts: sample G completions per prompt and record what the GRPO update needs.

One interface, three backends:

- ``HFBackend``: transformers ``generate`` (left-padded batch, sampling, dynamic KV cache). The reference
  implementation; its per-token log-probs are recomputed with the trainer's own function.
- ``LeanBackend``: our own decoding loop over the model's forward with a preallocated ``StaticCache``.
  The batch and the prompt length are padded to buckets, so every step of every rollout has the same
  shapes; on a GPU the one-token decode step is compiled with CUDA graphs (``torch.compile`` mode
  "reduce-overhead"), which removes the per-step Python and kernel-launch overhead that bounds
  ``generate``. Log-probs come for free from the logits it samples from.
- ``VLLMBackend``: a colocated vLLM ``LLM`` on the same GPU; the LoRA adapter is saved and pushed each
  step, and the engine sleeps while we train. Used only when vLLM is installed.

Every backend returns a :class:`Rollout`: prompt and completion token ids (completions right-padded),
masks, per-token log-probs under ``softmax(logits / temperature)`` (top-p is a sampling filter, as in
TRL, not part of the policy), decoded texts, lengths and truncation flags (no EOS within max_new_tokens).
"""
from __future__ import annotations

import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from train.grpo import batched_logprobs, position_ids_from_mask

__all__ = [
    "SamplingParams",
    "Rollout",
    "RolloutBackend",
    "HFBackend",
    "LeanBackend",
    "VLLMBackend",
    "make_backend",
    "sample_tokens",
    "vllm_available",
]


@dataclass(frozen=True)
class SamplingParams:
    """How completions are sampled."""

    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0


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
    truncated: torch.Tensor  # [N] bool: hit max_new_tokens without an EOS
    seconds: float = 0.0  # wall time of the generation

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


def _finish(tokens: torch.Tensor, logprobs: torch.Tensor | None, eos: list[int], pad: int,
            tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, list[str], torch.Tensor,
                                      torch.Tensor]:
    """Cut sampled tokens after the first EOS: (ids, mask, logprobs, texts, lengths, truncated)."""
    N, T = tokens.shape
    is_eos = torch.isin(tokens, torch.tensor(eos, device=tokens.device))
    has_eos = is_eos.any(dim=1)
    first = torch.where(has_eos, is_eos.int().argmax(dim=1), torch.full_like(has_eos, T, dtype=torch.long))
    lengths = torch.where(has_eos, first + 1, first)
    mask = (torch.arange(T, device=tokens.device)[None, :] < lengths[:, None]).long()
    width = max(int(lengths.max()) if N else 0, 1)
    ids = torch.where(mask.bool(), tokens, torch.full_like(tokens, pad))[:, :width].contiguous()
    mask = mask[:, :width].contiguous()
    if logprobs is not None:
        logprobs = (logprobs[:, :width] * mask).float().contiguous()
    cpu_ids = ids.cpu()
    texts = [tokenizer.decode(cpu_ids[i, : int(lengths[i])].tolist(), skip_special_tokens=True) for i in range(N)]
    return ids, mask, logprobs, texts, lengths, ~has_eos


def sample_tokens(logits: torch.Tensor, temperature: float, top_p: float,
                  generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row from softmax(logits / T) filtered to the top-p nucleus; (tokens, log pi(token)).

    The returned log-prob is under the unfiltered temperature-scaled policy, the distribution the
    trainer differentiates.
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
    # Exponential race: argmax(p / E), E ~ Exp(1), is an exact draw from p, with no host sync
    # (cheaper than multinomial on the CPU, and capturable in a CUDA graph).
    race = torch.empty_like(probs).exponential_(generator=generator)
    tok = (probs / race).argmax(dim=-1)
    return tok, logp.gather(-1, tok[:, None]).squeeze(-1)


class RolloutBackend:
    """Interface: ``generate(prompts, n, sampling, seed) -> Rollout``; ``sync()`` after weights change."""

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
                 seed: int) -> Rollout:
        """Sample ``n`` completions of each prompt (rows grouped by prompt)."""
        raise NotImplementedError

    def sync(self) -> None:
        """Make the next rollout use the current weights (a no-op when the backend shares the model)."""

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
    def generate(self, prompts, n, sampling, seed):
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
            self.model(input_ids=ids[:1, :-1], past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache.batch_repeat_interleave(len(rows))
            extra["past_key_values"] = cache
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_cfg, **extra)
        tokens = out[:, ids.shape[1]:]
        c_ids, c_mask, _, texts, lengths, truncated = _finish(tokens, None, self.eos, self.pad, self.tokenizer)
        logprobs = None
        if self.record_logprobs:
            # generate's scores are post-filter; the trainer's function on the same rows is exact.
            full_ids = torch.cat([ids, c_ids], 1)
            full_mask = torch.cat([mask, c_mask], 1)
            logprobs = batched_logprobs(self.model, full_ids, full_mask, c_ids.shape[1],
                                        self.logprob_batch_size, sampling.temperature) * c_mask
        return Rollout(ids, mask, c_ids, c_mask, logprobs, texts, lengths.cpu(), truncated.cpu(),
                       time.perf_counter() - start)


def _bucket(x: int, buckets: Sequence[int]) -> int:
    for b in buckets:
        if x <= b:
            return b
    step = buckets[-1]
    return int(math.ceil(x / step) * step)


def lean_supported(model: Any) -> str | None:
    """None if LeanBackend can drive this model, else the reason it cannot."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        return "the model has no config"
    impl = getattr(cfg, "_attn_implementation", "sdpa")
    if impl not in ("sdpa", "eager"):
        return f"attention implementation {impl!r} does not take a 4D mask (use sdpa or eager)"
    text_cfg = cfg.get_text_config(decoder=True) if hasattr(cfg, "get_text_config") else cfg
    layer_types = getattr(text_cfg, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types):
        return "the model has sliding-window or linear-attention layers"
    return None


class LeanBackend(RolloutBackend):
    """Our decoding loop: preallocated StaticCache, bucketed fixed shapes, CUDA-graph decode step on GPU.

    Shapes: the batch is padded to the next of ``batch_buckets`` (extra rows repeat row 0 and are
    dropped), the prompt to a multiple of ``prompt_bucket``; the cache holds prompt bucket +
    max_new_tokens positions. One attention mask row per sequence marks its valid keys (real prompt
    tokens and everything generated); the causal limit is the current cache index. Each distinct prompt
    is prefilled once at batch 1 and copied into the cache rows of its samples (``share_prompt``).
    """

    name = "lean"

    def __init__(self, model: Any, tokenizer: Any, compile: bool | None = None,
                 batch_buckets: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
                 prompt_bucket: int = 64, check_every: int = 16, share_prompt: bool = True):
        super().__init__(model, tokenizer)
        why = lean_supported(model)
        if why is not None:
            raise ValueError(f"lean rollout backend: {why}")
        self.compile = (self.device.type == "cuda") if compile is None else compile
        self.batch_buckets = tuple(batch_buckets)
        self.prompt_bucket = prompt_bucket
        self.check_every = check_every
        # Rows with the same prompt (a group's G samples) are prefilled once and share the prompt's KV entries.
        self.share_prompt = share_prompt
        self._caches: dict[tuple[int, int], Any] = {}
        self._decode = torch.compile(self._decode_step, mode="reduce-overhead", fullgraph=False) \
            if self.compile else self._decode_step
        cfg = model.config
        self._bool_mask = getattr(cfg, "_attn_implementation", "sdpa") == "sdpa"

    def _cache(self, batch: int, length: int) -> Any:
        from transformers import StaticCache

        key = (batch, length)
        cache = self._caches.get(key)
        if cache is None:
            # A handful of buckets per run: keep them (the compiled graphs point at their buffers).
            cache = StaticCache(config=self.model.config, max_cache_len=length)
            self._caches[key] = cache
        else:
            cache.reset()
        return cache

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
                             position_ids=torch.arange(p, device=dev)[None], past_key_values=small,
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
                         position_ids=pos[:, None], past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1]

    @torch.no_grad()
    def generate(self, prompts, n, sampling, seed):
        start = time.perf_counter()
        dev = self.device
        rows = [r for r in encode_prompts(self.tokenizer, prompts) for _ in range(n)]
        N = len(rows)
        B = _bucket(N, self.batch_buckets)
        P = int(math.ceil(max(len(r) for r in rows) / self.prompt_bucket) * self.prompt_bucket)
        T = sampling.max_new_tokens
        L = P + T
        rows = rows + [rows[0]] * (B - N)
        ids, pmask = _left_pad(rows, P, self.pad)
        ids, pmask = ids.to(dev), pmask.to(dev)
        cache = self._cache(B, L)

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
                                position_ids=position_ids_from_mask(pmask), past_key_values=cache,
                                use_cache=True, logits_to_keep=1).logits[:, -1]

        gen = torch.Generator(device=dev).manual_seed(int(seed))
        eos = torch.tensor(self.eos, device=dev)
        tokens = torch.full((B, T), self.pad, dtype=torch.long, device=dev)
        logps = torch.zeros((B, T), dtype=torch.float32, device=dev)
        done = torch.zeros(B, dtype=torch.bool, device=dev)
        next_pos = pmask.sum(1)  # position of the first generated token
        pad_tok = torch.full((B,), self.pad, dtype=torch.long, device=dev)
        # Cache slots of the generated tokens, made once: no host-to-device copy inside the loop.
        slots = torch.arange(P, L, device=dev)
        steps = 0
        for t in range(T):
            tok, lp = sample_tokens(logits, sampling.temperature, sampling.top_p, gen)
            tok = torch.where(done, pad_tok, tok)
            tokens[:, t] = tok
            logps[:, t] = lp
            done = done | torch.isin(tok, eos)
            steps = t + 1
            if t == T - 1:
                break
            # Checking for "all done" syncs with the GPU: do it only every few steps.
            if (t + 1) % self.check_every == 0 and bool(done[:N].all()):
                break
            if self.compile:
                torch.compiler.cudagraph_mark_step_begin()
            logits = self._decode(tok, next_pos + t, slots[t], key_valid, cache)
            if self.compile:
                logits = logits.clone()
        tokens, logps = tokens[:N, :steps], logps[:N, :steps]
        c_ids, c_mask, c_lp, texts, lengths, truncated = _finish(tokens, logps, self.eos, self.pad, self.tokenizer)
        return Rollout(ids[:N], pmask[:N], c_ids, c_mask, c_lp, texts, lengths.cpu(), truncated.cpu(),
                       time.perf_counter() - start)


def vllm_available() -> bool:
    """True when vLLM can be imported."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class VLLMBackend(RolloutBackend):
    """A colocated vLLM engine on the same GPU; the current LoRA adapter is pushed before each rollout.

    The engine loads the base weights from ``model_path`` (vLLM cannot share the training copy), keeps
    ``gpu_memory_utilization`` of the GPU, and sleeps (level 1: KV cache freed, weights offloaded)
    while the trainer runs.
    """

    name = "vllm"

    def __init__(self, model: Any, tokenizer: Any, model_path: str, lora_rank: int,
                 gpu_memory_utilization: float = 0.3, max_model_len: int = 4096, dtype: str = "auto"):
        super().__init__(model, tokenizer)
        from vllm import LLM

        self.llm = LLM(model=model_path, enable_lora=True, max_lora_rank=max(8, lora_rank), max_loras=1,
                       gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                       enable_sleep_mode=True, dtype=dtype, seed=0)
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

    def generate(self, prompts, n, sampling, seed):
        from vllm import SamplingParams as VSP
        from vllm.lora.request import LoRARequest

        start = time.perf_counter()
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False
        rows = encode_prompts(self.tokenizer, prompts)
        params = VSP(n=n, temperature=sampling.temperature, top_p=sampling.top_p,
                     max_tokens=sampling.max_new_tokens, logprobs=0, seed=int(seed))
        lora = LoRARequest(f"policy-v{self._version}", self._version, self._lora_path)
        outs = self.llm.generate([{"prompt_token_ids": r} for r in rows], params, lora_request=lora,
                                 use_tqdm=False)
        comp: list[list[int]] = []
        lps: list[list[float]] = []
        for o in outs:
            for c in o.outputs:
                comp.append(list(c.token_ids))
                # vLLM reports log-probs of the processed (temperature-scaled) distribution.
                lps.append([d[t].logprob for d, t in zip(c.logprobs or [], c.token_ids)] if c.logprobs else [])
        T = max(1, max(len(c) for c in comp))
        tokens = torch.full((len(comp), T), self.pad, dtype=torch.long)
        lp = torch.zeros((len(comp), T), dtype=torch.float32)
        for i, (c, l) in enumerate(zip(comp, lps)):
            tokens[i, :len(c)] = torch.tensor(c, dtype=torch.long)
            if l:
                lp[i, :len(l)] = torch.tensor(l, dtype=torch.float32)
        # A completion shorter than max_tokens without EOS was stopped by a stop string: not truncated.
        c_ids, c_mask, c_lp, texts, lengths, truncated = _finish(tokens, lp, self.eos, self.pad, self.tokenizer)
        truncated = truncated & (lengths >= sampling.max_new_tokens)
        ids, mask = _left_pad([r for r in rows for _ in range(n)], max(len(r) for r in rows), self.pad)
        self.sleep()
        dev = self.device
        return Rollout(ids.to(dev), mask.to(dev), c_ids.to(dev), c_mask.to(dev), c_lp.to(dev), texts, lengths,
                       truncated, time.perf_counter() - start)

    def close(self) -> None:
        import shutil

        shutil.rmtree(self._adapter_dir, ignore_errors=True)


def _say(msg: str) -> None:
    print(f"rollout: {msg}", file=sys.stderr)


def make_backend(name: str, model: Any, tokenizer: Any, *, compile: bool = True, model_path: str | None = None,
                 lora_rank: int = 16, gpu_memory_utilization: float = 0.3, max_model_len: int = 4096,
                 record_logprobs: bool = True) -> RolloutBackend:
    """The rollout backend by name: ``auto`` (vLLM when installed on a GPU, else lean, else hf), hf, lean, vllm.

    A backend that cannot run here falls back (vllm -> lean -> hf) with a one-line message on stderr.
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
            return VLLMBackend(model, tokenizer, model_path, lora_rank, gpu_memory_utilization, max_model_len)
        if name == "vllm":
            _say(f"{why}; using the transformers backend instead")
        name = "lean"
    if name == "lean":
        why = lean_supported(model)
        if why is None:
            return LeanBackend(model, tokenizer, compile=compile and on_gpu)
        _say(f"lean decoding loop unavailable ({why}); using transformers generate")
        name = "hf"
    if name == "hf":
        return HFBackend(model, tokenizer, record_logprobs=record_logprobs)
    raise ValueError(f"unknown rollout backend {name!r}; choose auto, hf, lean or vllm")
