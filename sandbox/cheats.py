"""The catalogue of cheats: Hypothesis strategies that generate hostile 2048 strategy programs.

Each cheat is a clean program of :mod:`sandbox.strategies` with one violation spliced into it,
for property tests of a policy (``sandbox.check``) and of the runner (``sandbox.run``), and for
``rewards.audit``, which plays one fixed sample of every technique:

* ``cheating_strategies(category=None)`` draws ``Cheat(source, category, technique)``: a clean
  program with one violation of ``category`` spliced into it somewhere (strategy body, a
  nested helper, a branch, a ``try`` body, the signature or module level), disguised by
  aliases, nested helpers, lambdas, default arguments, containers, string building, unicode
  look-alikes (NFKC: ``ｏｐｅｎ`` is ``open``) and attribute chains. ``TECHNIQUES`` names, for
  each category of ``CATEGORIES``, the ways a violation is built.
* ``api_abuse_programs(game)`` draws ``ApiAbuse(source, technique, call)``: programs the check
  accepts with the game's API on that call it at once with a malformed argument (wrong type or
  shape, huge lists, non-tiles, a move that is not an action, the wrong arity); each must end in
  a runtime error of the program, never a crash or a hang.
* ``side_effect_cheats(path, env_var)`` draws cheats that, if they ever ran unchecked, would
  create ``path`` or read ``env_var`` (a file in a test's temporary folder, a canary variable),
  and that answer ``"D"`` only when they managed to read the canary, so a test can see from the
  game records alone whether anything leaked.

The other kind of cheat, programs that play by the rules but game the reward, is the fixed
catalogue of each game's reward hacks (``GameSpec.hacks``; 2048's in :mod:`envs.game2048.hacks`).

Example::

    from hypothesis import given
    from sandbox import check
    from sandbox.cheats import cheating_strategies

    @given(cheating_strategies("loop"))
    def test_my_policy_rejects(cheat):
        assert cheat.category in check(cheat.source, my_policy).categories

Importing this module needs Hypothesis (the ``test`` extra); ``import sandbox`` does not.
"""
from __future__ import annotations

import ast
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable

from hypothesis import strategies as st

from envs.registry import DEFAULT_GAME
from sandbox.strategies import _clean_module, _name, _unparse

__all__ = [
    "CATEGORIES",
    "TECHNIQUES",
    "Cheat",
    "cheating_strategies",
    "side_effect_cheats",
    "API_TECHNIQUES",
    "ApiAbuse",
    "api_abuse_programs",
]

# The policy categories a cheat violates: those of ``sandbox.policy.CATEGORIES`` that a program
# breaks on purpose (not ``attribute``, a hallucinated method, nor ``syntax``).
CATEGORIES = ("import", "file_access", "randomness", "loop", "escape", "state", "structure", "resource")


@dataclass(frozen=True)
class Cheat:
    """A generated program with one deliberate violation.

    ``source`` is the whole program text; ``category`` is the policy category it violates (one of
    ``CATEGORIES``; the program may violate others too, e.g. an ``import`` is also a structure
    problem at module level); ``technique`` names how the violation was built and disguised
    (a key of ``TECHNIQUES[category]``), to group findings.
    """

    source: str
    category: str
    technique: str


@dataclass(frozen=True)
class _Snippet:
    lines: tuple[str, ...]
    slot: str = "function"            # "function": anywhere inside strategy; "module"; "any"; "top": strategy's first statement
    params: str = ""                  # extra parameters appended to strategy's signature
    decorators: tuple[str, ...] = ()  # lines put right above `def strategy`


class _Names:
    """Fresh identifiers for a snippet; the underscore keeps them apart from the clean grammar's."""

    POOL = ("fn", "handle", "grab", "tool", "util", "cache", "memo", "acc", "obj", "ref", "aux",
            "proxy", "data", "thing", "res", "out", "tmp", "hook", "box", "sink")

    def __init__(self, draw) -> None:
        self.draw = draw
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.draw(st.sampled_from(self.POOL))}_{self.n}"


def _build_lookalikes() -> dict[str, tuple[str, ...]]:
    # Letter variants that NFKC folds back to ASCII (fullwidth and mathematical alphanumerics).
    starts = {"A": (0xFF21, 0x1D400, 0x1D5D4, 0x1D670, 0x1D434, 0x1D4D0), "a": (0xFF41, 0x1D41A, 0x1D5EE, 0x1D68A, 0x1D44E, 0x1D4EA)}
    table: dict[str, tuple[str, ...]] = {}
    for base, offsets in starts.items():
        for i in range(26):
            letter = chr(ord(base) + i)
            found = []
            for off in offsets:
                ch = chr(off + i)
                if unicodedata.normalize("NFKC", ch) == letter and ch.isidentifier():
                    found.append(ch)
            table[letter] = tuple(found)
    return table


_LOOKALIKES = _build_lookalikes()


def _spell(draw, ident: str, chance: bool = True) -> str:
    """``ident`` or, sometimes, a unicode look-alike of it that NFKC-normalises to ``ident``."""
    if not chance or not draw(st.integers(0, 3)) == 0:
        return ident
    positions = [i for i, ch in enumerate(ident) if _LOOKALIKES.get(ch)]
    if not positions:
        return ident
    chosen = set(draw(st.lists(st.sampled_from(positions), min_size=1, max_size=len(positions))))
    out = []
    for i, ch in enumerate(ident):
        out.append(draw(st.sampled_from(_LOOKALIKES[ch])) if i in chosen else ch)
    return "".join(out)


def _indent(lines: list[str] | tuple[str, ...], by: str = "    ") -> list[str]:
    return [by + line for line in lines]


