"""Running a strategy's code in this process: RestrictedPython, minimal builtins, an audit guard.

The layers that stand between a strategy and the interpreter it runs in (the process around
it, its limits and its games are :mod:`sandbox.worker`'s):

1. RestrictedPython: the source is compiled with ``compile_restricted_exec`` and
   :class:`StrategyTransformer` (no attributes starting with ``_``, no names but the program's
   own private ones, :func:`sandbox.policy.is_private_name`, so none the runtime injects; every attribute,
   item, iteration, write and in-place operation goes through a guard below). The transformer
   extends RestrictedPython's to the syntax the static policy allows and RestrictedPython 9
   refuses (``x[i] += 1``, ``match``, annotated assignments, local names such as ``printed``),
   so that what ``sandbox.check`` accepts also runs here.
2. A minimal builtins dict: only the pure builtins the static policy allows (no
   ``__import__``, ``open``, ``eval``, ``getattr``...), ``print`` discarding its output,
   ``type`` answering only ``type(x)``; a forbidden builtin is a callable that reports a violation. The builtins that iterate while
   calling back into the program (``map``, ``filter``, ``max``/``min`` with ``key``) and the lazy
   iterators a list can be extended from (``zip``, ``enumerate``, ``reversed``) iterate a
   snapshot of a list argument in every program that can grow a list at all (as do ``for`` and
   comprehensions where a policy allows them), so a callback that appends to the list it is
   called over cannot turn a builtin into a loop.
3. No function of the program is re-entered while it runs: the transformer gives every ``def``
   and ``lambda`` a flag, and a call that finds its flag set is a ``loop`` violation
   (recursion by any route: by name, by value, through a builtin's callback).
4. An audit hook (``sys.addaudithook(GUARD.hook)``, installed by the worker), armed only
   while strategy code runs: any import, open, exec/compile, process, socket, frame or
   code-object event is a violation naming the event. The verdict is sticky, so catching the
   exception the guard raises does not help.
"""
from __future__ import annotations

import ast
import builtins
import operator
import unicodedata
from types import CodeType
from typing import Any, Callable

from RestrictedPython import compile_restricted_exec
from RestrictedPython.transformer import IOPERATOR_TO_STR, RestrictingNodeTransformer, copy_locations

from sandbox.policy import (INTERNAL_ATTRIBUTES, RUNTIME_BUILTINS, format_problem, is_internal_attribute,
                            is_private_name)

__all__ = ["SAFE_BUILTIN_NAMES", "FORBIDDEN_BUILTIN_NAMES", "FORBIDDEN_EVENTS", "BLOCKED_ATTRIBUTES",
           "SandboxViolation", "GUARD", "set_allowed_attributes", "make_builtins", "needs_snapshots", "restricted_globals",
           "SNAPSHOT_BUILTINS", "StrategyTransformer", "compile_strategy", "LoadError", "load_strategy",
           "describe_exception", "ERROR_CHARS", "RUNTIME_NAMES", "GameFunction", "game_api_table"]

ERROR_CHARS = 300                # error messages are truncated to this many characters

# Builtins a strategy may ever get: the policy's one table (sandbox.policy.RUNTIME_BUILTINS), which the
# static policy may narrow further.
SAFE_BUILTIN_NAMES: tuple[str, ...] = tuple(sorted(RUNTIME_BUILTINS))

