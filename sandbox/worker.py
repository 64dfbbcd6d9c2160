"""The sandbox worker: a warm zygote process that forks one fresh child per job.

Wire protocol (the parent's side is :mod:`sandbox.runner`; both sides take the framing, the
fork request, the heartbeat layout and the message limit from the constants defined here,
and neither re-declares them):

* The zygote is started as ``python -s -P -m sandbox.worker CONTROL_FD GAME`` with a minimal
  environment and the pool's secret ``PYTHONHASHSEED`` (the same for both zygotes of a pool, so
  play and probe hash strings alike). It loads the game engine, RestrictedPython and
  the audit hook once (about a second), then says ``{"t": "ready"}`` on the control socket.
* For each job the parent makes a socket pair and a heartbeat page (a memfd of
  ``HB_BYTES``: ``HB_SLOTS`` uint64) and passes one end of each to the zygote over the
  control socket (``SCM_RIGHTS``, payload ``FORK_REQUEST`` = ``b"F"``). The zygote forks and
  answers the child's pid as 8 bytes (``PID``: ``!q``). The child closes the control socket,
  starts its own session, reads one job from its socket, runs it and exits. So every
  program starts from the same warm state and nothing one program does (memory it keeps,
  objects, module state, interpreter caches, files in its directory) can reach another
  program's games.
* Messages on a job socket (and the zygote's on the control socket) are JSON objects, each
  prefixed by its length as ``!i`` (``FRAME``), at most ``MAX_MESSAGE_BYTES`` long (never
  pickle: a subverted child must not be able to run code in the parent by what it sends).
  Child to parent: ``game`` (one per seed, the record of :func:`envs.play.play_game` plus the
  sampled ``(board, answer, seconds)`` triples of that game and ``load``, the seconds the job
  took to load the program), ``answer`` (one per probe
  board), ``done``, ``fatal`` (a bug of ours, with the traceback).
* Heartbeat slots: ``HB_JOB`` (job id), ``HB_GAME`` (index of the game or probe board in
  progress, from 1; 0 while the program loads, which the move limit does not cover), ``HB_TICK`` (bumped before and after every strategy call: the parent
  kills a child whose tick stops moving), ``HB_EXIT`` (written by the zygote when it reaps the
  child: 1 + the raw wait status, so the parent can say how a child died).

Layers inside a child, besides those of :mod:`sandbox.restricted`: RLIMIT_AS and RLIMIT_CPU
set before the program loads; wall-time limits are the parent's, which SIGKILLs the child.
The parent decides the outcome of every game from what the child sends, after checking its
types and ranges.
"""
from __future__ import annotations

import json
import mmap
import os
import random
import resource
import signal
import socket
import struct
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any, Callable

from envs.registry import DEFAULT_GAME
from sandbox import restricted
from sandbox.restricted import GUARD, LoadError, describe_exception, load_strategy

__all__ = ["HB_JOB", "HB_GAME", "HB_TICK", "HB_EXIT", "HB_SLOTS", "HB_BYTES", "FRAME", "PID",
           "FORK_REQUEST", "MAX_MESSAGE_BYTES", "ANSWER_CHARS", "answer_text", "call_strategy", "run_job", "main"]

# The wire protocol's constants (see the module docstring); sandbox.runner imports them.
# Heartbeat slots (uint64) in the page shared with the parent.
HB_JOB, HB_GAME, HB_TICK, HB_EXIT = 0, 1, 2, 3
HB_SLOTS = 8
HB_BYTES = HB_SLOTS * 8          # size of the heartbeat page

FRAME = struct.Struct("!i")      # length prefix of every message on a job or control socket
PID = struct.Struct("!q")        # the zygote's answer to a fork request
FORK_REQUEST = b"F"
MAX_MESSAGE_BYTES = 8 << 20      # the parent refuses larger messages (and a child a larger job)
ANSWER_CHARS = 24                # answers compared by the determinism probe are cut to this


# --- one strategy call ------------------------------------------------------------------------


def call_strategy(fn: Callable, board: Any, hb: Any) -> tuple[str, Any]:
    """Call the strategy once, armed -> ("ok", value) | ("error", msg) | ("violation", msg) | ("crashed", msg)."""
    hb[HB_TICK] += 1
    try:
        GUARD.armed = True
        value = fn(board)
        GUARD.armed = False
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt cannot reach us (the parent kills)
        GUARD.armed = False
        hb[HB_TICK] += 1
        if GUARD.violation:
            return "violation", GUARD.violation
        if isinstance(exc, MemoryError):
            return "crashed", "out of memory (MemoryError) in the strategy"
        return "error", describe_exception(exc)
    hb[HB_TICK] += 1
    if GUARD.violation:
        return "violation", GUARD.violation
    return "ok", value


