"""Running untrusted strategies: warm zygotes fork a fresh child per program, the parent watches.

``run(source, game, seeds)`` re-checks the source with the static policy, has a warm zygote
(:mod:`sandbox.worker`, which also documents the wire protocol) fork a child that compiles
it with RestrictedPython and plays the seeds, watches the child's heartbeat, and turns what
comes back into :class:`GameRecord` s.

Wire protocol: this module is the parent's side of the protocol that :mod:`sandbox.worker`'s
docstring describes (the zygote's command line, a fork request passing a job socket and a
heartbeat page by ``SCM_RIGHTS``, JSON messages framed by an ``!i`` length, the heartbeat
slots ``HB_JOB``/``HB_GAME``/``HB_TICK``/``HB_EXIT``, the message limit). Its constants
(``FRAME``, ``PID``, ``FORK_REQUEST``, ``HB_*``, ``MAX_MESSAGE_BYTES``) are imported from
there, never re-declared here.

Isolation: every job (one program's share of the seeds) runs in its own child forked from
the same warm state, so nothing a program does (memory it keeps alive, module state,
interpreter caches, files) can change another program's records; a fork costs milliseconds
where a fresh interpreter would cost a second.

Wall time is the parent's: the child bumps a counter (``HB_TICK``) in a shared page around
every strategy call; when it stops moving for ``Limits.move_seconds``, or one game takes
``Limits.game_seconds``, the parent SIGKILLs the child (no ``except BaseException`` can
swallow that). The caller always gets one record per seed, never an exception caused by the
strategy: games finished before a kill keep their real records, the game in progress and
the ones not yet played carry the reason (``timeout`` or ``crashed``).

Determinism is checked by replay, in a way a program cannot tell from play and that fails
closed. While it plays, the child keeps a sample of the boards it was asked about and its
answers, chosen by a seeded RNG the program cannot see. The same program is then asked
those boards again, out of order, in a fresh child of the *other* zygote (which one plays
and which one probes is drawn per program). Both zygotes start with the pool's one secret
``PYTHONHASHSEED`` (the hash secret is fixed when an interpreter starts, and forked
children inherit it), so the probe hashes strings exactly as play does: nothing marks the
probe, and a tie broken by the order of a set of strings is as deterministic as the rest
of the program within a pool (another pool's secret may break it another way). Each job
shifts the heap by a secret amount, so an answer that depends on an address differs. Any
different answer is a ``randomness`` violation: the answer depended on state kept between
calls or on addresses. A probe that crashes, or times out on a board the program answered
quickly during play, counts against the program too. Loading the program (compiling it and
running its module level) is timed apart from its moves on both sides: it is bounded by
``Limits.game_seconds``, not by the move limit, in play and in the probe alike, and a probe
that fails while loading is judged against the load time of play, never against the first
board's. Probes run on the pool like any job, so a program that is slow only there costs
only its own time.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterable, Mapping, Sequence

from envs.outcomes import OUTCOMES
from envs.registry import DEFAULT_GAME
from sandbox.planning import (ERROR_CHARS, PROBE_BOARDS, UNCHECKED, Malformed, Planner, SandboxUnavailable,
                              freeze_view, judged, number)
from sandbox.records import GameRecord, Limits
# The wire protocol with the workers (framing, fork request, heartbeat page, message limit) is
# described in sandbox.worker's docstring; its constants come from there and only from there.
from sandbox.worker import FORK_REQUEST, FRAME, HB_BYTES, HB_EXIT, HB_GAME, HB_JOB, HB_TICK, MAX_MESSAGE_BYTES, PID

__all__ = ["run", "run_many", "WorkerPool", "default_pool", "UNCHECKED",
           "SandboxUnavailable", "PROBE_BOARDS"]

STARTUP_SECONDS = 300.0     # a cold Numba cache compiles the engine at the first start
FORK_SECONDS = 30.0         # a zygote answers a fork request within this (it only forks)
# Outcomes a child may report (timeouts are the parent's to decide).
WORKER_OUTCOMES = frozenset(OUTCOMES) - {"timeout"}


# --- zygote and child process handles ----------------------------------------------------------


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _worker_env(hash_seed: int, workdir: str) -> dict[str, str]:
    """The whole environment of a zygote: nothing from ours but where the code and caches are."""
    env = {
        "PATH": os.defpath,
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": str(hash_seed),
        "PYTHONPATH": _package_root(),
        "PYTHONNOUSERSITE": "1",
        # One thread each: the pool supplies the parallelism, and a process that forks must not
        # have threads running.
        "NUMBA_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    if os.environ.get("NUMBA_CACHE_DIR"):
        env["NUMBA_CACHE_DIR"] = os.environ["NUMBA_CACHE_DIR"]
    return env


def _describe_status(status: int | None) -> str:
    """How a process ended, from its raw wait status (None: unknown)."""
    if status is None:
        return "the worker stopped answering"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
        why = {signal.SIGKILL: " (killed, e.g. by the kernel's out-of-memory killer)",
               signal.SIGXCPU: " (CPU time limit exceeded)",
               signal.SIGSEGV: " (segmentation fault)",
               signal.SIGXFSZ: " (file size limit exceeded)"}.get(sig, "")
        return f"the worker died from {name}{why}"
    if os.WIFEXITED(status):
        return f"the worker exited with code {os.WEXITSTATUS(status)}"
    return "the worker stopped answering"


class _Framed:
    """A socket carrying JSON objects, each prefixed by its length as ``FRAME`` (``!i``), at most
    ``MAX_MESSAGE_BYTES`` long: the framing of :mod:`sandbox.worker`'s wire protocol."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, message: dict) -> None:
        payload = json.dumps(message).encode()
        self.sock.sendall(FRAME.pack(len(payload)) + payload)

    def receive(self, timeout: float) -> dict | None:
        """The next complete message, or None when none arrived within ``timeout``; EOFError at the end."""
        message = self._parse()
        if message is not None:
            return message
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return None
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError("connection closed")
        self.buffer += chunk
        return self._parse()

    def _parse(self) -> dict | None:
        if len(self.buffer) < FRAME.size:
            return None
        (size,) = FRAME.unpack(self.buffer[:FRAME.size])
        if size < 0 or size > MAX_MESSAGE_BYTES:
            raise Malformed(f"message of {size} bytes")
        if len(self.buffer) < FRAME.size + size:
            return None
        payload, self.buffer = self.buffer[FRAME.size:FRAME.size + size], self.buffer[FRAME.size + size:]
        try:
            message = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise Malformed(f"undecodable message ({type(exc).__name__})") from None
        if not isinstance(message, dict):
            raise Malformed("a message that is not an object")
        return message

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class _Zygote:
    """A warm worker interpreter that forks one child per job (see :mod:`sandbox.worker`)."""

    def __init__(self, hash_seed: int, game: str = DEFAULT_GAME) -> None:
        self.hash_seed = hash_seed
        self.base = tempfile.mkdtemp(prefix="codepolicy-sandbox-")
        self.workdir = os.path.join(self.base, "work")
        os.mkdir(self.workdir, 0o700)
        self.lock = threading.Lock()
        parent, child = socket.socketpair()
        self.control = _Framed(parent)
        stderr_path = os.path.join(self.base, "stderr")
        try:
            with open(stderr_path, "wb") as stderr:
                self.proc = subprocess.Popen(
                    [sys.executable, "-s", "-P", "-m", "sandbox.worker", str(child.fileno()), game],
                    cwd=self.workdir, env=_worker_env(hash_seed, self.workdir), stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=stderr, pass_fds=(child.fileno(),),
                    close_fds=True, start_new_session=True)
        except OSError as exc:
            self._cleanup()
            raise SandboxUnavailable(f"cannot start a sandbox worker: {exc}") from exc
        finally:
            child.close()
        deadline = time.monotonic() + STARTUP_SECONDS
        try:
            message = None
            while message is None and time.monotonic() < deadline and self.proc.poll() is None:
                message = self.control.receive(min(1.0, deadline - time.monotonic()))
            if not message or message.get("t") != "ready":
                detail = (message or {}).get("error") or _stderr_tail(stderr_path) or _describe_status(
                    self._exit_status())
                raise SandboxUnavailable(f"a sandbox worker failed to start: {str(detail)[-800:]}")
        except (Malformed, EOFError, OSError) as exc:
            self.kill()
            raise SandboxUnavailable(f"a sandbox worker failed to start: {exc}; "
                                     f"{_stderr_tail(stderr_path)}") from None
        except SandboxUnavailable:
            self.kill()
            raise

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _exit_status(self) -> int | None:
        try:
            code = self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            return None
        return (-code) if code < 0 else (code << 8)  # back to a raw wait status

    def fork(self) -> "_Child":
        """A fresh child of this zygote, waiting for its job (OSError/EOFError when the zygote is gone)."""
        job_parent, job_child = socket.socketpair()
        hb_fd = _memfd(self.base)
        try:
            with self.lock:
                socket.send_fds(self.control.sock, [FORK_REQUEST], [job_child.fileno(), hb_fd])
                answer = b""
                deadline = time.monotonic() + FORK_SECONDS
                while len(answer) < PID.size:
                    ready, _, _ = select.select([self.control.sock], [], [], max(0.0, deadline - time.monotonic()))
                    if not ready:
                        raise OSError("the sandbox zygote did not answer a fork request")
                    chunk = self.control.sock.recv(PID.size - len(answer))
                    if not chunk:
                        raise EOFError("the sandbox zygote is gone")
                    answer += chunk
            (pid,) = PID.unpack(answer)
            return _Child(pid, job_parent, hb_fd, self.workdir)
        except BaseException:
            job_parent.close()
            raise
        finally:
            job_child.close()
            os.close(hb_fd)

    def kill(self) -> None:
        """SIGKILL the zygote's whole session (its children too) and remove its directory."""
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
        """Ask the zygote to exit (EOF on its control socket), kill it if it does not."""
        try:
            self.control.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def _cleanup(self) -> None:
        self.control.close()
        shutil.rmtree(self.base, ignore_errors=True)


