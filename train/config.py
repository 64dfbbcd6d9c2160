"""Training configuration: one frozen dataclass, loadable from TOML, overridable from flags, validated.

Every knob of a GRPO run lives in :class:`TrainConfig`. The defaults are the ``cpu`` preset (a short
run of SmolLM2-135M-Instruct that finishes in about ten minutes on two CPU cores); ``gpu`` is the
preset for a real run on one GPU. A TOML file may set ``preset = "gpu"`` and then any field, either
flat (``lora_rank = 16``) or grouped in one-level tables whose name prefixes the key
(``[lora] rank = 16`` is ``lora_rank``). Errors name the field and the file in one line.
"""
from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

__all__ = [
    "TrainConfig",
    "PRESETS",
    "LOSS_VARIANTS",
    "ADVANTAGE_SCALES",
    "ROLLOUT_BACKENDS",
    "SCHEDULES",
    "DTYPES",
    "load_config",
    "make_config",
    "config_to_toml",
    "save_config",
    "with_run_dir",
]

LOSS_VARIANTS = ("grpo", "dr_grpo", "dapo", "gspo")
ADVANTAGE_SCALES = ("group", "batch", "none")
ROLLOUT_BACKENDS = ("auto", "hf", "lean", "vllm")
SCHEDULES = ("constant", "linear", "cosine")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """All settings of one GRPO run (defaults = the ``cpu`` preset)."""

    # What is trained, on what.
    model: str = "smollm2-135m"
    game: str = "2048"
    prompt_template: str = "default"
    # LoRA adapter; "all-linear" targets every linear layer but the LM head.
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] = ("all-linear",)
    # Sampling: prompts_per_step groups of group_size completions each.
    group_size: int = 4
    prompts_per_step: int = 2
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    # Optimisation.
    lr: float = 1e-4
    schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # ~32.5 s a step on 2 CPU cores (measured: rollout 18.4 s, update 14 s; 14 steps took 7 min 41 s in
    # all): 18 steps make a run of about 10 minutes.
    steps: int = 18
    # The ~1.4k-token prompt is shared by every row, so it runs once per micro-batch (batch 1) and only
    # the completions run at batch 8: the whole batch in one micro-batch, ~4 GB peak RSS with checkpointing.
    grad_accum: int = 1
    num_iterations: int = 1
    # GRPO objective.
    clip_eps_low: float = 0.2
    clip_eps_high: float = 0.2
    kl_beta: float = 0.0
    loss_variant: str = "grpo"
    advantage_scale: str = "group"
    # Rewards: a RewardSpec TOML ("" = the game's default spec) and games per completion.
    reward_spec: str = ""
    seeds_per_eval: int = 2
    # Hardware.
    dtype: str = "auto"
    device: str = "auto"
    gradient_checkpointing: bool = True
    rollout_backend: str = "auto"
    # The lean backend's decode step: compiled with inductor + CUDA graphs on a GPU when rollout_compile;
    # a torch.compile backend named here ("aot_eager", "inductor") compiles it on any device, the CPU included.
    rollout_compile: bool = True
    rollout_compile_backend: str = ""
    vllm_gpu_memory_utilization: float = 0.3
    # Bookkeeping.
    output_dir: str = ""  # "": a new runs/<game>-<date>-<time> for every run (see with_run_dir)
    log_interval: int = 1
    save_interval: int = 4
    eval_interval: int = 0
    eval_samples: int = 8
    seed: int = 0

    @property
    def batch_size(self) -> int:
        """Completions per step (prompts_per_step * group_size)."""
        return self.prompts_per_step * self.group_size

    @property
    def micro_batch_size(self) -> int:
        """Sequences per forward/backward pass: the batch split into grad_accum parts (the last may be smaller)."""
        return -(-self.batch_size // self.grad_accum)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with some fields changed."""
        return make_config(dataclasses.asdict(self) | changes)


# A real run on one GPU: groups of 8, long completions, the reference KL on, bf16.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {},
    "gpu": {
        "group_size": 8,
        "prompts_per_step": 8,
        "max_new_tokens": 512,
        "lr": 2e-5,
        "schedule": "cosine",
        "warmup_steps": 10,
        "steps": 300,
        "grad_accum": 4,
        "gradient_checkpointing": False,
        "kl_beta": 0.04,
        "seeds_per_eval": 4,
        "dtype": "bfloat16",
        "device": "cuda",
        "save_interval": 25,
        "eval_interval": 25,
        "eval_samples": 64,
    },
}

