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

# Heartbeat slots (uint64) in the page shared with the parent.
HB_JOB, HB_GAME, HB_TICK = 0, 1, 2
HB_SLOTS = 8

MAX_MESSAGE_BYTES = 8 << 20      # the parent refuses larger messages from a worker
ERROR_CHARS = 300                # error messages are truncated to this many characters
ANSWER_CHARS = 24                # probe answers are truncated to this many characters

# Builtins a strategy may ever get; the static policy may narrow this further. Pure,
# deterministic functions and ordinary exception classes only.
SAFE_BUILTIN_NAMES: tuple[str, ...] = (
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "int",
    "isinstance", "len", "list", "map", "max", "min", "pow", "range", "reversed", "round",
    "set", "sorted", "str", "sum", "tuple", "zip", "frozenset", "print",
    "True", "False", "None",
    "Exception", "ArithmeticError", "LookupError", "ValueError", "TypeError", "IndexError",
    "KeyError", "ZeroDivisionError", "OverflowError", "AttributeError", "NameError",
    "RuntimeError", "AssertionError", "NotImplementedError", "StopIteration", "UnboundLocalError",
)

# Builtins that are never given; calling one of these names is a violation, not a NameError,
# so the runtime layer reports the same category as the static check would.
FORBIDDEN_BUILTIN_NAMES: tuple[str, ...] = (
    "__import__", "open", "eval", "exec", "compile", "getattr", "setattr", "delattr", "hasattr",
    "globals", "locals", "vars", "dir", "breakpoint", "input", "help", "exit", "quit",
    "memoryview", "id", "hash", "type", "object", "super", "classmethod", "staticmethod",
    "property", "__build_class__", "__metaclass__", "iter", "next", "callable", "issubclass", "bytearray",
)

# Events that end the game when raised while strategy code runs. Prefix matches end in ".".
FORBIDDEN_EVENTS = frozenset({
    "import", "open", "exec", "compile", "code.__new__", "function.__new__",
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "os.kill", "os.killpg", "os.startfile", "os.putenv", "os.unsetenv",
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chdir", "os.chmod", "os.chown",
    "os.listdir", "os.scandir", "os.link", "os.symlink", "os.truncate", "os.utime",
    "os.walk", "os.add_dll_directory", "pty.spawn",
    "sys._getframe", "sys._current_frames", "sys._current_exceptions", "sys.settrace",
    "sys.setprofile", "sys.addaudithook", "sys.excepthook", "sys.unraisablehook",
    "object.__getattr__", "object.__setattr__", "object.__delattr__",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "builtins.input",
    "builtins.input/result", "builtins.breakpoint", "builtins.id", "cpython.run_command",
    "cpython.run_file", "cpython.run_module", "cpython.run_startup", "cpython.run_stdin",
    "cpython.run_interactivehook", "mmap.__new__", "pickle.find_class", "resource.setrlimit",
    "resource.prlimit", "shutil.copyfile", "shutil.rmtree", "shutil.move", "tempfile.mkstemp",
    "tempfile.mkdtemp", "urllib.Request", "webbrowser.open", "glob.glob", "fcntl.fcntl",
    "fcntl.ioctl", "signal.pthread_kill", "_thread.start_new_thread", "winreg.OpenKey",
})
FORBIDDEN_PREFIXES = ("socket.", "ctypes.", "marshal.", "sqlite3.", "os.", "subprocess.",
                      "http.", "ftplib.", "smtplib.", "imaplib.", "poplib.", "nntplib.",
                      "telnetlib.", "shutil.", "syslog.", "msvcrt.", "winapi.", "_winapi.")

# Attributes that reach frames, code or interpreter internals without a leading underscore.
BLOCKED_ATTRIBUTES = frozenset({
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame",
    "ag_code", "ag_await", "tb_frame", "tb_next", "f_back", "f_globals", "f_locals",
    "f_builtins", "f_code", "f_trace", "co_code", "co_consts", "mro",
})


class SandboxViolation(Exception):
    """Raised into strategy code when it does something forbidden (the verdict is also kept)."""


class _Guard:
    """The audit oracle: armed while strategy code runs; the first forbidden event sticks."""

    def __init__(self) -> None:
        self.armed = False
        self.violation = ""          # the first forbidden event seen while armed
        self.allowed_exec: Any = None  # the one code object we exec ourselves, while armed

    def hook(self, event: str, args: tuple) -> None:
        if not self.armed:
            return
        if event == "exec" and args and args[0] is self.allowed_exec:
            self.allowed_exec = None
            return
        if event in FORBIDDEN_EVENTS or event.startswith(FORBIDDEN_PREFIXES):
            self.flag(f"audit event {event!r}")

    def flag(self, what: str) -> None:
        """Record a forbidden act (first one wins) and raise it into the strategy."""
        if not self.violation:
            self.violation = what
        raise SandboxViolation(f"forbidden in the sandbox: {what}")


GUARD = _Guard()


# --- RestrictedPython guards ----------------------------------------------------------------


class _NullPrint:
    """RestrictedPython's print collector, discarding everything (output is not kept)."""

    def __init__(self, _getattr_: Any = None) -> None:
        pass

    def write(self, text: str) -> None:
        pass

    def __call__(self) -> str:
        return ""

    def _call_print(self, *objects: Any, **kwargs: Any) -> None:
        pass


# Attribute names a strategy may use (the policy's methods); None allows any safe name.
ALLOWED_ATTRIBUTES: frozenset[str] | None = None