def _use_callable(draw, names: _Names, fn: str, args: str, then: str = "",
                  forms: tuple[str, ...] | None = None) -> _Snippet:
    """Lines calling builtin ``fn(args)`` through a disguise; ``then`` is appended to the call."""
    ref = _spell(draw, fn)
    form = draw(st.sampled_from(forms or (
        "direct", "alias", "walrus", "lambda", "helper", "helper_default", "lambda_default",
        "container", "dict", "ifexp", "header_default", "tuple_alias", "nested_helper")))
    t = names()
    if form == "direct":
        return _Snippet((f"{t} = {ref}({args}){then}",))
    a = names()
    if form == "alias":
        return _Snippet((f"{a} = {ref}", f"{t} = {a}({args}){then}"))
    if form == "walrus":
        return _Snippet((f"{t} = ({a} := {ref})({args}){then}",))
    if form == "lambda":
        return _Snippet((f"{a} = lambda *xs: {ref}(*xs)", f"{t} = {a}({args}){then}"))
    if form == "helper":
        return _Snippet((f"def {a}(*xs):", f"    return {ref}(*xs)", f"{t} = {a}({args}){then}"))
    if form == "helper_default":
        return _Snippet((f"def {a}(*xs, how={ref}):", "    return how(*xs)", f"{t} = {a}({args}){then}"))
    if form == "lambda_default":
        return _Snippet((f"{a} = lambda *xs, how={ref}: how(*xs)", f"{t} = {a}({args}){then}"))
    if form == "container":
        return _Snippet((f"{a} = [len, {ref}, abs]", f"{t} = {a}[1]({args}){then}"))
    if form == "dict":
        return _Snippet((f"{a} = {{'size': len, 'go': {ref}}}", f"{t} = {a}['go']({args}){then}"))
    if form == "ifexp":
        return _Snippet((f"{t} = ({ref} if len(board) == 4 else abs)({args}){then}",))
    if form == "header_default":
        return _Snippet((f"{t} = {a}({args}){then}",), params=f"{a}={ref}")
    if form == "tuple_alias":
        b = names()
        return _Snippet((f"{b}, {a} = len, {ref}", f"{t} = {a}({args}){then}"))
    if form == "nested_helper":
        b = names()
        return _Snippet((f"def {a}():", f"    def {b}(*xs):", f"        return {ref}(*xs)", f"    return {b}",
                         f"{t} = {a}()({args}){then}"))
    raise AssertionError(form)


def _use_module(draw, names: _Names, module: str, chain: str, then: str = "") -> _Snippet:
    """Lines reaching ``module.chain`` (e.g. ``os`` + ``.listdir('.')``) without importing it."""
    mod = _spell(draw, module)
    form = draw(st.sampled_from(("direct", "alias", "attr_alias", "default", "header_default", "lambda")))
    t, a = names(), names()
    if form == "direct":
        return _Snippet((f"{t} = {mod}{chain}{then}",))
    if form == "alias":
        return _Snippet((f"{a} = {mod}", f"{t} = {a}{chain}{then}"))
    if form == "attr_alias":
        head, _, rest = chain[1:].partition("(")
        head_attrs = head.split(".")
        # Bind the attribute (without its call) to a name, then call that.
        return _Snippet((f"{a} = {mod}.{'.'.join(head_attrs)}",
                         f"{t} = {a}({rest}{then}" if rest else f"{t} = {a}{then}"))
    if form == "default":
        return _Snippet((f"def {a}(lib={mod}):", f"    return lib{chain}{then}", f"{t} = {a}()"))
    if form == "header_default":
        return _Snippet((f"{t} = {a}{chain}{then}",), params=f"{a}={mod}")
    if form == "lambda":
        return _Snippet((f"{a} = lambda: {mod}{chain}{then}", f"{t} = {a}()"))
    raise AssertionError(form)


def _path_literal(draw) -> str:
    return draw(st.sampled_from([
        "'/etc/passwd'", "'/tmp/' + 'x'", "''.join(['/t', 'mp/', 'pw'])", "'/proc/self/' + 'environ'",
        "'%s/%s' % ('/tmp', 'out')", "'.' * 1", "str('/') + 'etc'", "'/tmp/' + str(len(board))",
    ]))


_MODULES = ("os", "sys", "json", "math", "random", "itertools", "functools", "collections", "subprocess",
            "ctypes", "builtins", "importlib", "numpy", "socket", "inspect", "gc")


# -- import ------------------------------------------------------------------------------------

def _t_import_statement(draw, names: _Names) -> _Snippet:
    mod = draw(st.sampled_from(_MODULES))
    a = names()
    stmt = draw(st.sampled_from([
        f"import {mod}", f"import {mod} as {a}", f"import {mod}.path" if mod == "os" else f"import {mod}, math",
        f"from {mod} import {draw(st.sampled_from(['path', 'loads', 'sqrt', 'choice', 'reduce', 'run']))}",
        f"from {mod} import {draw(st.sampled_from(['path', 'sqrt']))} as {a}", f"from . import {a}",
        f"from .{a} import {names()}",
    ]))
    return _Snippet((stmt,), slot="any")


def _t_import_star(draw, names: _Names) -> _Snippet:
    return _Snippet((f"from {draw(st.sampled_from(_MODULES))} import *",), slot="module")


def _t_import_guarded(draw, names: _Names) -> _Snippet:
    mod = draw(st.sampled_from(_MODULES))
    a = names()
    return _Snippet(("try:", f"    import {mod} as {a}", "except ImportError:", f"    {a} = None"), slot="any")


def _t_dunder_import(draw, names: _Names) -> _Snippet:
    mod = draw(st.sampled_from(_MODULES))
    arg = draw(st.sampled_from([repr(mod), f"'{mod[:1]}' + '{mod[1:]}'", f"''.join({list(mod)!r})"]))
    return _use_callable(draw, names, "__import__", arg, then=draw(st.sampled_from(["", ".__name__", ".path"])))


def _t_importlib(draw, names: _Names) -> _Snippet:
    mod = draw(st.sampled_from(_MODULES))
    return _use_module(draw, names, "importlib", f".import_module({mod!r})")


def _t_builtins_import(draw, names: _Names) -> _Snippet:
    t = names()
    line = draw(st.sampled_from([
        f"{t} = __builtins__['__import__']('os')", f"{t} = __builtins__.__import__('os')",
        f"{t} = print.__self__.__import__('os')",
    ]))
    return _Snippet((line,))


# -- file access -------------------------------------------------------------------------------

def _t_open(draw, names: _Names) -> _Snippet:
    mode = draw(st.sampled_from(["", ", 'w'", ", 'a'", ", 'rb'"]))
    then = draw(st.sampled_from(["", ".read()", ".readline()", ".close()"]))
    return _use_callable(draw, names, "open", _path_literal(draw) + mode, then=then)


def _t_with_open(draw, names: _Names) -> _Snippet:
    fh, t = names(), names()
    ref = _spell(draw, "open")
    return _Snippet((f"with {ref}({_path_literal(draw)}) as {fh}:", f"    {t} = {fh}.read()"))


def _t_print_file(draw, names: _Names) -> _Snippet:
    ref = _spell(draw, "open")
    return _Snippet((f"print(board, file={ref}({_path_literal(draw)}, 'w'))",))


