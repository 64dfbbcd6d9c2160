"""Running untrusted strategies: a pool of warm worker processes that play whole games.

``run(source, game, seeds)`` re-checks the source with the static policy, sends it to a warm
worker (:mod:`sandbox.worker`) that compiles it with RestrictedPython and plays every seed,
watches the worker's heartbeat, and turns what comes back into :class:`GameRecord` s.

The parent enforces wall time: the worker bumps a counter in a shared page before and
after every strategy call; when it stops moving for ``Limits.move_seconds``, or one game
takes ``Limits.game_seconds``, the parent SIGKILLs the worker's process group (so no
``except BaseException`` in the strategy can swallow it) and starts a fresh worker for the
next job. The caller always gets one record per seed, never an exception caused by the
strategy: games finished before a kill keep their real records, the game in progress and
the ones not yet played carry the reason (``timeout`` or ``crashed``).

Determinism is checked at run time too: the strategy answers a fixed set of boards in a
second worker started with another ``PYTHONHASHSEED``; any difference with the answers of
the worker that played the games is a ``randomness`` violation. The reference answers are
cached per source, so each program pays that once.
"""
from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import math
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from queue import Queue
from typing import Any, Iterable, Mapping, Sequence

from sandbox.records import GameRecord, Limits

__all__ = ["run", "run_many", "WorkerPool", "default_pool", "UNCHECKED", "SandboxUnavailable",
           "probe_boards", "MAIN_HASH_SEED", "PROBE_HASH_SEED"]

MAIN_HASH_SEED = 0          # PYTHONHASHSEED of the workers that play games
PROBE_HASH_SEED = 1729      # PYTHONHASHSEED of the worker that answers the probe boards
PROBE_BOARDS = 16           # boards in the determinism probe
STARTUP_SECONDS = 300.0     # a cold Numba cache compiles the engine at the first start
MAX_MESSAGE_BYTES = 8 << 20
ERROR_CHARS = 300
WORKER_OUTCOMES = frozenset({"finished", "won", "max_moves", "stuck", "invalid_output", "error",
                             "violation", "crashed"})


class _Unchecked:
    """Sentinel policy: skip the static check so only the runtime layers stand (tests, benchmarks)."""

    def __repr__(self) -> str:
        return "UNCHECKED"


UNCHECKED: Any = _Unchecked()


class SandboxUnavailable(RuntimeError):
    """No worker process could be started (a broken installation, not a strategy's fault)."""


class _Malformed(Exception):
    """A worker sent something that is not a well-formed message."""


# --- worker process handle -------------------------------------------------------------------