def _guarded_getattr(obj: Any, name: Any, *default: Any) -> Any:
    # safer_getattr's rules, plus the policy's method whitelist and frame/code attributes
    # that have no leading underscore.
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    if name.startswith("_") or name in BLOCKED_ATTRIBUTES or (
            ALLOWED_ATTRIBUTES is not None and name not in ALLOWED_ATTRIBUTES):
        GUARD.flag(f"attribute {name!r}")
    if name in ("format", "format_map") and isinstance(obj, str):
        return _safe_format(obj, name)
    return getattr(obj, name, *default)


def _safe_format(template: str, name: str) -> Callable:
    """str.format that refuses fields reaching attributes or items ("{0.__class__}")."""
    import string

    try:
        fields = [f for _, f, spec, _ in string.Formatter().parse(template) if f is not None] + [
            s for _, _, s, _ in string.Formatter().parse(template) if s]
    except ValueError:
        fields = []
    if any("." in f or "[" in f or "{" in f for f in fields):
        GUARD.flag(f"str.{name} with a field that reaches attributes or items")
    return getattr(template, name)


_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "&=": operator.iand, "|=": operator.ior, "^=": operator.ixor,
    "@=": operator.imatmul,
}


def _inplacevar(op: str, x: Any, y: Any) -> Any:
    try:
        return _INPLACE[op](x, y)
    except KeyError:
        raise SyntaxError(f"in-place operator {op!r} is not allowed") from None


def _apply(fn: Any, *args: Any, **kwargs: Any) -> Any:
    # RestrictedPython routes calls with *args / **kwargs through _apply_; the callee is
    # already whatever the guarded names and attributes let the program reach.
    return fn(*args, **kwargs)


def make_builtins(names: Any = None) -> dict[str, Any]:
    """The builtins dict of a strategy: SAFE_BUILTIN_NAMES, narrowed to ``names`` when given."""
    import builtins

    wanted = SAFE_BUILTIN_NAMES if names is None else [n for n in SAFE_BUILTIN_NAMES if n in set(names)]
    table: dict[str, Any] = {name: _forbidden(name) for name in FORBIDDEN_BUILTIN_NAMES}
    table.update((n, getattr(builtins, n)) for n in wanted if n != "print")
    return table


def _forbidden(name: str) -> Callable:
    def forbidden(*args: Any, **kwargs: Any) -> None:
        GUARD.flag(f"builtin {name!r}")

    forbidden.__name__ = name
    return forbidden


def restricted_globals(builtin_names: Any = None) -> dict[str, Any]:
    """Fresh globals for a RestrictedPython-compiled strategy module."""
    from RestrictedPython.Guards import full_write_guard, guarded_iter_unpack_sequence, guarded_unpack_sequence

    return {
        "__builtins__": make_builtins(builtin_names),
        "__name__": "strategy_module",
        "_getattr_": _guarded_getattr,
        "_getitem_": operator.getitem,   # same semantics as RestrictedPython's default, in C
        "_getiter_": iter,
        "_write_": full_write_guard,
        "_inplacevar_": _inplacevar,
        "_apply_": _apply,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_print_": _NullPrint,
    }


class LoadError(Exception):
    """The source could not be turned into a strategy: ``outcome`` says which game outcome."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message


def load_strategy(source: str, builtin_names: Any = None, restricted: bool = True) -> Callable:
    """Compile and execute ``source`` (armed) and return its ``strategy``; LoadError otherwise.

    ``restricted=False`` compiles with plain ``compile`` and full builtins: only the tests of
    the other layers (audit hook, process limits) use it, to show each layer holds alone.
    """
    import ast

    try:
        ast.parse(source)
    except SyntaxError as exc:
        raise LoadError("error", f"SyntaxError: {exc.msg} (line {exc.lineno})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise LoadError("error", f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]) from None
    if restricted:
        from RestrictedPython import compile_restricted_exec

        result = compile_restricted_exec(source, filename="<strategy>")
        if result.errors or result.code is None:
            raise LoadError("violation", "restricted: " + "; ".join(result.errors)[:ERROR_CHARS])
        code = result.code
        namespace = restricted_globals(builtin_names)
    else:
        code = compile(source, "<strategy>", "exec")
        namespace = {"__name__": "strategy_module"}
    GUARD.violation = ""
    GUARD.allowed_exec = code
    try:
        GUARD.armed = True
        exec(code, namespace)
    except BaseException as exc:  # noqa: BLE001 - anything the module does is the strategy's fault
        GUARD.armed = False
        if GUARD.violation:
            raise LoadError("violation", GUARD.violation) from None
        raise LoadError("error", describe_exception(exc)) from None
    finally:
        GUARD.armed = False
        GUARD.allowed_exec = None
    if GUARD.violation:
        raise LoadError("violation", GUARD.violation)
    fn = namespace.get("strategy")
    if not callable(fn):
        raise LoadError("error", "the program defines no function strategy(board)")
    return fn


def describe_exception(exc: BaseException) -> str:
    """``Type: message (line N)`` with the innermost line of the strategy, truncated."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<strategy>":
            line = tb.tb_lineno
        tb = tb.tb_next
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a message that cannot be rendered
        text = "<unprintable>"
    where = f" (line {line})" if line is not None else ""
    message = f"{type(exc).__name__}: {text[:ERROR_CHARS]}"
    return (message[: ERROR_CHARS - len(where)] + where) if where else message[:ERROR_CHARS]


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
    global ALLOWED_ATTRIBUTES
    spec = game_spec(job["game"], job.get("origin"))
    methods = job.get("methods")
    ALLOWED_ATTRIBUTES = None if methods is None else frozenset(methods)
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