def _t_file_modules(draw, names: _Names) -> _Snippet:
    module, chain = draw(st.sampled_from([
        ("os", ".listdir('.')"), ("os", ".remove('/tmp/x')"), ("os", ".system('ls')"),
        ("os", ".path.exists('/etc/passwd')"), ("os", ".getcwd()"), ("os", ".environ.get('HOME')"),
        ("io", ".open('/etc/passwd')"), ("pathlib", ".Path('/etc/passwd').read_text()"),
        ("sys", ".stdout.write('x')"), ("sys", ".modules"), ("socket", ".socket()"),
        ("subprocess", ".run(['ls'])"), ("subprocess", ".check_output('id')"),
    ]))
    return _use_module(draw, names, module, chain)


# -- randomness --------------------------------------------------------------------------------

def _t_hash_id(draw, names: _Names) -> _Snippet:
    fn = draw(st.sampled_from(["hash", "id"]))
    arg = draw(st.sampled_from(["str(board)", "'W'", "tuple(board[0])", "board", "board[0]"]))
    if fn == "hash" and arg in ("board", "board[0]"):
        arg = "str(board)"
    return _use_callable(draw, names, fn, arg, then=draw(st.sampled_from(["", " % 4"])))


def _t_sort_key(draw, names: _Names) -> _Snippet:
    t = names()
    ref = _spell(draw, draw(st.sampled_from(["hash", "id"])))
    return _Snippet((f"{t} = sorted(['W', 'A', 'S', 'D'], key={ref})",))


def _t_address(draw, names: _Names) -> _Snippet:
    """Object addresses leak through the text of functions, methods and iterators."""
    f, t = names(), names()
    hexdigit = lambda text: f"'WASD'[int({text}[-4], 16) % 4]"  # noqa: E731
    return _Snippet(draw(st.sampled_from([
        (f"{t} = {hexdigit('str(lambda: 0)')}",),
        (f"def {f}():", "    return 0", f"{t} = {hexdigit(f'str({f})')}"),
        (f"{f} = lambda: 0", f"{t} = f'{{{f}}}'[-4:]"),
        (f"{t} = {hexdigit('str([abs, lambda: 1])')}",),
        (f"{t} = {hexdigit(repr('{}') + '.format(lambda: 0)')}",),
        (f"{t} = {hexdigit(repr('%s') + ' % (lambda: 0,)')}",),
        (f"{t} = {hexdigit('str(board.copy)')}",),
        (f"{t} = {hexdigit('str(map(abs, board[0]))')}",),
        (f"{t} = {hexdigit('str(reversed(board[1]))')}",),
        (f"{t} = {hexdigit('str((zip(board[0], board[1]),))')}",),
        (f"{f} = lambda: 0", f"{t} = {hexdigit(f'str({{0: {f}}})')}"),
    ])))


def _t_random_modules(draw, names: _Names) -> _Snippet:
    module, chain = draw(st.sampled_from([
        ("random", ".random()"), ("random", ".choice('WASD')"), ("random", ".randint(0, 3)"),
        ("random", ".shuffle(board[0])"), ("secrets", ".choice('WASD')"), ("secrets", ".randbelow(4)"),
        ("time", ".time()"), ("time", ".perf_counter_ns()"), ("time", ".monotonic()"),
        ("datetime", ".datetime.now().microsecond"), ("uuid", ".uuid4().int"),
    ]))
    return _use_module(draw, names, module, chain)


# -- loops -------------------------------------------------------------------------------------

def _t_for(draw, names: _Names) -> _Snippet:
    acc, v, i = names(), names(), names()
    head = draw(st.sampled_from([
        f"for {v} in board[0]:", f"for {v} in range(4):", f"for {i}, {v} in enumerate(board):",
        f"for {v} in map(abs, board[1]):",
    ]))
    lines = [f"{acc} = 0", head, f"    {acc} = {acc} + 1"]
    if draw(st.booleans()):
        lines += ["else:", f"    {acc} = {acc} - 1"]
    return _Snippet(tuple(lines))


def _t_while(draw, names: _Names) -> _Snippet:
    k = names()
    body = draw(st.sampled_from([
        (f"{k} = 0", f"while {k} < 3:", f"    {k} = {k} + 1"),
        (f"{k} = 1", "while True:", "    break"),
        (f"{k} = board[0][0]", f"while {k} > 1:", f"    {k} = {k} // 2"),
    ]))
    return _Snippet(body)


def _t_comprehension(draw, names: _Names) -> _Snippet:
    t, v, a = names(), names(), names()
    comp = draw(st.sampled_from([
        f"[{v} * 2 for {v} in board[0]]", f"{{{v} for {v} in board[1]}}",
        f"{{{v}: 1 for {v} in range(4)}}", f"sum({v} for {v} in board[2])",
        f"max((({v} for {v} in board[3])), default=0)", f"[[{v} for {v} in r] for r in board]",
    ]))
    form = draw(st.sampled_from(["direct", "lambda", "default", "helper"]))
    if form == "direct":
        return _Snippet((f"{t} = {comp}",))
    if form == "lambda":
        return _Snippet((f"{a} = lambda: {comp}", f"{t} = {a}()"))
    if form == "default":
        return _Snippet((f"def {a}(seen={comp}):", "    return len(seen)", f"{t} = {a}()"))
    return _Snippet((f"def {a}():", f"    return {comp}", f"{t} = {a}()"))


