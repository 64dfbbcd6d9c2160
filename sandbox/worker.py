"""The sandbox worker process: compiles a strategy with RestrictedPython and plays whole games.

Started by :mod:`sandbox.runner` as ``python -s -P -m sandbox.worker CONN_FD HEARTBEAT_FD GAME``
with a minimal environment, a fixed ``PYTHONHASHSEED`` and a private temporary working
directory. It talks to the parent over one socket with length-prefixed JSON messages (never
pickle: a subverted worker must not be able to run code in the parent by what it sends).

Layers that stand between a strategy and the machine, inside this process:

1. RestrictedPython: the source is compiled with ``compile_restricted`` (no names or
   attributes starting with ``_``, every attribute, item, iteration, write and in-place
   operation goes through a guard).
2. A minimal builtins dict: only the pure builtins the static policy allows (no
   ``__import__``, ``open``, ``eval``, ``getattr``...), ``print`` discarding its output.
3. An audit hook (``sys.addaudithook``), armed only while strategy code runs: any import,
   open, exec/compile, process, socket, frame or code-object event ends the game with
   ``violation`` naming the event. The verdict is sticky, so catching the exception the hook
   raises does not help.
4. Process limits: RLIMIT_AS and RLIMIT_CPU here, wall-time limits enforced by the parent,
   which SIGKILLs this process when the heartbeat stops or a game runs too long.

The parent decides the outcome of every game from what this process sends, after checking
its types and ranges.
"""
from __future__ import annotations

import json
import operator
import os
import resource
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any, Callable

from sandbox import restricted
from sandbox.restricted import GUARD, LoadError, describe_exception, load_strategy

# Heartbeat slots (uint64) in the page shared with the parent.
HB_JOB, HB_GAME, HB_TICK = 0, 1, 2
HB_SLOTS = 8

MAX_MESSAGE_BYTES = 8 << 20      # the parent refuses larger messages from a worker
ERROR_CHARS = 300                # error messages are truncated to this many characters
ANSWER_CHARS = 24                # probe answers are truncated to this many characters

# --- the game loop --------------------------------------------------------------------------


class Heartbeat:
    """The shared page the parent watches: job id, game index and a tick per strategy call."""

    def __init__(self, fd: int | None) -> None:
        if fd is None:
            self.slots: Any = [0] * HB_SLOTS
            return
        import mmap

        self._map = mmap.mmap(fd, HB_SLOTS * 8)
        self.slots = memoryview(self._map).cast("Q")


def call_strategy(fn: Callable, board: Any, hb: Any) -> tuple[str, Any]:
    """Call the strategy once, armed -> ("ok", value) | ("error", msg) | ("violation", msg)."""
    hb[HB_TICK] += 1
    try:
        GUARD.armed = True
        value = fn(board)
        GUARD.armed = False
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt cannot reach us (parent kills)
        GUARD.armed = False
        hb[HB_TICK] += 1
        if GUARD.violation:
            return "violation", GUARD.violation
        if isinstance(exc, MemoryError):
            return "memory", "out of memory (MemoryError) in the strategy"
        return "error", describe_exception(exc)
    hb[HB_TICK] += 1
    if GUARD.violation:
        return "violation", GUARD.violation
    return "ok", value


def describe_output(value: Any, actions: tuple[str, ...]) -> str:
    """Why ``value`` is not a move, without running any method of it."""
    if type(value) is str:
        return f"returned {value[:ANSWER_CHARS]!r}, which is not one of {list(actions)}"
    return f"returned a value of type {type(value).__name__}, not a str (one of {list(actions)})"


def play_game(spec: Any, fn: Callable, seed: int, options: dict, limits: dict, hb: Any) -> dict:
    """Play one seeded game with ``fn`` -> the record fields as plain JSON-able data."""
    actions = spec.actions
    action_ids = {a: i for i, a in enumerate(actions)}
    histogram = dict.fromkeys(actions, 0)
    start = time.perf_counter()
    state = spec.make(seed, **options)
    moves = illegal = stuck_run = 0
    outcome, error = "", ""
    max_moves, stuck_moves = limits["max_moves"], limits["stuck_moves"]
    while True:
        if spec.is_over(state):
            outcome = "finished"
            break
        if moves >= max_moves:
            outcome = "max_moves"
            break
        status, value = call_strategy(fn, spec.view(state), hb)
        if status != "ok":
            outcome = {"memory": "crashed"}.get(status, status)
            error = value
            break
        if type(value) is not str or value not in action_ids:
            outcome, error = "invalid_output", describe_output(value, actions)
            break
        histogram[value] += 1
        _, changed = spec.step(state, action_ids[value])
        if changed:
            moves += 1
            stuck_run = 0
        else:
            illegal += 1
            stuck_run += 1
            if stuck_run >= stuck_moves:
                outcome = "stuck"
                error = f"{stuck_run} moves in a row did not change the board"
                break
    if outcome in ("finished", "max_moves", "stuck") and spec.won(state):
        outcome = "won"
    metrics = {k: float(v) for k, v in spec.metrics(state).items()}
    return {
        "seed": seed, "outcome": outcome, "score": metrics.get("score", 0.0),
        "max_tile": int(metrics.get("max_tile", 0)), "moves": moves, "hist": histogram,
        "illegal": illegal, "wall": time.perf_counter() - start, "error": error,
        "metrics": metrics, "view": spec.view(state),
    }


