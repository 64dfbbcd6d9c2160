"""The sandbox pools by name: ``make_pool("local")`` (this machine's cores) or ``make_pool("ray")`` (a Ray cluster).

Both pools plan a call the same way (:mod:`sandbox.planning`), so they give the same records for the same
secret and width; this module only picks one, and imports the Ray pool (and ``ray``) only when asked for.
"""
from __future__ import annotations

from typing import Any

from envs.registry import DEFAULT_GAME

__all__ = ["POOL_KINDS", "make_pool"]

POOL_KINDS = ("local", "ray")


def make_pool(kind: str = "local", workers: int | None = None, *, game: str = DEFAULT_GAME,
              secret: bytes | None = None) -> Any:
    """A new sandbox pool of ``kind``: "local" (a ``sandbox.runner.WorkerPool``, this machine's cores) or
    "ray" (a ``sandbox.ray_pool.RayPool``, actors on the Ray cluster Ray's own settings name).

    ``workers`` defaults to the local cores or the cluster's free CPUs. Both kinds give the
    same records for the same ``secret`` and ``workers``; close the pool when done.
    """
    if kind == "local":
        from sandbox.runner import WorkerPool

        return WorkerPool(workers, game, secret)
    if kind == "ray":
        from sandbox.ray_pool import RayPool

        return RayPool(workers, game, secret)
    raise ValueError(f"unknown sandbox pool {kind!r}: expected one of {', '.join(map(repr, POOL_KINDS))}")