# Builtins that are never given; calling one of these names is a violation, not a NameError,
# so the runtime layer reports the same category as the static check would.
FORBIDDEN_BUILTIN_NAMES: tuple[str, ...] = (
    "__import__", "open", "eval", "exec", "compile", "getattr", "setattr", "delattr", "hasattr",
    "globals", "locals", "vars", "dir", "breakpoint", "input", "help", "exit", "quit",
    "memoryview", "id", "hash", "object", "super", "classmethod", "staticmethod",
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

# Attributes that reach frames, code or interpreter internals without a leading underscore. The
# list (and the prefixes that go with it) lives in sandbox.policy, shared with the static check.
BLOCKED_ATTRIBUTES = INTERNAL_ATTRIBUTES


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
    # that have no leading underscore (policy.is_internal_attribute, as the static check).
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    if is_internal_attribute(name) or (ALLOWED_ATTRIBUTES is not None and name not in ALLOWED_ATTRIBUTES):
        GUARD.flag(f"attribute {name!r}")
    if name in ("format", "format_map"):
        if isinstance(obj, str):
            return _safe_format(obj, name)
        if obj is str:  # str.format(template, ...): the template is the first argument
            return _unbound_format(name)
    return getattr(obj, name, *default)


def _safe_format(template: str, name: str) -> Callable:
    """``template.format`` (or ``format_map``), refusing a template whose fields reach attributes.

    The rule is :func:`sandbox.policy.format_problem`, the one the static check applies to
    literal templates: items may be indexed (``{0[1]}``), specs are free (``{:.2f}``).
    """
    if format_problem(template):
        GUARD.flag(f"str.{name} with a field that reaches an attribute")
    return getattr(template, name)


def _unbound_format(name: str) -> Callable:
    def format_(template: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(template, str) and format_problem(template):
            GUARD.flag(f"str.{name} with a field that reaches an attribute")
        return getattr(str, name)(template, *args, **kwargs)

    format_.__name__ = name
    return format_


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


# --- builtins that iterate a snapshot ---------------------------------------------------------
#
# `list(map(f, xs))` where `f` appends to `xs` never ends: map iterates the live list. The same
# holds for max/min with a key that appends, and for `xs.extend(zip(xs))` and friends, where the
# lazy iterator walks the list it feeds. These stand-ins iterate a tuple copy of a list (or
# bytearray) argument instead: the same results for honest code, a bounded loop for hostile code.
# Dicts and sets need no copy: changing their size while iterating raises RuntimeError.
# They are callable objects rather than functions or subclasses: a call costs about twice the
# builtin's (a subclass's __new__ about five times), their text is the builtin's own (a
# function's repr would show a memory address, a source of randomness `str(max)` could read),
# and `isinstance(x, map)` keeps working through __instancecheck__.


def _snapshot(value: Any) -> Any:
    kind = type(value)
    return tuple(value) if kind is list or kind is bytearray else value


class _StandIn:
    """A builtin's stand-in: prints as the builtin."""

    __slots__ = ("builtin",)

    def __init__(self, builtin: Any) -> None:
        self.builtin = builtin

    def __repr__(self) -> str:
        return repr(self.builtin)


class _IteratorType(_StandIn):
    """The stand-in of an iterator type: ``isinstance(x, map)`` asks the real type."""

    __slots__ = ()

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, self.builtin)


# The type tests are inlined in the common cases: these run in every strategy's inner loops.

class _Map(_IteratorType):
    __slots__ = ()

    def __call__(self, function: Any, iterable: Any, *more: Any) -> Any:
        kind = type(iterable)
        if kind is list or kind is bytearray:
            iterable = tuple(iterable)
        if more:
            return map(function, iterable, *[_snapshot(it) for it in more])
        return map(function, iterable)


class _Filter(_IteratorType):
    __slots__ = ()

    def __call__(self, function: Any, iterable: Any) -> Any:
        kind = type(iterable)
        return filter(function, tuple(iterable) if kind is list or kind is bytearray else iterable)


class _Zip(_IteratorType):
    __slots__ = ()

    def __call__(self, *iterables: Any, **kwargs: Any) -> Any:
        if len(iterables) == 2 and not kwargs:
            first, second = iterables
            kind = type(first)
            if kind is list or kind is bytearray:
                first = tuple(first)
            kind = type(second)
            if kind is list or kind is bytearray:
                second = tuple(second)
            return zip(first, second)
        return zip(*[_snapshot(it) for it in iterables], **kwargs)


class _Enumerate(_IteratorType):
    __slots__ = ()

    def __call__(self, iterable: Any, *args: Any, **kwargs: Any) -> Any:
        kind = type(iterable)
        if kind is list or kind is bytearray:
            iterable = tuple(iterable)
        return enumerate(iterable, *args, **kwargs)


class _Reversed(_IteratorType):
    __slots__ = ()

    def __call__(self, sequence: Any) -> Any:
        kind = type(sequence)
        return reversed(tuple(sequence) if kind is list or kind is bytearray else sequence)


class _Extreme(_StandIn):
    """max/min: the key may append to the one iterable it walks."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1:
            kind = type(args[0])
            if kind is list or kind is bytearray:
                return self.builtin(tuple(args[0]), **kwargs)
        return self.builtin(*args, **kwargs)


SNAPSHOT_BUILTINS: dict[str, Any] = {
    "map": _Map(map), "filter": _Filter(filter), "zip": _Zip(zip), "enumerate": _Enumerate(enumerate),
    "reversed": _Reversed(reversed), "max": _Extreme(max), "min": _Extreme(min),
}
"""The builtins a strategy gets in place of the real ones (see above)."""


# --- type: the class of a value, and nothing else ------------------------------------------------
#
# `type(x) is list` is honest; `type(name, bases, namespace)` builds a class and the real `type` as a
# value reaches every class constructor. The stand-in answers one argument only, and never hands
# out a constructor that gets around another layer: the class of a class (or of a stand-in, which
# plays a builtin class) is `type` itself, that is this stand-in, and the class of a lazy iterator
# is the program's own `map`, `filter`... (the snapshotting stand-ins where the program has them),
# so `type(map(f, xs))(g, xs)` walks a snapshot as `map(g, xs)` would.

_ITERATOR_TYPES = ("map", "filter", "zip", "enumerate", "reversed")


class _Type(_StandIn):
    """The strategy's ``type``: ``type(x)`` gives the class of ``x``; any other call is an escape."""

    __slots__ = ("classes",)

    def __init__(self, table: dict[str, Any]) -> None:
        super().__init__(type)
        # The real iterator classes -> what the program calls by those names.
        self.classes = {getattr(builtins, n): table.get(n, getattr(builtins, n)) for n in _ITERATOR_TYPES}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) != 1 or kwargs:
            GUARD.flag(f"builtin 'type' called with {len(args) + len(kwargs)} arguments "
                       "(only type(x) is allowed: three build a class)")
        kind = type(args[0])
        if issubclass(kind, type) or issubclass(kind, _StandIn) or issubclass(kind, GameFunction):
            # The class of a class: `type(int) is type`, and no metaclass to call. A game function's
            # class is answered the same way: calling it would build game functions of anything.
            return self
        return self.classes.get(kind, kind)

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(obj, (type, _StandIn))


class GameFunction:
    """A function of the game's API (:class:`envs.registry.ApiFunction`) as a program sees it.

    The game's function is trusted code: it checks its own arguments and returns fresh plain
    values. This wrapper only hides it: its one attribute starts with ``_`` (refused by the
    transformer and the attribute guard), it prints without an address (no randomness through
    ``str(legal_moves)``), ``type()`` of it is the ``type`` stand-in, and it has no ``__globals__``,
    ``__code__``, ``__closure__`` or ``__self__`` of its own to reach (those are refused anyway).
    """

    __slots__ = ("_function", "_name")

    def __init__(self, name: str, function: Callable[..., Any]) -> None:
        self._function = function
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<game function {self._name}>"


def game_api_table(api: Any) -> dict[str, GameFunction]:
    """``api`` (name -> the game's function) wrapped for a program; ValueError for a name a builtin has."""
    table: dict[str, GameFunction] = {}
    for name, function in dict(api or {}).items():
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_") \
                or name in SAFE_BUILTIN_NAMES or name in FORBIDDEN_BUILTIN_NAMES or not callable(function):
            raise ValueError(f"game API function {name!r} cannot be given to a strategy "
                             "(it must be a callable under a new identifier without a leading `_`)")
        table[name] = GameFunction(name, function)
    return table


