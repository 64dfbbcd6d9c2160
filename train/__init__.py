"""GRPO training of LLMs that write strategy programs.

In data-flow order: ``prompts`` (what the model reads), ``model`` (loading it), ``rollout`` (sampling
completions), then the rewards package scores them, ``grpo`` (advantages and the loss) over
``logprobs`` (the log-probs it differentiates), ``policy`` (LoRA, optimizer), ``loop`` (one step and
the run), ``evaluate`` (held-out figures), ``checkpoint`` and ``monitor`` (what a run leaves behind);
``config`` holds every setting, ``cli`` the commands.

``import train`` stays light (no torch): the public names below are imported on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_EXPORTS = {
    "TrainConfig": "train.config", "load_config": "train.config", "PRESETS": "train.config",
    "train": "train.loop", "RunSummary": "train.loop",
    "load_model": "train.model", "resolve_model": "train.model", "tiny_model_and_tokenizer": "train.model",
    "DEFAULT_MODEL": "train.model",
    "build_prompt": "train.prompts",
    "evaluate_models": "train.evaluate", "evaluate_policy": "train.evaluate",
    "save_checkpoint": "train.checkpoint", "load_latest": "train.checkpoint",
    "RunLogger": "train.monitor", "plot_run": "train.monitor", "read_metrics": "train.monitor",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    if name != "train":  # `train.train` would shadow nothing, but keep the submodule names free
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