def _memfd(base: str) -> int:
    """A heartbeat page: a memfd leaves nothing on disk; elsewhere a file in our private directory."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("codepolicy-heartbeat", 0)
    else:
        fd, path = tempfile.mkstemp(dir=base)
        os.unlink(path)
    os.ftruncate(fd, HB_BYTES)
    return fd


def _stderr_tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read()[-800:].decode("utf-8", "replace").strip()
    except OSError:
        return ""


class _Child:
    """One forked child running one job: framed JSON on its socket, watched by heartbeat."""

    def __init__(self, pid: int, sock: socket.socket, hb_fd: int, parent_dir: str) -> None:
        import mmap

        self.pid = pid
        self.conn = _Framed(sock)
        self._map = mmap.mmap(hb_fd, HB_BYTES)
        self.hb = memoryview(self._map).cast("Q")
        # A pidfd pins the process: no signal can reach another process that reuses the pid.
        # The child is alive here: it waits for its job.
        try:
            self.pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self.pidfd = None
        self.workdir = tempfile.mkdtemp(prefix="job-", dir=parent_dir)
        self.killed = False
        self.game_elapsed = 0.0
        self.failed_loading = False  # the failure came before the program's first call (it was loading)

    def kill(self) -> None:
        """SIGKILL the child (at once; its job is over)."""
        self.killed = True
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass

    def exit_description(self) -> str:
        """How the child ended, from the status its zygote wrote when it reaped it."""
        deadline = time.monotonic() + 1.0
        while self.hb[HB_EXIT] == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        status = self.hb[HB_EXIT]
        return _describe_status(status - 1 if status else None)

    def close(self) -> None:
        """Kill the child if it still runs, release its socket, page and directory."""
        if self.hb[HB_EXIT] == 0:
            self.kill()
        self.conn.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        self.hb.release()
        self._map.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def serve(self, job: dict, limits: Limits, budget: float,
              handle: Any) -> tuple[str, str] | None:
        """Send ``job`` and pass each message (with the seconds since the job began) to ``handle`` until it
        returns True -> None, or (outcome, why) on failure.

        The child is killed when a strategy call stops the heartbeat for ``move_seconds``, one
        game (or probe board) takes ``game_seconds``, or the whole job exceeds ``budget``.
        Loading the program (heartbeat game 0) is not a move: only ``game_seconds`` bounds it,
        in play and in the probe alike, so its time never counts against the first board.
        """
        poll = max(0.005, min(0.05, limits.move_seconds / 4))
        start = now = time.monotonic()
        last_tick, tick_seen = self.hb[HB_TICK], now
        last_game, game_seen = -1, now
        job_id = job["id"]
        failure: tuple[str, str] | None = None
        try:
            self.conn.send({**job, "workdir": self.workdir})
            while True:
                message = self.conn.receive(poll)
                now = time.monotonic()
                if message is not None:
                    if message.get("t") == "fatal":
                        failure = ("crashed", "the worker failed: " + _last_line(message.get("error")))
                        break
                    if handle(message, now - start):
                        break
                    continue
                tick = self.hb[HB_TICK]
                if tick != last_tick:
                    last_tick, tick_seen = tick, now
                game = self.hb[HB_GAME] if self.hb[HB_JOB] == job_id else 0
                if game != last_game:
                    last_game, game_seen = game, now
                if game != 0 and now - tick_seen > limits.move_seconds + poll:
                    failure = ("timeout", f"a move took longer than {limits.move_seconds:g}s (worker killed)")
                elif now - game_seen > limits.game_seconds + poll:
                    failure = ("timeout", f"the game took longer than {limits.game_seconds:g}s (worker killed)")
                elif now - start > budget:
                    failure = ("timeout", f"the job took longer than {budget:.3g}s in all (worker killed)")
                if failure:
                    break
        except Malformed as exc:
            failure = ("crashed", f"the worker sent malformed data ({str(exc)[:200]}); worker replaced")
        except EOFError:
            failure = ("crashed", self.exit_description())
        except OSError as exc:
            failure = ("crashed", f"lost the worker ({exc})")
        if failure is not None:
            self.game_elapsed = time.monotonic() - game_seen
            # Read now, not from the last poll: messages may have arrived since without one.
            self.failed_loading = self.hb[HB_JOB] != job_id or self.hb[HB_GAME] == 0
            self.kill()
        return failure


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


def _validate_game(msg: dict, index: int, seeds: Sequence[int], spec: Any, elapsed: float) -> GameRecord:
    """A GameRecord from a child's game message, after checking every field."""
    if msg.get("i") != index or index >= len(seeds) or msg.get("seed") != seeds[index]:
        raise Malformed(f"game message out of order (index {str(msg.get('i'))[:20]})")
    outcome = msg.get("outcome")
    if outcome not in WORKER_OUTCOMES:
        raise Malformed(f"unknown outcome {str(outcome)[:40]!r}")
    error = msg.get("error", "")
    if not isinstance(error, str):
        raise Malformed("error is not a string")
    if "moves" not in msg:  # the program never loaded: nothing was played
        return GameRecord(seed=seeds[index], outcome=outcome, error=error[:ERROR_CHARS])
    answered = _histogram(msg.get("move_histogram"), spec, "move histogram")
    moved = _histogram(msg.get("moved_histogram"), spec, "moved histogram")
    metrics_in = msg.get("metrics")
    if not isinstance(metrics_in, dict) or not set(metrics_in) <= set(spec.metric_names):
        raise Malformed("bad metrics")
    metrics = {k: float(number(v, f"metric {k}", -1e18, 1e18)) for k, v in metrics_in.items()}
    moves = number(msg.get("moves"), "moves", integer=True)
    illegal = number(msg.get("illegal_moves"), "illegal moves", integer=True)
    if sum(answered.values()) != moves + illegal:  # every valid answer either moved or not
        raise Malformed("histogram does not add up to the moves made")
    if sum(moved.values()) != moves or any(moved[a] > answered[a] for a in spec.actions):
        raise Malformed("moved histogram does not add up to the moves made")
    return GameRecord(
        seed=seeds[index], outcome=outcome,
        score=float(number(msg.get("score"), "score", -1e18, 1e18)),
        moves=moves, move_histogram=answered, moved_histogram=moved, illegal_moves=illegal,
        wall_seconds=float(number(msg.get("wall_seconds"), "wall", 0.0, elapsed + 1.0)),
        error=error[:ERROR_CHARS], metrics=metrics, final_view=freeze_view(msg.get("final_view")),
    )


