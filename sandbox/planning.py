"""Planning a ``run_many`` call, shared by the local pool (:mod:`sandbox.runner`) and the Ray pool (:mod:`sandbox.ray_pool`).

A :class:`Planner` decides everything about a call before anything runs: the static check (a rejected
program is never executed), which of the two zygotes plays each program and which probes it, how its
seeds are split into jobs, the secret per-job heap shifts and the determinism probe's sample. Both pools
plan with it, so a program gets the same jobs, and so the same records, from either: its records depend
on the pool secret and the width (``workers``), never on which process ran its jobs. What a child sends
back is read with :func:`number` and :func:`freeze_view`, and the probe's answers are judged with
:func:`judged`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import threading
from typing import Any, Iterable, Mapping, Sequence

from sandbox.records import GameRecord, Limits, RecordedGame

__all__ = ["UNCHECKED", "SandboxUnavailable", "Malformed", "Planner", "Plan", "PlannedProgram", "judged",
           "probe_verdict", "spec_origin", "number", "freeze_view", "policy_names", "policy_api",
           "policy_recursion", "static_rejection", "limits_dict", "PROBE_BOARDS", "PROBE_SLOWDOWN", "ERROR_CHARS"]

PROBE_BOARDS = 32           # boards of a program's games asked again by the determinism probe
PROBE_SLOWDOWN = 4.0        # a probe timeout counts when play answered that board this much faster
ERROR_CHARS = 300


class Unchecked:
    """Sentinel policy: skip the static check so only the runtime layers stand (tests, benchmarks)."""

    def __repr__(self) -> str:
        return "UNCHECKED"


UNCHECKED: Any = Unchecked()


class SandboxUnavailable(RuntimeError):
    """No worker process could be started (a broken installation, not a strategy's fault)."""


class Malformed(Exception):
    """A worker sent something that is not a well-formed message."""


def spec_origin(spec: Any) -> list[str] | None:
    """(module, file) that registers ``spec``, for games registered outside ``envs/``.

    Zygotes are fresh interpreters that know only the games ``import envs`` registers; a game
    registered elsewhere (a user's module, a test) is loaded in the child from this file.
    """
    module = sys.modules.get(getattr(spec.new_state, "__module__", "") or "")
    if module is None or module.__name__.split(".")[0] == "envs":
        return None
    path = getattr(module, "__file__", None)
    return [module.__name__, os.path.abspath(path)] if path else None


def number(value: Any, name: str, low: float = 0.0, high: float = 1e18, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Malformed(f"{name} is not a number")
    if integer and not isinstance(value, int):
        raise Malformed(f"{name} is not an integer")
    if not math.isfinite(value) or not low <= value <= high:
        raise Malformed(f"{name} = {value!r} is out of range")
    return value


def freeze_view(view: Any, depth: int = 0, budget: list[int] | None = None) -> Any:
    """A game view from a worker as nested tuples of numbers/strings, bounded in size."""
    budget = [4096] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0 or depth > 4:
        raise Malformed("final view too large")
    if isinstance(view, list):
        return tuple(freeze_view(v, depth + 1, budget) for v in view)
    if isinstance(view, bool) or view is None:
        return view
    if isinstance(view, (int, float)):
        return number(view, "final view cell", -1e18, 1e18)
    if isinstance(view, str) and len(view) <= 64:
        return view
    raise Malformed("final view has an unexpected value")


@dataclasses.dataclass
class PlannedProgram:
    """One runnable program of a ``run_many`` call: its game jobs (one per share of the seeds), then a probe."""

    index: int          # its position among the call's sources
    base: dict          # what every job of the program carries (source, game, limits, policy names)
    key: str            # its secret key: which zygote, the probe sample, the heap shifts
    zygote: int         # the zygote whose children play it; the other one's child probes it
    jobs: list[dict]    # game jobs, in the order of the seeds


@dataclasses.dataclass
class Plan:
    """A ``run_many`` call worked out before anything runs."""

    spec: Any
    limits: Limits
    results: list[list[GameRecord]]   # filled for programs the static check rejects; [] for the others
    programs: list[PlannedProgram]
    record_calls: bool = False        # every call of every game is kept (and probed), see run_many


class Planner:
    """What decides the jobs of a ``run_many`` call: the pool secret, the job ids and the width.

    :class:`WorkerPool` and ``sandbox.ray_pool.RayPool`` share it, so a program gets the same
    zygote, shares of seeds, heap keys, probe sample and verdict from both: its records depend
    on the secret and the width (``workers``), never on which process ran its jobs.
    """

    def __init__(self, workers: int, secret: bytes | None) -> None:
        self.workers = max(1, int(workers))
        self.secret = bytes(secret) if secret is not None else os.urandom(16)
        self._job_ids = iter(range(1, 1 << 62))
        self._id_lock = threading.Lock()

    def _derive(self, *parts: Any) -> str:
        """A hex digest of the pool secret and ``parts``: per-pool values no program can predict."""
        text = json.dumps([str(p) for p in parts]).encode("utf-8", "surrogatepass")
        return hashlib.sha256(self.secret + text).hexdigest()

    def _next_id(self) -> int:
        with self._id_lock:
            return next(self._job_ids)

    def _plan(self, sources: Sequence[str], game: str, seeds: Iterable[int], limits: Limits | None,
              options: Mapping[str, Any] | None, policy: Any, restricted: bool, record_calls: bool = False) -> Plan:
        """Static rejections, and the game jobs of every other program (nothing runs yet).

        ``record_calls``: the sample of each game holds every call, in order (see :meth:`_recorded`).
        """
        import envs

        spec = envs.get(game)
        seeds = [int(s) for s in seeds]
        limits = limits or Limits()
        options = dict(options or {})
        spec.make(0, **options)  # unknown options: one clear ValueError now, not one per job
        builtin_names, methods = policy_names(policy)
        api = policy_api(policy, spec)
        results: list[list[GameRecord]] = [[] for _ in sources]
        runnable = []
        for s, source in enumerate(sources):
            rejection = static_rejection(source, policy)
            if rejection:
                results[s] = [GameRecord(seed=seed, outcome="violation", error=rejection) for seed in seeds]
            elif seeds:
                runnable.append(s)
        # Split each program's seeds so that every worker has work even for a single program.
        chunks = max(1, min(len(seeds), -(-self.workers // max(1, len(runnable)))))
        size = -(-len(seeds) // chunks) if seeds else 1
        parts = [seeds[i:i + size] for i in range(0, len(seeds), size)]
        per_game = max(2, -(-PROBE_BOARDS // max(1, len(seeds))))
        if record_calls:
            # The most calls a game can make: each move may follow stuck_moves - 1 wasted answers,
            # and the last answer may end it. With a sample at least that large, the child's
            # reservoir keeps every call in the order it was made.
            per_game = max(per_game, (limits.max_moves + 1) * limits.stuck_moves)
        firsts = [sum(len(p) for p in parts[:c]) for c in range(len(parts))]
        recursion = policy_recursion(policy)
        origin = spec_origin(spec)
        programs = []
        for s in runnable:
            base = {"game": game, "origin": origin, "options": options,
                    "limits": limits_dict(limits), "source": sources[s],
                    "builtins": builtin_names, "methods": methods, "restricted": restricted,
                    "recursion": recursion, "api": api}
            # (A relaxed policy's recursion and the game's API change what runs, so they are part of
            # the program's key.)
            key = self._derive("program", sources[s], game, options, builtin_names, methods, restricted,
                               *(("recursion",) if recursion else ()), *(("api", *api) if api else ()))
            z = int(key[:2], 16) & 1  # which zygote plays and which probes: drawn per program
            jobs = [{**base, "seeds": part, "first": firsts[c], "id": self._next_id(),
                     "heap": self._derive(key, "heap", c), "sample": {"count": per_game, "key": key}}
                    for c, part in enumerate(parts)]
            programs.append(PlannedProgram(s, base, key, z, jobs))
        return Plan(spec, limits, results, programs, record_calls)

    @staticmethod
    def _recorded(sample: list, games: int) -> list[tuple[tuple[Any, str], ...]]:
        """Every (board, answer) call of each of a program's ``games``, in order, from its whole sample.

        Read before the probe shuffles ``sample``; complete only when the plan had ``record_calls``.
        """
        calls: list[list[tuple[Any, str]]] = [[] for _ in range(games)]
        for item in sample:
            calls[item[5]].append((freeze_view(item[1]), item[2]))
        return [tuple(c) for c in calls]

    @staticmethod
    def _with_calls(records: list[GameRecord], calls: list | None) -> list[RecordedGame]:
        """``records`` paired with their calls (none for a program that never ran)."""
        return [RecordedGame(r, calls[i] if calls else ()) for i, r in enumerate(records)]

    def _probe_job(self, program: PlannedProgram, sample: list) -> tuple[dict, list]:
        """The probe of ``program`` from the calls its games kept, in the order of its jobs -> (job, boards).

        Shuffles ``sample`` in place: the boards are asked out of the order they were played.
        """
        random.Random(program.key).shuffle(sample)
        job = {**program.base, "id": self._next_id(), "heap": self._derive(program.key, "heap", "probe")}
        return job, [item[1] for item in sample]


def judged(records: list[GameRecord], sample: list, answers: list[str], failure: tuple[str, str] | None,
            limits: Limits) -> list[GameRecord]:
    """``records`` after the probe: every record a violation when the replay disagrees with play."""
    verdict = probe_verdict(sample, answers, failure, limits)
    if not verdict:
        return records
    # A violation the child already named keeps its name (it also explains the difference).
    return [r if r.outcome == "violation" else dataclasses.replace(r, outcome="violation", error=verdict[:ERROR_CHARS])
            for r in records]


def probe_verdict(sample: list, answers: list[str], failure: tuple | None, limits: Limits) -> str:
    """'' when the replayed answers agree with play, else the randomness violation's text (fails closed).

    ``failure`` is (outcome, why[, while loading]). Each side is compared like with like: a
    probe that stops on a board is judged against that board's time in play, one that
    stops while loading the program against the time play took to load it.
    """
    if failure is not None and len(failure) > 2 and failure[2] and not answers and sample:
        outcome, why = failure[0], failure[1]
        loaded = max(item[4] if len(item) > 4 else 0.0 for item in sample)
        if outcome == "timeout" and loaded * PROBE_SLOWDOWN >= limits.game_seconds:
            return ""  # as slow to load in play: a loaded machine, not a program that behaves differently
        return (f"randomness: loaded again in a fresh process, the strategy failed before its first answer "
                f"(it loaded in {loaded:.3g}s during play): {why}")
    for j, item in enumerate(sample):
        seed, _board, answer, seconds = item[:4]
        if j < len(answers):
            if answers[j] != answer:
                return (f"randomness: on a board of the game with seed {seed} the strategy answered {answer!r} "
                        f"during play and {answers[j]!r} when asked again in a fresh process; its answer must "
                        "depend only on the board (no state kept between calls, no randomness)")
            continue
        if failure is None:
            return "randomness: the replay of the strategy's boards stopped early"
        outcome, why = failure[0], failure[1]
        if outcome == "timeout" and seconds * PROBE_SLOWDOWN >= limits.move_seconds:
            return ""  # as slow in play: a loaded machine, not a program that behaves differently
        return (f"randomness: asked again in a fresh process about a board of the game with seed {seed}, "
                f"which it answered in {seconds:.3g}s during play, the strategy failed: {why}")
    return ""


def limits_dict(limits: Limits) -> dict:
    return dataclasses.asdict(limits)


def policy_names(policy: Any) -> tuple[list[str] | None, list[str] | None]:
    """(builtins, attribute names) the policy allows; None leaves the worker's safe defaults.

    ``UNCHECKED`` skips only the static check: the runtime layers keep the default policy's lists.
    """
    if policy is None or policy is UNCHECKED:
        from sandbox.policy import DEFAULT_POLICY

        policy = DEFAULT_POLICY
    out = []
    for attr in ("allowed_builtins", "allowed_methods"):
        names = getattr(policy, attr, None)
        ok = names is not None and not callable(names) and not isinstance(names, str)
        out.append(sorted(str(n) for n in names) if ok else None)
    return out[0], out[1]


def policy_api(policy: Any, spec: Any) -> list[str]:
    """The game API functions the policy gives the program (sorted names; none for ``UNCHECKED``).

    The worker builds them from the game's own spec (:attr:`envs.registry.GameSpec.api`) for the
    job's options; a name the game does not declare is a caller's mistake, refused here at once.
    """
    if policy is None or policy is UNCHECKED:
        return []
    names = getattr(policy, "api_names", None) or frozenset()
    declared = {f.name for f in getattr(spec, "api", ())}
    unknown = sorted(str(n) for n in names if n not in declared)
    if unknown:
        raise ValueError(f"the policy gives the game API function {unknown[0]!r}, which game {spec.name!r} "
                         f"does not declare; it declares: {', '.join(sorted(declared)) or 'none'}")
    return sorted(str(n) for n in names)


def policy_recursion(policy: Any) -> bool:
    """Whether the runtime lets functions re-enter: only for a policy whose check allows recursion.

    What the static check accepts, the runtime must accept: a relaxed policy (``allow_recursion``)
    accepts recursive programs, so their recursion runs, bounded by the interpreter's recursion
    depth (a RecursionError, the program's own error) and the time limits, like its loops.
    ``UNCHECKED`` keeps the default policy's runtime, which refuses every re-entry.
    """
    return policy is not None and policy is not UNCHECKED and getattr(policy, "allow_recursion", False) is True


def static_rejection(source: str, policy: Any) -> str:
    """'' when the static check passes (or is skipped), else the error text of its violations."""
    if not isinstance(source, str):
        return f"static check: the program is a {type(source).__name__}, not a str"
    if policy is UNCHECKED:
        return ""
    from sandbox.check import check

    verdict = check(source, policy)
    if verdict.ok:
        return ""
    shown = "; ".join(str(v) for v in verdict.violations[:3])
    more = f" (+{len(verdict.violations) - 3} more)" if len(verdict.violations) > 3 else ""
    return f"static check: {shown}{more}"[:ERROR_CHARS]