def answer_text(status: str, value: Any) -> str:
    """A call's result as a short string the determinism probe compares.

    Errors compare by exception type only: a message may quote a memory address.
    """
    if status == "ok":
        return value[:ANSWER_CHARS] if type(value) is str else f"<{type(value).__name__}>"
    if status == "error":
        return f"<error:{str(value).split(':', 1)[0][:ANSWER_CHARS]}>"
    return f"<{status}>"


class _Sampler:
    """A reservoir of ``count`` calls of one game, chosen by a seeded RNG the program cannot see.

    Which calls are kept is decided before each call, so a board is copied (before the
    strategy can touch it) only when it is kept.
    """

    def __init__(self, count: int, key: str) -> None:
        self.count = count
        self.rng = random.Random(key)
        self.calls = 0
        self.items: list[list[Any]] = []

    def slot(self) -> int:
        """Where this call goes in the reservoir, or -1 when it is not kept."""
        i = self.calls
        self.calls += 1
        if i < self.count:
            self.items.append([])
            return i
        j = self.rng.randrange(i + 1)
        return j if j < self.count else -1


def _asker(fn: Callable, hb: Any, sampler: _Sampler | None) -> Callable[[Any], tuple[str, Any]]:
    """The ``ask`` of :func:`envs.play.play_game`: one guarded call, sampled for the probe."""
    if sampler is None or sampler.count <= 0:
        return lambda view: call_strategy(fn, view, hb)

    def ask(view: Any) -> tuple[str, Any]:
        slot = sampler.slot()
        if slot < 0:
            return call_strategy(fn, view, hb)
        board = json.loads(json.dumps(view))
        start = time.perf_counter()
        status, value = call_strategy(fn, view, hb)
        sampler.items[slot] = [board, answer_text(status, value), time.perf_counter() - start]
        return status, value

    return ask


# --- one job, in a forked child ------------------------------------------------------------------


def set_limits(limits: dict, baseline_as: int) -> None:
    """Soft RLIMIT_CPU (on top of the CPU already used) and RLIMIT_AS (over the warm baseline)."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = int(used.ru_utime + used.ru_stime) + max(1, int(limits["cpu_seconds"]))
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu if hard == resource.RLIM_INFINITY else min(cpu, hard), hard))
    memory = limits["memory_bytes"]
    if memory and memory > 0:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = baseline_as + int(memory)
        resource.setrlimit(resource.RLIMIT_AS, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def address_space() -> int:
    """This process's current virtual memory size in bytes (0 when unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def run_job(job: dict, send: Callable[[dict], None], hb: Any, baseline_as: int) -> None:
    """Play every seed of a game job (one ``game`` message each), or answer every board of a probe job."""
    from envs.play import play_game

    spec = game_spec(job["game"], job.get("origin"))
    restricted.set_allowed_attributes(job.get("methods"))
    limits = job["limits"]
    set_limits(limits, baseline_as)
    hb[HB_JOB] = job["id"]
    hb[HB_GAME] = 0
    hb[HB_TICK] += 1
    boards = job.get("boards")
    seeds = job.get("seeds") or []
    _perturb_heap(job.get("heap"))
    start = time.perf_counter()
    try:
        # `recursion`: only a policy whose static check allows recursion lets functions re-enter.
        fn = load_strategy(job["source"], job.get("builtins"), job.get("restricted", True),
                           job.get("recursion") is True, api=game_api(spec, job.get("api"), job.get("options") or {}))
    except LoadError as exc:
        if boards is not None:
            for k in range(len(boards)):
                send({"t": "answer", "i": k, "a": answer_text(exc.outcome, exc.message)})
        else:
            for i, seed in enumerate(seeds):
                send({"t": "game", "i": i, "seed": seed, "outcome": exc.outcome, "error": exc.message})
        send({"t": "done"})
        return
    load = time.perf_counter() - start
    if boards is not None:
        for k, board in enumerate(boards):
            hb[HB_GAME] = k + 1
            send({"t": "answer", "i": k, "a": answer_text(*call_strategy(fn, board, hb))})
        send({"t": "done"})
        return
    sample = job.get("sample") or {}
    for i, seed in enumerate(seeds):
        hb[HB_GAME] = i + 1
        sampler = _Sampler(int(sample.get("count", 0)), f"{sample.get('key', '')}:{seed}")
        record = play_game(spec, _asker(fn, hb, sampler), seed, job.get("options") or {},
                           max_moves=limits["max_moves"], stuck_moves=limits["stuck_moves"])
        send({"t": "game", "i": i, **record, "sample": [s for s in sampler.items if s], "load": load})
    send({"t": "done"})


_BALLAST: list = []