def _histogram(hist: Any, spec: Any, what: str) -> dict[str, int]:
    if not isinstance(hist, dict) or set(hist) != set(spec.actions):
        raise Malformed(f"bad {what}")
    return {a: number(hist[a], f"{what} count", integer=True) for a in spec.actions}


def _validate_sample(sample: Any, seed: int, limit: int, load: float = 0.0,
                     game: int = 0) -> list[tuple[int, Any, str, float, float, int]]:
    """The (seed, board, answer, seconds, load seconds, game) calls a child kept for the probe, checked.

    ``load`` is how long the job took to load the program before its first call: the probe
    compares a failure while loading with it, never with a board's time. ``game`` is the game's
    position among the program's seeds (seeds may repeat), which recorded calls are grouped by.
    """
    if sample is None:
        return []
    if not isinstance(sample, list) or len(sample) > limit:
        raise Malformed("bad probe sample")
    out = []
    for item in sample:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[1], str) and len(item[1]) <= 64):
            raise Malformed("bad probe sample")
        board = freeze_view(item[0])  # bounded in size and types
        out.append((seed, _thaw(board), item[1], float(number(item[2], "sample seconds", 0.0, 1e6)), load, game))
    return out


def _thaw(view: Any) -> Any:
    """A frozen view back as plain lists, as a strategy receives it."""
    return [_thaw(v) for v in view] if isinstance(view, tuple) else view


