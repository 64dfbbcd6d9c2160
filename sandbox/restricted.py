"""Running a strategy's code in this process: RestrictedPython, minimal builtins, an audit guard.

The layers that stand between a strategy and the interpreter it runs in (the process around
it, its limits and its games are :mod:`sandbox.worker`'s):

1. RestrictedPython: the source is compiled with ``compile_restricted_exec`` (no names or
   attributes starting with ``_``; every attribute, item, iteration, write and in-place
   operation goes through a guard below).
2. A minimal builtins dict: only the pure builtins the static policy allows (no
   ``__import__``, ``open``, ``eval``, ``getattr``...), ``print`` discarding its output;
   a forbidden builtin is a callable that reports a violation.
3. An audit hook (``sys.addaudithook(GUARD.hook)``, installed by the worker), armed only
   while strategy code runs: any import, open, exec/compile, process, socket, frame or
   code-object event is a violation naming the event. The verdict is sticky, so catching the
   exception the guard raises does not help.
"""
from __future__ import annotations

import operator
from typing import Any, Callable

__all__ = ["SAFE_BUILTIN_NAMES", "FORBIDDEN_BUILTIN_NAMES", "FORBIDDEN_EVENTS", "BLOCKED_ATTRIBUTES",
           "SandboxViolation", "GUARD", "set_allowed_attributes", "make_builtins", "restricted_globals",
           "LoadError", "load_strategy", "describe_exception", "ERROR_CHARS"]

ERROR_CHARS = 300                # error messages are truncated to this many characters

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


def set_allowed_attributes(names: Any) -> None:
    """Narrow the attribute names a strategy may use to ``names`` (None: any safe name)."""
    global ALLOWED_ATTRIBUTES
    ALLOWED_ATTRIBUTES = None if names is None else frozenset(names)


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