# Numeric bounds: (low, high, low_inclusive, high_inclusive); None = unbounded.
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "lora_rank": (1, None, True, True),
    "lora_alpha": (1, None, True, True),
    "lora_dropout": (0.0, 1.0, True, False),
    "group_size": (2, None, True, True),
    "prompts_per_step": (1, None, True, True),
    "max_new_tokens": (1, None, True, True),
    "temperature": (0.0, None, False, True),
    "top_p": (0.0, 1.0, False, True),
    "lr": (0.0, None, False, True),
    "warmup_steps": (0, None, True, True),
    "weight_decay": (0.0, None, True, True),
    "max_grad_norm": (0.0, None, False, True),
    "steps": (1, None, True, True),
    "grad_accum": (1, None, True, True),
    "num_iterations": (1, None, True, True),
    "clip_eps_low": (0.0, 1.0, True, False),
    "clip_eps_high": (0.0, None, True, True),
    "kl_beta": (0.0, None, True, True),
    "seeds_per_eval": (1, None, True, True),
    "vllm_gpu_memory_utilization": (0.0, 1.0, False, True),
    "log_interval": (1, None, True, True),
    "save_interval": (0, None, True, True),
    "eval_interval": (0, None, True, True),
    "eval_samples": (1, None, True, True),
    "seed": (0, None, True, True),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "loss_variant": LOSS_VARIANTS,
    "advantage_scale": ADVANTAGE_SCALES,
    "rollout_backend": ROLLOUT_BACKENDS,
    "schedule": SCHEDULES,
    "dtype": DTYPES,
    "device": DEVICES,
}


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in fields(TrainConfig)}


def _type_name(tp: Any) -> str:
    if tp is bool:
        return "a boolean"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    return "a list of strings"


def _coerce(name: str, tp: Any, value: Any, from_text: bool) -> Any:
    """Check (and for flag strings, parse) one value against its field type; one-line error otherwise."""
    if from_text and isinstance(value, str) and tp is not str:
        text = value.strip()
        try:
            if tp is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value = text.lower() in ("true", "1", "yes")
            elif tp is int:
                value = int(text)
            elif tp is float:
                value = float(text)
            else:
                value = tuple(part.strip() for part in text.split(",") if part.strip())
        except ValueError:
            raise ValueError(f"config field '{name}' must be {_type_name(tp)}, got {value!r}") from None
    ok: bool
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    else:  # tuple[str, ...]
        if isinstance(value, str):
            value = (value,)
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value) and len(value) > 0
        value = tuple(value) if ok else value
    if not ok:
        raise ValueError(
            f"config field '{name}' must be {_type_name(tp)}, got {type(value).__name__} {value!r}"
        )
    return value