# --- the pool ----------------------------------------------------------------------------------


class WorkerPool(Planner):
    """Warm sandbox zygotes and the threads that run jobs on forked children, used in parallel.

    ``workers`` (default: the CPU cores this process may use, at most 32) is how many children
    run at once. Two zygotes serve them, both with the one secret ``PYTHONHASHSEED`` derived
    from ``secret`` (default: random per pool); a program plays in children of one and is
    probed in a child of the other. A zygote that dies is started again on next use. Use as
    a context manager or call :meth:`close`. Strategy output is always discarded (``print``
    writes nowhere, and a worker's stdout and stderr are ``/dev/null``). ``restricted=False``
    on :meth:`run` / :meth:`run_many` compiles with plain ``compile`` and full builtins: only
    tests use it, to show the audit hook and process layers hold alone.
    """

    def __init__(self, workers: int | None = None, game: str = DEFAULT_GAME, secret: bytes | None = None) -> None:
        super().__init__(workers if workers is not None else _available_cores(), secret)
        self.game = game
        self._zygotes: list[_Zygote | None] = [None, None]
        self._zygote_locks = [threading.Lock(), threading.Lock()]
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sandbox")
        self.replaced = 0     # worker processes lost to a kill or a crash (each job gets a fresh one anyway)
        self.closed = False

    def __repr__(self) -> str:
        return f"WorkerPool(workers={self.workers}, game={self.game!r}{', closed' if self.closed else ''})"

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def warm(self) -> None:
        """Start both zygotes now (otherwise each starts on first use)."""
        futures = [self._executor.submit(self._zygote, z) for z in (0, 1)]
        for f in futures:
            f.result()

    def _zygote(self, z: int) -> _Zygote:
        with self._zygote_locks[z]:
            if self.closed:
                raise RuntimeError("this WorkerPool is closed")
            zygote = self._zygotes[z]
            if zygote is None or not zygote.alive:
                if zygote is not None:
                    zygote.kill()
                    self.replaced += 1
                # One secret hash seed for both zygotes: play and probe must hash strings alike, or
                # a tie broken by a set's order would read as randomness. PYTHONHASHSEED takes
                # 0..2**32-1; 0 would switch randomisation off, so never 0.
                seed = 1 + int(self._derive("hash seed")[:8], 16) % (2 ** 32 - 1)
                zygote = self._zygotes[z] = _start(seed, self.game)
            return zygote

    def _fork(self, z: int) -> _Child:
        try:
            return self._zygote(z).fork()
        except (OSError, EOFError):
            # The zygote died between jobs (killed from outside): start it again, once.
            with self._zygote_locks[z]:
                zygote = self._zygotes[z]
                if zygote is not None:
                    zygote.kill()
                    self._zygotes[z] = None
                    self.replaced += 1
            try:
                return self._zygote(z).fork()
            except (OSError, EOFError) as exc:
                raise SandboxUnavailable(f"a sandbox worker could not start a job: {exc}") from None

    def close(self) -> None:
        """Stop every process and remove their directories."""
        if self.closed:
            return
        self.closed = True
        self._executor.shutdown(wait=True)
        for z, zygote in enumerate(self._zygotes):
            if zygote is not None:
                zygote.close()
            self._zygotes[z] = None

    # -- jobs ------------------------------------------------------------------------------

    def _run_games(self, z: int, job: dict, spec: Any, limits: Limits) -> tuple[list[GameRecord], list]:
        """Play the job's seeds in a fresh child of zygote ``z`` -> (one record per seed, probe sample)."""
        seeds: list[int] = job["seeds"]
        per_game = int(job["sample"]["count"])
        records: list[GameRecord] = []
        sample: list = []

        def handle(message: dict, elapsed: float) -> bool:
            kind = message.get("t")
            if kind == "game":
                records.append(_validate_game(message, len(records), seeds, spec, elapsed))
                load = float(number(message.get("load", 0.0), "load seconds", 0.0, elapsed + 1.0))
                sample.extend(_validate_sample(message.get("sample"), seeds[len(records) - 1], per_game, load,
                                               int(job.get("first", 0)) + len(records) - 1))
                return False
            if kind == "done":
                if len(records) != len(seeds):
                    raise Malformed("done before every game was reported")
                return True
            raise Malformed(f"unexpected message type {str(kind)[:40]!r}")

        child = self._fork(z)
        try:
            # A bound on the whole job whatever the heartbeat says.
            failure = child.serve(job, limits, limits.game_seconds * (len(seeds) + 1) + 1.0, handle)
        finally:
            child.close()
        if failure is not None:
            self.replaced += 1
            records += _failed_records(seeds, len(records), failure, child.game_elapsed)
        return records, sample

    def _run_probe(self, z: int, job: dict, boards: list,
                   limits: Limits) -> tuple[list[str], tuple[str, str, bool] | None]:
        """Ask ``boards`` again in a fresh child of zygote ``z`` -> (answers so far, failure or None).

        A failure is (outcome, why, whether it came while the program was loading).
        """
        answers: list[str] = []

        def handle(message: dict, _elapsed: float) -> bool:
            kind = message.get("t")
            if kind == "answer":
                answer = message.get("a")
                if message.get("i") != len(answers) or len(answers) >= len(boards) or not (
                        isinstance(answer, str) and len(answer) <= 64):
                    raise Malformed("bad probe answer")
                answers.append(answer)
                return False
            if kind == "done":
                if len(answers) != len(boards):
                    raise Malformed("done before every probe board was answered")
                return True
            raise Malformed(f"unexpected message type {str(kind)[:40]!r}")

        child = self._fork(z)
        try:
            failure = child.serve({**job, "boards": boards, "seeds": []}, limits,
                                  limits.move_seconds * len(boards) + limits.game_seconds + 1.0, handle)
        finally:
            child.close()
        if failure is not None:
            self.replaced += 1
            return answers, (*failure, child.failed_loading)
        return answers, None

    def run_many(self, sources: Sequence[str], game: str = DEFAULT_GAME, seeds: Iterable[int] = (0,),
                 limits: Limits | None = None, options: Mapping[str, Any] | None = None,
                 policy: Any = None, *, restricted: bool = True, record_calls: bool = False) -> list[list[Any]]:
        """Play every seed with every source, in parallel -> one list of records per source.

        ``record_calls=True`` returns a :class:`~sandbox.records.RecordedGame` per seed instead of a
        record: the record and every call of the game in order, ``(board, answer)``, the board as
        nested tuples as the program was asked about it, the answer as the determinism probe
        compares it (a move's text; ``"<error:TypeError>"``, ``"<int>"``... otherwise). The probe
        then asks every one of those boards again, so each answer is one the program gives for
        that board alone. A game's calls travel in one message: with very large ``max_moves`` a
        recorded game may exceed the message limit, which ends it as ``crashed``.
        """
        if self.closed:
            raise RuntimeError("this WorkerPool is closed")
        plan = self._plan(sources, game, seeds, limits, options, policy, restricted, record_calls)
        results, limits = plan.results, plan.limits
        calls: dict[int, list] = {}
        futures = {p.index: [self._executor.submit(self._run_games, p.zygote, job, plan.spec, limits)
                             for job in p.jobs] for p in plan.programs}
        probes: dict[int, tuple[list, Future]] = {}
        for p in plan.programs:
            sample: list = []
            for future in futures[p.index]:
                part_records, part_sample = future.result()
                results[p.index] += part_records
                sample += part_sample
            if record_calls:
                calls[p.index] = self._recorded(sample, len(results[p.index]))
            if sample:
                job, boards = self._probe_job(p, sample)
                probes[p.index] = (sample, self._executor.submit(self._run_probe, 1 - p.zygote, job, boards, limits))
        for s, (sample, future) in probes.items():
            answers, failure = future.result()
            results[s] = judged(results[s], sample, answers, failure, limits)
        if record_calls:
            return [self._with_calls(records, calls.get(s)) for s, records in enumerate(results)]
        return results

    def run(self, source: str, game: str = DEFAULT_GAME, seeds: Iterable[int] = (0,), limits: Limits | None = None,
            options: Mapping[str, Any] | None = None, policy: Any = None, *,
            restricted: bool = True, record_calls: bool = False) -> list[Any]:
        """Play every seed with ``source`` -> one record per seed (``record_calls``: see :meth:`run_many`)."""
        return self.run_many([source], game, seeds, limits, options, policy, restricted=restricted,
                             record_calls=record_calls)[0]