def _perturb_heap(key: Any) -> None:
    """Shift where the program's objects will live by a secret amount, different in every job.

    Children forked from the same warm state allocate at the same offsets, so the low bits of
    an address that leaks into a program's answer (``str`` of a bound method in a container)
    would often agree between play and the probe. A few objects of every small size class,
    in secret numbers kept alive for the whole job, make them disagree.
    """
    if key is None:
        return
    rng = random.Random(f"heap:{key}")
    for size in range(0, 512, 8):
        _BALLAST.extend(bytes(size) for _ in range(rng.randrange(8)))
    _BALLAST.extend([None] * rng.randrange(1, 64) for _ in range(rng.randrange(1, 16)))


def game_api(spec: Any, names: Any, options: dict) -> dict[str, Callable]:
    """The game's API functions called ``names``, built for the job's ``options`` (none when ``names`` is empty).

    The same functions in play and in the probe (both jobs carry the same names and options), and
    no state: each job builds its own from the game's spec.
    """
    if not names:
        return {}
    wanted = set(names)
    return {name: fn for name, fn in spec.api_functions(**options).items() if name in wanted}


def game_spec(name: str, origin: list[str] | None) -> Any:
    """The spec of game ``name``, loading the module that registers it when ``envs`` does not."""
    import envs

    if name not in envs.names() and origin:
        module_name, path = origin
        if module_name not in sys.modules:
            import importlib.util

            loader_spec = importlib.util.spec_from_file_location(module_name, path)
            if loader_spec is not None and loader_spec.loader is not None:
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[module_name] = module
                loader_spec.loader.exec_module(module)
    return envs.get(name)


def _child(job_fd: int, hb_map: mmap.mmap, baseline_as: int) -> None:
    """The forked child: read one job, run it, exit. Never returns."""
    code = 1
    try:
        # multiprocessing's Connection frames each message with its length as "!i": FRAME.
        conn = Connection(job_fd)
        hb = memoryview(hb_map).cast("Q")

        def send(message: dict) -> None:
            conn.send_bytes(json.dumps(message, allow_nan=False).encode())

        try:
            job = json.loads(conn.recv_bytes(MAX_MESSAGE_BYTES))
            workdir = job.get("workdir")
            if workdir:
                os.chdir(workdir)
                os.environ["HOME"] = os.environ["TMPDIR"] = workdir
            run_job(job, send, hb, baseline_as)
            code = 0
        except BaseException:  # noqa: BLE001 - a bug of ours or the engine's: tell the parent
            GUARD.armed = False
            try:
                send({"t": "fatal", "error": traceback.format_exc()[-2000:]})
            except BaseException:  # noqa: BLE001 - the parent is gone; nothing left to tell
                pass
    finally:
        os._exit(code)


# --- the zygote ----------------------------------------------------------------------------------


def warm(game: str) -> None:
    """Load the engine of ``game`` and everything a job touches, once, before any fork."""
    import envs
    import envs.play  # noqa: F401 - the game loop every job runs

    spec = envs.get(game)
    state = spec.make(0)
    for i in range(len(spec.actions)):
        spec.step(state, i)
    spec.legal_mask(state), spec.is_over(state), spec.won(state), spec.view(state), spec.metrics(state)
    import RestrictedPython  # noqa: F401 - imported once, not per job

    load_strategy(spec.example)


def main(argv: list[str] | None = None) -> int:
    """Zygote entry: warm up, then fork one child per request until the parent closes the control socket."""
    argv = sys.argv[1:] if argv is None else argv
    control = socket.socket(fileno=int(argv[0]))
    game = argv[1] if len(argv) > 1 else DEFAULT_GAME

    def tell(message: dict) -> None:
        payload = json.dumps(message).encode()
        control.sendall(FRAME.pack(len(payload)) + payload)

    # Strategy output and our own stray output go nowhere; the parent hears only the sockets.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    try:
        warm(game)
        sys.addaudithook(GUARD.hook)
        baseline_as = address_space()
    except BaseException:  # noqa: BLE001 - report why we cannot serve, then exit
        tell({"t": "fatal", "error": traceback.format_exc()[-2000:]})
        return 1

    children: dict[int, mmap.mmap] = {}

    def reap(*_: Any) -> None:
        # Record each dead child's wait status in its heartbeat page, for the parent to read.
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            page = children.pop(pid, None)
            if page is not None:
                memoryview(page).cast("Q")[HB_EXIT] = 1 + status
                page.close()

    signal.signal(signal.SIGCHLD, reap)
    tell({"t": "ready", "pid": os.getpid()})
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, 16, 2)
        except OSError:
            return 0
        if not data:
            return 0  # the parent closed the control socket: the pool is shutting down
        if data != FORK_REQUEST or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        job_fd, hb_fd = fds
        page = mmap.mmap(hb_fd, HB_BYTES)
        os.close(hb_fd)
        # SIGCHLD waits until the child is in `children`, so a child that dies at once is reaped with its page.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            control.close()
            os.setsid()
            for other in children.values():
                other.close()
            _child(job_fd, page, baseline_as)
        children[pid] = page
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        os.close(job_fd)
        try:
            control.sendall(PID.pack(pid))
        except OSError:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