def _validate(cfg: TrainConfig) -> None:
    for name, (lo, hi, lo_inc, hi_inc) in _RANGES.items():
        v = getattr(cfg, name)
        if lo is not None and (v < lo or (v == lo and not lo_inc)):
            op = ">=" if lo_inc else ">"
            raise ValueError(f"config field '{name}' must be {op} {lo}, got {v}")
        if hi is not None and (v > hi or (v == hi and not hi_inc)):
            op = "<=" if hi_inc else "<"
            raise ValueError(f"config field '{name}' must be {op} {hi}, got {v}")
    for name, choices in _CHOICES.items():
        v = getattr(cfg, name)
        if v not in choices:
            raise ValueError(f"config field '{name}' must be one of {', '.join(choices)}; got {v!r}")
    if cfg.dtype == "float16":
        raise ValueError("config field 'dtype' is 'float16', which trains without a gradient scaler (small "
                         "gradients underflow to zero); use 'bfloat16' on a GPU or 'float32'")
    if not cfg.model.strip():
        raise ValueError("config field 'model' must name a model or a local path, got ''")
    if cfg.grad_accum > cfg.batch_size:
        raise ValueError(
            f"config field 'grad_accum' ({cfg.grad_accum}) must be <= prompts_per_step * group_size "
            f"({cfg.batch_size}): each micro-batch needs at least one sequence"
        )


def make_config(values: Mapping[str, Any] | None = None, *, preset: str = "cpu",
                from_text: bool = False, source: str = "config") -> TrainConfig:
    """A validated TrainConfig from a preset plus explicit values (unknown keys and bad values raise ValueError)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} in {source}; choose one of {', '.join(PRESETS)}")
    types_ = _field_types()
    merged: dict[str, Any] = dict(PRESETS[preset])
    for key, value in (values or {}).items():
        if key not in types_:
            raise ValueError(f"unknown config key '{key}' in {source}")
        merged[key] = value
    checked = {k: _coerce(k, types_[k], v, from_text) for k, v in merged.items()}
    cfg = TrainConfig(**checked)
    _validate(cfg)
    return cfg


def _flatten(table: Mapping[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                if isinstance(subvalue, dict):
                    raise ValueError(f"config table '{key}.{sub}' in {source} is nested too deep (one level allowed)")
                flat[f"{key}_{sub}"] = subvalue
        else:
            flat[key] = value
    return flat


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                preset: str | None = None) -> TrainConfig:
    """Load a TrainConfig: preset defaults, then the TOML file (if any), then overrides (flag strings are parsed).

    The preset is, in order: the ``preset`` argument, the file's ``preset`` key, ``"cpu"``.
    Raises FileNotFoundError for a missing file and ValueError (one line, naming the field) for bad content.
    """
    values: dict[str, Any] = {}
    source = "config"
    file_preset = None
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p}")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {p} is not valid TOML: {exc}") from None
        file_preset = data.pop("preset", None)
        if file_preset is not None and not isinstance(file_preset, str):
            raise ValueError(f"config key 'preset' in {p} must be a string")
        values = _flatten(data, source)
    chosen = preset or file_preset or "cpu"
    cfg = make_config(values, preset=chosen, source=source)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if overrides:
        merged = {f.name: getattr(cfg, f.name) for f in fields(cfg)} | dict(overrides)
        cfg = make_config(merged, preset=chosen, from_text=True, source="overrides")
    return cfg


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"


def config_to_toml(cfg: TrainConfig) -> str:
    """The config as flat TOML text that load_config reads back to an equal config."""
    return "".join(f"{f.name} = {_toml_value(getattr(cfg, f.name))}\n" for f in fields(cfg))


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the config as TOML (atomically: a temporary file renamed into place)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(config_to_toml(cfg), encoding="utf-8")
    tmp.replace(p)


def with_run_dir(config: TrainConfig) -> TrainConfig:
    """``config`` with ``output_dir`` set: a fresh ``runs/<game>-<YYYYmmdd-HHMMSS>`` when it is empty.

    A new directory per run, so running ``codepolicy train`` twice never collides with a run
    that holds checkpoints (continue one with ``--resume``).
    """
    if config.output_dir:
        return config
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{config.game}-{stamp}"
    run_dir, k = base, 1
    while run_dir.exists():  # two runs started in the same second
        k += 1
        run_dir = base.with_name(f"{base.name}-{k}")
    return dataclasses.replace(config, output_dir=str(run_dir))

