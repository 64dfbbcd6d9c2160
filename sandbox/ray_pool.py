"""Sandbox evaluation spread over a Ray cluster: :class:`RayPool`, the interface of ``WorkerPool``.

``RayPool(workers)`` starts ``workers`` Ray actors (``num_cpus=1`` each, spread over the
cluster); each actor owns a local :class:`sandbox.runner.WorkerPool` of width 1, so every
program still runs in a child forked from a warm zygote, with RestrictedPython, the audit
hook, rlimits, the parent's wall-time kills and the determinism probe, exactly as on one
machine. What moves is only who parents those children.

Same records as the local pool. The driver plans every call with the runner's own planner
(:class:`sandbox.planning.Planner`): the static check, which zygote plays a program and which
probes it, how its seeds are split (the width is the number of actors), the heap shifts, the
probe sample and its order all come from the pool's ``secret`` and are decided before any
job leaves. Actors receive that secret, so their zygotes get the same two ``PYTHONHASHSEED``
values as a ``WorkerPool(workers, secret=secret)``; they run the jobs they are handed and
send back the records and samples; the driver puts each program's shares back in seed order,
asks for its probe and judges it with the runner's code. So with the same ``secret`` and
``workers``, ``RayPool`` and ``WorkerPool`` give the same records for every program whose
answers depend only on the board, whichever actor ran what; ``wall_seconds`` (and the
seconds a probe error quotes) are measured times and differ from run to run on any pool.
Programs whose answers depend on time or on memory addresses differ between any two runs,
local or not (the probe exists to turn them into violations). The rewards read neither.

Connecting follows Ray's own settings: a Ray already initialised in this process is used
as it is; otherwise ``ray.init(address=address)``, which reads ``RAY_ADDRESS``, then the
cluster last started on this machine (``ray start --head``), else starts a local Ray. A Ray
this module initialised is shut down when the last pool that needed it closes.

``ray`` is imported only when a pool is built (``pip install 'codepolicy[ray]'``).
"""
from __future__ import annotations

import collections
import logging
import os
import threading
from typing import Any, Iterable, Mapping, Sequence

from envs.registry import DEFAULT_GAME
from sandbox.records import GameRecord, Limits
from sandbox.planning import Planner, SandboxUnavailable, judged, spec_origin

__all__ = ["RayPool", "RayUnavailable", "RAY_MISSING"]

RAY_MISSING = "the Ray pool needs ray: pip install 'codepolicy[ray]'"
CALLS_IN_FLIGHT = 2     # per actor: the next batch waits in the actor's queue, so it never idles
MAX_BATCH = 8           # jobs per actor call (one call costs about a millisecond of Ray overhead)
CLOSE_SECONDS = 30.0    # how long close() waits for actors to stop their zygotes before killing them