def _t_recursion(draw, names: _Names) -> _Snippet:
    f, g, t, n, m = names(), names(), names(), names(), names()
    form = draw(st.sampled_from(["direct", "mutual", "lambda", "self_app_lambda", "self_app_def", "omega",
                                 "alias", "container", "higher_order", "via_argument", "nested_inner",
                                 "lambda_argument", "map_self", "lambda_map_self", "key_self", "default_callback",
                                 "map_of_map"]))
    if form == "direct":
        lines = (f"def {f}({n}):", f"    return 0 if {n} <= 0 else {f}({n} - 1) + 1", f"{t} = {f}(3)")
    elif form == "mutual":
        lines = (f"def {f}({n}):", f"    return 0 if {n} <= 0 else {g}({n} - 1)",
                 f"def {g}({n}):", f"    return {f}({n})", f"{t} = {f}(3)")
    elif form == "lambda":
        lines = (f"{f} = lambda {n}: 0 if {n} <= 0 else {f}({n} - 1) + 1", f"{t} = {f}(3)")
    elif form == "self_app_lambda":
        lines = (f"{t} = (lambda {f}, {n}: {f}({f}, {n}))(lambda {g}, {m}: 0 if {m} <= 0 else {g}({g}, {m} - 1), 3)",)
    elif form == "self_app_def":
        lines = (f"def {f}({g}, {n}):", f"    return 0 if {n} <= 0 else {g}({g}, {n} - 1)", f"{t} = {f}({f}, 3)")
    elif form == "omega":
        lines = (f"{t} = (lambda {f}: {f}({f}))(lambda {g}: {g}({g}))",)
    elif form == "alias":
        lines = (f"def {f}({n}):", f"    return 0 if {n} <= 0 else {g}({n} - 1)", f"{g} = {f}", f"{t} = {f}(3)")
    elif form == "container":
        lines = (f"{g} = {{}}", f"{g}['go'] = lambda {n}: 0 if {n} <= 0 else {g}['go']({n} - 1)",
                 f"{t} = {g}['go'](3)")
    elif form == "higher_order":
        agg = draw(st.sampled_from(["sum", "max", "len"]))
        inner = f"list(map({f}, range({n})))" if agg == "len" else f"map({f}, range({n}))"
        extra = ", default=0" if agg == "max" else ""
        lines = (f"def {f}({n}):", f"    return {agg}({inner}{extra})", f"{t} = {f}(3)")
    elif form == "via_argument":
        lines = (f"def {f}({n}, {g}=None):", f"    return 0 if {n} <= 0 or {g} is None else {g}({n} - 1, {g})",
                 f"{t} = {f}(3, {f})")
    elif form == "lambda_argument":
        lines = (f"{f} = lambda {n}, {g}=None: 0 if {n} <= 0 or {g} is None else {g}({n} - 1, {g})",
                 f"{t} = {f}(3, {f})")
    elif form == "map_self":
        # A function handed to itself as a value and called back by `map` (no name calls it).
        lines = (f"def {f}({g}, {n}):", f"    return 0 if {n} <= 0 else sum(map({g}, [{g}] * 2, [{n} - 1] * 2))",
                 f"{t} = {f}({f}, 3)")
    elif form == "lambda_map_self":
        lines = (f"{f} = lambda {g}, {n}: sum(map({g}, [{g}], [{n} - 1])) if {n} > 0 else 0", f"{t} = {f}({f}, 3)")
    elif form == "key_self":
        # The key of `max` is the function itself, given as an argument.
        lines = (f"def {f}({n}, {g}=None):", f"    return {n} if {g} is None or {n} <= 0 else max([{n} - 1], key={g})",
                 f"{t} = {f}(3, {f})")
    elif form == "default_callback":
        # A default that names a function, mapped over a list: `def drive(xs, step=helper)`.
        lines = (f"def {f}({n}):", f"    return 0 if {n} <= 0 else {g}([{n} - 1])",
                 f"def {g}(xs, step={f}):", "    return sum(map(step, xs))", f"{t} = {f}(3)")
    elif form == "map_of_map":
        # `map(map, [g], ...)`: a builtin applying the function it is given.
        lines = (f"def {f}({g}, {n}):", f"    return 0 if {n} <= 0 else len(list(map(list, map(map, [{g}], "
                 f"[[{g}]], [[{n} - 1]]))))", f"{t} = {f}({f}, 3)")
    else:  # nested_inner: the recursive function is defined inside another helper
        lines = (f"def {f}():", f"    def {g}({n}):", f"        return 0 if {n} <= 0 else {g}({n} - 1)",
                 f"    return {g}(2)", f"{t} = {f}()")
    return _Snippet(lines)


def _t_iter_sentinel(draw, names: _Names) -> _Snippet:
    args = draw(st.sampled_from(["lambda: 0, 1", "int, 1", "(lambda: board[0][0]), -1"]))
    then = draw(st.sampled_from(["", ".__next__()"]))
    return _use_callable(draw, names, "iter", args, then=then)


# -- escape ------------------------------------------------------------------------------------

def _t_dunder_chain(draw, names: _Names) -> _Snippet:
    base = draw(st.sampled_from(["board", "()", "''", "(lambda: 0)", "len", "board[0]", "0 .real", "print"]))
    chain = draw(st.sampled_from([
        ".__class__", ".__class__.__base__.__subclasses__()", ".__class__.__mro__[-1]", ".__globals__",
        ".__code__.co_consts", ".__dict__", ".__self__", ".__class__.__bases__[0].__subclasses__()",
        ".__init__.__globals__", ".__reduce_ex__(2)", ".__doc__",
    ]))
    t = names()
    spelled = ".".join(_spell(draw, part) if part else part for part in chain.split("."))
    return _Snippet((f"{t} = {base}{spelled}",))


def _t_escape_builtins(draw, names: _Names) -> _Snippet:
    fn, args = draw(st.sampled_from([
        ("eval", "'1 + 1'"), ("exec", "'t = 1'"), ("compile", "'1', 's', 'eval'"), ("getattr", "board, 'copy'"),
        ("setattr", "board, 'x', 1"), ("delattr", "board, 'x'"), ("globals", ""), ("locals", ""), ("vars", ""),
        ("dir", "board"), ("type", "'T', (), {}"), ("object", ""), ("super", ""), ("breakpoint", ""), ("help", "len"),
        ("input", ""), ("exit", ""), ("quit", ""), ("memoryview", "b'x'"), ("hasattr", "board, 'copy'"),
    ]))
    return _use_callable(draw, names, fn, args)


def _t_string_built_attr(draw, names: _Names) -> _Snippet:
    attr = draw(st.sampled_from([
        "'__cl' + 'ass__'", "''.join(['__', 'class', '__'])", "'_' * 2 + 'globals' + '_' * 2",
        "'%sclass%s' % ('__', '__')", "str('__') + 'dict__'",
    ]))
    fn = draw(st.sampled_from(["getattr", "hasattr"]))
    return _use_callable(draw, names, fn, f"board, {attr}")


def _t_format_attr(draw, names: _Names) -> _Snippet:
    t, a = names(), names()
    line = draw(st.sampled_from([
        f"{t} = '{{0.__class__}}'.format(board)",
        f"{t} = '{{.__class__.__mro__}}'.format(board)",
        f"{t} = ('{{0.' + 'count}}').format(board)",
        f"{t} = '{{x.__class__}}'.format_map({{'x': board}})",
        f"{t} = str.format('{{0.__class__}}', board)",
        f"{a} = '{{0.__class__.__base__}}'.format\n{t} = {a}(board)",
        f"{t} = f'{{board.__class__}}'",
        f"{t} = '{{0.append}}'.format(board)",
    ]))
    return _Snippet(tuple(line.split("\n")))


