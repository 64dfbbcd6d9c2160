"""The trainable policy: a LoRA adapter over the model, its optimizer and schedule, and the precision it runs in.

The reference policy of the KL term is the same weights with the adapter switched off
(``policy.disable_adapter()``), so a run holds one copy of the model.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, Callable

import torch

from train.compat import enable_activation_checkpointing
from train.config import TrainConfig

__all__ = ["add_lora", "make_optimizer", "check_trainable_dtype", "autocast", "device_of"]


def add_lora(model: Any, config: TrainConfig) -> Any:
    """Wrap ``model`` in a peft LoRA adapter (kept as is if it already is a PeftModel)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if isinstance(model, PeftModel):
        return model
    targets: Any = list(config.lora_target_modules)
    if targets == ["all-linear"]:
        targets = "all-linear"
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM", bias="none")
    with warnings.catch_warnings():
        # peft itself reads transformers' deprecated `is_gradient_checkpointing` (peft 0.21,
        # transformers >= 5.24): not our call to change, and not the user's to read.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        policy = get_peft_model(model, lora)
    if config.gradient_checkpointing:
        enable_activation_checkpointing(policy)
    return policy


def _lr_lambda(schedule: str, warmup: int, total: int) -> Callable[[int], float]:
    def f(update: int) -> float:
        if warmup and update < warmup:
            return (update + 1) / warmup
        progress = min(1.0, (update - warmup) / max(1, total - warmup))
        if schedule == "linear":
            return 1.0 - progress
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0
    return f


def make_optimizer(policy: Any, config: TrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over the trainable (LoRA) parameters and its LambdaLR schedule (one tick per optimizer update)."""
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total = config.steps * config.num_iterations
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(config.schedule, config.warmup_steps, total))
    return opt, sched


def check_trainable_dtype(policy: Any) -> None:
    """Refuse float16 weights for training: fp16 autocast without a gradient scaler lets small gradients underflow."""
    if any(p.dtype == torch.float16 for p in policy.parameters()):
        raise ValueError("train: the model's weights are float16, which trains without a gradient scaler here "
                         "(small gradients underflow to zero); load it in bfloat16 (GPU) or float32 "
                         "(config field 'dtype')")


def autocast(policy: Any) -> contextlib.AbstractContextManager:
    """Half-precision autocast when the base weights are bf16 (fp32 LoRA weights then run in it), GPU or CPU.

    The CPU takes the same path as the GPU so that the CPU tests exercise it. (fp16 weights reach here only
    for sampling: training refuses them, see :func:`check_trainable_dtype`.)
    """
    p = next(policy.parameters())
    dtypes = {q.dtype for q in policy.parameters()}
    half = torch.bfloat16 if torch.bfloat16 in dtypes else torch.float16 if torch.float16 in dtypes else None
    if half is not None and p.device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=p.device.type, dtype=half)
    return contextlib.nullcontext()


def device_of(policy: Any) -> torch.device:
    """The device of the policy's weights."""
    return next(policy.parameters()).device
