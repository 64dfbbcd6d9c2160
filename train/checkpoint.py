"""Atomic training checkpoints: a run dir never holds a half-written one.

Layout::

    RUN_DIR/checkpoints/step-00000012/state.pt      torch.save of the state dict
                                     /meta.json     step, time, sha256 of state.pt (written last)
                                     /adapter/      a PEFT adapter folder, when the state has one

A checkpoint is written into a hidden temporary folder next to the others, every file is
fsync'ed, and the folder is renamed into place in one step; so a crash (or Ctrl-C) at any
moment leaves either the new checkpoint whole or none of it. Only the newest ``keep`` are kept.

The state is the caller's dict; the trainer stores in it: ``adapter`` (the PEFT state dict),
``adapter_config`` (the PEFT config as a dict, optional: it makes ``adapter/`` a folder that
``PeftModel.from_pretrained`` loads), ``optimizer``, ``scheduler``, ``rng`` (from
:func:`rng_state`), ``step``, ``data_position`` and ``config``.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = [
    "CHECKPOINT_DIR",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "load_latest",
    "list_checkpoints",
    "latest_checkpoint",
    "rng_state",
    "set_rng_state",
    "training_state",
    "restore_training_state",
]

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d{8,})$")
_STATE, _META, _ADAPTER = "state.pt", "meta.json", "adapter"


class CheckpointError(ValueError):
    """A checkpoint or run dir that cannot be read; the message names it and says why."""


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open a folder; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The complete checkpoints of ``run_dir``, oldest first (temporary folders are ignored)."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint folder of ``run_dir``, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def _write_adapter(folder: Path, adapter: dict, adapter_config: dict) -> None:
    from safetensors.torch import save_file

    folder.mkdir()
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in adapter.items()}
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {k: (sorted(v) if isinstance(v, (set, frozenset)) else v) for k, v in adapter_config.items()}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str))


def save_checkpoint(run_dir: str | os.PathLike, state: dict, keep: int = 3) -> Path:
    """Write ``state`` as the checkpoint of ``state["step"]`` atomically; keep the newest ``keep``; return its folder."""
    import torch

    if not isinstance(state, dict) or "step" not in state:
        raise ValueError("save_checkpoint needs a dict with at least a 'step' key")
    step = int(state["step"])
    if step < 0:
        raise ValueError(f"checkpoint step must be >= 0, got {step}")
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    root = Path(run_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left by a crash mid-save; never a valid checkpoint
        shutil.rmtree(stale, ignore_errors=True)

    final = root / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step-{step:08d}-", dir=root))
    try:
        torch.save(state, tmp / _STATE)
        _fsync_file(tmp / _STATE)
        files = [_STATE]
        adapter, adapter_config = state.get("adapter"), state.get("adapter_config")
        if isinstance(adapter, dict) and adapter and isinstance(adapter_config, dict):
            _write_adapter(tmp / _ADAPTER, adapter, adapter_config)
            for f in (tmp / _ADAPTER).iterdir():
                _fsync_file(f)
            _fsync_dir(tmp / _ADAPTER)
            files.append(_ADAPTER)
        meta = {"step": step, "time": time.time(), "sha256": _sha256(tmp / _STATE),
                "bytes": (tmp / _STATE).stat().st_size, "files": files}
        (tmp / _META).write_text(json.dumps(meta, indent=2))
        _fsync_file(tmp / _META)
        _fsync_dir(tmp)
        if final.exists():
            # Same step saved twice (periodic save, then the final one): swap, the old one
            # stays complete until the new one is in place.
            old = root / f".tmp-old-{final.name}-{os.getpid()}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict:
    """Load one checkpoint folder; CheckpointError naming it when it is missing or corrupt."""
    import torch

    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {str(folder)!r} does not exist")
    meta_path, state_path = folder / _META, folder / _STATE
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {str(folder)!r} is corrupt: unreadable {_META} ({exc})") from None
    if not state_path.is_file():
        raise CheckpointError(f"checkpoint {str(folder)!r} is corrupt: {_STATE} is missing")
    if meta.get("sha256") and _sha256(state_path) != meta["sha256"]:
        raise CheckpointError(f"checkpoint {str(folder)!r} is corrupt: {_STATE} does not match its sha256")
    try:
        state = torch.load(state_path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # Our own file, checksum verified: it holds a type the safe loader does not allow
        # (e.g. a numpy array a caller put in the state), so load it in full.
        state = torch.load(state_path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"checkpoint {str(folder)!r} is corrupt: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {str(folder)!r} is corrupt: {_STATE} does not hold a dict")
    return state


def load_latest(run_dir: str | os.PathLike, map_location: str = "cpu") -> dict | None:
    """The newest readable checkpoint's state, or None when ``run_dir`` has none yet.

    A corrupt newest checkpoint (damaged after it was written) is skipped with a warning for
    the one before it; CheckpointError when ``run_dir`` does not exist or every one is corrupt.
    """
    run = Path(run_dir)
    if not run.exists():
        raise CheckpointError(f"run dir {str(run)!r} does not exist")
    if not run.is_dir():
        raise CheckpointError(f"run dir {str(run)!r} is not a folder")
    found = list_checkpoints(run)
    if not found:
        return None
    first_error: CheckpointError | None = None
    for folder in reversed(found):
        try:
            state = load_checkpoint(folder, map_location=map_location)
        except CheckpointError as exc:
            first_error = first_error or exc
            warnings.warn(f"{exc}; trying the previous checkpoint", RuntimeWarning, stacklevel=2)
            continue
        return state
    raise CheckpointError(f"run dir {str(run)!r} has no readable checkpoint: {first_error}")


# --- RNG states -----------------------------------------------------------------------


def rng_state() -> dict:
    """The python, numpy and torch (CPU and every CUDA device) RNG states, as checkpoint-safe values."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        # A tensor and plain numbers instead of the numpy array: loads with weights_only=True.
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the RNG states captured by :func:`rng_state`."""
    import numpy as np
    import torch

    py = state["python"]
    # torch.load returns the python state's inner tuple as a list; random.setstate wants tuples.
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    keys = n["keys"].numpy() if hasattr(n["keys"], "numpy") else np.asarray(n["keys"])
    np.random.set_state((n["kind"], keys.astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            warnings.warn(f"checkpoint has RNG states for {len(cuda)} GPUs, this machine has "
                          f"{torch.cuda.device_count()}; CUDA RNG not restored", RuntimeWarning, stacklevel=2)


# --- what a training run stores ---------------------------------------------------------


def training_state(policy: Any, optimizer: Any, scheduler: Any, config: Any, step: int) -> dict:
    """The state a run saves after ``step`` steps: adapter, its config, optimizer, schedule, RNGs, config."""
    import dataclasses

    from peft import get_peft_model_state_dict

    adapter_config = policy.peft_config["default"].to_dict()
    adapter_config = {k: (sorted(v) if isinstance(v, (set, frozenset)) else v) for k, v in adapter_config.items()}
    return {
        "step": step,
        "data_position": step,  # the batch of step s depends only on (seed, s)
        "adapter": {k: v.detach().cpu() for k, v in get_peft_model_state_dict(policy).items()},
        "adapter_config": adapter_config,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "config": dataclasses.asdict(config),
    }


def restore_training_state(state: dict, policy: Any, optimizer: Any, scheduler: Any) -> int:
    """Load a :func:`training_state` into the run's objects; returns the step to continue from."""
    from peft import set_peft_model_state_dict

    device = next(policy.parameters()).device
    set_peft_model_state_dict(policy, {k: v.to(device) for k, v in state["adapter"].items()})
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if "rng" in state:
        set_rng_state(state["rng"])
    return int(state["data_position"] if "data_position" in state else state["step"])