def make_builtins(names: Any = None, snapshots: bool = True, api: Any = None) -> dict[str, Any]:
    """The builtins dict of a strategy: SAFE_BUILTIN_NAMES, narrowed to ``names`` when given.

    ``snapshots=False`` gives the real ``map``, ``filter``... instead of the stand-ins: only for a
    program in which no callback can grow a list (see :func:`needs_snapshots`). ``api`` (name ->
    function) adds the game's API functions, wrapped (:class:`GameFunction`).
    """
    wanted = SAFE_BUILTIN_NAMES if names is None else [n for n in SAFE_BUILTIN_NAMES if n in set(names)]
    stand_ins = SNAPSHOT_BUILTINS if snapshots else {}
    table: dict[str, Any] = {name: _forbidden(name) for name in FORBIDDEN_BUILTIN_NAMES}
    table.update((n, stand_ins.get(n) or getattr(builtins, n)) for n in wanted if n not in ("print", "type"))
    # Never the real `type`; a policy without it refuses it as an escape, as its static check does.
    table["type"] = _Type(table) if "type" in wanted else _forbidden("type")
    table.update(game_api_table(api))
    return table


# List methods that grow the list they are called on.
_GROWING_METHODS = frozenset({"append", "extend", "insert"})


def needs_snapshots(tree: ast.Module) -> bool:
    """Whether any list of the program may ever grow: then it gets the stand-ins, else the real builtins.

    A list grows only through ``append``/``extend``/``insert`` (reached by an attribute of that
    name: ``getattr`` and underscore names are refused, a format field cannot name an attribute),
    ``+=`` of anything but a number, ``*=``, or a store into a slice (written ``xs[a:b] =``, or
    through an object of the ``slice`` builtin, the only way to hold one). A program whose text has
    none of these anywhere cannot grow a list, so no builtin can walk a list that grows, whatever
    calls what: the real builtins are safe for it. Any one of them, in any function, the strategy
    included, or at module level, gives the program the stand-ins. Whole program, no exemptions:
    an earlier, finer rule that let the strategy's own body append was a way around.

    Why a gate at all rather than the stand-ins for everyone (measured with callgrind, instructions
    per move of the baselines, which call map/filter/max on small lists in every inner step):
    greedy 1.02M with the real builtins, 1.37M with the stand-ins (+35%), corner 1.00M vs 1.38M
    (+39%); a stand-in that detects growth instead of copying (a Python generator that compares
    lengths at every step) costs 1.85M on greedy (+82%). Copying a list is one C call; every step
    of a Python-level check is an interpreted frame. So: a snapshot when a list can grow, the
    builtin when no list can.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in _GROWING_METHODS:
            return True
        if isinstance(node, ast.AugAssign) and (isinstance(node.op, ast.Mult) or (
                isinstance(node.op, ast.Add) and not _is_number(node.value))):
            return True
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) and isinstance(node.slice, ast.Slice):
            return True
        if isinstance(node, ast.Name) and node.id == "slice":
            return True
    return False


def _is_number(expr: ast.AST) -> bool:
    """A numeric literal (``n += 1`` cannot grow a list: a list += a number is a TypeError)."""
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, (ast.USub, ast.UAdd)):
        expr = expr.operand
    return isinstance(expr, ast.Constant) and type(expr.value) in (int, float, complex, bool)


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name the program binds anywhere (variables, parameters, functions, captures)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar, ast.ExceptHandler)) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
    return names


def _forbidden(name: str) -> Callable:
    def forbidden(*args: Any, **kwargs: Any) -> None:
        GUARD.flag(f"builtin {name!r}")

    forbidden.__name__ = name
    return forbidden


# --- re-entry: no function of the program runs twice at once ------------------------------------
#
# Recursion needs no name: a function handed to itself as a value (`search(search, board, 2)`),
# a lambda self-applied through `map`, a key of `max` that calls the key it was given. The static
# check explains what it can see; this layer stops every route. The transformer gives each `def`
# and `lambda` of the program a site number and a flag in the module's list `_active_`: a call
# finds its flag set exactly when the same code is already running (any instance of it: closures
# of one `def` share its site, as the static check's call graph does), and that is a `loop`
# violation. A `def` sets and clears its flag inline (`try`/`finally`, so an exception never
# leaves a flag set). A lambda has no statements: it becomes a `def` (see _Hoist) or, where that
# would change its meaning, is wrapped where it is created in a function that does the same. A
# flag costs an index and two stores per call, whatever the depth, and leaves need none (below):
# measured with callgrind, the baselines greedy and corner cost 2% more instructions per move
# than without flags (wrapping every lambda instead of turning it into a def: +115%; wrapping
# only those that are not leaves: +19%).


def _reentered(what: str) -> None:
    GUARD.flag(f"loop: {what} was called again while it was running (recursion)")


def _guard_lambda(flags: list, site: int, what: str, fn: Callable) -> Callable:
    """``fn`` (a lambda of the program) behind the flag of its site: a call while one runs is a violation."""
    def lambda_(*args: Any, **kwargs: Any) -> Any:
        if flags[site]:
            _reentered(what)
        flags[site] = True
        try:
            return fn(*args, **kwargs)
        finally:
            flags[site] = False

    return lambda_


# A function none of whose steps can run code of the program cannot re-enter anything: while it
# runs, nothing else of the program does. It needs no flag, and the innermost lambdas of a strategy
# (`lambda v: v != 0`, `lambda i: tiles[i] * 2`), the ones called most often, are such leaves.
# That holds only when every object is a builtin's, a function or a stand-in: a program with a
# class (refused by the check, so only when it is skipped) could give `==` or `len` its own code,
# and then every function keeps its flag.
#
# Calls of these builtins run no code of the program: they neither call nor iterate an argument
# (map/filter/zip/enumerate/reversed only build a lazy iterator; whoever consumes it is not the leaf).
_LEAF_CALLS = frozenset({"abs", "bool", "divmod", "float", "int", "isinstance", "len", "pow", "round", "str",
                         "range", "map", "filter", "zip", "enumerate", "reversed", "print", "chr", "ord", "type"})
# Methods of the builtin types that neither call nor iterate an argument (not `join`, `extend`,
# `update`, `sort`, `union`...): a function of the program has no attributes to be called instead.
_LEAF_METHODS = frozenset({"count", "index", "get", "keys", "items", "values", "copy", "append", "insert", "pop",
                           "remove", "clear", "reverse", "setdefault", "add", "discard", "startswith", "endswith",
                           "replace", "strip", "lstrip", "rstrip", "split", "rsplit", "upper", "lower", "find",
                           "rfind", "isdigit", "isalpha", "ljust", "rjust", "center", "zfill", "bit_length",
                           "format", "format_map", "is_integer"})
# Nodes that run no code of the program whatever their (also checked) children are. Anything else
# (comprehensions, loops, unpacking, `in`, `*`, `+=`, `with`, `match`...) may iterate a lazy iterator
# whose callback is the program's, so a function containing one keeps its flag.
_LEAF_NODES = (ast.expr_context, ast.operator, ast.unaryop, ast.boolop, ast.cmpop, ast.arguments, ast.arg,
               ast.keyword, ast.Constant, ast.Name, ast.Attribute, ast.Subscript, ast.Slice, ast.BinOp,
               ast.UnaryOp, ast.BoolOp, ast.IfExp, ast.NamedExpr, ast.JoinedStr, ast.FormattedValue, ast.Return,
               ast.Expr, ast.Pass, ast.If, ast.Raise, ast.Try, ast.ExceptHandler, ast.Assert, ast.Delete,
               ast.Lambda, ast.FunctionDef, ast.Global, ast.Nonlocal, ast.Break, ast.Continue)


def _is_leaf(function: ast.AST, bound: set[str]) -> bool:
    """Whether running ``function`` (a def or lambda; defaults and nested bodies included) can call no program code."""
    for node in ast.walk(function):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) and not isinstance(node.slice,
                                                                                                   ast.Constant):
            return False  # xs[a:b] = it, or xs[s] = it with s a slice object: iterates it
        if isinstance(node, ast.FunctionDef) and node.decorator_list:
            return False  # a decorator is a call
        if isinstance(node, _LEAF_NODES):
            continue
        if isinstance(node, ast.Call):
            func = node.func
            plain = not any(isinstance(a, ast.Starred) for a in node.args) and all(k.arg for k in node.keywords)
            if plain and ((isinstance(func, ast.Name) and func.id in _LEAF_CALLS and func.id not in bound)
                          or (isinstance(func, ast.Attribute) and func.attr in _LEAF_METHODS)):
                continue
            if plain and isinstance(func, ast.Name) and func.id in ("max", "min") and func.id not in bound \
                    and len(node.args) >= 2 and not node.keywords:
                continue  # max(a, b): compares its arguments, iterates nothing of theirs
            return False
        elif isinstance(node, ast.Compare):
            # `x in y` iterates y unless y is a literal display
            if any(isinstance(op, (ast.In, ast.NotIn)) and not isinstance(right, (ast.Tuple, ast.List, ast.Set,
                                                                                   ast.Constant))
                   for op, right in zip(node.ops, node.comparators)):
                return False
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
            if isinstance(getattr(node, "ctx", None), ast.Store):
                return False  # unpacking iterates the value
            if isinstance(node, ast.Dict) and None in node.keys:
                return False  # {**m}
        elif isinstance(node, ast.Assign):
            continue
        else:
            return False
    return True


class _Hoist(ast.NodeTransformer):
    """Turn lambdas that need a flag into ``def`` s at the top of their scope, named ``<lambdaN>``.

    A ``def`` guards itself inline (a flag test, two stores and a ``try``/``finally`` that costs
    nothing unless it raises); a lambda kept as one needs a wrapping function, which doubles what
    every call of it costs. So a lambda is moved where that is exactly Python's meaning: the new
    ``def`` sits first in the function (or module) whose scope the lambda belongs to, it closes
    over the same variables, and creating it runs nothing. Lambdas with defaults (moving them
    would evaluate the defaults earlier), lambdas inside comprehensions and class bodies (other
    scopes) and leaves (no flag at all) stay lambdas.
    """

    def __init__(self, hoist: Callable[[ast.Lambda], bool]) -> None:
        self.hoist = hoist
        self.pending: list[ast.stmt] | None = None   # the defs for the scope being visited
        self.names: dict[int, str] = {}              # id of each new def or name -> "the lambda on line N"

    def scope(self, body: list[ast.stmt]) -> list[ast.stmt]:
        saved, self.pending = self.pending, []
        body = [self.visit(stmt) for stmt in body]
        hoisted, self.pending = self.pending, saved
        return hoisted + body

    def visit_Module(self, node: ast.Module) -> Any:
        node.body = self.scope(node.body)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        node.decorator_list = [self.visit(d) for d in node.decorator_list]  # these run in the outer scope
        node.args = self.visit(node.args)
        node.body = self.scope(node.body)
        return node

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        args = node.args
        if self.pending is None or args.defaults or any(args.kw_defaults) or not self.hoist(node):
            return node
        # Not an identifier: no program can write, read or rebind it (compile takes any name in a tree).
        name = f"<lambda{len(self.names) // 2}>"
        function = ast.FunctionDef(name=name, args=args, body=[ast.Return(node.body)], decorator_list=[],
                                   returns=None, type_params=[])
        for new in (function, function.body[0]):
            ast.copy_location(new, node)
        function.body = self.scope(function.body)   # its own lambdas go first in it
        self.pending.append(function)
        load = ast.copy_location(ast.Name(name, ast.Load()), node)
        self.names[id(function)] = self.names[id(load)] = f"the lambda on line {node.lineno}"
        return load

    def visit_other_scope(self, node: ast.AST) -> Any:
        return node  # lambdas in a comprehension or a class body keep their wrapper

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_ClassDef = visit_other_scope


def _guarded_iter(obj: Any) -> Any:
    # `for`/comprehensions/unpacking (relaxed policies only) read a list as it was when they began,
    # like the builtins above: a body that appends to the list it walks cannot loop forever.
    return iter(tuple(obj)) if type(obj) is list else iter(obj)


def restricted_globals(builtin_names: Any = None, snapshots: bool = True, api: Any = None) -> dict[str, Any]:
    """Fresh globals for a RestrictedPython-compiled strategy module (``snapshots``, ``api``: see :func:`make_builtins`)."""
    from RestrictedPython.Guards import full_write_guard, guarded_iter_unpack_sequence, guarded_unpack_sequence

    return {
        "__builtins__": make_builtins(builtin_names, snapshots, api),
        "__name__": "strategy_module",
        "_getattr_": _guarded_getattr,
        "_getitem_": operator.getitem,   # same semantics as RestrictedPython's default, in C
        "_getiter_": _guarded_iter,
        "_reentered_": _reentered,
        "_guard_lambda_": _guard_lambda,
        "_write_": full_write_guard,
        "_inplacevar_": _inplacevar,
        "_apply_": _apply,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_print_": _NullPrint,
    }


RUNTIME_NAMES = frozenset(restricted_globals()) | {"_active_", "_print"}
"""Every name the runtime binds in a strategy's module (guards, re-entry flags, the print collector).