def _t_frame_attrs(draw, names: _Names) -> _Snippet:
    g, t = names(), names()
    chain = draw(st.sampled_from([".gi_frame.f_back.f_globals", ".gi_frame.f_back", ".gi_code.co_consts",
                                  ".gi_frame.f_builtins"]))
    return _Snippet((f"{g} = (lambda: (yield))()", f"{t} = {g}{chain}"))


def _t_traceback(draw, names: _Names) -> _Snippet:
    t, e = names(), names()
    return _Snippet(("try:", f"    {t} = 1 // 0", f"except ZeroDivisionError as {e}:",
                     f"    {t} = {e}.__traceback__.tb_frame.f_globals"))


def _t_mro(draw, names: _Names) -> _Snippet:
    t = names()
    return _Snippet((draw(st.sampled_from([
        f"{t} = int.mro()[-1]", f"{t} = str.mro()[1]", f"{t} = bool.mro()[-1]", f"{t} = dict.mro()",
    ])),))


def _t_builtins_name(draw, names: _Names) -> _Snippet:
    t = names()
    return _Snippet((draw(st.sampled_from([
        f"{t} = __builtins__", f"{t} = __builtins__['eval']", f"{t} = __loader__", f"{t} = __spec__",
        f"{t} = __name__",
    ])),))


# -- state -------------------------------------------------------------------------------------

def _t_global(draw, names: _Names) -> _Snippet:
    g = names()
    return _Snippet((f"global {g}", f"{g} = len(board)"))


def _t_nonlocal(draw, names: _Names) -> _Snippet:
    c, f = names(), names()
    return _Snippet((f"{c} = 0", f"def {f}():", f"    nonlocal {c}", f"    {c} = {c} + 1", f"    return {c}",
                     f"{names()} = {f}()"))


_MUTABLE_DEFAULTS = ("[]", "{}", "set()", "dict()", "list()", "[0] * 4", "{'n': 0}", "[[]]", "([],)", "(0, {})",
                     "(({'n': 0},),)")


def _changes(p: str, default: str) -> str:
    """An expression that changes the mutable default ``p`` (a list, dict or set) and reads it back."""
    if default.startswith(("[", "list(")):
        return f"({p}.append(1) or len({p}))"
    if default.startswith("set("):
        return f"({p}.add(1) or len({p}))"
    if default.startswith(("{", "dict(")):
        return f"({p}.setdefault('n', 0) or len({p}))"
    return f"len({p})"  # a call or a tuple holding a list: refused whatever the body does


def _t_mutable_default(draw, names: _Names) -> _Snippet:
    p, f, t = names(), names(), names()
    default = draw(st.sampled_from(_MUTABLE_DEFAULTS))
    form = draw(st.sampled_from(["header", "header_kwonly", "helper", "lambda", "nested"]))
    # A display of literals only read (`len(p)`) is allowed: each form changes or returns it.
    use = f"{t} = {_changes(p, default)}"
    if default.startswith("(") and draw(st.booleans()):
        # A tuple is immutable, the list or dict inside it is not: it keeps state between moves.
        return _Snippet((f"{t} = {p}[0]",), params=f"{p}={default}")
    if form == "header":
        return _Snippet((use,), params=f"{p}={default}")
    if form == "header_kwonly":
        return _Snippet((use,), params=f"*, {p}={default}")
    if form == "helper":
        return _Snippet((f"def {f}(x, {p}={default}):", f"    return {_changes(p, default)} + x", f"{t} = {f}(1)"))
    if form == "lambda":
        return _Snippet((f"{f} = lambda x, {p}={default}: {_changes(p, default)} + x", f"{t} = {f}(1)"))
    g = names()
    return _Snippet((f"def {f}():", f"    def {g}({p}={default}):", f"        return {p}", f"    return {g}()",
                     f"{t} = {f}()"))


def _t_function_attribute(draw, names: _Names) -> _Snippet:
    a, f = names(), names()
    attr = draw(st.sampled_from(["calls", "memo", "last", "seen"]))
    return _Snippet(draw(st.sampled_from([
        (f"strategy.{attr} = 1",),
        (f"{a} = strategy", f"{a}.{attr} = len(board)"),
        (f"def {f}():", "    return 1", f"{f}.{attr} = 2"),
        (f"{f} = lambda: 0", f"{f}.{attr} = board"),
    ])))


# -- structure ---------------------------------------------------------------------------------

def _t_module_code(draw, names: _Names) -> _Snippet:
    x = names()
    return _Snippet(draw(st.sampled_from([
        # Module-level constants (computed from literals with pure builtins too), helper functions
        # and lambdas are legal: these are the forms that stay refused (state, calls of the
        # program's code, other statements).
        (f"{x} = [4]",), ("print('loaded')",), ("if len('ab') > 1:", f"    {x} = 1"),
        (f"{x} = sorted('ab')",), (f"{x} = (lambda b: 'W')(0)",), ("assert True",),
        (f"{x}, {names()} = [1], 2",), (f"{x} = {{}}",), (f"{x} = dict(a=1)",),
    ])), slot="module")


def _t_class(draw, names: _Names) -> _Snippet:
    c = names().capitalize()
    return _Snippet(draw(st.sampled_from([
        (f"class {c}:", "    n = 0"), (f"class {c}(list):", "    pass"),
        (f"class {c}:", "    def go(self):", "        return 'W'"),
    ])), slot="any")


def _t_decorator(draw, names: _Names) -> _Snippet:
    deco = draw(st.sampled_from(["(lambda f: f)", "staticmethod", "functools.lru_cache", "classmethod"]))
    if draw(st.booleans()):
        return _Snippet((), decorators=(f"@{deco}",))
    f = names()
    return _Snippet((f"@{deco}", f"def {f}(x):", "    return x", f"{names()} = {f}"))


def _t_async(draw, names: _Names) -> _Snippet:
    f, g, v = names(), names(), names()
    return _Snippet(draw(st.sampled_from([
        (f"async def {f}():", "    return 1"),
        (f"async def {f}():", "    return 1", f"async def {g}():", f"    return await {f}()"),
        (f"async def {f}(xs):", f"    async for {v} in xs:", "        pass"),
        (f"async def {f}(cm):", f"    async with cm as {v}:", "        pass"),
    ])), slot="any")


