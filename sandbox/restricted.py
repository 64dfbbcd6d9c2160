"""Running a strategy's code in this process: RestrictedPython, minimal builtins, an audit guard.

The layers that stand between a strategy and the interpreter it runs in (the process around
it, its limits and its games are :mod:`sandbox.worker`'s):

1. RestrictedPython: the source is compiled with ``compile_restricted_exec`` and
   :class:`StrategyTransformer` (no names or attributes starting with ``_``; every attribute,
   item, iteration, write and in-place operation goes through a guard below). The transformer
   extends RestrictedPython's to the syntax the static policy allows and RestrictedPython 9
   refuses (``x[i] += 1``, ``match``, annotated assignments, local names such as ``printed``),
   so that what ``sandbox.check`` accepts also runs here.
2. A minimal builtins dict: only the pure builtins the static policy allows (no
   ``__import__``, ``open``, ``eval``, ``getattr``...), ``print`` discarding its output;
   a forbidden builtin is a callable that reports a violation. The builtins that iterate while
   calling back into the program (``map``, ``filter``, ``max``/``min`` with ``key``) and the lazy
   iterators a list can be extended from (``zip``, ``enumerate``, ``reversed``) iterate a
   snapshot of a list argument, so a callback that appends to the list cannot loop forever.
3. An audit hook (``sys.addaudithook(GUARD.hook)``, installed by the worker), armed only
   while strategy code runs: any import, open, exec/compile, process, socket, frame or
   code-object event is a violation naming the event. The verdict is sticky, so catching the
   exception the guard raises does not help.
"""
from __future__ import annotations

import ast
import builtins
import operator
from types import CodeType
from typing import Any, Callable

from RestrictedPython import compile_restricted_exec
from RestrictedPython.transformer import IOPERATOR_TO_STR, RestrictingNodeTransformer, copy_locations

from sandbox.policy import INTERNAL_ATTRIBUTES, format_problem, is_internal_attribute

__all__ = ["SAFE_BUILTIN_NAMES", "FORBIDDEN_BUILTIN_NAMES", "FORBIDDEN_EVENTS", "BLOCKED_ATTRIBUTES",
           "SandboxViolation", "GUARD", "set_allowed_attributes", "make_builtins", "needs_snapshots", "restricted_globals",
           "SNAPSHOT_BUILTINS", "StrategyTransformer", "compile_strategy", "LoadError", "load_strategy",
           "describe_exception", "ERROR_CHARS"]

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


def make_builtins(names: Any = None, snapshots: bool = True) -> dict[str, Any]:
    """The builtins dict of a strategy: SAFE_BUILTIN_NAMES, narrowed to ``names`` when given.

    ``snapshots=False`` gives the real ``map``, ``filter``... instead of the stand-ins: only for a
    program in which no callback can grow a list (see :func:`needs_snapshots`).
    """
    wanted = SAFE_BUILTIN_NAMES if names is None else [n for n in SAFE_BUILTIN_NAMES if n in set(names)]
    stand_ins = SNAPSHOT_BUILTINS if snapshots else {}
    table: dict[str, Any] = {name: _forbidden(name) for name in FORBIDDEN_BUILTIN_NAMES}
    table.update((n, stand_ins.get(n) or getattr(builtins, n)) for n in wanted if n != "print")
    return table


# List methods that grow the list they are called on.
_GROWING_METHODS = frozenset({"append", "extend", "insert"})


def needs_snapshots(tree: ast.Module, name: str = "strategy") -> bool:
    """Whether a list may grow while a builtin iterates it: then the program gets the stand-ins.

    A list grows during an iteration only through code the iteration runs: a callback of
    ``map``/``filter``/``max(key=)`` (a lambda or a helper function; the strategy itself cannot
    be one, that would be recursion), a growing method handed over as the callback itself
    (``map(xs.append, xs)``), or the consumer of a lazy iterator over the same list
    (``xs.extend(map(f, xs))``, ``xs += zip(xs)``: both append while they read). So a program
    is safe with the real builtins when no function but the strategy's own body calls
    ``append``/``extend``/``insert``, uses ``+=``/``*=`` or assigns to a slice, no growing method
    is used as a value, and no ``extend``/``+=`` anywhere takes something that may be a lazy
    iterator (anything but a literal or arithmetic). Conservative (no types are known): a
    program it flags merely pays for the stand-ins, which cost about twice the builtin per call
    in every inner step of a strategy.
    """
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    bound = _bound_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in _GROWING_METHODS and id(node) not in called:
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "extend" \
                and any(_may_be_lazy(a, bound) for a in node.args):
            return True
        if isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add) and _may_be_lazy(node.value, bound):
            return True
    top = {id(node) for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name}
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) or id(function) in top:
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in _GROWING_METHODS:
                return True
            if isinstance(node, ast.AugAssign) and isinstance(node.op, (ast.Add, ast.Mult)):
                return True
            targets = node.targets if isinstance(node, ast.Assign) else ()
            if any(isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Slice) for t in targets):
                return True
    return False