None of them is a private name (:func:`sandbox.policy.is_private_name`): a program can neither read
nor rebind one. Temporaries are ``_tmpN``, hoisted lambdas ``<lambdaN>`` (not an identifier).
"""


# --- the transformer ------------------------------------------------------------------------

# Names RestrictedPython rewrites when they are read (`print` -> the print collector, `printed` ->
# its text) or refuses in calls (`eval(...)`, `exec(...)`): where the program binds one of these
# names itself, its own binding is meant and is left alone.
_SPECIAL_NAMES = frozenset({"print", "printed", "eval", "exec"})
_SCOPE_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp,
                ast.DictComp, ast.GeneratorExp)


class _Scope:
    __slots__ = ("kind", "bound", "globals")

    def __init__(self, kind: str) -> None:
        self.kind = kind          # module, function, class, comprehension
        self.bound: set[str] = set()
        self.globals: set[str] = set()


class _Bindings:
    """Which reads of the special names resolve to the program's own bindings (Python's scoping).

    A mistake here is never an escape: a read left alone that really meant the builtin finds no
    ``print``/``eval``/``exec`` builtin to call (the strategy's builtins map them to nothing or to
    a violation), so it fails; it only matters for honest code that binds these names.
    """

    def __init__(self, watch: frozenset[str]) -> None:
        self.watch = watch
        self.loads: list[tuple[ast.Name, tuple[_Scope, ...]]] = []

    def run(self, tree: ast.AST) -> set[int]:
        module = _Scope("module")
        work: list[tuple[ast.AST, tuple[_Scope, ...]]] = [(tree, (module,))]
        while work:  # iterative: a deep tree must not overflow the stack here
            node, chain = work.pop()
            self.node(node, chain, work)
        return {id(name) for name, chain in self.loads if self.user_bound(name.id, chain)}

    def bind(self, chain: tuple[_Scope, ...], name: str | None) -> None:
        if name in self.watch:
            chain[-1].bound.add(name)

    def node(self, node: ast.AST, chain: tuple[_Scope, ...], work: list) -> None:
        push = work.append
        if isinstance(node, ast.Name):
            if node.id in self.watch:
                if isinstance(node.ctx, ast.Load):
                    self.loads.append((node, chain))
                else:
                    self.bind(chain, node.id)
            return
        if isinstance(node, _SCOPE_NODES):
            self.scope(node, chain, push)
            return
        if isinstance(node, ast.NamedExpr):
            target_chain = chain
            while target_chain[-1].kind == "comprehension":  # `:=` binds in the function around it
                target_chain = target_chain[:-1]
            if isinstance(node.target, ast.Name):
                self.bind(target_chain, node.target.id)
            push((node.value, chain))
            return
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            chain[-1].globals.update(node.names)  # nonlocal: not a binding of this scope either
            return
        if isinstance(node, ast.ExceptHandler):
            self.bind(chain, node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)):
            self.bind(chain, node.name)
        elif isinstance(node, ast.MatchMapping):
            self.bind(chain, node.rest)
        elif isinstance(node, ast.alias):
            self.bind(chain, node.asname or node.name.partition(".")[0])
        for child in ast.iter_child_nodes(node):
            push((child, chain))

    def scope(self, node: ast.AST, chain: tuple[_Scope, ...], push: Callable) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            # Decorators, defaults and annotations run in the enclosing scope.
            outer = [*getattr(node, "decorator_list", ()), *args.defaults, *(d for d in args.kw_defaults if d)]
            params = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            outer += [a.annotation for a in params if a is not None and a.annotation is not None]
            if getattr(node, "returns", None) is not None:
                outer.append(node.returns)
            if not isinstance(node, ast.Lambda):
                self.bind(chain, node.name)
            inner = chain + (_Scope("function"),)
            for a in params:
                if a is not None:
                    self.bind(inner, a.arg)
            body = node.body if isinstance(node.body, list) else [node.body]
        elif isinstance(node, ast.ClassDef):
            outer = [*node.decorator_list, *node.bases, *node.keywords]
            self.bind(chain, node.name)
            inner = chain + (_Scope("class"),)
            body = node.body
        else:  # a comprehension: the first iterable runs outside
            gens = node.generators
            outer = [gens[0].iter] if gens else []
            inner = chain + (_Scope("comprehension"),)
            body = [*(g.target for g in gens), *(g.iter for g in gens[1:]), *(c for g in gens for c in g.ifs)]
            body += [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        for n in outer:
            push((n, chain))
        for n in body:
            push((n, inner))

    @staticmethod
    def user_bound(name: str, chain: tuple[_Scope, ...]) -> bool:
        innermost = len(chain) - 1
        for i in range(innermost, -1, -1):
            scope = chain[i]
            if scope.kind == "class" and i != innermost:
                continue  # a class body's names are not visible in functions nested in it
            if name in scope.globals:
                return name in chain[0].bound
            if name in scope.bound:
                return True
        return False


def _special_bindings(tree: ast.AST) -> set[int]:
    """ids of the Name nodes reading a special name that the program binds itself."""
    for node in ast.walk(tree):  # the common case: no special name is ever bound; skip the analysis
        if isinstance(node, ast.Name):
            if node.id in _SPECIAL_NAMES and not isinstance(node.ctx, ast.Load):
                break
        elif isinstance(node, ast.arg):
            if node.arg in _SPECIAL_NAMES:
                break
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name in _SPECIAL_NAMES:
                break
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)):
            if node.name in _SPECIAL_NAMES:
                break
        elif isinstance(node, ast.MatchMapping):
            if node.rest in _SPECIAL_NAMES:
                break
        elif isinstance(node, ast.alias):
            if (node.asname or node.name) in _SPECIAL_NAMES:
                break
    else:
        return set()
    return _Bindings(_SPECIAL_NAMES).run(tree)


class StrategyTransformer(RestrictingNodeTransformer):
    """RestrictedPython's transformer, extended to the syntax the static policy allows.

    RestrictedPython 9 refuses at compile time, or mis-handles, constructs that ``sandbox.check``
    accepts; each is made to run here with Python's own semantics and every guard in place:

    * ``x[i] += v`` (and slices, any in-place operator): the container and the key are evaluated
      once into temporaries, the in-place operation goes through ``_inplacevar_``, the item is read
      through ``_getitem_`` and written through ``_write_``.
    * ``match`` statements (value, singleton, sequence, mapping, star, capture, or patterns);
      class patterns and dotted value patterns stay refused (an attribute read in a pattern would
      bypass ``_getattr_``).
    * Annotated assignments: ``x: T = v`` becomes ``x = v``; ``x: T`` binds nothing and evaluates
      nothing (the annotation of a local is never evaluated by Python either).
    * Names RestrictedPython reserves (``printed``, ``print``, ``builtins``, ``breakpoint``) used
      as the program's own variables, parameters or functions: allowed, and a read of such a name
      that resolves to the program's binding is left alone (not turned into the print collector).
      Likewise a call of a local called ``eval`` or ``exec`` is not refused as the builtin.
    * Defaults of a ``def`` that use ``print`` are evaluated where the ``def`` runs, so the print
      collector is set up there, not inside the function.
    * Annotations of parameters and return values are dropped unread: nothing in an annotation
      ever runs (``def strategy(board: helper())`` would call ``helper`` as the module loads), and
      an annotation Python itself refuses to compile (``board: (x := 1)``) cannot fail a game.
    * No function of the program runs twice at once: every ``def`` and ``lambda`` gets a flag in
      the module's ``_active_`` list (see :func:`_guard_lambda`), so recursion by any route
      (names, values, callbacks of builtins, defaults, closures) is a ``loop`` violation when it
      happens. ``yield`` is refused: a suspended generator would hold its flag between calls.

    Names the rewrites introduce start with ``_`` (``_tmp0``, ...): programs cannot write those.
    """

    def __init__(self, errors: list | None = None, warnings: list | None = None,
                 used_names: dict | None = None) -> None:
        super().__init__(errors, warnings, used_names)
        self.own_reads: set[int] = set()
        self.sites = 0                   # functions and lambdas numbered so far: their flags in `_active_`
        self.bound: set[str] = set()     # every name the program binds (a builtin's name may be its own)
        self.leaves = False              # whether leaves may go without a flag (no class anywhere)
        self.hoisted: dict[int, str] = {}  # the defs and names _Hoist made of lambdas -> what they were

    # False (only for a policy that allows recursion): functions get no re-entry flag, so recursion
    # runs, bounded by the interpreter's recursion depth and the worker's time limits.
    guard_reentry = True

    def visit_Module(self, node: ast.Module) -> Any:
        self.own_reads = _special_bindings(node)
        self.bound = _bound_names(node)
        self.leaves = not any(isinstance(n, ast.ClassDef) for n in ast.walk(node))
        hoist = _Hoist(lambda f: self.guard_reentry and not (self.leaves and _is_leaf(f, self.bound)))
        node = hoist.visit(node)
        self.hoisted = hoist.names
        node = super().visit_Module(node)
        # `_active_ = [False] * sites` before anything else runs: one flag per def/lambda.
        flags = ast.BinOp(left=ast.List(elts=[ast.Constant(False)], ctx=ast.Load()), op=ast.Mult(),
                          right=ast.Constant(self.sites))
        node.body.insert(0, ast.Assign(targets=[ast.Name("_active_", ast.Store())], value=flags, lineno=1))
        return ast.fix_missing_locations(node)

    def new_site(self) -> ast.Subscript:
        """The flag of a new function site: ``_active_[k]`` (to load; copy it and set ``ctx`` to store)."""
        self.sites += 1
        return ast.Subscript(value=ast.Name("_active_", ast.Load()), slice=ast.Constant(self.sites - 1),
                             ctx=ast.Load())

    def check_name(self, node: Any, name: str | None, allow_magic_methods: bool = False) -> None:
        """The program's own private names (``_helper``) pass; every other underscore name stays refused.

        A private name is :func:`sandbox.policy.is_private_name`'s, the static check's rule: one
        leading ``_``, no trailing one, none of the runtime's own (``_getattr_``, ``_active_``,
        ``_print``, ``_tmp0``), so a program can neither read nor rebind what the runtime injects.
        The name is judged in its NFKC form, the one Python binds. ``print``, ``printed``,
        ``builtins``, ``breakpoint`` and ``*__roles__`` (a Zope convention) are plain variables for
        a strategy; only an import keeps RestrictedPython's full check.
        """
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            super().check_name(node, name, allow_magic_methods)
        elif id(node) in self.hoisted:
            return  # a def made of a lambda, or its name: ours
        elif name is not None:
            if not name.isascii():  # a hand-built tree may hold a look-alike the parser would have folded
                name = unicodedata.normalize("NFKC", name)
            if name.startswith("_") and name != "_" and not is_private_name(name):
                super().check_name(node, name, allow_magic_methods)

    def visit_keyword(self, node: ast.keyword) -> Any:
        """A keyword argument's name is checked like a parameter's (``f(_active_=...)`` is refused)."""
        self.check_name(node, node.arg)
        return self.node_contents_visit(node)

    def visit_Name(self, node: ast.Name) -> Any:
        """A read of the program's own ``print``/``printed`` stays a plain name read."""
        if id(node) in self.own_reads or id(node) in self.hoisted:
            self.check_name(node, node.id)
            return node
        return super().visit_Name(node)

    def visit_Call(self, node: ast.Call) -> Any:
        """RestrictedPython's call handling, without refusing a call of the program's own ``eval``."""
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("eval", "exec") and id(func) in self.own_reads:
            # The program's own function called `eval`: not the builtin, no reason to refuse.
            needs_wrap = any(isinstance(a, ast.Starred) for a in node.args) or \
                any(k.arg is None for k in node.keywords)
            node = self.node_contents_visit(node)
            if needs_wrap:
                node.args.insert(0, node.func)
                node.func = ast.Name("_apply_", ast.Load())
                copy_locations(node.func, node.args[0])
            return node
        return super().visit_Call(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        """A ``def`` whose outer parts (decorators, defaults, annotations) belong to the enclosing scope."""
        self.check_name(node, node.name, allow_magic_methods=True)
        self.check_function_argument_names(node)
        _drop_annotations(node)
        leaf = self.leaves and _is_leaf(node, self.bound)  # before the guards' calls are added
        # Decorators and defaults run in the enclosing scope: a `print` there needs the enclosing
        # scope's print collector (RestrictedPython sets it up inside the function).
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.args = self.visit(node.args)
        with self.print_info.new_print_scope():
            node.body = self.visit_statements(node.body)
            self.inject_print_collector(node)
        if leaf or not self.guard_reentry:
            return node
        # if _active_[k]: _reentered_(what)
        # _active_[k] = True
        # try: <body> finally: _active_[k] = False
        flag = self.new_site()
        what = self.hoisted.get(id(node)) or f"the function {node.name!r} (line {node.lineno})"
        refuse = ast.If(test=flag, orelse=[], body=[ast.Expr(ast.Call(
            func=ast.Name("_reentered_", ast.Load()), args=[ast.Constant(what)], keywords=[]))])
        store = lambda value: ast.Assign(  # noqa: E731
            targets=[ast.Subscript(value=flag.value, slice=flag.slice, ctx=ast.Store())], value=ast.Constant(value))
        guarded = [refuse, store(True), ast.Try(body=node.body, handlers=[], orelse=[], finalbody=[store(False)])]
        for stmt in guarded:
            copy_locations(stmt, node)
        node.body = guarded
        return node

    def visit_Lambda(self, node: ast.Lambda) -> Any:
        """A lambda :class:`_Hoist` left as one, created behind its flag (``_guard_lambda_(...)``)."""
        leaf = self.leaves and _is_leaf(node, self.bound)
        node = super().visit_Lambda(node)
        if leaf or not self.guard_reentry:
            return node
        flag = self.new_site()
        what = f"the lambda on line {node.lineno}"
        wrapped = ast.Call(func=ast.Name("_guard_lambda_", ast.Load()),
                           args=[flag.value, flag.slice, ast.Constant(what), node], keywords=[])
        copy_locations(wrapped, node)
        return wrapped

    def visit_Yield(self, node: ast.AST) -> Any:
        """Refused, as by the static check: a suspended generator would keep its function's flag set."""
        self.error(node, "yield is not allowed (a strategy returns a move).")
        return node

    visit_YieldFrom = visit_Yield

    def visit_statements(self, statements: list[ast.stmt]) -> list[ast.stmt]:
        """Visit a statement list, splicing in the statements a visit returns as a list."""
        out: list[ast.stmt] = []
        for stmt in statements:
            result = self.visit(stmt)
            if result is None:
                continue
            if isinstance(result, ast.AST):
                out.append(result)
            else:
                out.extend(result)
        return out

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        """``name op= v`` as RestrictedPython does it; ``x[k] op= v`` rewritten through the guards."""
        target = node.target
        if not isinstance(target, ast.Subscript):
            return super().visit_AugAssign(node)
        # x[k] op= v  ->  _tmpA = x; _tmpB = k; _write_(_tmpA)[_tmpB] = _inplacevar_(op, _getitem_(_tmpA, _tmpB), v)
        # The user's parts are transformed first; the temporaries are built afterwards, so their
        # leading underscore is never seen by the name check. Evaluation order is Python's:
        # container, key, current item, value, operation, store.
        container = self.visit(target.value)
        key = self.visit(target.slice)
        value = self.visit(node.value)
        holder, index = self.gen_tmp_name(), self.gen_tmp_name()
        load = lambda name: ast.Name(name, ast.Load())  # noqa: E731
        current = ast.Call(func=load("_getitem_"), args=[load(holder), load(index)], keywords=[])
        result = ast.Call(func=load("_inplacevar_"),
                          args=[ast.Constant(IOPERATOR_TO_STR[type(node.op)]), current, value], keywords=[])
        store = ast.Subscript(value=ast.Call(func=load("_write_"), args=[load(holder)], keywords=[]),
                              slice=load(index), ctx=ast.Store())
        statements = [
            ast.Assign(targets=[ast.Name(holder, ast.Store())], value=container),
            ast.Assign(targets=[ast.Name(index, ast.Store())], value=key),  # a Slice node builds a slice
            ast.Assign(targets=[store], value=result),
        ]
        for stmt in statements:
            copy_locations(stmt, node)
        return statements

    def visit_AnnAssign(self, node: ast.AnnAssign) -> Any:
        """``x: T = v`` as ``x = v``; the annotation is never evaluated."""
        if node.value is not None:
            new: ast.stmt = ast.Assign(targets=[node.target], value=node.value)
            copy_locations(new, node)
            return self.visit_Assign(new)
        if isinstance(node.target, ast.Name):
            # `x: T` only makes x local; keep that (it decides UnboundLocalError vs a global) with
            # a harmless annotation (at module level it is stored in __annotations__).
            self.check_name(node.target, node.target.id)
            node.annotation = ast.Constant(None)
            copy_locations(node.annotation, node)
            return node
        new = ast.Pass()
        copy_locations(new, node)
        return new

    # match statements: the subject and guards are ordinary expressions; patterns are checked.

    def visit_Match(self, node: ast.AST) -> Any:
        return self.node_contents_visit(node)

    def visit_match_case(self, node: ast.AST) -> Any:
        return self.node_contents_visit(node)

    def visit_MatchValue(self, node: ast.MatchValue) -> Any:
        if not self.literal_pattern(node.value):
            return node
        return self.node_contents_visit(node)

    def visit_MatchSingleton(self, node: ast.AST) -> Any:
        return self.node_contents_visit(node)

    def visit_MatchSequence(self, node: ast.AST) -> Any:
        return self.node_contents_visit(node)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> Any:
        if not all(self.literal_pattern(k) for k in node.keys):
            return node
        self.check_name(node, node.rest)
        return self.node_contents_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> Any:
        self.check_name(node, node.name)
        return self.node_contents_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> Any:
        self.check_name(node, node.name)
        return self.node_contents_visit(node)

    def visit_MatchOr(self, node: ast.AST) -> Any:
        return self.node_contents_visit(node)

    def literal_pattern(self, value: ast.AST) -> bool:
        """Whether a value pattern or mapping key is a literal (else an error is recorded)."""
        # A dotted name (`case a.b:`) is looked up without _getattr_: refused, as by the check.
        if any(isinstance(n, ast.Attribute) for n in ast.walk(value)):
            self.error(value, "Dotted names in match patterns are not allowed.")
            return False
        return True


def _drop_annotations(node: ast.FunctionDef) -> None:
    """Drop the annotations of a ``def`` (parameters, return): Python evaluates them where the ``def`` runs."""
    args = node.args
    for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
        if arg is not None:
            arg.annotation = None
    node.returns = None


class _RecursiveTransformer(StrategyTransformer):
    """:class:`StrategyTransformer` without re-entry flags: for a policy with ``allow_recursion``."""

    guard_reentry = False


def compile_strategy(source: str | ast.Module, recursion: bool = False) -> CodeType:
    """Compile a strategy's source with :class:`StrategyTransformer`; LoadError when that fails.

    A refusal of the transformer is a ``violation``; a tree the compiler cannot take (our bug, or
    a program too deep to compile) is an ``error``. ``recursion=True`` (a policy that allows it)
    leaves out the re-entry flags: recursion runs, bounded by the recursion depth and time limits.
    """
    transformer = _RecursiveTransformer if recursion else StrategyTransformer
    try:
        tree = source if isinstance(source, ast.Module) else ast.parse(source, "<strategy>")
        result = compile_restricted_exec(tree, filename="<strategy>", policy=transformer)
    except SyntaxError as exc:
        raise LoadError("error", f"SyntaxError: {exc.msg} (line {exc.lineno})") from None
    except (ValueError, TypeError, RecursionError, MemoryError) as exc:
        raise LoadError("error", f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]) from None
    if result.errors or result.code is None:
        raise LoadError("violation", "restricted: " + "; ".join(result.errors)[:ERROR_CHARS])
    return result.code


