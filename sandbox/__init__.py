"""Untrusted strategy code: extract it from a completion, check it statically, run it in workers.

``extract``, ``check`` and the policy are light (standard library only). The runner (``run``,
``run_many``, ``WorkerPool``, ``default_pool``, ``make_pool``) is imported on first use, so
``import sandbox`` stays cheap and works even where the runner's dependencies are absent; so is
``RayPool`` (:mod:`sandbox.ray_pool`), which imports ``ray`` only when a pool is built. Nothing
here imports torch or ray.
"""
from __future__ import annotations

import importlib
from typing import Any

from sandbox.check import check
from sandbox.extract import extract
from sandbox.policy import DEFAULT_POLICY, RULES, Policy, Rule, game_policy, with_game_api
from sandbox.records import FORMAT_REASONS, FormatError, GameRecord, Limits, Verdict, Violation

_RUNNER_NAMES = ("run", "run_many", "WorkerPool", "default_pool")
_LAZY_MODULES = ("runner", "strategies", "cheats", "worker", "ray_pool", "planning", "pools")

__all__ = ["extract", "check", "Policy", "Rule", "RULES", "DEFAULT_POLICY", "game_policy", "with_game_api", "FormatError", "Verdict",
           "Violation", "Limits", "GameRecord", "FORMAT_REASONS", "OUTCOMES", "RayPool", "make_pool", *_RUNNER_NAMES]


def __getattr__(name: str) -> Any:
    """Import the runner's names (and the heavier submodules) on first access."""
    if name in _RUNNER_NAMES:
        try:
            runner = importlib.import_module("sandbox.runner")
        except ModuleNotFoundError as exc:
            if exc.name == "sandbox.runner":
                raise AttributeError(f"sandbox.{name} needs sandbox.runner, which is not installed") from exc
            raise
        value = getattr(runner, name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name == "make_pool":
        from sandbox.pools import make_pool

        globals()[name] = make_pool
        return make_pool
    if name == "RayPool":
        from sandbox.ray_pool import RayPool  # needs no ray until a pool is built

        globals()[name] = RayPool
        return RayPool
    if name == "OUTCOMES":
        from sandbox import records

        return records.OUTCOMES  # lazily re-exported there from envs.outcomes
    if name in _LAZY_MODULES:
        return importlib.import_module(f"sandbox.{name}")
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_RUNNER_NAMES) | set(_LAZY_MODULES) | {"OUTCOMES", "RayPool", "make_pool"})