# Builtins that return a number, a string or a bool: never a lazy iterator (unless the program rebinds the name).
_SCALAR_BUILTINS = frozenset({"len", "sum", "abs", "int", "float", "round", "bool", "str", "pow", "divmod",
                              "isinstance", "any", "all"})


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
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
    return names


def _may_be_lazy(expr: ast.AST, bound: set[str]) -> bool:
    """Whether ``expr`` may evaluate to a lazy iterator: literals, arithmetic and scalar builtins cannot."""
    if isinstance(expr, ast.Call):
        return not (isinstance(expr.func, ast.Name) and expr.func.id in _SCALAR_BUILTINS
                    and expr.func.id not in bound)
    return not isinstance(expr, (ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.BinOp, ast.UnaryOp,
                                 ast.Compare, ast.JoinedStr))


def _forbidden(name: str) -> Callable:
    def forbidden(*args: Any, **kwargs: Any) -> None:
        GUARD.flag(f"builtin {name!r}")

    forbidden.__name__ = name
    return forbidden


def restricted_globals(builtin_names: Any = None, snapshots: bool = True) -> dict[str, Any]:
    """Fresh globals for a RestrictedPython-compiled strategy module (``snapshots``: see :func:`make_builtins`)."""
    from RestrictedPython.Guards import full_write_guard, guarded_iter_unpack_sequence, guarded_unpack_sequence

    return {
        "__builtins__": make_builtins(builtin_names, snapshots),
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
    * Defaults and annotations of a ``def`` that use ``print`` are evaluated where the ``def``
      runs, so the print collector is set up there, not inside the function.

    Names the rewrites introduce start with ``_`` (``_tmp0``, ...): programs cannot write those.
    """

    def __init__(self, errors: list | None = None, warnings: list | None = None,
                 used_names: dict | None = None) -> None:
        super().__init__(errors, warnings, used_names)
        self.own_reads: set[int] = set()

    def visit_Module(self, node: ast.Module) -> Any:
        self.own_reads = _special_bindings(node)
        return super().visit_Module(node)

    def check_name(self, node: Any, name: str | None, allow_magic_methods: bool = False) -> None:
        """Underscore names stay refused; the names RestrictedPython reserves for itself are ordinary here.

        ``print``, ``printed``, ``builtins``, ``breakpoint`` and ``*__roles__`` (a Zope convention)
        are plain variables for a strategy; only an import keeps RestrictedPython's full check.
        """
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            super().check_name(node, name, allow_magic_methods)
        elif name is not None and name.startswith("_") and name != "_":
            super().check_name(node, name, allow_magic_methods)

    def visit_Name(self, node: ast.Name) -> Any:
        """A read of the program's own ``print``/``printed`` stays a plain name read."""
        if id(node) in self.own_reads:
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
        # Decorators, defaults and annotations run in the enclosing scope: a `print` there needs
        # the enclosing scope's print collector (RestrictedPython sets it up inside the function).
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.args = self.visit(node.args)
        if node.returns is not None:
            node.returns = self.visit(node.returns)
        with self.print_info.new_print_scope():
            node.body = self.visit_statements(node.body)
            self.inject_print_collector(node)
        return node

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


def compile_strategy(source: str | ast.Module) -> CodeType:
    """Compile a strategy's source with :class:`StrategyTransformer`; LoadError when that fails.

    A refusal of the transformer is a ``violation``; a tree the compiler cannot take (our bug, or
    a program too deep to compile) is an ``error``.
    """
    try:
        tree = source if isinstance(source, ast.Module) else ast.parse(source, "<strategy>")
        result = compile_restricted_exec(tree, filename="<strategy>", policy=StrategyTransformer)
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


def load_strategy(source: str, builtin_names: Any = None, restricted: bool = True) -> Callable:
    """Compile and execute ``source`` (armed) and return its ``strategy``; LoadError otherwise.

    ``restricted=False`` compiles with plain ``compile`` and full builtins: only the tests of
    the other layers (audit hook, process limits) use it, to show each layer holds alone.
    """
    try:
        tree = ast.parse(source, "<strategy>")
    except SyntaxError as exc:
        raise LoadError("error", f"SyntaxError: {exc.msg} (line {exc.lineno})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise LoadError("error", f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]) from None
    if restricted:
        snapshots = needs_snapshots(tree)  # before compiling: the transformer rewrites the tree in place
        code = compile_strategy(tree)
        namespace = restricted_globals(builtin_names, snapshots=snapshots)
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
