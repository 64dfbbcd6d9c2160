"""The CPU decoder of the lean rollout loop: merged LoRA weights, fused projections, one prompt per group.

Sampling on a 2-core CPU is bound by work that has nothing to do with the model's arithmetic: a
transformers forward per token runs hundreds of small ops, copies every prompt's keys and values into
each sample's row, and multiplies 8 rows by each weight with a BLAS kernel tuned for large products.
This module runs the same model (Llama and its close relatives: Mistral, Qwen2, Qwen3) with:

- **merged weights**: each linear layer's LoRA update is added to a copy of its frozen weight
  (``W + B @ A * scale``, what peft's ``get_delta_weight`` returns), rebuilt only when a parameter changed
  (torch bumps a tensor's version on every in-place update, the optimizer's included). The model itself is
  never touched, so sampling and training see the same weights up to float rounding, and the trainer's
  log-probs are computed on the unmerged model as always;
- **fused projections**: q, k and v are one matrix, gate and up another: 4 products per layer, not 7;
- **a shared prompt**: a prompt is prefilled once and its keys and values are kept once per prompt (not per
  sample); each row keeps only the keys and values of the tokens it generated;
- **the two Numba kernels** of :mod:`train.cpu_kernels` for the products and the decode attention.

What the model computes is unchanged: the same RMSNorm weights and epsilon, rotary embedding (the
model's own ``rotary_emb``), activation (its ``act_fn``) and attention scaling; the prefill calls the
model's norm modules themselves, and the tests hold every piece to the model's own forward. :func:`unsupported` says why a model cannot take
this path (anything else falls back to the transformers forward of :class:`train.rollout.LeanBackend`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from train.cpu_kernels import ROW_BLOCK, matmul_rows, rms_norm_rows, rotate_heads, shared_prefix_attention

__all__ = ["FusedDecoder", "unsupported", "padded_rows"]

# Architectures whose decoder layer is the Llama layer up to the options handled below (biases on the
# projections, per-head q/k norms).
_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
_PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
# Rows per attention task: 4 rows x 3 query heads per KV head (SmolLM2) = 12 queries that read each key once.
_ROWS_PER_TASK = 4


def padded_rows(rows: int) -> int:
    """The batch the decoder runs for ``rows`` real rows: the next multiple of the kernels' row block."""
    return -(-rows // ROW_BLOCK) * ROW_BLOCK


def _base_model(model: Any) -> Any:
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _linear_problem(module: Any) -> str | None:
    """Why ``module`` is not a plain linear layer or a plain LoRA linear layer (None when it is)."""
    if type(module) is torch.nn.Linear:
        return None
    try:
        from peft.tuners.lora import Linear as LoraLinear
    except ImportError:  # pragma: no cover - peft is part of the train extra
        return f"{type(module).__name__} is not a linear layer"
    if not isinstance(module, LoraLinear) or type(module.get_base_layer()) is not torch.nn.Linear:
        return f"{type(module).__name__} is not a linear layer or a LoRA linear layer"
    for a in module.active_adapters:
        if a not in module.lora_A:
            continue
        if getattr(module, "use_dora", {}).get(a) or getattr(module, "lora_variant", {}).get(a) is not None:
            return "a LoRA variant (DoRA, ...) is not a weight delta"
        if getattr(module, "lora_bias", {}).get(a):
            return "LoRA with a bias"
    return None


def unsupported(model: Any) -> str | None:
    """Why the fused decoder cannot run ``model`` (None when it can)."""
    base = _base_model(model)
    config = getattr(base, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in _FAMILIES:
        return f"model type {kind!r} is not one of {', '.join(_FAMILIES)}"
    p = next(base.parameters())
    if p.device.type != "cpu":
        return "it runs on the CPU"
    if p.dtype != torch.float32:
        return f"its kernels are float32 and the weights are {str(p.dtype).removeprefix('torch.')}"
    if getattr(config, "pretraining_tp", 1) != 1:
        return "pretraining_tp > 1"
    window = getattr(config, "sliding_window", None)
    if window is not None and getattr(config, "use_sliding_window", True):
        return "sliding-window attention"
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "attn_logit_softcapping", None):
        return "logit soft-capping"
    inner = getattr(base, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "rotary_emb"):
        return "the model has no decoder layers or rotary embedding where Llama has them"
    for norm in [inner.norm] + [n for layer in inner.layers
                                for n in (layer.input_layernorm, layer.post_attention_layernorm)]:
        if not type(norm).__name__.endswith("RMSNorm") or not hasattr(norm, "variance_epsilon"):
            return f"{type(norm).__name__} is not Llama's RMSNorm"
    for layer in inner.layers:
        for name in _PROJECTIONS:
            module = layer.get_submodule(name)
            why = _linear_problem(module)
            if why is not None:
                return f"{name}: {why}"
    why = _linear_problem(base.lm_head)
    return None if why is None else f"lm_head: {why}"


def _weight(module: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weight a linear layer applies now (LoRA deltas of its active adapters added) and its bias."""
    if type(module) is torch.nn.Linear:
        return module.weight.detach(), (None if module.bias is None else module.bias.detach())
    base = module.get_base_layer()
    w = base.weight.detach()
    if not module.merged and not module.disable_adapters:
        for a in module.active_adapters:
            if a in module.lora_A:
                w = w + module.get_delta_weight(a).detach().to(w.dtype)
    return w, (None if base.bias is None else base.bias.detach())


def _state_key(model: Any) -> tuple:
    """Changes whenever a weight the model applies may have changed: parameter versions and adapter switches."""
    versions = tuple(p._version for p in model.parameters())
    switches = tuple((m.merged, m.disable_adapters, tuple(m.active_adapters))
                     for m in model.modules() if hasattr(m, "get_delta_weight") and hasattr(m, "merged"))
    return versions, switches


@dataclass(frozen=True)
class _Layer:
    """One decoder layer in the fused layout (weights [out, in], contiguous float32)."""

    module: Any  # the model's layer: its norms are called as they are
    qkv: torch.Tensor
    qkv_bias: torch.Tensor | None
    o: torch.Tensor
    o_bias: torch.Tensor | None
    gate_up: torch.Tensor
    gate_up_bias: torch.Tensor | None
    down: torch.Tensor
    down_bias: torch.Tensor | None


def _cat(parts: Sequence[tuple[torch.Tensor, torch.Tensor | None]]) -> tuple[torch.Tensor, torch.Tensor | None]:
    w = torch.cat([p[0] for p in parts]).contiguous()
    if all(p[1] is None for p in parts):
        return w, None
    return w, torch.cat([p[1] if p[1] is not None else p[0].new_zeros(p[0].shape[0]) for p in parts])


def _matmul(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ w.T (+ bias)`` for x [B, K] with B a multiple of the row block, by the Numba kernel."""
    x = x.contiguous()
    out = torch.empty(x.shape[0], w.shape[0], dtype=torch.float32)
    matmul_rows(x.numpy(), w.numpy(), out.numpy(), False)
    return out if bias is None else out.add_(bias)


def _add_matmul(h: torch.Tensor, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> None:
    """``h += x @ w.T (+ bias)`` in place (a residual connection), h contiguous [B, N]."""
    matmul_rows(x.contiguous().numpy(), w.numpy(), h.numpy(), True)
    if bias is not None:
        h.add_(bias)


def _norm(norm: Any, h: torch.Tensor) -> torch.Tensor:
    """The model's RMSNorm module applied to rows [B, hidden] by one kernel call."""
    out = torch.empty_like(h)
    rms_norm_rows(h.numpy(), norm.weight.detach().numpy(), float(norm.variance_epsilon), out.numpy())
    return out


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding in transformers' layout (the two halves of the head dimension rotate together)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


def _attention_tasks(row_prompt: Sequence[int], kv_heads: int) -> np.ndarray:
    """(prompt, KV head, first row, end row) for runs of consecutive rows with one prompt, cut in blocks."""
    tasks = []
    r, B = 0, len(row_prompt)
    while r < B:
        end = r
        while end < B and row_prompt[end] == row_prompt[r] and end - r < _ROWS_PER_TASK:
            end += 1
        tasks += [(row_prompt[r], h, r, end) for h in range(kv_heads)]
        r = end
    return np.array(tasks, dtype=np.int64).reshape(-1, 4)


class FusedDecoder:
    """Prefill prompts and decode one token per row at a time, on the CPU, for a Llama-family model.

    Use: :meth:`refresh` (after the weights may have changed; cheap when they have not), :meth:`prefill`
    with the distinct prompts, :meth:`start` with each row's prompt and the number of tokens to generate,
    then :meth:`step` once per token. Rows are padded by the caller to :func:`padded_rows`.
    """

    def __init__(self, model: Any):
        why = unsupported(model)
        if why is not None:
            raise ValueError(f"fused CPU decoder: {why}")
        self.model = model
        base = _base_model(model)
        self._inner = base.model
        self._lm_head = base.lm_head
        config = base.config
        attn = self._inner.layers[0].self_attn
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(attn, "head_dim", None) or config.hidden_size // self.heads
        self.scaling = float(getattr(attn, "scaling", self.head_dim ** -0.5))
        self.intermediate = self._inner.layers[0].mlp.gate_proj.out_features
        self._qk_norm = hasattr(attn, "q_norm")
        self._layers: list[_Layer] = []
        self._lm: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self._key: tuple | None = None
        # Per rollout: the prompts' keys and values, each row's own, the attention tasks.
        self._prefix: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._prefix_len = np.zeros(0, dtype=np.int64)
        self._own: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._tasks = np.zeros((0, 4), dtype=np.int64)

    # -- weights ------------------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Rebuild the merged weights if any parameter or adapter switch changed since the last build; True if rebuilt."""
        key = _state_key(self.model)
        if key == self._key:
            return False
        layers = []
        with torch.no_grad():
            for layer in self._inner.layers:
                a, m = layer.self_attn, layer.mlp
                qkv = _cat([_weight(a.q_proj), _weight(a.k_proj), _weight(a.v_proj)])
                o = _weight(a.o_proj)
                gate_up = _cat([_weight(m.gate_proj), _weight(m.up_proj)])
                down = _weight(m.down_proj)
                layers.append(_Layer(layer, qkv[0], qkv[1], o[0].contiguous(), o[1], gate_up[0], gate_up[1],
                                     down[0].contiguous(), down[1]))
            w, b = _weight(self._lm_head)
            self._lm = (w.contiguous(), b)
        self._layers = layers
        self._key = key
        return True

    def release(self) -> None:
        """Free the merged weights and the last rollout's keys and values (rebuilt by the next refresh)."""
        self._layers, self._lm, self._key = [], None, None
        self._prefix, self._own = [], []

    # -- one layer ------------------------------------------------------------------------------------

    def _qkv(self, layer: _Layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
             matmul: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q [.., H, D], k and v [.., Hkv, D] of hidden states [.., hidden], rotated (and normed where the model does)."""
        H, Hkv, D = self.heads, self.kv_heads, self.head_dim
        attn = layer.module.self_attn
        qkv = matmul(layer.module.input_layernorm(h), layer.qkv, layer.qkv_bias)
        lead = qkv.shape[:-1]
        q = qkv[..., :H * D].reshape(*lead, H, D)
        k = qkv[..., H * D:(H + Hkv) * D].reshape(*lead, Hkv, D)
        v = qkv[..., (H + Hkv) * D:].reshape(*lead, Hkv, D)
        if hasattr(attn, "q_norm"):
            q, k = attn.q_norm(q), attn.k_norm(k)
        cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # one angle per position, shared by the heads
        return _rotate(q, cos, sin), _rotate(k, cos, sin), v

    def _mlp(self, layer: _Layer, h: torch.Tensor, matmul: Any) -> torch.Tensor:
        """The layer's MLP on the post-attention hidden states, added to them."""
        gu = matmul(layer.module.post_attention_layernorm(h), layer.gate_up, layer.gate_up_bias)
        act = layer.module.mlp.act_fn(gu[..., :self.intermediate]) * gu[..., self.intermediate:]
        return h + matmul(act, layer.down, layer.down_bias)

    # -- prefill --------------------------------------------------------------------------------------

    @torch.no_grad()
    def prefill(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Run each prompt once (batch 1, causal); keep its keys and values. Returns each prompt's next-token logits [P, V]."""
        assert self._lm is not None, "refresh() first"
        width = max(len(p) for p in prompts)
        Hkv, D = self.kv_heads, self.head_dim
        self._prefix = [(torch.zeros(len(prompts), Hkv, width, D), torch.zeros(len(prompts), Hkv, width, D))
                        for _ in self._layers]
        self._prefix_len = np.array([len(p) for p in prompts], dtype=np.int64)
        last = []
        for i, prompt in enumerate(prompts):
            ids = torch.tensor([list(prompt)], dtype=torch.long)
            pos = torch.arange(ids.shape[1])[None]
            h = self._inner.embed_tokens(ids)
            cos, sin = self._inner.rotary_emb(h, pos)
            for layer, (pk, pv) in zip(self._layers, self._prefix):
                q, k, v = self._qkv(layer, h, cos, sin, F.linear)
                pk[i, :, :ids.shape[1]] = k[0].transpose(0, 1)
                pv[i, :, :ids.shape[1]] = v[0].transpose(0, 1)
                o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                   is_causal=True, scale=self.scaling,
                                                   enable_gqa=self.heads != self.kv_heads)
                h = h + F.linear(o.transpose(1, 2).reshape(1, ids.shape[1], -1), layer.o, layer.o_bias)
                h = self._mlp(layer, h, F.linear)
            last.append(self._inner.norm(h[0, -1:]))
        return F.linear(torch.cat(last), *self._lm)

    # -- decoding -------------------------------------------------------------------------------------

    def start(self, row_prompt: Sequence[int], new_tokens: int) -> None:
        """Prepare to decode: ``row_prompt[i]`` is the prefilled prompt of row i (rows padded by the caller)."""
        B = len(row_prompt)
        if B % ROW_BLOCK:
            raise ValueError(f"fused decoder: {B} rows is not a multiple of {ROW_BLOCK} (see padded_rows)")
        Hkv, D = self.kv_heads, self.head_dim
        self._own = [(torch.zeros(B, Hkv, new_tokens, D), torch.zeros(B, Hkv, new_tokens, D)) for _ in self._layers]
        self._tasks = _attention_tasks(row_prompt, Hkv)

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, positions: torch.Tensor, t: int) -> torch.Tensor:
        """Logits [B, V] after feeding ``tokens`` [B] at ``positions`` [B] as the ``t``-th generated token of each row."""
        assert self._lm is not None, "refresh() first"
        B = tokens.shape[0]
        H, Hkv, D = self.heads, self.kv_heads, self.head_dim
        h = self._inner.embed_tokens(tokens).contiguous()
        cos, sin = self._inner.rotary_emb(h, positions[:, None])
        cos, sin = cos[:, 0].contiguous(), sin[:, 0].contiguous()
        out = torch.empty(B, H, D)
        for layer, (pk, pv), (ok, ov) in zip(self._layers, self._prefix, self._own):
            m = layer.module
            if self._qk_norm:  # Qwen3: per-head norms before the rotation, by the model's modules
                q, k, v = self._qkv(layer, h, cos, sin, _matmul)
            else:
                qkv = _matmul(_norm(m.input_layernorm, h), layer.qkv, layer.qkv_bias)
                rotate_heads(qkv.numpy(), H + Hkv, D, cos.numpy(), sin.numpy())  # q and k, in place
                q = qkv[:, :H * D].reshape(B, H, D)
                k = qkv[:, H * D:(H + Hkv) * D].reshape(B, Hkv, D)
                v = qkv[:, (H + Hkv) * D:].reshape(B, Hkv, D)
            ok[:, :, t] = k
            ov[:, :, t] = v
            shared_prefix_attention(q.contiguous().numpy(), pk.numpy(), pv.numpy(), self._prefix_len, ok.numpy(),
                                    ov.numpy(), t + 1, self._tasks, self.scaling, out.numpy())
            _add_matmul(h, out.reshape(B, -1), layer.o, layer.o_bias)
            gu = _matmul(_norm(m.post_attention_layernorm, h), layer.gate_up, layer.gate_up_bias)
            _add_matmul(h, m.mlp.act_fn(gu[:, :self.intermediate]) * gu[:, self.intermediate:], layer.down,
                        layer.down_bias)
        return _matmul(_norm(self._inner.norm, h), *self._lm)