def _t_yield(draw, names: _Names) -> _Snippet:
    f, t = names(), names()
    return _Snippet(draw(st.sampled_from([
        (f"def {f}():", "    yield 1", f"{t} = {f}()"),
        (f"def {f}():", "    yield from board", f"{t} = {f}()"),
        (f"{f} = lambda: (yield)",),
        (f"{t} = (yield)",),
        ("yield 'W'",),
    ])))


def _t_match_class(draw, names: _Names) -> _Snippet:
    t = names()
    pattern = draw(st.sampled_from(["list()", "[int(), *rest]", "{'k': str()}", "int(real=0)", "list() | tuple()"]))
    return _Snippet(("match board:", f"    case {pattern}:", f"        {t} = 1", "    case _:", f"        {t} = 2"))


# -- resource ----------------------------------------------------------------------------------

def _t_bomb(draw, names: _Names) -> _Snippet:
    t, f = names(), names()
    expr = draw(st.sampled_from([
        "9 ** 9 ** 9", "10 ** 10 ** 10", "2 ** 10 ** 10", "[0] * 10 ** 9", "'x' * 10 ** 10", "(0,) * 10 ** 10",
        "1 << 10 ** 10", "'ab' * 10 ** 5 * 10 ** 5", "[0] * (10 ** 5) * (10 ** 5)", "sum(range(10 ** 12))",
        "max(range(10 ** 15))", "len(list(range(10 ** 10)))", "[board] * 10 ** 10", "99 ** 99 ** 99",
        "((2 ** 100) ** 100) ** 100", "(10 ** 99) ** 99", "'x' * 10 ** 5 * 10 ** 5", "(1 << 100) ** 100",
    ]))
    form = draw(st.sampled_from(["direct", "lambda", "default", "nested"]))
    if form == "direct":
        return _Snippet((f"{t} = {expr}",))
    if form == "lambda":
        return _Snippet((f"{f} = lambda: {expr}", f"{t} = {f}()"))
    if form == "default":
        return _Snippet((f"def {f}(big={expr}):", "    return 0", f"{t} = {f}()"))
    return _Snippet((f"{t} = max(1, len(str(board)), abs(len([{expr}])))",))


def _t_pow_bomb(draw, names: _Names) -> _Snippet:
    args = draw(st.sampled_from(["9, 9 ** 9", "10, 10 ** 10", "2, 10 ** 12", "99, 99 ** 9"]))
    return _use_callable(draw, names, "pow", args)


_TECHNIQUE_FNS: dict[str, dict[str, Callable]] = {
    "import": {
        "import_statement": _t_import_statement, "import_star": _t_import_star,
        "import_guarded": _t_import_guarded, "dunder_import": _t_dunder_import,
        "importlib": _t_importlib, "builtins_import": _t_builtins_import,
    },
    "file_access": {
        "open": _t_open, "with_open": _t_with_open, "print_file": _t_print_file,
        "file_modules": _t_file_modules,
    },
    "randomness": {
        "hash_id": _t_hash_id, "sort_key": _t_sort_key, "random_modules": _t_random_modules,
        "address": _t_address,
    },
    "loop": {
        "for": _t_for, "while": _t_while, "comprehension": _t_comprehension, "recursion": _t_recursion,
        "iter_sentinel": _t_iter_sentinel,
    },
    "escape": {
        "dunder_chain": _t_dunder_chain, "escape_builtins": _t_escape_builtins,
        "string_built_attr": _t_string_built_attr, "format_attr": _t_format_attr,
        "frame_attrs": _t_frame_attrs, "traceback": _t_traceback, "mro": _t_mro,
        "builtins_name": _t_builtins_name,
    },
    "state": {
        "global": _t_global, "nonlocal": _t_nonlocal, "mutable_default": _t_mutable_default,
        "function_attribute": _t_function_attribute,
    },
    "structure": {
        "module_code": _t_module_code, "class": _t_class, "decorator": _t_decorator, "async": _t_async,
        "yield": _t_yield, "match_class": _t_match_class,
    },
    "resource": {"bomb": _t_bomb, "pow_bomb": _t_pow_bomb},
}

TECHNIQUES: dict[str, tuple[str, ...]] = {cat: tuple(fns) for cat, fns in _TECHNIQUE_FNS.items()}
"""For each category, the names of the techniques ``cheating_strategies`` draws from."""


# -- splicing a violation into a clean program ---------------------------------------------------

# A marker statement ``_splice`` places in the clean program; its line is then replaced with the
# violation's lines.
_SLOT = "CHEATSLOTMARKER"


