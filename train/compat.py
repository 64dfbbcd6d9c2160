"""What we rely on in transformers, chosen at run time where its API changed within the supported range.

transformers renamed two APIs after 5.17 (the GPU image's version; the supported range is in
pyproject.toml): a model's forward and ``generate`` take the KV cache as ``cache``
(``past_key_values`` warns, and goes in 5.40), and gradient checkpointing is
``activation_checkpointing_enable`` (the old name warns, and goes in 6). 5.17 knows only the old
names, so no one spelling works on both ends: the name is chosen here, and only here.

``kv_cache_unsupported`` is the one check that a model's attention works with the KV caches we
build ourselves (the lean sampler's static cache, the trainer's shared-prompt cache).
"""
from __future__ import annotations

import functools
import inspect
from typing import Any

__all__ = ["cache_keyword", "enable_activation_checkpointing", "kv_cache_unsupported"]


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


def kv_cache_unsupported(model: Any) -> str | None:
    """None when our own KV caches work with ``model``, else the reason they do not (one phrase).

    They need a decoder-only transformers model whose attention takes a 4D mask (sdpa or eager) and
    whose every layer attends to the whole past (no sliding-window or linear-attention layers).
    """
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "get_text_config"):
        return "not a transformers model with a config"
    if getattr(cfg, "is_encoder_decoder", False):
        return "an encoder-decoder model"
    impl = getattr(cfg, "_attn_implementation", None) or "sdpa"
    if impl not in ("sdpa", "eager"):
        return f"attention implementation {impl!r} does not take a 4D mask (use sdpa or eager)"
    text_cfg = cfg.get_text_config(decoder=True)
    if any(t != "full_attention" for t in (getattr(text_cfg, "layer_types", None) or [])):
        return "the model has sliding-window or linear-attention layers"
    return None