class RayUnavailable(ImportError, ValueError):
    """``ray`` is not installed (a ValueError too, so the command line prints it as one line)."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnavailable(RAY_MISSING) from None
    return ray


class SandboxActor:
    """The body of one Ray actor: a local WorkerPool of width 1 running the jobs the driver planned."""

    def __init__(self, game: str, secret: bytes) -> None:
        from sandbox.runner import WorkerPool

        # The pool's secret, not a new one: the zygotes' hash seeds are derived from it.
        self.pool = WorkerPool(1, game, secret)

    def warm(self) -> int:
        """Start both zygotes -> the process id (for tests and diagnostics)."""
        self.pool.warm()
        return os.getpid()

    def run(self, tasks: list[tuple[str, int, dict, list | None]], game: str, origin: list[str] | None,
            limits: Limits) -> tuple[list[Any], int]:
        """Run ``tasks`` one after the other -> (one result per task, worker processes replaced so far).

        A task is ("games", zygote, job, None) -> (records, probe sample), or
        ("probe", zygote, job, boards) -> (answers, failure), as the local pool's jobs.
        """
        from sandbox.worker import game_spec

        spec = game_spec(game, origin)
        out: list[Any] = []
        for kind, zygote, job, boards in tasks:
            job = {**job, "id": self.pool._next_id()}  # ids are per process (they tag heartbeat pages)
            if kind == "games":
                out.append(self.pool._run_games(zygote, job, spec, limits))
            else:
                out.append(self.pool._run_probe(zygote, job, boards or [], limits))
        return out, self.pool.replaced

    def close(self) -> None:
        """Stop the zygotes and their children, remove their directories."""
        self.pool.close()


# The Ray session this module started (its job id) and how many open pools rely on it: the last one
# to close shuts it down. A Ray someone else started, or restarted after us, is never ours to stop.
_OWNED_LOCK = threading.Lock()
_OWNED: dict[str, Any] = {"job": None, "pools": 0}


def _job(ray: Any) -> str:
    return ray.get_runtime_context().get_job_id()


class RayPool(Planner):
    """A sandbox pool whose workers are Ray actors: ``run_many``, ``run``, ``warm``, ``close``, ``with``.

    ``workers`` (default: the CPUs the cluster has free) actors of one CPU each, each a
    local ``WorkerPool`` of width 1. ``secret`` (default: random per pool) plays the role it
    plays in ``WorkerPool``; with the same secret and ``workers`` both pools give the same
    records. ``address`` goes to ``ray.init`` when Ray is not initialised yet (default: Ray's
    own settings, ``RAY_ADDRESS`` or a local Ray). Thread-safe like ``WorkerPool``.
    """

    def __init__(self, workers: int | None = None, game: str = DEFAULT_GAME, secret: bytes | None = None, *,
                 address: str | None = None) -> None:
        ray = _import_ray()
        self._ray = ray
        self.closed = False
        self._close_lock = threading.Lock()
        self._claim: str | None = None  # the job id of the Ray session we started, if this pool relies on it
        with _OWNED_LOCK:
            if not ray.is_initialized():
                try:
                    ray.init(address=address, logging_level=logging.WARNING)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    where = address or os.environ.get("RAY_ADDRESS") or "a local Ray"
                    lines = str(exc).strip().splitlines() or [type(exc).__name__]
                    raise ValueError(f"the Ray pool cannot connect to {where}: {lines[-1][:300]}") from None
                _OWNED.update(job=_job(ray), pools=0)
            if _OWNED["job"] is not None and _OWNED["job"] == _job(ray):
                _OWNED["pools"] += 1
                self._claim = _OWNED["job"]
        total = int(ray.cluster_resources().get("CPU", 0))
        free = int(ray.available_resources().get("CPU", 0))
        if workers is None:
            workers = max(1, free)
        if not 1 <= workers <= max(total, 1):
            self._release_ray()
            if workers < 1:
                raise ValueError(f"a RayPool needs at least 1 worker, got {workers}")
            raise ValueError(f"a RayPool of {workers} workers needs {workers} CPUs; the Ray cluster has {total}")
        super().__init__(workers, secret)
        self.game = game
        self.address = ray.get_runtime_context().gcs_address
        actor = ray.remote(SandboxActor).options(
            num_cpus=1, scheduling_strategy="SPREAD",
            # An actor lost with its node is started again and its call retried: jobs are pure.
            max_restarts=1, max_task_retries=1)
        self._actors = [actor.remote(game, self.secret) for _ in range(self.workers)]
        self._replaced = [0] * self.workers

    def __repr__(self) -> str:
        return (f"RayPool(workers={self.workers}, game={self.game!r}, address={self.address!r}"
                f"{', closed' if self.closed else ''})")

    def __enter__(self) -> "RayPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def replaced(self) -> int:
        """Worker processes lost to a kill or a crash, over all actors (as ``WorkerPool.replaced``)."""
        return sum(self._replaced)

    def warm(self) -> None:
        """Start every actor and its zygotes now (otherwise each starts on first use)."""
        if self.closed:
            raise RuntimeError("this RayPool is closed")
        self._get([a.warm.remote() for a in self._actors])

    def actor_pids(self) -> list[int]:
        """The process id of each actor (starting its zygotes if needed)."""
        return self._get([a.warm.remote() for a in self._actors])

    def close(self) -> None:
        """Stop every actor (its zygotes first) and, if this module started Ray for it, Ray."""
        with self._close_lock:
            if self.closed:
                return
            self.closed = True
        ray, actors, self._actors = self._ray, self._actors, []
        if ray.is_initialized() and actors:
            try:
                ray.wait([a.close.remote() for a in actors], num_returns=len(actors), timeout=CLOSE_SECONDS)
            except Exception:  # noqa: BLE001 - an actor already gone has nothing left to close
                pass
            for a in actors:
                try:
                    ray.kill(a, no_restart=True)
                except Exception:  # noqa: BLE001
                    pass
        self._release_ray()

    def _release_ray(self) -> None:
        with _OWNED_LOCK:
            claim, self._claim = self._claim, None
            ray = self._ray
            if claim is None or not ray.is_initialized() or claim != _job(ray):
                return
            _OWNED["pools"] -= 1
            if _OWNED["pools"] <= 0:
                _OWNED["job"] = None
                ray.shutdown()

    def _get(self, refs: list) -> list:
        try:
            return self._ray.get(refs)
        except (self._ray.exceptions.RayActorError, self._ray.exceptions.WorkerCrashedError,
                self._ray.exceptions.NodeDiedError) as exc:
            raise SandboxUnavailable(f"a Ray sandbox actor was lost: {str(exc).strip().splitlines()[-1][:300]}") \
                from None

    # -- jobs ------------------------------------------------------------------------------

    def run_many(self, sources: Sequence[str], game: str = DEFAULT_GAME, seeds: Iterable[int] = (0,),
                 limits: Limits | None = None, options: Mapping[str, Any] | None = None,
                 policy: Any = None, *, restricted: bool = True) -> list[list[GameRecord]]:
        """Play every seed with every source on the actors -> one list of records per source."""
        if self.closed:
            raise RuntimeError("this RayPool is closed")
        plan = self._plan(sources, game, seeds, limits, options, policy, restricted)
        programs, results, limits = plan.programs, plan.results, plan.limits
        if not programs:
            return results
        ray, actors = self._ray, self._actors
        origin = spec_origin(plan.spec)
        # Work items: (program, job index) for games, (program, -1) for a probe. Actors are fed
        # as they finish, in batches that shrink with the queue (a quarter of an actor's share,
        # at most MAX_BATCH), so that no actor is left with a long tail; probes jump the queue
        # so that finished programs leave early.
        queue = collections.deque((i, c) for i, p in enumerate(programs) for c in range(len(p.jobs)))
        shares: list[list[Any]] = [[None] * len(p.jobs) for p in programs]
        left = [len(p.jobs) for p in programs]
        probes: dict[int, tuple[list, dict, list]] = {}
        load = [0] * len(actors)
        in_flight: dict[Any, tuple[int, list[tuple[int, int]]]] = {}

        def task(i: int, c: int) -> tuple[str, int, dict, list | None]:
            p = programs[i]
            if c >= 0:
                return "games", p.zygote, p.jobs[c], None
            return "probe", 1 - p.zygote, probes[i][1], probes[i][2]

        while queue or in_flight:
            while queue:
                a = min(range(len(actors)), key=load.__getitem__)
                if load[a] >= CALLS_IN_FLIGHT:
                    break
                batch = max(1, min(MAX_BATCH, len(queue) // (len(actors) * 4)))
                items = [queue.popleft() for _ in range(batch)]
                ref = actors[a].run.remote([task(i, c) for i, c in items], game, origin, limits)
                in_flight[ref] = (a, items)
                load[a] += 1
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                a, items = in_flight.pop(ref)
                load[a] -= 1
                outs, self._replaced[a] = self._get([ref])[0]
                for (i, c), out in zip(items, outs):
                    p = programs[i]
                    if c < 0:
                        answers, failure = out
                        results[p.index] = judged(results[p.index], probes.pop(i)[0], answers, failure, limits)
                        continue
                    shares[i][c] = out
                    left[i] -= 1
                    if left[i]:
                        continue
                    # Every share back: records and sample in the order of the seeds, as locally.
                    sample = [x for _, part in shares[i] for x in part]
                    results[p.index] = [r for records, _ in shares[i] for r in records]
                    shares[i] = []
                    if sample:
                        job, boards = self._probe_job(p, sample)
                        probes[i] = (sample, job, boards)
                        queue.appendleft((i, -1))
        return results

    def run(self, source: str, game: str = DEFAULT_GAME, seeds: Iterable[int] = (0,), limits: Limits | None = None,
            options: Mapping[str, Any] | None = None, policy: Any = None, *,
            restricted: bool = True) -> list[GameRecord]:
        """Play every seed with ``source`` -> one record per seed."""
        return self.run_many([source], game, seeds, limits, options, policy, restricted=restricted)[0]