def _spec_origin(spec: Any) -> list[str] | None:
    """(module, file) that registers ``spec``, for games registered outside ``envs/``.

    Workers are fresh interpreters that know only the games ``import envs`` registers; a game
    registered elsewhere (a user's module, a test) is loaded in the worker from this file.
    """
    module = sys.modules.get(getattr(spec.new_state, "__module__", "") or "")
    if module is None or module.__name__.split(".")[0] == "envs":
        return None
    path = getattr(module, "__file__", None)
    return [module.__name__, os.path.abspath(path)] if path else None


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _worker_env(hash_seed: int, workdir: str) -> dict[str, str]:
    """The whole environment of a worker: nothing from ours but where the code and caches are."""
    env = {
        "PATH": os.defpath,
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": str(hash_seed),
        "PYTHONPATH": _package_root(),
        "PYTHONNOUSERSITE": "1",
        # One thread each: the pool supplies the parallelism, and threads cost address space.
        "NUMBA_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    if os.environ.get("NUMBA_CACHE_DIR"):
        env["NUMBA_CACHE_DIR"] = os.environ["NUMBA_CACHE_DIR"]
    return env


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "the worker stopped answering"
    if code < 0:
        sig = -code
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
        why = {signal.SIGKILL: " (killed, e.g. by the kernel's out-of-memory killer)",
               signal.SIGXCPU: " (CPU time limit exceeded)",
               signal.SIGSEGV: " (segmentation fault)",
               signal.SIGXFSZ: " (file size limit exceeded)"}.get(sig, "")
        return f"the worker died from {name}{why}"
    return f"the worker exited with code {code}"


class _Worker:
    """One worker process: spawned clean, talked to with framed JSON, watched by heartbeat."""

    def __init__(self, hash_seed: int, game: str = "2048") -> None:
        self.hash_seed = hash_seed
        self.base = tempfile.mkdtemp(prefix="codepolicy-sandbox-")
        self.workdir = os.path.join(self.base, "work")
        os.mkdir(self.workdir, 0o700)
        self.buffer = b""
        self.jobs = 0
        hb_fd = self._heartbeat_fd()
        import mmap

        self._map = mmap.mmap(hb_fd, 64)
        self.hb = memoryview(self._map).cast("Q")
        parent, child = socket.socketpair()
        self.sock = parent
        stderr_path = os.path.join(self.base, "stderr")
        try:
            with open(stderr_path, "wb") as stderr:
                self.proc = subprocess.Popen(
                    [sys.executable, "-s", "-P", "-m", "sandbox.worker", str(child.fileno()), str(hb_fd), game],
                    cwd=self.workdir, env=_worker_env(hash_seed, self.workdir), stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=stderr, pass_fds=(child.fileno(), hb_fd),
                    close_fds=True, start_new_session=True)
        except OSError as exc:
            self._cleanup()
            raise SandboxUnavailable(f"cannot start a sandbox worker: {exc}") from exc
        finally:
            child.close()
            os.close(hb_fd)
        deadline = time.monotonic() + STARTUP_SECONDS
        try:
            message = None
            while message is None and time.monotonic() < deadline:
                message = self._receive(min(1.0, deadline - time.monotonic()))
            if not message or message.get("t") != "ready":
                detail = (message or {}).get("error") or self._stderr_tail(stderr_path) or _describe_exit(
                    self.proc.poll())
                raise SandboxUnavailable(f"a sandbox worker failed to start: {str(detail)[-800:]}")
        except (_Malformed, EOFError) as exc:
            self.kill()
            raise SandboxUnavailable(f"a sandbox worker failed to start: {exc}; "
                                     f"{self._stderr_tail(stderr_path)}") from None
        except SandboxUnavailable:
            self.kill()
            raise

    def _heartbeat_fd(self) -> int:
        # A memfd leaves nothing on disk; elsewhere a file in our private directory will do.
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("codepolicy-heartbeat", 0)
        else:
            fd = os.open(os.path.join(self.base, "heartbeat"), os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(fd, 64)
        return fd

    def _stderr_tail(self, path: str) -> str:
        try:
            with open(path, "rb") as f:
                return f.read()[-800:].decode("utf-8", "replace").strip()
        except OSError:
            return ""

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, message: dict) -> None:
        payload = json.dumps(message).encode()
        self.sock.sendall(struct.pack("!i", len(payload)) + payload)

    def _receive(self, timeout: float) -> dict | None:
        """The next complete message, or None when none arrived within ``timeout``."""
        message = self._parse()
        if message is not None:
            return message
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return None
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError(_describe_exit(self._wait_exit()))
        self.buffer += chunk
        return self._parse()

    def _parse(self) -> dict | None:
        if len(self.buffer) < 4:
            return None
        (size,) = struct.unpack("!i", self.buffer[:4])
        if size < 0 or size > MAX_MESSAGE_BYTES:
            raise _Malformed(f"message of {size} bytes")
        if len(self.buffer) < 4 + size:
            return None
        payload, self.buffer = self.buffer[4:4 + size], self.buffer[4 + size:]
        try:
            message = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise _Malformed(f"undecodable message ({type(exc).__name__})") from None
        if not isinstance(message, dict):
            raise _Malformed("a message that is not an object")
        return message

    def _wait_exit(self) -> int | None:
        try:
            return self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL the worker's whole process group and remove its directory."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            pass
        self._cleanup()

    def close(self) -> None:
        """Ask the worker to exit (EOF on its connection), kill it if it does not."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def _cleanup(self) -> None:
        try:
            self.sock.close()
        except (OSError, AttributeError):
            pass
        shutil.rmtree(self.base, ignore_errors=True)

    # -- one job ---------------------------------------------------------------------------

    def run_job(self, job: dict, spec: Any, limits: Limits) -> tuple[list[GameRecord], list[str] | None]:
        """Send ``job`` and watch it -> (one record per seed, probe answers or None)."""
        seeds: list[int] = job["seeds"]
        records: list[GameRecord] = []
        answers: list[str] | None = None
        job_id = job["id"]
        poll = max(0.005, min(0.05, limits.move_seconds / 4))
        start = now = time.monotonic()
        last_tick, tick_seen = self.hb[2], now
        last_game, game_seen = -1, now
        # A bound on the whole job whatever the heartbeat says (the probe boards count as moves).
        deadline = start + limits.game_seconds * (len(seeds) + 1) + limits.move_seconds * len(job["probe"]) + 1.0
        failure: tuple[str, str] | None = None
        self.jobs += 1
        try:
            self.send(job)
            while True:
                message = self._receive(poll)
                now = time.monotonic()
                if message is not None:
                    if message.get("t") == "game":
                        records.append(_validate_game(message, len(records), seeds, spec, now - start))
                        continue
                    if message.get("t") == "done":
                        answers = _validate_answers(message.get("probe"), len(job["probe"]))
                        break
                    if message.get("t") == "fatal":
                        failure = ("crashed", "the worker failed: " + _last_line(message.get("error")))
                        break
                    raise _Malformed(f"unexpected message type {str(message.get('t'))[:40]!r}")
                tick = self.hb[2]
                if tick != last_tick:
                    last_tick, tick_seen = tick, now
                game = self.hb[1] if self.hb[0] == job_id else 0
                if game != last_game:
                    last_game, game_seen = game, now
                if now - tick_seen > limits.move_seconds + poll:
                    failure = ("timeout", f"a move took longer than {limits.move_seconds:g}s (worker killed)")
                elif now - game_seen > limits.game_seconds + poll:
                    failure = ("timeout", f"the game took longer than {limits.game_seconds:g}s (worker killed)")
                elif now > deadline:
                    failure = ("timeout", f"the games took longer than {deadline - start:.3g}s in all "
                                          "(worker killed)")
                if failure:
                    break
        except _Malformed as exc:
            failure = ("crashed", f"the worker sent malformed data ({str(exc)[:200]}); worker replaced")
        except EOFError as exc:
            failure = ("crashed", str(exc))
        except OSError as exc:
            failure = ("crashed", f"lost the worker ({exc})")
        if failure is not None:
            self.kill()
            records += _failed_records(seeds, len(records), failure, time.monotonic() - game_seen)
        return records, answers


def _last_line(text: Any) -> str:
    lines = [ln for ln in str(text or "").strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "unknown error")[:ERROR_CHARS]


def _failed_records(seeds: Sequence[int], done: int, failure: tuple[str, str],
                    elapsed: float) -> list[GameRecord]:
    outcome, error = failure
    out = []
    for i in range(done, len(seeds)):
        if i == done:
            out.append(GameRecord(seed=seeds[i], outcome=outcome, error=error[:ERROR_CHARS],
                                  wall_seconds=max(0.0, elapsed)))
        else:
            out.append(GameRecord(seed=seeds[i], outcome=outcome, error=(
                f"not played: the worker was lost in the game with seed {seeds[done]} ({error})")[:ERROR_CHARS]))
    return out


def _number(value: Any, name: str, low: float = 0.0, high: float = 1e18, integer: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Malformed(f"{name} is not a number")
    if integer and not isinstance(value, int):
        raise _Malformed(f"{name} is not an integer")
    if not math.isfinite(value) or not low <= value <= high:
        raise _Malformed(f"{name} = {value!r} is out of range")
    return value


def _freeze_view(view: Any, depth: int = 0, budget: list[int] | None = None) -> Any:
    """A game view from a worker as nested tuples of numbers/strings, bounded in size."""
    budget = [4096] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0 or depth > 4:
        raise _Malformed("final view too large")
    if isinstance(view, list):
        return tuple(_freeze_view(v, depth + 1, budget) for v in view)
    if isinstance(view, bool) or view is None:
        return view
    if isinstance(view, (int, float)):
        return _number(view, "final view cell", -1e18, 1e18)
    if isinstance(view, str) and len(view) <= 64:
        return view
    raise _Malformed("final view has an unexpected value")


def _validate_game(msg: dict, index: int, seeds: Sequence[int], spec: Any, elapsed: float) -> GameRecord:
    """A GameRecord from a worker's game message, after checking every field."""
    if msg.get("i") != index or index >= len(seeds) or msg.get("seed") != seeds[index]:
        raise _Malformed(f"game message out of order (index {str(msg.get('i'))[:20]})")
    outcome = msg.get("outcome")
    if outcome not in WORKER_OUTCOMES:
        raise _Malformed(f"unknown outcome {str(outcome)[:40]!r}")
    error = msg.get("error", "")
    if not isinstance(error, str):
        raise _Malformed("error is not a string")
    if "moves" not in msg:  # the program never loaded: nothing was played
        return GameRecord(seed=seeds[index], outcome=outcome, error=error[:ERROR_CHARS])
    hist = msg.get("hist")
    if not isinstance(hist, dict) or set(hist) != set(spec.actions):
        raise _Malformed("bad move histogram")
    histogram = {a: _number(hist[a], "histogram count", integer=True) for a in spec.actions}
    metrics_in = msg.get("metrics")
    if not isinstance(metrics_in, dict) or not set(metrics_in) <= set(spec.metric_names):
        raise _Malformed("bad metrics")
    metrics = {k: float(_number(v, f"metric {k}", -1e18, 1e18)) for k, v in metrics_in.items()}
    moves = _number(msg.get("moves"), "moves", integer=True)
    illegal = _number(msg.get("illegal"), "illegal moves", integer=True)
    if sum(histogram.values()) != moves + illegal:  # every valid move returned either moved or not
        raise _Malformed("histogram does not add up to the moves made")
    return GameRecord(
        seed=seeds[index], outcome=outcome,
        score=float(_number(msg.get("score"), "score", -1e18, 1e18)),
        max_tile=int(_number(msg.get("max_tile"), "max_tile", integer=True)),
        moves=moves, move_histogram=histogram, illegal_moves=illegal,
        wall_seconds=float(_number(msg.get("wall"), "wall", 0.0, elapsed + 1.0)),
        error=error[:ERROR_CHARS], metrics=metrics, final_view=_freeze_view(msg.get("view")),
    )


def _validate_answers(answers: Any, count: int) -> list[str]:
    if not isinstance(answers, list) or len(answers) != count or not all(
            isinstance(a, str) and len(a) <= 64 for a in answers):
        raise _Malformed("bad probe answers")
    return answers


# --- probe boards ----------------------------------------------------------------------------

_PROBE_CACHE: dict[tuple, list] = {}
_PROBE_LOCK = threading.Lock()


def probe_boards(game: str = "2048", options: Mapping[str, Any] | None = None,
                 count: int = PROBE_BOARDS) -> list:
    """Fixed boards of ``game`` (reached by seeded random play) on which strategies must agree."""
    key = (game, json.dumps(dict(options or {}), sort_keys=True), count)
    with _PROBE_LOCK:
        if key in _PROBE_CACHE:
            return _PROBE_CACHE[key]
    import envs

    spec = envs.get(game)
    rng = random.Random(20480)
    boards = []
    seed = 0
    while len(boards) < count:
        state = spec.make(seed, **dict(options or {}))
        # Views early, mid and late in a random game, so the probe sees varied boards.
        marks = {0, 3, 12, 40, 120}
        for step in range(121):
            if step in marks:
                boards.append(spec.view(state))
                if len(boards) == count:
                    break
            if spec.is_over(state):
                break
            spec.step(state, rng.randrange(len(spec.actions)))
        seed += 1
    with _PROBE_LOCK:
        _PROBE_CACHE[key] = boards
    return boards


# --- the pool --------------------------------------------------------------------------------


def _limits_dict(limits: Limits) -> dict:
    return dataclasses.asdict(limits)


class WorkerPool:
    """Warm sandbox workers, used in parallel; a killed or crashed worker is replaced on next use.

    ``workers`` defaults to the CPU cores this process may use (at most 32). One extra worker, started with another
    ``PYTHONHASHSEED``, answers the determinism probe. Use as a context manager or call
    :meth:`close`. Strategy output is always discarded (``Limits.output_bytes`` is not used).
    ``restricted=False`` on :meth:`run` / :meth:`run_many` compiles with plain ``compile`` and
    full builtins: only tests use it, to show the audit hook and process layers hold alone.
    """

    def __init__(self, workers: int | None = None, game: str = "2048") -> None:
        self.workers = max(1, int(workers if workers is not None else _available_cores()))
        self.game = game
        self._slots: list[_Worker | None] = [None] * self.workers
        self._idle: Queue[int] = Queue()
        for i in range(self.workers):
            self._idle.put(i)
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sandbox")
        self._probe_worker: _Worker | None = None
        self._probe_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-probe")
        self._probe_cache: OrderedDict[str, list[str] | None] = OrderedDict()
        self._probe_lock = threading.Lock()
        self._job_ids = iter(range(1, 1 << 62))
        self._id_lock = threading.Lock()
        self.replaced = 0     # workers started again after a kill or crash
        self.closed = False

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def warm(self) -> None:
        """Start every worker now (otherwise each starts on first use)."""
        futures = [self._executor.submit(self._start_slot_now) for _ in range(self.workers)]
        for f in futures:
            f.result()

    def _start_slot_now(self) -> None:
        index = self._idle.get()
        try:
            self._worker(index)
        finally:
            self._idle.put(index)

    def _worker(self, index: int) -> _Worker:
        worker = self._slots[index]
        if worker is None or not worker.alive:
            if worker is not None:
                worker.kill()
                self.replaced += 1
            worker = self._slots[index] = _start(MAIN_HASH_SEED, self.game)
        return worker

    def _next_id(self) -> int:
        with self._id_lock:
            return next(self._job_ids)

    def close(self) -> None:
        """Stop every worker and remove their directories."""
        if self.closed:
            return
        self.closed = True
        self._executor.shutdown(wait=True)
        self._probe_executor.shutdown(wait=True)
        for worker in self._slots + [self._probe_worker]:
            if worker is not None:
                worker.close()
        self._slots = [None] * self.workers
        self._probe_worker = None

    # -- jobs ------------------------------------------------------------------------------

    def _run_job(self, job: dict, spec: Any, limits: Limits) -> tuple[list[GameRecord], list[str] | None]:
        index = self._idle.get()
        try:
            worker = self._worker(index)
            records, answers = worker.run_job(job, spec, limits)
            if not worker.alive:
                worker.kill()
            return records, answers
        finally:
            self._idle.put(index)

    def _reference_answers(self, key: str, job: dict, spec: Any, limits: Limits) -> list[str] | None:
        """The probe answers of a fresh worker with another hash seed (cached per source)."""
        with self._probe_lock:
            if key in self._probe_cache:
                self._probe_cache.move_to_end(key)
                return self._probe_cache[key]
        if self._probe_worker is None or not self._probe_worker.alive:
            if self._probe_worker is not None:
                self._probe_worker.kill()
            self._probe_worker = _start(PROBE_HASH_SEED, self.game)
        _, answers = self._probe_worker.run_job({**job, "seeds": [], "id": self._next_id()}, spec, limits)
        with self._probe_lock:
            self._probe_cache[key] = answers
            while len(self._probe_cache) > 4096:
                self._probe_cache.popitem(last=False)
        return answers

    def run_many(self, sources: Sequence[str], game: str = "2048", seeds: Iterable[int] = (0,),
                 limits: Limits | None = None, options: Mapping[str, Any] | None = None,
                 policy: Any = None, *, restricted: bool = True) -> list[list[GameRecord]]:
        """Play every seed with every source, in parallel -> one list of records per source."""
        if self.closed:
            raise RuntimeError("this WorkerPool is closed")
        import envs

        spec = envs.get(game)
        seeds = [int(s) for s in seeds]
        limits = limits or Limits()
        options = dict(options or {})
        spec.make(0, **options)  # unknown options: one clear ValueError now, not one per worker
        builtin_names, methods = _policy_names(policy)
        boards = probe_boards(game, options)
        results: list[list[GameRecord] | None] = [None] * len(sources)
        runnable = []
        for s, source in enumerate(sources):
            rejection = _static_rejection(source, policy)
            if rejection:
                results[s] = [GameRecord(seed=seed, outcome="violation", error=rejection) for seed in seeds]
            else:
                runnable.append(s)
        # Split each program's seeds so that every worker has work even for a single program.
        chunks = max(1, min(len(seeds), -(-self.workers // max(1, len(runnable)))))
        size = -(-len(seeds) // chunks) if seeds else 0
        parts = [seeds[i:i + size] for i in range(0, len(seeds), size)] if seeds else [[]]
        futures: dict[int, list[Future]] = {}
        references: dict[int, Future] = {}
        for s in runnable:
            base = {"game": game, "origin": _spec_origin(spec), "options": options,
                    "limits": _limits_dict(limits), "source": sources[s],
                    "builtins": builtin_names, "methods": methods, "restricted": restricted, "probe": boards}
            key = hashlib.sha256(json.dumps([sources[s], game, options, builtin_names, methods, restricted],
                                            sort_keys=True).encode()).hexdigest()
            references[s] = self._probe_executor.submit(self._reference_answers, key, base, spec, limits)
            futures[s] = [self._executor.submit(self._run_job, {**base, "seeds": part, "id": self._next_id()},
                                                spec, limits) for part in parts]
        for s in runnable:
            records: list[GameRecord] = []
            mismatch = ""
            reference = references[s].result()
            for future in futures[s]:
                part_records, answers = future.result()
                records += part_records
                if not mismatch and reference is not None and answers is not None:
                    mismatch = _compare(reference, answers)
            if mismatch:
                # A violation the worker already named keeps its name (it also explains the mismatch).
                records = [r if r.outcome == "violation" else
                           dataclasses.replace(r, outcome="violation", error=mismatch[:ERROR_CHARS])
                           for r in records]
            results[s] = records
        return [r if r is not None else [] for r in results]

    def run(self, source: str, game: str = "2048", seeds: Iterable[int] = (0,), limits: Limits | None = None,
            options: Mapping[str, Any] | None = None, policy: Any = None, *,
            restricted: bool = True) -> list[GameRecord]:
        """Play every seed with ``source`` -> one record per seed."""
        return self.run_many([source], game, seeds, limits, options, policy, restricted=restricted)[0]


def _available_cores() -> int:
    # Cores this process may run on (affinity, cgroups via sched_getaffinity), capped: each warm
    # worker holds about 150 MB resident.
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 32))


def _start(hash_seed: int, game: str) -> _Worker:
    # One retry: a start can fail for a passing reason (a full process table, a slow disk).
    try:
        return _Worker(hash_seed, game)
    except SandboxUnavailable:
        return _Worker(hash_seed, game)


def _compare(reference: list[str], answers: list[str]) -> str:
    for k, (a, b) in enumerate(zip(reference, answers)):
        if a != b:
            return (f"randomness: the strategy answered {b!r} and {a!r} on the same board (probe board {k}) "
                    "in two runs; its answer must depend only on the board")
    return ""


def _policy_names(policy: Any) -> tuple[list[str] | None, list[str] | None]:
    """(builtins, attribute names) the policy allows; None leaves the worker's safe defaults.

    ``UNCHECKED`` skips only the static check: the runtime layers keep the default policy's lists.
    """
    if policy is None or policy is UNCHECKED:
        try:
            from sandbox.policy import DEFAULT_POLICY
        except ImportError:
            return None, None
        policy = DEFAULT_POLICY
    out = []
    for attr in ("allowed_builtins", "allowed_methods"):
        names = getattr(policy, attr, None)
        ok = names is not None and not callable(names) and not isinstance(names, str)
        out.append(sorted(str(n) for n in names) if ok else None)
    return out[0], out[1]


def _static_rejection(source: str, policy: Any) -> str:
    """'' when the static check passes (or is skipped), else the error text of its violations."""
    if not isinstance(source, str):
        return f"static check: the program is a {type(source).__name__}, not a str"
    if policy is UNCHECKED:
        return ""
    try:
        from sandbox.check import check
    except ImportError:
        return ""
    verdict = check(source, policy)
    if verdict.ok:
        return ""
    shown = "; ".join(str(v) for v in verdict.violations[:3])
    more = f" (+{len(verdict.violations) - 3} more)" if len(verdict.violations) > 3 else ""
    return f"static check: {shown}{more}"[:ERROR_CHARS]


# --- module-level API ------------------------------------------------------------------------

_DEFAULT: WorkerPool | None = None
_DEFAULT_LOCK = threading.Lock()


def default_pool() -> WorkerPool:
    """The process-wide pool (one worker per core), created on first use and closed at exit."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None or _DEFAULT.closed:
            _DEFAULT = WorkerPool()
            atexit.register(_DEFAULT.close)
        return _DEFAULT


def run(source: str, game: str = "2048", seeds: Iterable[int] = (0,), limits: Limits | None = None,
        options: Mapping[str, Any] | None = None, pool: WorkerPool | None = None,
        policy: Any = None) -> list[GameRecord]:
    """Check ``source``, then play one game per seed in a sandbox worker -> one record per seed.

    A source the static policy rejects is not executed: every record has outcome "violation".
    ``policy=UNCHECKED`` skips the static check (only the runtime layers stand).
    """
    return (pool or default_pool()).run(source, game, seeds, limits, options, policy)


def run_many(sources: Sequence[str], game: str = "2048", seeds: Iterable[int] = (0,),
             limits: Limits | None = None, options: Mapping[str, Any] | None = None,
             pool: WorkerPool | None = None, policy: Any = None) -> list[list[GameRecord]]:
    """Play the same seeds with many sources in parallel over the pool -> records per source."""
    return (pool or default_pool()).run_many(list(sources), game, seeds, limits, options, policy)