def _available_cores() -> int:
    # Cores this process may run on (affinity, cgroups via sched_getaffinity), capped.
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 32))


def _start(hash_seed: int, game: str) -> _Zygote:
    # One retry: a start can fail for a passing reason (a full process table, a slow disk).
    try:
        return _Zygote(hash_seed, game)
    except SandboxUnavailable:
        return _Zygote(hash_seed, game)


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


def run(source: str, game: str = DEFAULT_GAME, seeds: Iterable[int] = (0,), limits: Limits | None = None,
        options: Mapping[str, Any] | None = None, pool: WorkerPool | None = None,
        policy: Any = None, *, record_calls: bool = False) -> list[Any]:
    """Check ``source``, then play one game per seed in a sandbox worker -> one record per seed.

    A source the static policy rejects is not executed: every record has outcome "violation".
    ``policy=UNCHECKED`` skips the static check (only the runtime layers stand).
    ``record_calls=True`` gives a :class:`~sandbox.records.RecordedGame` per seed: the record and
    every ``(board, answer)`` call of the game, in order (see :meth:`WorkerPool.run_many`).
    """
    if record_calls:
        return (pool or default_pool()).run(source, game, seeds, limits, options, policy, record_calls=True)
    return (pool or default_pool()).run(source, game, seeds, limits, options, policy)


def run_many(sources: Sequence[str], game: str = DEFAULT_GAME, seeds: Iterable[int] = (0,),
             limits: Limits | None = None, options: Mapping[str, Any] | None = None,
             pool: WorkerPool | None = None, policy: Any = None) -> list[list[GameRecord]]:
    """Play the same seeds with many sources in parallel over the pool -> records per source."""
    return (pool or default_pool()).run_many(list(sources), game, seeds, limits, options, policy)