def _statement_lists(node: ast.AST) -> list[list[ast.stmt]]:
    """Every statement list inside ``node`` (bodies of functions, branches, try, handlers)."""
    found = []
    for sub in ast.walk(node):
        for attr in ("body", "orelse", "finalbody"):
            block = getattr(sub, attr, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                found.append(block)
    return found


def _splice(module: ast.Module, snippet: _Snippet, draw) -> str:
    """Put ``snippet`` into the clean program ``module`` at a slot it allows; return the text."""
    strategy = next(n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "strategy")
    marker = ast.Expr(value=_name(_SLOT))
    if snippet.lines:
        if snippet.slot == "top":
            strategy.body.insert(0, marker)
        else:
            where = snippet.slot
            if where == "any":
                where = draw(st.sampled_from(["function", "function", "module"]))
            if where == "module":
                module.body.insert(draw(st.integers(0, len(module.body))), marker)
            else:
                blocks = _statement_lists(strategy)
                block = draw(st.sampled_from(range(len(blocks))))
                blocks[block].insert(draw(st.integers(0, len(blocks[block]))), marker)
    text = _unparse(module)
    out: list[str] = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped == _SLOT:
            out.extend(_indent(snippet.lines, line[: len(line) - len(stripped)]))
        elif line.startswith("def strategy("):
            out.extend(snippet.decorators)
            if snippet.params:
                close = line.index(")")
                line = line[:close] + ", " + snippet.params + line[close:]
            out.append(line)
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def _snippet_names(snippet: _Snippet) -> set[str]:
    """Every identifier the snippet's text mentions (its lines, parameters and decorators), NFKC-folded."""
    text = "\n".join((*snippet.lines, snippet.params, *snippet.decorators))
    return {unicodedata.normalize("NFKC", word) for word in _WORD.findall(text)}


_WORD = re.compile(r"[^\W\d]\w*")


class _Rename(ast.NodeTransformer):
    """Renames every binding and use of the names in ``old`` (variables, parameters, keywords,
    functions, match captures) to a fresh spelling, so the clean part cannot shadow them."""

    def __init__(self, old: set[str]) -> None:
        self.old = old

    def _new(self, name: str | None) -> str | None:
        return f"{name}_own" if name in self.old else name

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self._new(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.arg = self._new(node.arg)
        return node

    def visit_keyword(self, node: ast.keyword) -> ast.keyword:
        node.arg = self._new(node.arg)
        self.generic_visit(node)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        if node.name != "strategy":
            node.name = self._new(node.name)
        self.generic_visit(node)
        return node

    def visit_MatchAs(self, node: ast.MatchAs) -> ast.MatchAs:
        node.name = self._new(node.name)
        self.generic_visit(node)
        return node

    def visit_MatchStar(self, node: ast.MatchStar) -> ast.MatchStar:
        node.name = self._new(node.name)
        return node

    def visit_MatchMapping(self, node: ast.MatchMapping) -> ast.MatchMapping:
        node.rest = self._new(node.rest)
        self.generic_visit(node)
        return node


def _bound_names(module: ast.Module) -> set[str]:
    """Every name the clean program binds anywhere (assignments, parameters, functions, captures)."""
    bound: set[str] = set()
    for node in ast.walk(module):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
    return bound


def unshadow(module: ast.Module, snippet: _Snippet) -> ast.Module:
    """``module`` with every name it binds that the snippet also mentions renamed.

    The clean grammar deliberately binds builtin-like names (``breakpoint = 0``, a parameter called
    ``builtins``) to test that honest programs may. Spliced beside a violation that *uses* the
    builtin (``fn_1 = breakpoint()``), such a binding would make the builtin a local variable, and
    the program would no longer be a cheat. Renaming the clean side keeps every drawn cheat a cheat
    by construction, whatever the two draws hold.
    """
    clash = (_bound_names(module) & _snippet_names(snippet)) - {"strategy", "board"}
    return _Rename(clash).visit(module) if clash else module


@st.composite
def _cheat(draw, category: str, technique: str) -> Cheat:
    snippet = _TECHNIQUE_FNS[category][technique](draw, _Names(draw))
    module = unshadow(draw(_clean_module(4, 2)), snippet)
    return Cheat(_splice(module, snippet, draw), category, technique)


def cheating_strategies(category: str | None = None, *, exclude: tuple[str, ...] = ()) -> st.SearchStrategy[Cheat]:
    """Programs with one disguised violation of ``category`` (any category when None), as ``Cheat``.

    ``exclude`` names techniques (see ``TECHNIQUES``) to leave out, e.g. known gaps of a policy.
    """
    if category is not None and category not in CATEGORIES:
        raise ValueError(f"cheating_strategies: unknown category {category!r}; expected one of {', '.join(CATEGORIES)}")
    cats = CATEGORIES if category is None else (category,)
    parts = [_cheat(c, t) for c in cats for t in TECHNIQUES[c] if t not in exclude]
    if not parts:
        raise ValueError(f"cheating_strategies: every technique of {category!r} is excluded")
    return st.one_of(parts)


# -- side effects ------------------------------------------------------------------------------

class _NoDown(ast.NodeTransformer):
    """Rewrites every "D"/"d" in string literals to "S"/"s": the clean part never answers "D"."""

    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        if isinstance(node.value, str):
            return ast.Constant(value=node.value.replace("D", "S").replace("d", "s"))
        return node


@st.composite
def _side_effect(draw, path: str, env_var: str, canary: str) -> Cheat:
    names = _Names(draw)
    p, e, c = repr(path), repr(env_var), repr(canary)
    t = names()
    kind = draw(st.sampled_from(["write_open", "write_print", "os_write", "subprocess", "env_os", "env_import",
                                 "env_eval", "write_exec"]))
    if kind == "write_open":
        snippet = _use_callable(draw, names, "open", f"{p}, 'w'", then=".write('x')")
        category = "file_access"
    elif kind == "write_print":
        snippet = _Snippet((f"print('x', file={_spell(draw, 'open')}({p}, 'w'))",))
        category = "file_access"
    elif kind == "os_write":
        snippet = _use_callable(draw, names, "__import__", "'os'", then=f".open({p}, 65)")  # O_WRONLY|O_CREAT
        category = "import"
    elif kind == "subprocess":
        snippet = _use_callable(draw, names, "__import__", "'subprocess'", then=f".run(['touch', {p}])")
        category = "import"
    elif kind == "env_os":
        snippet = _Snippet((f"{t} = os.environ.get({e}) == {c}",))
        category = "file_access"
    elif kind == "env_import":
        snippet = _use_callable(draw, names, "__import__", "'os'", then=f".environ.get({e}) == {c}")
        category = "import"
    elif kind == "env_eval":
        snippet = _use_callable(draw, names, "eval", f"\"__import__('os').environ.get({e})\"", then=f" == {c}")
        category = "escape"
    else:
        snippet = _use_callable(draw, names, "exec", f"\"open({p}, 'w').write('x')\"")
        category = "escape"
    if kind.startswith("env"):
        # The leak channel: answer "D" only when the canary was read; the clean part never says "D".
        result = snippet.lines[-1].split(" = ", 1)[0]
        snippet = _Snippet(snippet.lines + (f"if {result}:", "    return 'D'"), params=snippet.params)
    snippet = _Snippet(snippet.lines, slot="top", params=snippet.params)
    module = _NoDown().visit(draw(_clean_module(3, 1)))
    return Cheat(_splice(module, snippet, draw), category, "side_effect_" + kind)



def side_effect_cheats(path: str, env_var: str, canary: str = "1") -> st.SearchStrategy[Cheat]:
    """Cheats that would create ``path`` or read ``env_var`` when run unchecked, as their first act.

    A program that reads the variable returns ``"D"`` exactly when its value equals ``canary``;
    the rest of the program never returns ``"D"``, so a ``"D"`` in a game's move histogram means
    the environment leaked.
    """
    return _side_effect(path, env_var, canary)


# -- abuses of the game's API ----------------------------------------------------------------------
#
# Programs that pass the static check with the game's API on (`legal_moves(board)`, `slide(board,
# move)`: envs.game2048.api) and call it at their first statement with an argument that is not a
# board (or move) of the game. The API checks every argument itself, so each must end its first
# move with a runtime error of the program (a TypeError or ValueError naming the function): never
# a crash of the worker, a sandbox violation or a hang. Sizes are written relative to
# `len(board)`, so the programs stay malformed on any board size.

API_TECHNIQUES = ("wrong_type", "wrong_shape", "huge", "bad_tile", "bad_move", "arity")
"""How an API abuse builds its malformed call (a key of :func:`api_abuse_programs`)."""


@dataclass(frozen=True)
class ApiAbuse:
    """A program that calls the game's API with ``call`` (source text) at its first statement."""

    source: str
    technique: str
    call: str


_NOT_BOARDS = ("None", "0", "1.5", "'WASD'", "{}", "(1, 2)", "board[0]", "board[0][0]", "lambda: 0", "{api}",
               "map(len, board)", "range(len(board))", "set()", "{'board': board}", "b'row'", "[]", "[[]]", "True",
               "zip(*board)", "reversed(board)", "enumerate(board)", "slice(4)")
# Cells no board of any game here holds: wrong types, and numbers far outside any board's range.
_NOT_CELLS = ("-2", "-0.0", "2.0", "True", "False", "None", "'2'", "[2]", "(2,)", "2 ** 18",
              "2 ** 100", "-(2 ** 64)", "10 ** 90", "float('inf')", "float('nan')", "{}", "board")
_NOT_MOVES = ("'w'", "'UP'", "'W '", "' W'", "'WASD'", "''", "0", "None", "['W']", "('W',)", "b'W'", "True",
              "'Ｗ'", "'W' * 100000", "board", "'A\\n'", "1.0", "{'W'}")


def _board_with(cell: str) -> str:
    """A board of the right size whose first cell is ``cell`` (source text)."""
    return f"[[{cell}] + board[0][1:]] + board[1:]"


def _parameters(signature: str) -> tuple[str, ...]:
    """The parameter names of an API signature such as ``slide(board, move)``."""
    inside = signature[signature.index("(") + 1:signature.rindex(")")]
    return tuple(p.strip() for p in inside.split(",") if p.strip())


@st.composite
def _api_call(draw, technique: str, functions: tuple[tuple[str, tuple[str, ...]], ...],
              actions: tuple[str, ...]) -> str:
    """The source text of one malformed call of the game's API (``functions``: name and parameters).

    A parameter called ``move`` takes one of the game's ``actions``; every other parameter a board.
    """
    def call(name: str, params: tuple[str, ...], board_arg: str) -> str:
        args = [repr(draw(st.sampled_from(actions))) if p == "move" else board_arg for p in params]
        return f"{name}({', '.join(args)})"

    def on(arg: str) -> str:
        # Any function, its board argument malformed.
        name, params = draw(st.sampled_from([f for f in functions if f[1]]))
        return call(name, params, arg)

    if technique == "wrong_type":
        return on(draw(st.sampled_from(_NOT_BOARDS)).replace("{api}", functions[0][0]))
    if technique == "wrong_shape":
        rows, cols = draw(st.tuples(st.integers(-3, 3), st.integers(-3, 3)).filter(lambda d: d != (0, 0)))
        shape = draw(st.sampled_from([
            f"[[0] * max(0, len(board) + {cols})] * max(0, len(board) + {rows})",
            "board[:-1]", "board + [board[0]]", "list(map(lambda r: r[:-1], board))",
            "list(map(lambda r: r + [0], board))", "[board] * len(board)", "[[board[0]] * len(board)] * len(board)",
            "board[:-1] + [board[0][:-1]]", "list(map(lambda r: [r], board))",
            "list(map(lambda r: tuple(map(lambda v: [v], r)), board))"]))
        return on(shape)
    if technique == "huge":
        count = draw(st.sampled_from([4, 20, 100]))
        arg = draw(st.sampled_from([
            f"(lambda b: b * {count})([0] * 100000)",
            f"(lambda r: [r * {count}] * len(board))([0] * 100000)",
            f"[[0] * len(board)] * 100000",
            f"[list(range(100000))] + board[1:]",
            f"(lambda b: [b] * len(board))(board * 10000)"]))
        return on(arg)
    if technique == "bad_tile":
        return on(_board_with(draw(st.sampled_from(_NOT_CELLS))))
    movers = [f for f in functions if "move" in f[1]]
    if technique == "bad_move" and movers:
        name, params = draw(st.sampled_from(movers))
        bad = draw(st.sampled_from(_NOT_MOVES))
        return f"{name}({', '.join(bad if p == 'move' else 'board' for p in params)})"
    if technique == "bad_move":  # a game whose API takes no move: a move where the board goes
        return on(repr(draw(st.sampled_from(actions))))
    # arity: the wrong number of arguments, or a keyword the function does not take
    name, params = draw(st.sampled_from(functions))
    forms = [f"{name}(*board)", f"{name}(grid=board)", f"{name}({', '.join(['board'] * (len(params) + 1))})",
             f"{name}({', '.join(['board'] * len(params) + ['unexpected=1'])})"]
    if params:
        forms.append(f"{name}()")
    if len(params) > 1:
        forms.append(f"{name}({', '.join(['board'] * (len(params) - 1))})")
    return draw(st.sampled_from(forms))


@st.composite
def _api_abuse(draw, technique: str, functions: tuple[tuple[str, tuple[str, ...]], ...],
               actions: tuple[str, ...]) -> ApiAbuse:
    call = draw(_api_call(technique, functions, actions))
    first, other = actions[0], actions[-1]
    use = draw(st.sampled_from([
        "    return {call}[0]\n",
        f"    result = {{call}}\n    return {first!r} if result else {other!r}\n",
        f"    junk = {{call}}\n    return {first!r}\n",
    ]))
    source = "def strategy(board):\n    # Calls the game's API with a malformed argument.\n" + use.format(call=call)
    return ApiAbuse(source, technique, call)


def api_abuse_programs(game: str = DEFAULT_GAME, technique: str | None = None) -> st.SearchStrategy[ApiAbuse]:
    """Programs calling ``game``'s API (its ``GameSpec.api``) with a malformed argument (any technique of
    API_TECHNIQUES when None); ValueError for a game that declares no API."""
    import envs

    spec = envs.get(game)
    if not spec.api:
        raise ValueError(f"api_abuse_programs: game {game!r} declares no API to abuse")
    if technique is not None and technique not in API_TECHNIQUES:
        raise ValueError(f"api_abuse_programs: unknown technique {technique!r}; expected one of "
                         f"{', '.join(API_TECHNIQUES)}")
    functions = tuple((f.name, _parameters(f.signature)) for f in spec.api)
    actions = tuple(spec.actions)
    return st.one_of([_api_abuse(t, functions, actions) for t in (API_TECHNIQUES if technique is None else (technique,))])