def probe_answers(fn: Callable, boards: list, hb: Any) -> list[str]:
    """The strategy's answer on each probe board, as short comparable strings."""
    answers = []
    for board in boards:
        status, value = call_strategy(fn, json.loads(json.dumps(board)), hb)
        if status != "ok":
            answers.append(f"<{status}: {value[:ANSWER_CHARS]}>")
        elif type(value) is str:
            answers.append(value[:ANSWER_CHARS])
        else:
            answers.append(f"<{type(value).__name__}>")
    return answers


def set_limits(limits: dict, baseline_as: int) -> None:
    """Soft RLIMIT_CPU (per job, on top of the CPU already used) and RLIMIT_AS (over the warm baseline)."""
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
    """Play every seed of ``job`` (sending one message per game), then answer the probe boards."""
    spec = game_spec(job["game"], job.get("origin"))
    restricted.set_allowed_attributes(job.get("methods"))
    options = job.get("options") or {}
    limits = job["limits"]
    set_limits(limits, baseline_as)
    hb[HB_JOB] = job["id"]
    hb[HB_GAME] = 0
    hb[HB_TICK] += 1
    seeds = job.get("seeds") or []
    try:
        fn = load_strategy(job["source"], job.get("builtins"), job.get("restricted", True))
    except LoadError as exc:
        for i, seed in enumerate(seeds):
            send({"t": "game", "i": i, "seed": seed, "outcome": exc.outcome, "error": exc.message})
        send({"t": "done", "probe": [f"<{exc.outcome}>"] * len(job.get("probe") or [])})
        return
    for i, seed in enumerate(seeds):
        hb[HB_GAME] = i + 1
        record = play_game(spec, fn, seed, options, limits, hb)
        send({"t": "game", "i": i, **record})
    probe = job.get("probe") or []
    hb[HB_GAME] = len(seeds) + 1
    send({"t": "done", "probe": probe_answers(fn, probe, hb) if probe else []})


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


def warm(game: str) -> None:
    """Load the engine of ``game`` and compile everything a game touches, before any job."""
    import envs

    spec = envs.get(game)
    state = spec.make(0)
    for i in range(len(spec.actions)):
        spec.step(state, i)
    spec.legal_mask(state), spec.is_over(state), spec.won(state), spec.view(state), spec.metrics(state)
    import RestrictedPython  # noqa: F401 - imported once per worker, not per job

    load_strategy(spec.example)


def main(argv: list[str] | None = None) -> int:
    """Worker entry: handshake, then serve jobs until the parent closes the connection."""
    argv = sys.argv[1:] if argv is None else argv
    conn = Connection(int(argv[0]))
    hb = Heartbeat(int(argv[1])).slots
    game = argv[2] if len(argv) > 2 else "2048"

    def send(message: dict) -> None:
        conn.send_bytes(json.dumps(message, allow_nan=False).encode())

    # Strategy output and our own stray output go nowhere; the parent hears only `conn`.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    try:
        warm(game)
        sys.addaudithook(GUARD.hook)
        baseline_as = address_space()
    except BaseException:  # noqa: BLE001 - report why we cannot serve, then exit
        send({"t": "fatal", "error": traceback.format_exc()[-2000:]})
        return 1
    send({"t": "ready", "pid": os.getpid()})
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return 0
        job = json.loads(raw)
        try:
            run_job(job, send, hb, baseline_as)
        except BaseException:  # noqa: BLE001 - a bug of ours or the engine's: tell the parent, exit
            GUARD.armed = False
            send({"t": "fatal", "error": traceback.format_exc()[-2000:]})
            return 1


if __name__ == "__main__":
    raise SystemExit(main())