class LoadError(Exception):
    """The source could not be turned into a strategy: ``outcome`` says which game outcome."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message


def load_strategy(source: str, builtin_names: Any = None, restricted: bool = True,
                  recursion: bool = False, api: Any = None) -> Callable:
    """Compile and execute ``source`` (armed) and return its ``strategy``; LoadError otherwise.

    ``restricted=False`` compiles with plain ``compile`` and full builtins: only the tests of
    the other layers (audit hook, process limits) use it, to show each layer holds alone.
    ``recursion=True`` lets functions re-enter (see :func:`compile_strategy`). ``api`` (name ->
    function) gives the program the game's API functions as builtins (see :func:`make_builtins`).
    """
    try:
        tree = ast.parse(source, "<strategy>")
    except SyntaxError as exc:
        raise LoadError("error", f"SyntaxError: {exc.msg} (line {exc.lineno})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise LoadError("error", f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]) from None
    if restricted:
        snapshots = needs_snapshots(tree)  # before compiling: the transformer rewrites the tree in place
        code = compile_strategy(tree, recursion)
        namespace = restricted_globals(builtin_names, snapshots=snapshots, api=api)
    else:
        code = compile(source, "<strategy>", "exec")
        namespace = {"__name__": "strategy_module", **game_api_table(api)}
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
