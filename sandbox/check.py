"""The static check: an AST allowlist that decides whether a strategy program may run.

``check(source, policy)`` parses the source (``ast.parse`` applies NFKC to identifiers, so
``ｅｖａｌ`` is ``eval``), walks the tree once with real Python scoping, and reports every
finding as a :class:`~sandbox.records.Violation` naming a rule of the policy. It never executes
anything, never raises and never hangs: oversized input is rejected before parsing, parser
failures become violations, and the walk is bounded by ``policy.max_depth``.

What the walk knows beyond "is this node type / builtin / method on the allowlist":

* Name resolution follows Python's scopes (function, lambda, comprehension), so a local variable
  called ``dir`` or ``time`` is fine while the builtin ``dir`` is not, and ``f = open`` or
  ``def strategy(board, o=open)`` are caught where ``open`` is evaluated.
* Recursion: a reference graph over every ``def`` and ``lambda`` (a reference counts, not just a
  call, so ``map(f, ...)`` inside ``f`` is recursion). A call through a value the checker cannot
  resolve (a parameter, a subscript, a call result) is assumed to reach every function that was
  passed around as a value, which catches self-application such as ``f(f)`` and the Y combinator.
  A higher-order builtin calls its function argument too: ``map(g, ...)``, ``filter(g, ...)``,
  ``sorted``/``max``/``min``/``.sort`` with ``key=g`` call ``g``, so a parameter or other value
  there is such a call (``map(f, [f], kids)`` with ``f`` a parameter, a default ``step=strategy``
  mapped over a list). The graph has one node for "any function value", so it stays linear in
  the program's size, and a cycle is reported with the path that closes it.
* Resource bombs: constant folding with size estimates before computing, so ``9**9**9`` or
  ``[0] * 10**9`` (or ``r *= 10**9``) are flagged without ever being evaluated.
* State between calls: default values are literals or names only, module-level names are bound
  only to immutable literals or functions, and attributes cannot be assigned.
* Agreement with the runtime (:mod:`sandbox.restricted`): the two share the list of internal
  attribute names and the ``str.format`` template rule (:mod:`sandbox.policy`), so a program
  accepted here does not hit a runtime violation.
* Bounded work: every pass is linear in the tree (alias chains by a worklist, cycles by one
  Tarjan pass), and the walk counts its steps; past ``policy.max_check_steps`` the verdict is a
  ``too-complex`` (resource) violation, never a stall. Verdicts are memoised per (source, policy)
  in a small LRU, so a caller that checks the same program twice pays once.
"""
from __future__ import annotations

import _string  # the parser str.format itself uses
import ast
import builtins
import itertools
import re
import threading
import unicodedata
from collections import OrderedDict
from typing import Iterable

from sandbox.policy import DEFAULT_POLICY, Policy, format_problem, is_internal_attribute, is_private_name
from sandbox.records import Verdict, Violation
from sandbox.text import parse_program

__all__ = ["check"]

_string_parser = _string.formatter_parser

_BUILTIN_NAMES = frozenset(dir(builtins))
_BUILTIN_CLASSES = frozenset(n for n in _BUILTIN_NAMES if isinstance(getattr(builtins, n), type))
_FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
# Builtins whose result prints with a memory address (``<map object at 0x...>``).
_ADDRESS_ITERATORS = frozenset({"map", "filter", "zip", "reversed", "enumerate", "iter"})
# Builtins that build a container from the items of an iterable (its text shows the items).
_COLLECTORS = frozenset({"list", "tuple", "set", "frozenset", "sorted"})
# str methods that allocate a string as long as their first argument.
_PADDING_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})
_FORMAT_METHODS = frozenset({"format", "format_map"})
# Builtins that call a function they are given: map/filter its first argument, the others `key=`.
_CALLBACK_BUILTINS = frozenset({"map", "filter", "sorted", "max", "min"})
# Builtins that, given as that function, call a function from their own arguments: `map(map, [f], xs)`.
_APPLYING_BUILTINS = frozenset({"map", "filter"})
# Pure builtins a module-level constant may be computed with (`LOW = -float("inf")`): on constant
# arguments they return an immutable value and call nothing of the program.
_CONSTANT_BUILTINS = frozenset({"int", "float", "abs", "round", "min", "max", "len", "str", "bool", "tuple",
                                "frozenset", "chr", "ord", "divmod"})
# Methods that read a list, dict or set without changing it and return no view of it that could
# (views and copies cannot change the original).
_READING_METHODS = frozenset({"index", "count", "copy", "get", "keys", "values", "items", "union", "intersection",
                              "difference", "symmetric_difference", "issubset", "issuperset", "isdisjoint"})
# Builtins that read their arguments' items (or build new values from them) but keep no handle on them
# that the program could later change them through.
_READING_BUILTINS = frozenset({"len", "sum", "max", "min", "sorted", "any", "all", "list", "tuple", "set",
                               "frozenset", "dict", "str", "isinstance", "print", "format", "enumerate", "zip",
                               "map", "filter", "reversed", "bool", "round", "abs", "divmod", "pow", "int",
                               "float", "type"})

_MEMO_SIZE = 256
_MEMO: "OrderedDict[tuple, Verdict]" = OrderedDict()
_MEMO_LOCK = threading.Lock()


def check(source: str | bytes, policy: Policy | None = None) -> Verdict:
    """Statically check a strategy program against ``policy`` (default: the mission's). Never raises.

    The verdict of a (source, policy) pair is kept in a small LRU: callers that check the same
    program twice (an evaluation, then the runner) pay once. Verdicts are immutable, so sharing
    them is safe; a policy that cannot be hashed is simply checked every time.
    """
    policy = DEFAULT_POLICY if policy is None else policy
    key = _memo_key(source, policy)
    if key is not None:
        with _MEMO_LOCK:
            verdict = _MEMO.get(key)
            if verdict is not None:
                _MEMO.move_to_end(key)
                return verdict
    verdict = _uncached_check(source, policy)
    if key is not None:
        with _MEMO_LOCK:
            _MEMO[key] = verdict
            if len(_MEMO) > _MEMO_SIZE:
                _MEMO.popitem(last=False)
    return verdict


def _memo_key(source: object, policy: Policy) -> tuple | None:
    token = _policy_token(policy)
    if token is None or not isinstance(source, (str, bytes)) or len(source) > policy.max_source_bytes:
        return None  # oversized input is refused before parsing: nothing worth keeping
    return (type(source), source, token)


def _uncached_check(source: object, policy: Policy) -> Verdict:
    try:
        violations = _check(source, policy)
    except Exception as exc:  # RecursionError/MemoryError from a pathological tree: fail closed
        violations = [Violation("check-error", policy.rule("check-error").category, 1, 1,
                                f"the checker could not analyse this program ({type(exc).__name__})")]
    unique: dict[tuple[int, int, str], Violation] = {}
    for v in violations:  # the first finding at a place wins (the statement before its parts)
        unique.setdefault((v.line, v.col, v.rule), v)
    ordered = tuple(unique[k] for k in sorted(unique))
    return Verdict(not ordered, ordered)


class _OverBudget(Exception):
    """The checker used up ``policy.max_check_steps``."""


def _violation(policy: Policy, rule: str, line: int | None, col: int | None, message: str) -> Violation:
    return Violation(rule, policy.rule(rule).category, int(line or 1), int(col or 1), message)


def _check(source: object, policy: Policy) -> list[Violation]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
        if len(raw) > policy.max_source_bytes:
            return [_violation(policy, "too-long", 1, 1,
                               f"the program has {len(raw)} bytes, more than {policy.max_source_bytes}")]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return [_violation(policy, "syntax-error", 1, 1, f"the program is not UTF-8 text ({exc.reason})")]
    elif isinstance(source, str):
        text = source
        if len(text) > policy.max_source_bytes:  # characters <= bytes: cheap early exit for huge input
            return [_violation(policy, "too-long", 1, 1,
                               f"the program has {len(text)} characters, more than {policy.max_source_bytes} bytes")]
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > policy.max_source_bytes:
            return [_violation(policy, "too-long", 1, 1,
                               f"the program has {size} bytes, more than {policy.max_source_bytes}")]
    else:
        return [_violation(policy, "syntax-error", 1, 1,
                           f"the program must be text, not {type(source).__name__}")]
    try:
        tree = parse_program(text, "<strategy>")
    except SyntaxError as exc:
        return [_violation(policy, "syntax-error", exc.lineno, exc.offset, f"syntax error: {exc.msg}")]
    except (RecursionError, MemoryError):
        return [_violation(policy, "too-deep", 1, 1, "the program is nested too deeply to parse")]
    except (ValueError, UnicodeError) as exc:  # NUL bytes (3.11), lone surrogates, huge int literals
        return [_violation(policy, "syntax-error", 1, 1, f"syntax error: {exc}")]
    checker = _Checker(policy)
    try:
        return checker.run(tree)
    except _OverBudget:
        return [_violation(policy, "too-complex", 1, 1,
                           f"checking this program takes more than {policy.max_check_steps} steps")]


_TABLE_CACHE: dict[int, tuple[Policy, tuple, int | None]] = {}
_TOKENS: dict[Policy, int] = {}    # equal policies share a memo token
_NEXT_TOKEN = itertools.count()    # never reused, so a cleared table cannot alias old memo entries


def _tables(policy: Policy) -> tuple[frozenset[str], dict[str, str], dict[str, str]]:
    """Allowed node types and the name/node -> rule maps of a policy, computed once per policy object."""
    return _policy_entry(policy)[1]


def _policy_token(policy: Policy) -> int | None:
    """A number naming the policy's value (None if it cannot be hashed), looked up once per policy object."""
    return _policy_entry(policy)[2]


def _policy_entry(policy: Policy) -> tuple[Policy, tuple, int | None]:
    cached = _TABLE_CACHE.get(id(policy))
    if cached is not None and cached[0] is policy:
        return cached
    name_rule: dict[str, str] = {}
    node_rule: dict[str, str] = {}
    for rule in policy.rules:
        for n in rule.names:
            name_rule.setdefault(n, rule.id)
        for n in rule.nodes:
            node_rule.setdefault(n, rule.id)
    tables = (policy.nodes(), name_rule, node_rule)
    try:
        # Hashing a policy walks all its allowlists (about 16 us): done here once per object.
        token: int | None = _TOKENS.get(policy)
        if token is None:
            if len(_TOKENS) > 64:
                _TOKENS.clear()
            token = _TOKENS[policy] = next(_NEXT_TOKEN)
    except TypeError:  # a user's policy holding a set or a list: no memo for it
        token = None
    if len(_TABLE_CACHE) > 64:  # policies are few; bound the cache anyway
        _TABLE_CACHE.clear()
    entry = _TABLE_CACHE[id(policy)] = (policy, tables, token)  # the policy kept alive keeps its id unique
    return entry


class _Scope:
    """A function-like scope: the names it binds, which of them are known functions."""

    __slots__ = ("node", "parent", "kind", "locals", "functions", "unknown", "globals", "nonlocals")

    def __init__(self, node: ast.AST, parent: "_Scope | None", kind: str) -> None:
        self.node = node
        self.parent = parent
        self.kind = kind              # module, function, comprehension
        self.locals: set[str] = set()
        self.functions: dict[str, set[ast.AST]] = {}   # name -> def/lambda nodes bound to it
        self.unknown: set[str] = set()                 # names also bound to other values
        self.globals: set[str] = set()
        self.nonlocals: set[str] = set()

    def bind(self, name: str, function: ast.AST | None = None) -> None:
        self.locals.add(name)
        if function is None:
            self.unknown.add(name)
        else:
            self.functions.setdefault(name, set()).add(function)


class _Seq:
    """A folded sequence value: only its length matters (None when unknown)."""

    __slots__ = ("length",)

    def __init__(self, length: int | None) -> None:
        self.length = length


class _Checker:
    def __init__(self, policy: Policy) -> None:
        self.p = policy
        self.nodes, self.name_rule, self.node_rule = _tables(policy)
        self.builtins_ok = policy.allowed_builtins
        self.methods_ok = policy.allowed_methods
        self.out: list[Violation] = []
        self.depth = 0
        self.too_deep = False
        self.where: ast.AST | None = None
        self.scope: _Scope | None = None
        self.function: ast.AST | None = None      # the def/lambda whose body is being walked
        # The recursion graph. Each edge, unknown call and escape keeps the first reason seen,
        # (kind, line, name, builtin), rendered only when a cycle is reported.
        self.edges: dict[ast.AST, dict[ast.AST, tuple]] = {}
        self.calls_unknown: dict[ast.AST, tuple] = {}   # functions calling a value the checker cannot name
        self.escaping: dict[ast.AST, tuple] = {}        # functions used as values: such a call may reach them
        self.steps = 0
        self.max_steps = policy.max_check_steps
        # ids of Name loads in a position that cannot change the value; marked only once a list/dict/set
        # default was seen (a parameter's uses are all in its function's body, visited after its defaults)
        self.readonly: set[int] = set()
        self.list_defaults: list[tuple] = []      # (function, parameter, default) for list/dict/set defaults
        self.param_loads: dict[tuple[int, str], list] = {}  # (id(scope), name) -> loads resolving there
        self.type_calls: set[int] = set()         # ids of `type` Names called with one plain argument
        self.watched: set[tuple[int, str]] = set()  # (id(scope), parameter) of list/dict/set defaults
        self.aug_names: list[tuple] = []          # (target Name, scope) of `name op= value`
        self.names: dict[ast.AST, str] = {}       # function node -> a name for messages
        self.folded: dict[int, object] = {}
        self.loads: list[tuple] = []              # Name loads, resolved after the walk
        self.later: list = []                     # checks that need resolved names
        self.callbacks: dict[int, tuple] = {}     # id(arg) -> (builtin name, scope): see mark_callbacks
        self.aliases: list[tuple] = []            # (binding scope, name, source name, source scope)
        self.print_calls: list[tuple] = []        # calls of a name with `**` or file=: (node, name, scope)
        self.param_aliases: list[tuple] = []      # (function node, parameter, default name, scope)
        self.scope_of: dict[ast.AST, _Scope] = {}

    # -- driver -------------------------------------------------------------------------------

    def run(self, tree: ast.Module) -> list[Violation]:
        self.visit(tree)
        # Names resolve only now: a later assignment anywhere in a function makes a name local.
        self.tick(len(self.loads) + len(self.later))
        self.watched = {(id(self.scope_of[f]), p) for f, p, _ in self.list_defaults if f in self.scope_of}
        for load in self.loads:
            self.resolve_load(*load)
        for task in self.later:
            task()
        if self.list_defaults:
            self.check_list_defaults()
        if self.print_calls:
            self.find_print_aliases()
        if not self.p.allow_recursion and not self.too_deep:
            self.find_recursion()
        return self.out

    def tick(self, steps: int = 1) -> None:
        """Count the checker's work; past the policy's bound the program is refused (``too-complex``)."""
        self.steps += steps
        if self.steps > self.max_steps:
            raise _OverBudget

    def report(self, rule: str, node: ast.AST | None, message: str) -> None:
        if node is not None and not hasattr(node, "lineno"):
            node = self.where  # withitem, comprehension, ...: report at the enclosing statement
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0) + 1
        self.out.append(_violation(self.p, rule, line, col, message))

    def visit(self, node: ast.AST, handler=None) -> None:
        self.depth += 1
        self.steps += 1
        if self.steps > self.max_steps:
            raise _OverBudget
        try:
            if self.depth > self.p.max_depth:
                if not self.too_deep:
                    self.too_deep = True
                    self.report("too-deep", node, f"the program nests more than {self.p.max_depth} levels deep")
                return
            if hasattr(node, "lineno"):
                self.where = node
            kind = type(node).__name__
            if kind not in self.nodes:
                self.reject_node(node, kind)
            if handler is not None:
                handler(node)
            else:
                method = _DISPATCH.get(kind)  # a class-level table: building bound methods per check cost ~0.1 ms
                if method is None:
                    self.children(node)
                else:
                    method(self, node)
        finally:
            self.depth -= 1

    def children(self, node: ast.AST) -> None:
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item)
            elif isinstance(value, ast.AST):
                if isinstance(value, (ast.expr_context, ast.operator, ast.boolop, ast.cmpop, ast.unaryop)):
                    # Singletons: check the type without a full visit (hot path).
                    kind = type(value).__name__
                    if kind not in self.nodes:
                        self.reject_node(node, kind)
                else:
                    self.visit(value)

    def visit_all(self, nodes: Iterable[ast.AST | None]) -> None:
        for n in nodes:
            if n is not None:
                self.visit(n)

    def reject_node(self, node: ast.AST, kind: str) -> None:
        rule = self.node_rule.get(kind, "syntax-not-allowed")
        what = _NODE_WORDS.get(kind, f"`{kind}` syntax")
        self.report(rule, node, f"{what} is not allowed")

    # -- scopes -------------------------------------------------------------------------------

    def enter(self, node: ast.AST, kind: str, params: ast.arguments | None) -> _Scope:
        scope = _Scope(node, self.scope, kind)
        if params is not None:
            for a in (*params.posonlyargs, *params.args, *params.kwonlyargs, params.vararg, params.kwarg):
                if a is not None:
                    scope.bind(a.arg)
        return scope

    def resolve(self, name: str, scope: _Scope | None) -> _Scope | None:
        """The scope that binds ``name`` as seen from ``scope``, or None for builtins and undefined names.

        Only valid once the whole tree is walked (a function's later assignments make a name local).
        """
        if scope is None:
            return None
        if name in scope.globals:
            while scope.parent is not None:
                scope = scope.parent
            return scope if name in scope.locals else None
        if name in scope.locals and name not in scope.nonlocals and name not in scope.globals:
            return scope
        scope = scope.parent
        while scope is not None:
            if name in scope.locals:
                return scope
            scope = scope.parent
        return None

    # -- module and functions -----------------------------------------------------------------

    def v_module(self, node: ast.Module) -> None:
        self.scope = self.enter(node, "module", None)
        self.function = node
        found = False
        name = self.p.strategy_name
        for stmt in node.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name:
                found = True
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and self.p.allow_module_helpers:
                pass  # checked like a nested helper: defaults, recursion graph, names
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                    and isinstance(stmt.value.value, str):
                pass  # a docstring or a string used as a comment
            elif self.p.allow_module_helpers and _module_lambda(stmt):
                pass  # `name = lambda ...`: a helper function like a def
            elif self.p.allow_module_constants and self.module_constant(stmt):
                pass  # an immutable value: nothing a move can change and the next one see
            elif type(stmt).__name__ in self.nodes:  # disallowed statements are reported on their own
                self.report("module-level-code", stmt, self.module_level_message(stmt))
            self.visit(stmt)
        if not found:
            self.report("no-strategy", None, f"no module-level `def {self.p.strategy_name}(board):`")

    def module_constant(self, stmt: ast.stmt) -> bool:
        """``NAME = value`` (or ``A, B = ...``, ``NAME: T = value``) with an immutable, computed-once value.

        The value is built from literals, other module names (constants, functions, builtins),
        arithmetic, comparisons, indexing and calls of pure builtins on those: it cannot hold a
        list, dict or set, and it calls nothing of the program while the module loads. Huge values
        are caught by the same folding as everywhere (``2 ** 10 ** 10``).
        """
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Tuple):
                    if not all(isinstance(e, ast.Name) for e in target.elts):
                        return False
                elif not isinstance(target, ast.Name):
                    return False
            value = stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            value = stmt.value
        else:
            return False
        calls: list[ast.Name] = []
        if not self.constant_expression(value, calls, 0):
            return False
        scope = self.scope
        for func in calls:  # a module-level `float = ...` would make the call run the program's code
            name = _nfkc(func.id)
            self.later.append(lambda f=func, n=name: self.resolve(n, scope) is not None and self.report(
                "module-level-code", f, f"`{n}` at module level calls the program's own `{n}`, not the builtin"))
        return True

    def constant_expression(self, node: ast.AST, calls: list, depth: int) -> bool:
        if depth > self.p.max_depth:
            return False  # reported as too deep by the walk
        self.tick()
        if isinstance(node, (ast.Constant, ast.Name)):
            return True
        parts: list[ast.AST]
        if isinstance(node, ast.UnaryOp):
            parts = [node.operand]
        elif isinstance(node, ast.BinOp):
            parts = [node.left, node.right]
        elif isinstance(node, ast.BoolOp):
            parts = node.values
        elif isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
        elif isinstance(node, ast.IfExp):
            parts = [node.test, node.body, node.orelse]
        elif isinstance(node, ast.Tuple):
            parts = node.elts
        elif isinstance(node, ast.Subscript):
            parts = [node.value, node.slice]
        elif isinstance(node, ast.Slice):
            parts = [p for p in (node.lower, node.upper, node.step) if p is not None]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords \
                and _nfkc(node.func.id) in _CONSTANT_BUILTINS:
            calls.append(node.func)
            parts = node.args
        else:
            return False  # lists, dicts, sets, lambdas, `:=`, f-strings, starred, other calls
        return all(self.constant_expression(p, calls, depth + 1) for p in parts)

    def module_level_message(self, stmt: ast.stmt) -> str:
        name = self.p.strategy_name
        if isinstance(stmt, ast.FunctionDef):
            return (f"helper function outside `{name}` at module level; only `def {name}(board):`, "
                    f"comments and docstrings may be there")
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and self.p.allow_module_constants:
            return ("a module-level variable must be a constant: numbers, strings, `True`, `False`, `None`, "
                    "tuples, names, arithmetic and pure builtins such as `float`; a list, dict or set would be "
                    "shared by every move, and a call of the program's own functions runs as the module loads")
        return f"code outside `{name}` runs at module level; only function definitions, constants, " \
               f"comments and docstrings may be there"

    def v_function(self, node: ast.FunctionDef) -> None:
        self.check_identifier(node.name, node, "function name")
        for dec in node.decorator_list:
            self.report("no-decorator", dec, "decorators are not allowed")
            self.visit(dec)
        self.names.setdefault(node, f"`{node.name}`")
        self.scope.bind(node.name, node)
        self.arguments(node.args, node)
        if node.returns is not None:
            self.annotation(node.returns)
        self.function_body(node, node.args, node.body)

    def annotation(self, node: ast.AST) -> None:
        """An annotation: it runs where the ``def`` runs (module code for a top-level ``def``), so only type names."""
        code = _annotation_code(node, 0)
        if code is not None:
            self.report("annotation-not-type", code, "an annotation may only name types (`int`, `list[int]`, "
                                                     "`str | None`); code in it would run as the module loads")
        self.visit(node)

    def v_annassign(self, node: ast.AnnAssign) -> None:
        self.annotation(node.annotation)
        self.visit(node.target)
        if node.value is not None:
            self.visit(node.value)

    def v_lambda(self, node: ast.Lambda, called: bool = False) -> None:
        self.edge(node, ("creates", node.lineno, None, None))
        if not called:
            callback = self.callbacks.get(id(node))
            why = ("value", node.lineno, None, None)
            if callback is None:
                self.escaping.setdefault(node, why)
            else:
                self.later.append(lambda: self.resolve(*callback) is not None and self.escaping.setdefault(node, why))
        self.names.setdefault(node, f"the lambda on line {node.lineno}")
        self.arguments(node.args, node)
        self.function_body(node, node.args, [node.body])

    def function_body(self, node: ast.AST, params: ast.arguments, body: list[ast.AST]) -> None:
        outer_scope, outer_function = self.scope, self.function
        self.scope = self.enter(node, "function", params)
        self.scope_of[node] = self.scope
        self.function = node
        self.edges.setdefault(node, {})
        try:
            self.visit_all(body)
        finally:
            self.scope, self.function = outer_scope, outer_function

    def arguments(self, args: ast.arguments, function: ast.AST | None = None) -> None:
        """Parameters: names, annotations and defaults, evaluated in the enclosing scope."""
        for a in (*args.posonlyargs, *args.args, args.vararg, *args.kwonlyargs, args.kwarg):
            if a is not None:
                self.visit(a)
        if not args.defaults and not args.kw_defaults:
            return
        positional = (*args.posonlyargs, *args.args)
        pairs = [*zip(positional[len(positional) - len(args.defaults):], args.defaults),
                 *zip(args.kwonlyargs, args.kw_defaults)]
        for param, default in pairs:
            if default is None:
                continue
            if function is not None and _literal_display(default):
                # Evaluated once and shared by every call: fine as long as nothing changes it or
                # hands it on, which is decided once the names are resolved (check_list_defaults).
                self.list_defaults.append((function, _nfkc(param.arg), default))
            elif not _literal(default, names=True):
                # Evaluated once, when the def runs: anything but a literal or a name (a list, a
                # bound method such as {}.setdefault, an f-string hiding `:=`) can keep state.
                self.report("no-mutable-default", default,
                            "a default argument that is not a literal, a name or a tuple of those can keep "
                            "state between calls")
            elif isinstance(default, ast.Name) and function is not None:
                self.param_aliases.append((function, _nfkc(param.arg), _nfkc(default.id), self.scope))
            self.visit(default)

    def v_arg(self, node: ast.arg) -> None:
        self.check_identifier(node.arg, node, "parameter")
        if node.annotation is not None:
            self.annotation(node.annotation)

    def v_class(self, node: ast.ClassDef) -> None:
        self.check_identifier(node.name, node, "class name")
        self.scope.bind(node.name)
        for dec in node.decorator_list:
            self.report("no-decorator", dec, "decorators are not allowed")
        self.visit_all(node.decorator_list)
        self.visit_all(node.bases)
        self.visit_all(node.keywords)
        self.function_body(node, ast.arguments([], [], None, [], [], None, []), node.body)

    def v_comprehension(self, node: ast.AST) -> None:
        gens = node.generators
        if gens:
            self.visit(gens[0].iter)  # the first iterable is evaluated in the enclosing scope
        outer = self.scope
        self.scope = _Scope(node, outer, "comprehension")
        try:
            for i, gen in enumerate(gens):
                if gen.is_async:
                    self.report("no-async", node, "`async for` is not allowed")
                self.visit(gen.target)
                if i:
                    self.visit(gen.iter)
                self.visit_all(gen.ifs)
            if isinstance(node, ast.DictComp):
                self.visit(node.key)
                self.visit(node.value)
            else:
                self.visit(node.elt)
        finally:
            self.scope = outer

    # -- names and attributes ------------------------------------------------------------------

    def check_identifier(self, name: str, node: ast.AST, what: str) -> bool:
        """False for a name that reaches the runtime's internals (dunders, guards); reports every `_` name."""
        name = _nfkc(name)
        if name.startswith("_") and name != "_":
            if is_private_name(name):
                # The program's own `_helper`: it reaches nothing (no name the runtime keeps for
                # itself is private) and the runtime's transformer accepts the same names.
                if not self.p.allow_private_names:
                    self.report("private-name", node, f"{what} `{name}` starts with `_`: write `{name[1:]}`")
                return True
            rule = self.name_rule.get(name, "no-underscore")
            self.report(rule, node, f"{what} `{name}` starts with `_`")
            return False
        return True

    def v_name(self, node: ast.Name, called: bool = False, reference: bool = True) -> None:
        name = _nfkc(node.id)
        if not self.check_identifier(name, node, "name"):
            return
        if isinstance(node.ctx, ast.Load):
            callback = self.callbacks.get(id(node))
            self.loads.append((node, name, self.scope, self.function, called, reference, callback))
        else:
            self.scope.bind(name)

    def v_target(self, node: ast.AST) -> None:
        """A Name already bound by its statement (lambda assignment, walrus): identifier check only."""
        self.check_identifier(node.id, node, "name")

    def resolve_load(self, node: ast.Name, name: str, scope: _Scope, function: ast.AST,
                     called: bool, reference: bool, callback: tuple | None) -> None:
        found = self.resolve(name, scope)
        # A builtin (map, filter, sorted/max/min key=, .sort key=) will call this value.
        applied = callback is not None and self.resolve(*callback) is None
        builtin = callback[0] if applied else None
        if found is None:
            self.global_name(name, node)
            if name == "pow" and not called and "pow" in self.builtins_ok:
                self.report("pow-by-name", node,
                            "`pow` used as a value (alias, default, container) escapes the big-number check")
            if applied and name in _APPLYING_BUILTINS:  # map(map, [f], xs) calls f
                self.calls_unknown.setdefault(function, ("applies", node.lineno, name, builtin))
            return
        if self.watched and (id(found), name) in self.watched:
            self.param_loads.setdefault((id(found), name), []).append(node)
        functions = found.functions.get(name)
        if functions and reference:
            why = ("calls" if called else "hands" if applied else "uses", node.lineno, name, builtin)
            targets = self.edges.setdefault(function, {})
            for f in functions:
                targets.setdefault(f, why)
            if not called and not applied:
                for f in functions:
                    self.escaping.setdefault(f, ("value", node.lineno, name, None))
        if (called or applied) and (name in found.unknown or not functions):
            self.calls_unknown.setdefault(function, ("calls" if called else "hands", node.lineno, name, builtin))

    def global_name(self, name: str, node: ast.AST) -> None:
        """A name no enclosing scope binds: an allowed builtin, a forbidden one, or undefined."""
        if name == "type" and "type" in self.builtins_ok:
            # `type(x)` gives the class of a value (the runtime's stand-in answers just that);
            # `type` as a value or with three arguments builds classes.
            if id(node) not in self.type_calls:
                self.report(self.name_rule.get("type", "no-dynamic-code"), node,
                            "`type` used as a value or called with other than one argument can build classes: "
                            "write `type(x)`")
            return
        if name in self.builtins_ok or name in self.p.api_names:
            return
        if name in self.p.withheld_api_names:
            self.report("game-api-off", node, f"`{name}` is a helper of the game, switched off in this run "
                                              "(the reward spec's game_api is false)")
            return
        rule = self.name_rule.get(name)
        if rule is not None:
            self.report(rule, node, f"`{name}` is not allowed")
        elif name in _BUILTIN_NAMES:
            self.report("builtin-not-allowed", node, f"the builtin `{name}` is not allowed")
        # Otherwise the name is simply undefined: a NameError at run time, not a policy matter.

    def v_attribute(self, node: ast.Attribute) -> None:
        attr = _nfkc(node.attr)
        if not isinstance(node.ctx, ast.Load):
            self.report("no-attribute-assign", node, f"assigning or deleting the attribute `{attr}` is not allowed")
        elif attr in self.methods_ok and not is_internal_attribute(attr):
            if attr in _FORMAT_METHODS:
                self.format_call(node)
            if self.list_defaults and attr in _READING_METHODS and isinstance(node.value, ast.Name):
                self.readonly.add(id(node.value))
        elif attr.startswith("_"):
            self.report(self.name_rule.get(attr, "no-underscore"), node, f"attribute `{attr}` starts with `_`")
        elif is_internal_attribute(attr):
            self.report("internal-attribute", node, f"the attribute `.{attr}` reaches interpreter internals")
        else:
            # Most are hallucinations (`board.size`) that would raise AttributeError: milder than an escape.
            rule = self.name_rule.get(attr, "unknown-attribute")
            self.report(rule, node, f"the attribute or method `.{attr}` is not allowed")
        if isinstance(node.value, ast.Name):
            # `f.x` does not call f: no edge in the recursion graph.
            self.visit(node.value, lambda n: self.v_name(n, reference=False))
        else:
            self.visit(node.value)

    def v_subscript(self, node: ast.Subscript) -> None:
        if self.list_defaults and isinstance(node.ctx, ast.Load) and isinstance(node.value, ast.Name):
            self.readonly.add(id(node.value))  # reads an item: the container stays as it is
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            # `__builtins__['__import__']`: a forbidden name spelled as a string key.
            name = _nfkc(key.value)
            value = node.value
            dunder_base = isinstance(value, ast.Name) and value.id.startswith("_")
            if name in self.name_rule and (name.startswith("_") or dunder_base):
                self.report(self.name_rule[name], key, f"`{name}` is looked up by its name as a string")
        self.children(node)

    def format_call(self, node: ast.Attribute) -> None:
        """``template.format``: a template known here is checked now; any other is checked by the runtime guard.

        The runtime refuses a template whose fields reach attributes on every ``.format`` lookup
        (the same :func:`~sandbox.policy.format_problem`), so a template held in a variable is
        safe; a literal one (or literals joined with ``+``) gets the early explanation.
        """
        self.template(node, _literal_text(node.value, self.p.max_literal_length, 0))

    def template(self, node: ast.AST, text: str | None) -> None:
        if text is None:
            return
        problem = format_problem(text)  # the same rule the runtime guard applies
        if problem:
            self.report("no-format-attribute", node, problem)
            return
        width = _template_width(text)
        if width > self.p.max_sequence_length:
            self.report("no-big-sequence", node, f"a format width of {width} is larger than "
                                                 f"{self.p.max_sequence_length}")

    # -- calls, operators, constants -------------------------------------------------------

    def v_call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name):
            if isinstance(func.ctx, ast.Load):
                scope, name = self.scope, _nfkc(func.id)
                self.later.append(lambda: self.resolve(name, scope) is None and self.builtin_call(name, node, scope))
                if name == "type" and len(node.args) == 1 and not node.keywords \
                        and not isinstance(node.args[0], ast.Starred):
                    self.type_calls.add(id(func))
                if self.list_defaults and name in _READING_BUILTINS:
                    for a in node.args:
                        if isinstance(a, ast.Name):  # `len(weights)`: reads it, keeps no handle on it
                            self.later.append(lambda a=a: self.resolve(name, scope) is None
                                              and self.readonly.add(id(a)))
            self.visit(func, lambda n: self.v_name(n, called=True))
        elif isinstance(func, ast.Lambda):
            self.visit(func, lambda n: self.v_lambda(n, called=True))
        else:
            if not isinstance(func, ast.Attribute):
                self.calls_unknown.setdefault(self.function, ("expr", node.lineno, None, None))
            elif isinstance(func.value, ast.Name) and func.value.id == "str" and func.attr in _FORMAT_METHODS \
                    and node.args:
                # str.format(template, ...): the template is the first argument.
                self.template(node, _literal_text(node.args[0], self.p.max_literal_length, 0))
            self.visit(func)
        self.mark_callbacks(node)
        if node.keywords and isinstance(func, ast.Name):
            for k in node.keywords:
                if k.arg is None or k.arg == "file":
                    self.print_calls.append((node, _nfkc(func.id), self.scope))  # print through an alias?
                    break
        if isinstance(func, ast.Attribute) and func.attr in _FORMAT_METHODS:
            self.text_of(node, [*node.args, *(k.value for k in node.keywords)])
            if self.list_defaults:  # `"{0[1]}".format(weights)` reads items only
                self.readonly.update(id(a) for a in (*node.args, *(k.value for k in node.keywords))
                                     if isinstance(a, ast.Name))
        if isinstance(func, ast.Attribute) and func.attr in _PADDING_METHODS and node.args:
            self.check_size_arg(node.args[0], f"`.{func.attr}` of")
        self.visit_all(node.args)
        self.visit_all(node.keywords)

    def mark_callbacks(self, node: ast.Call) -> None:
        """The functions map/filter/sorted/max/min/.sort will call: a call of that value, not an escape.

        A function named there is called by the builtin (an edge of the recursion graph) but never
        handed back, so it does not escape. A value the checker cannot name there (a parameter, a
        default, ``fs[0]``, ``*args`` or ``**options`` that may hold ``key=``) is a call of an
        unknown function, like ``g(x)`` with ``g`` a parameter: ``map(f, [f] * 2, kids)`` inside
        ``f`` is recursion once ``f`` is passed as a value. Whether the name is really the builtin
        is only known after the walk: the mark keeps (name, scope).
        """
        func = node.func
        given: list[ast.AST] = []
        hidden = False  # the function may sit in *args / **options
        if isinstance(func, ast.Name):
            name = _nfkc(func.id)
            if name not in _CALLBACK_BUILTINS:
                return
            key: tuple = (name, self.scope)
            if name in _APPLYING_BUILTINS:
                if node.args:
                    if isinstance(node.args[0], ast.Starred):
                        hidden = True
                    else:
                        given.append(node.args[0])
                hidden = hidden or any(k.arg is None for k in node.keywords)
        elif isinstance(func, ast.Attribute) and func.attr == "sort":
            name = "sort"
            key = ("sort", None)  # a method: `resolve` of a name no scope binds is None, i.e. "the builtin"
        else:
            return
        if name not in _APPLYING_BUILTINS:
            for kw in node.keywords:
                if kw.arg == "key":
                    given.append(kw.value)
                elif kw.arg is None:
                    hidden = True
        function = self.function
        for g in given:
            self.callbacks[id(g)] = key
            if not isinstance(g, (ast.Name, ast.Lambda, ast.Attribute, ast.Constant)):
                # `map(fs[0], xs)`, `sorted(xs, key=pick())`: whatever function that is gets called.
                hidden = True
        if hidden:
            why = ("hof", node.lineno, None, name)
            self.later.append(lambda: self.resolve(*key) is None and self.calls_unknown.setdefault(function, why))

    def builtin_call(self, name: str, node: ast.Call, scope: _Scope) -> None:
        args = node.args
        if name == "print":
            self.print_keywords(node)
        elif name == "pow":
            if any(isinstance(a, ast.Starred) for a in args) or any(k.arg is None for k in node.keywords):
                self.report("pow-by-name", node, "`pow` with unpacked arguments cannot be checked for huge results")
                return
            given = dict(zip(("base", "exp", "mod"), args))
            given.update((k.arg, k.value) for k in node.keywords)
            if "base" in given and "exp" in given and given.get("mod") is None:
                self.fold_pow(node, given["base"], given["exp"])
        elif name == "range":
            self.check_range(node, args)
        elif name == "type" and len(args) == 1:
            self.type_of_class(args[0], scope)
        elif name in ("str", "format") and args and self.address_text(args[0], scope):
            self.report("no-randomness", node, "the text of a function, method or iterator contains its "
                                               "memory address, which changes between runs")
        elif name == "format" and len(args) > 1:
            spec = _literal_text(args[1], self.p.max_literal_length, 0)
            if spec is not None and _spec_width(spec) > self.p.max_sequence_length:
                self.report("no-big-sequence", node, f"a format width of {_spec_width(spec)} is larger than "
                                                     f"{self.p.max_sequence_length}")

    def type_of_class(self, arg: ast.expr, scope: _Scope) -> None:
        """``type(int)`` or ``type(type(x))``: the class of a class is ``type`` itself, the class builder."""
        if isinstance(arg, ast.Name) and isinstance(arg.ctx, ast.Load):
            name = _nfkc(arg.id)
            if name in _BUILTIN_CLASSES and self.resolve(name, scope) is None:
                self.report(self.name_rule.get("type", "no-dynamic-code"), arg,
                            f"`type({name})` is `type` itself, which builds classes")
        elif isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name) and _nfkc(arg.func.id) == "type" \
                and self.resolve("type", scope) is None:
            self.report(self.name_rule.get("type", "no-dynamic-code"), arg,
                        "`type(type(...))` is `type` itself, which builds classes")

    def print_keywords(self, node: ast.Call) -> None:
        for kw in node.keywords:
            if kw.arg == "file":
                self.report("no-file-access", kw, "`print(..., file=...)` writes to a file")
            elif kw.arg is None:
                self.report("no-file-access", kw, "`print(..., **options)` can hide `file=...`")

    def find_print_aliases(self) -> None:
        """Report `**` / `file=` in calls of a name bound to `print` (`p = print`, `def f(p=print)`).

        Alias chains (``q = p = print``, in any order of the source) are followed with a worklist
        from the bindings of ``print`` itself: each binding is looked at once, so a chain costs its
        length, not its length squared.
        """
        bindings = list(self.aliases)
        for function, param, source, scope in self.param_aliases:
            inner = self.scope_of.get(function)
            if inner is not None:
                bindings.append((inner, param, source, scope))
        self.tick(len(bindings))
        users: dict[tuple[int, str], list[tuple[int, str]]] = {}  # a binding -> the bindings copying it
        work: list[tuple[int, str]] = []
        for scope, name, source, source_scope in bindings:
            found = self.resolve(source, source_scope)
            if found is None:
                if source == "print":
                    work.append((id(scope), name))
            else:
                users.setdefault((id(found), source), []).append((id(scope), name))
        printish: set[tuple[int, str]] = set()
        while work:
            binding = work.pop()
            if binding in printish:
                continue
            printish.add(binding)
            work.extend(users.get(binding, ()))
        if not printish:
            return
        for node, name, scope in self.print_calls:
            found = self.resolve(name, scope)
            if found is not None and (id(found), name) in printish:
                self.print_keywords(node)

    def address_text(self, expr: ast.AST, scope: _Scope, depth: int = 0) -> bool:
        """Whether the text of ``expr`` may show a memory address (``<function f at 0x...>``).

        Functions, bound methods and lazy iterators print with their address, which changes
        between runs: text built from them is a hidden source of randomness. Containers are
        searched, since ``str([f])`` shows ``f``'s address too.
        """
        if depth > 20:
            return False
        if isinstance(expr, (ast.Lambda, ast.Attribute)):
            return True  # every allowed attribute is a method: its value is a bound method
        if isinstance(expr, ast.Name):
            found = self.resolve(expr.id, scope)
            return bool(found and found.functions.get(expr.id))
        if isinstance(expr, ast.Call):
            if isinstance(expr.func, ast.Name) and self.resolve(expr.func.id, scope) is None:
                if expr.func.id in _ADDRESS_ITERATORS:
                    return True
                # A container built from an iterable holds its items: `list(map(lambda r: r.copy, b))`.
                if expr.func.id in _COLLECTORS and expr.args:
                    return self.address_items(expr.args[0], scope, depth + 1)
            return False
        if isinstance(expr, ast.Starred) and not isinstance(expr.value, (ast.List, ast.Tuple, ast.Set)):
            return self.address_items(expr.value, scope, depth + 1)  # `[*map(...)]` holds the items
        if isinstance(expr, (ast.List, ast.Tuple, ast.Set)):
            parts = expr.elts
        elif isinstance(expr, ast.Dict):
            parts = [*(k for k in expr.keys if k is not None), *expr.values]
        elif isinstance(expr, ast.Starred):  # `*it` unpacks an iterator: only its items become text
            parts = expr.value.elts if isinstance(expr.value, (ast.List, ast.Tuple, ast.Set)) else []
        elif isinstance(expr, ast.IfExp):
            parts = [expr.body, expr.orelse]
        elif isinstance(expr, ast.BoolOp):
            parts = expr.values
        elif isinstance(expr, ast.NamedExpr):
            parts = [expr.value]
        elif isinstance(expr, ast.Subscript) and isinstance(expr.value, (ast.List, ast.Tuple, ast.Dict)):
            parts = [expr.value]  # an item of a literal container
        else:
            return False
        return any(self.address_text(p, scope, depth + 1) for p in parts)

    def address_items(self, expr: ast.AST, scope: _Scope, depth: int) -> bool:
        """Whether the *items* of the iterable ``expr`` may print with a memory address.

        The items of ``map(f, xs)`` are what ``f`` returns (known for a lambda), of
        ``filter``/``reversed``/``sorted``/``enumerate`` those of their iterable, of ``zip``
        those of any of its iterables, of a literal container its elements.
        """
        if depth > 20:
            return False
        if isinstance(expr, (ast.List, ast.Tuple, ast.Set)):
            return any(self.address_text(e, scope, depth + 1) for e in expr.elts)
        if not (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.args
                and self.resolve(expr.func.id, scope) is None):
            return False
        name, args = expr.func.id, expr.args
        if name == "map":
            return isinstance(args[0], ast.Lambda) and self.address_text(args[0].body, scope, depth + 1)
        if name in ("filter",) and len(args) > 1:
            return self.address_items(args[1], scope, depth + 1)
        if name in ("reversed", "sorted", "enumerate", "list", "tuple", "set", "frozenset"):
            return self.address_items(args[0], scope, depth + 1)
        if name == "zip":
            return any(self.address_items(a, scope, depth + 1) for a in args)
        return False

    def text_of(self, node: ast.AST, exprs: list[ast.AST]) -> None:
        """Report ``node`` if the text it builds from ``exprs`` may show a memory address."""
        scope = self.scope
        self.later.append(lambda: any(self.address_text(e, scope) for e in exprs) and self.report(
            "no-randomness", node,
            "the text of a function, method or iterator contains its memory address, which changes between runs"))

    def v_formatted(self, node: ast.FormattedValue) -> None:
        self.text_of(node, [node.value])
        if self.list_defaults and isinstance(node.value, ast.Name):
            self.readonly.add(id(node.value))
        spec = node.format_spec
        if isinstance(spec, ast.JoinedStr) and all(isinstance(v, ast.Constant) for v in spec.values):
            width = _spec_width("".join(str(v.value) for v in spec.values))
            if width > self.p.max_sequence_length:
                self.report("no-big-sequence", node, f"a format width of {width} is larger than "
                                                     f"{self.p.max_sequence_length}")
        self.children(node)

    def v_compare(self, node: ast.Compare) -> None:
        for part in (node.left, *node.comparators) if self.list_defaults else ():
            if isinstance(part, ast.Name):
                self.readonly.add(id(part))  # `x in weights`, `weights == other`: reads only
        self.children(node)

    def v_starred(self, node: ast.Starred) -> None:
        if self.list_defaults and isinstance(node.ctx, ast.Load) and isinstance(node.value, ast.Name):
            self.readonly.add(id(node.value))  # `[*weights]`, `f(*weights)`: the items, not the container
        self.children(node)

    def v_keyword(self, node: ast.keyword) -> None:
        if node.arg is not None:
            self.check_identifier(node.arg, node, "keyword argument")
        self.visit(node.value)

    def v_binop(self, node: ast.BinOp) -> None:
        self.fold(node)
        if isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) \
                and isinstance(node.left.value, str):
            self.text_of(node, [node.right])
            width = _percent_width(node.left.value)
            if width > self.p.max_sequence_length:
                self.report("no-big-sequence", node, f"a format width of {width} is larger than "
                                                     f"{self.p.max_sequence_length}")
        for side in (node.left, node.right) if self.list_defaults else ():
            if isinstance(side, ast.Name):
                self.readonly.add(id(side))  # `weights + [1]` builds a new value
        self.children(node)

    def v_augassign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self.aug_names.append((node.target, _nfkc(node.target.id), self.scope))  # `weights += [1]` changes it
        op = node.op
        if isinstance(op, (ast.Pow, ast.Mult, ast.LShift)):
            # In-place forms are bounded like the binary ones: the target's value is unknown, so a
            # constant count that would be too big for a sequence (`r *= 10**8`) is refused outright.
            value = self.fold(node.value)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if isinstance(op, ast.Pow) and number and abs(value) > self.p.max_pow_exponent:
                self.report("no-big-number", node, f"exponent {value!r} is larger than {self.p.max_pow_exponent}")
            elif isinstance(op, ast.Mult) and number and isinstance(value, int) \
                    and value > self.p.max_sequence_length:
                self.report("no-big-sequence", node, f"`*= {value}` repeats a sequence more than "
                                                     f"{self.p.max_sequence_length} times")
            elif isinstance(op, ast.LShift) and number and isinstance(value, int) and value > self.p.max_int_bits:
                self.report("no-big-number", node, f"shifting by {value} makes a number larger than "
                                                   f"{self.p.max_int_bits} bits")
        self.children(node)

    def v_assign(self, node: ast.Assign) -> None:
        value = node.value
        if self.list_defaults and isinstance(value, ast.Name) \
                and all(isinstance(t, (ast.Tuple, ast.List)) for t in node.targets):
            self.readonly.add(id(value))  # `a, b = weights` binds its items, not the container
        if isinstance(value, ast.Name):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    self.aliases.append((self.scope, _nfkc(t.id), _nfkc(value.id), self.scope))
        if isinstance(value, ast.Lambda) and all(isinstance(t, ast.Name) for t in node.targets):
            for t in node.targets:
                self.scope.bind(_nfkc(t.id), value)
                self.visit(t, self.v_target)
            # `f = lambda ...` binds the lambda to a name (tracked by the scope), it does not escape.
            self.names.setdefault(value, f"`{node.targets[0].id}`")
            self.visit(value, lambda n: self.v_lambda(n, called=True))
        else:
            self.visit_all(node.targets)
            self.visit(value)

    def v_namedexpr(self, node: ast.NamedExpr) -> None:
        scope = self.scope
        while scope.kind == "comprehension":  # a walrus in a comprehension binds in the function around it
            scope = scope.parent
        scope.bind(_nfkc(node.target.id))
        if isinstance(node.value, ast.Name):
            self.aliases.append((scope, _nfkc(node.target.id), _nfkc(node.value.id), self.scope))
        self.visit(node.target, self.v_target)
        self.visit(node.value)

    def v_constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, (str, bytes)) and len(value) > self.p.max_literal_length:
            self.report("no-big-sequence", node,
                        f"a literal of {len(value)} characters is longer than {self.p.max_literal_length}")
        elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > self.p.max_int_bits:
            self.report("no-big-number", node, f"a number of {value.bit_length()} bits is larger than "
                                               f"{self.p.max_int_bits} bits")

    def v_except(self, node: ast.ExceptHandler) -> None:
        if node.type is None and not self.p.allow_bare_except:
            self.report("no-base-exception", node,
                        "a bare `except:` also catches SystemExit and KeyboardInterrupt; write `except Exception:`")
        if node.name is not None:
            if self.check_identifier(node.name, node, "exception name"):
                self.scope.bind(_nfkc(node.name))
        self.children(node)

    def v_import(self, node: ast.AST) -> None:
        pass  # reported by the node allowlist; the imported names need no further walk

    def v_global(self, node: ast.AST) -> None:
        for name in node.names:
            self.check_identifier(name, node, "name")
        if isinstance(node, ast.Global):
            self.scope.globals.update(node.names)
        else:
            self.scope.nonlocals.update(node.names)
            self.scope.locals.update(node.names)

    def v_match_name(self, node: ast.AST) -> None:
        name = getattr(node, "name", None) or getattr(node, "rest", None)
        if name and self.check_identifier(name, node, "capture name"):
            self.scope.bind(_nfkc(name))
        if isinstance(node, ast.MatchMapping):
            for key in node.keys:
                self.dotted_pattern(key)
        self.children(node)

    def v_match_value(self, node: ast.MatchValue) -> None:
        self.dotted_pattern(node.value)
        self.children(node)

    def dotted_pattern(self, value: ast.AST) -> None:
        # `case a.b:` reads the attribute outside every runtime guard (no _getattr_ in patterns).
        if isinstance(value, ast.Attribute):
            self.report("no-match-class", value, "a dotted name in a `case` pattern is not allowed")

    # -- resource folding ---------------------------------------------------------------------

    def fold(self, node: ast.AST) -> object:
        """The constant value of ``node`` (numbers; _Seq for sequences), or None if unknown."""
        key = id(node)
        if key in self.folded:
            return self.folded[key]
        self.folded[key] = None  # guards against re-entry; replaced below
        result = self._fold(node)
        self.folded[key] = result
        return result

    def _fold(self, node: ast.AST) -> object:
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, (str, bytes)):
                return _Seq(len(value))
            if isinstance(value, (int, float, complex)):
                return value
            return None
        if isinstance(node, (ast.List, ast.Tuple)):
            return _Seq(None if any(isinstance(e, ast.Starred) for e in node.elts) else len(node.elts))
        if isinstance(node, ast.JoinedStr):
            return _Seq(None)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Invert)):
            value = self.fold(node.operand)
            if isinstance(value, (int, float, complex)) and not isinstance(value, _Seq):
                try:
                    return {ast.USub: lambda v: -v, ast.UAdd: lambda v: +v,
                            ast.Invert: lambda v: ~v}[type(node.op)](value)
                except TypeError:
                    return None
            return None
        if not isinstance(node, ast.BinOp):
            return None
        left, right = self.fold(node.left), self.fold(node.right)
        op = node.op
        if isinstance(op, ast.Pow):
            return self.fold_power(node, left, right)
        if isinstance(op, ast.Mult):
            if isinstance(left, _Seq) or isinstance(right, _Seq):
                seq, count = (left, right) if isinstance(left, _Seq) else (right, left)
                return self.repeat(node, seq, count)
            if _is_number(left) and _is_number(right):
                if isinstance(left, int) and isinstance(right, int) \
                        and left.bit_length() + right.bit_length() > self.p.max_int_bits:
                    self.report("no-big-number", node, f"the product has more than {self.p.max_int_bits} bits")
                    return None
                return _arith(lambda a, b: a * b, left, right)
            return None
        if isinstance(op, ast.LShift):
            if isinstance(right, int) and right > self.p.max_int_bits:
                self.report("no-big-number", node, f"shifting by {right} makes a number larger than "
                                                   f"{self.p.max_int_bits} bits")
                return None
            if isinstance(left, int) and isinstance(right, int) and right >= 0:
                if left.bit_length() + right > self.p.max_int_bits:
                    self.report("no-big-number", node, f"the shift result has more than {self.p.max_int_bits} bits")
                    return None
                return left << right
            return None
        if isinstance(op, ast.Add):
            if isinstance(left, _Seq) and isinstance(right, _Seq):
                return _Seq(None if left.length is None or right.length is None else left.length + right.length)
            if isinstance(left, _Seq) or isinstance(right, _Seq):
                return _Seq(None)
        if isinstance(op, ast.Mod) and isinstance(left, _Seq):
            return _Seq(None)
        if _is_number(left) and _is_number(right):
            func = _ARITH.get(type(op))
            if func is not None:
                return _arith(func, left, right)
        return None

    def fold_power(self, node: ast.AST, base: object, exponent: object) -> object:
        if not _is_number(exponent):
            return None
        if isinstance(exponent, complex) or abs(exponent) > self.p.max_pow_exponent:
            shown = exponent if isinstance(exponent, (int, complex)) else f"{exponent:g}"
            self.report("no-big-number", node, f"exponent {shown} is larger than {self.p.max_pow_exponent}")
            return None
        if not _is_number(base):
            return None
        if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 \
                and base.bit_length() * exponent > self.p.max_int_bits:
            self.report("no-big-number", node, f"the power has more than {self.p.max_int_bits} bits")
            return None
        return _arith(lambda a, b: a ** b, base, exponent)

    def fold_pow(self, node: ast.Call, base: ast.AST, exponent: ast.AST) -> None:
        self.fold_power(node, self.fold(base), self.fold(exponent))

    def repeat(self, node: ast.AST, seq: _Seq, count: object) -> object:
        if isinstance(count, bool) or not isinstance(count, int):
            return _Seq(None)
        limit = self.p.max_sequence_length
        total = None if seq.length is None else seq.length * count
        if count > limit or (total is not None and total > limit):
            size = f"{total} items" if total is not None else f"{count} repeats"
            self.report("no-big-sequence", node, f"a sequence of {size} is larger than {limit}")
            return None
        return _Seq(total)

    def check_size_arg(self, expr: ast.AST, what: str) -> None:
        value = self.fold(expr)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > self.p.max_sequence_length:
            self.report("no-big-sequence", expr, f"{what} {value} items is larger than {self.p.max_sequence_length}")

    def check_range(self, node: ast.Call, args: list[ast.AST]) -> None:
        values = [self.fold(a) for a in args]
        limit = self.p.max_sequence_length
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values) and len(values) <= 3:
            try:
                length = len(range(*values))
            except (OverflowError, ValueError):
                length = limit + 1
            if length > limit:
                self.report("no-big-sequence", node, f"a range of more than {limit} items")
            return
        for a, v in zip(args, values):
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) > limit:
                self.report("no-big-sequence", a, f"a range bound of {v} is larger than {limit}")

    # -- recursion ----------------------------------------------------------------------------

    def check_list_defaults(self) -> None:
        """A list/dict/set default is state unless every use of its parameter only reads it.

        Reads: an item (``w[i]``), a reading method (``w.index``, ``w.get``), a comparison, an
        operand (``w + [1]``), unpacking (``*w``), a reading builtin (``len(w)``, ``map(f, w)``)
        or text. Anything else (a mutating method, ``w[i] = v``, ``w += ...``, returning it,
        passing it to a function, binding it to another name) could change the one object every
        call shares, or let a caller do so.
        """
        changed = {(id(self.resolve(name, scope)), name): target for target, name, scope in self.aug_names}
        for function, param, default in self.list_defaults:
            scope = self.scope_of.get(function)
            if scope is None:
                continue
            key = (id(scope), param)
            loads = self.param_loads.get(key, ())
            self.tick(len(loads))
            where = changed.get(key) or next((n for n in loads if id(n) not in self.readonly), None)
            if where is not None:
                kind = {ast.List: "list", ast.Dict: "dict", ast.Set: "set"}[type(default)]
                self.report("no-mutable-default", default,
                            f"the default of `{param}` is one {kind} shared by every call, and line {where.lineno} "
                            f"may change it or hand it on (it would keep state between moves)")

    def edge(self, target: ast.AST, why: tuple) -> None:
        self.edges.setdefault(self.function, {}).setdefault(target, why)

    def find_recursion(self) -> None:
        """Report each cycle of the call graph, with the path that closes it.

        Calls through values the checker cannot name go to one node standing for "any function
        value", which leads to every function used as a value: the graph has as many edges as the
        program has references, where joining each such call to each such function directly
        would square them (1,500 ``lambda a: a()`` made 2.25 million edges).
        """
        graph: dict[object, list] = {f: list(targets) for f, targets in self.edges.items()}
        for f in self.calls_unknown:
            graph.setdefault(f, []).append(_ANY)
        graph[_ANY] = list(self.escaping)
        self.tick(sum(map(len, graph.values())) + len(graph))
        for component in _cycles(graph):
            members = [f for f in component if f is not _ANY]
            if not members:
                continue
            first = min(members, key=lambda f: (f.lineno, f.col_offset))
            names = sorted({self.names.get(f, "a function") for f in members})
            path = _cycle_path(graph, set(component), first)
            direct = len(path) == 2 and path[0] is path[1] and self.edges[first][first][0] in ("calls", "uses")
            if direct:
                message = f"{names[0]} calls itself (recursion)"
            else:
                who = f"{names[0]} can call itself" if len(names) == 1 else f"{', '.join(names)} call each other"
                hops = [self.hop(a, b) for a, b in zip(path, path[1:])]
                message = f"{who} (recursion): " + ", ".join(h for h in hops if h)
            self.report("no-recursion", first, message)

    def hop(self, a: object, b: object) -> str:
        """One step of a reported cycle, in words."""
        if a is _ANY:
            kind, line, name, _ = self.escaping[b]
            what = self.names.get(b, "a function")
            return f"which may be {what} (used as a value on line {line})"
        who = self.names.get(a, "a function")
        if b is _ANY:
            kind, line, name, builtin = self.calls_unknown[a]
            if kind == "calls":
                return f"{who} calls `{name}`, a function value (line {line})"
            if kind == "hands":
                return f"{who} has `{builtin}` call `{name}`, a function value (line {line})"
            if kind == "applies":
                return f"{who} has `{builtin}` apply `{name}` to the functions it is given (line {line})"
            if kind == "hof":
                return f"{who} gives `{builtin}` a function computed at run time (line {line})"
            return f"{who} calls a computed function value (line {line})"
        kind, line, name, builtin = self.edges[a][b]
        what = self.names.get(b, "a function")
        if kind == "calls":
            return f"{who} calls `{name}` (line {line})"
        if kind == "hands":
            return f"{who} has `{builtin}` call `{name}` (line {line})"
        if kind == "creates":
            return f"{who} creates {what}"
        return f"{who} uses `{name}` (line {line})"


class _AnyFunction:
    """The recursion graph's node for "a function value the checker cannot name"."""


_ANY = _AnyFunction()


def _cycle_path(graph: dict, members: set, start: object) -> list:
    """A shortest path ``start -> ... -> start`` inside one strongly connected component (breadth-first)."""
    back: dict[object, object] = {}
    queue = [start]
    for node in queue:  # the list grows while it is walked: a FIFO without a deque
        for succ in graph.get(node, ()):
            if succ not in members:
                continue
            if succ is start:
                path = [start]
                while node is not start:
                    path.append(node)
                    node = back[node]
                path.append(start)
                path[1:-1] = path[-2:0:-1]
                return path
            if succ not in back:
                back[succ] = node
                queue.append(succ)
    return [start, start]


def _annotation_code(node: ast.AST, depth: int) -> ast.AST | None:
    """The first part of an annotation that is code rather than a type (a call, ``:=``, a lambda...), or None.

    Types: names, dotted names, string and ``None``/``...`` constants, subscripts (``list[int]``,
    ``dict[str, int]``), lists and tuples inside them (``Callable[[int], str]``) and unions (``A | B``).
    """
    if depth > 100:
        return node
    if isinstance(node, (ast.Name, ast.Constant)):
        return None
    if isinstance(node, ast.Attribute):
        return _annotation_code(node.value, depth + 1)
    if isinstance(node, ast.Subscript):
        return _annotation_code(node.value, depth + 1) or _annotation_code(node.slice, depth + 1)
    if isinstance(node, (ast.Tuple, ast.List)):
        for e in node.elts:
            found = _annotation_code(e, depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _annotation_code(node.left, depth + 1) or _annotation_code(node.right, depth + 1)
    return node


def _module_lambda(stmt: ast.stmt) -> bool:
    """``name = lambda ...`` (one or more plain names): a helper function written as a lambda."""
    return isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Lambda) \
        and all(isinstance(t, ast.Name) for t in stmt.targets)


def _literal_display(node: ast.AST) -> bool:
    """A list, dict or set display of immutable literals (``[1, 2]``, ``{"W": 3}``): its items cannot change."""
    if isinstance(node, (ast.List, ast.Set)):
        return all(_literal(e, names=False) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _literal(k, names=False) for k in node.keys) \
            and all(_literal(v, names=False) for v in node.values)
    return False


def _literal_text(node: ast.AST, limit: int, depth: int) -> str | None:
    """The text of a string literal or of literals joined with ``+`` (``'{0.' + 'x}'``), else None."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if depth < 50 and isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left = _literal_text(node.left, limit, depth + 1)
        right = _literal_text(node.right, limit, depth + 1) if left is not None else None
        if left is not None and right is not None and len(left) + len(right) <= limit:
            return left + right
    return None


_SPEC_WIDTH = re.compile(r"[<>=^]?[-+ ]?z?#?0?(\d*)[,_]?(?:\.(\d*))?")
_PERCENT_WIDTH = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d*)(?:\.(\d*))?")


def _spec_width(spec: str) -> int:
    """The width or precision a format spec asks for (``>999999999`` pads to a billion characters)."""
    body = spec[1:] if len(spec) > 1 and spec[1] in "<>=^" else spec  # a fill character first
    match = _SPEC_WIDTH.match(body)
    if match is None:
        return 0
    return max((int(g) for g in match.groups() if g and len(g) < 30), default=0) if match else 0


def _template_width(template: str) -> int:
    """The largest width or precision in the fields of a ``str.format`` template."""
    if "{" not in template:
        return 0
    try:
        specs = [spec for _, _, spec, _ in _string_parser(template) if spec]
    except ValueError:
        return 0
    return max((_spec_width(s) for s in specs if "{" not in s), default=0)


def _percent_width(template: str) -> int:
    """The largest width or precision of the conversions of a ``%`` template (``'%999999999d'``)."""
    if "%" not in template:
        return 0
    return max((int(g) for m in _PERCENT_WIDTH.finditer(template) for g in m.groups() if g and len(g) < 30),
               default=0)


# AST node type -> the _Checker method that visits it (others: their children).
_DISPATCH_NAMES = {
    "Module": "v_module", "FunctionDef": "v_function", "AsyncFunctionDef": "v_function",
    "Lambda": "v_lambda", "Name": "v_name", "Attribute": "v_attribute",
    "Call": "v_call", "Subscript": "v_subscript", "BinOp": "v_binop", "AugAssign": "v_augassign",
    "Constant": "v_constant", "ExceptHandler": "v_except", "Import": "v_import",
    "ImportFrom": "v_import", "Assign": "v_assign", "FormattedValue": "v_formatted",
    "ListComp": "v_comprehension", "SetComp": "v_comprehension",
    "DictComp": "v_comprehension", "GeneratorExp": "v_comprehension",
    "MatchAs": "v_match_name", "MatchStar": "v_match_name", "MatchMapping": "v_match_name",
    "MatchValue": "v_match_value",
    "keyword": "v_keyword", "arg": "v_arg", "Global": "v_global", "Nonlocal": "v_global",
    "ClassDef": "v_class", "NamedExpr": "v_namedexpr", "AnnAssign": "v_annassign",
    "Compare": "v_compare", "Starred": "v_starred",
}
_DISPATCH = {kind: getattr(_Checker, name) for kind, name in _DISPATCH_NAMES.items()}


def _literal(node: ast.AST, names: bool) -> bool:
    """Whether ``node`` is a literal constant, +/- a number, a tuple of those (or a name, when ``names``).

    These values cannot change between calls. Everything else evaluated once (a default argument,
    a module-level constant) could be or hide a mutable object: ``[]``, ``{}.setdefault``,
    ``f"{(m := [])}"``, a call's result.
    """
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Name):
        return names
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return isinstance(node.operand, ast.Constant) and _is_number(node.operand.value)
    if isinstance(node, ast.Tuple):
        return all(_literal(e, names) for e in node.elts)
    return False


def _nfkc(name: str) -> str:
    # ast.parse already normalises identifiers; this keeps hand-built trees honest too.
    return name if name.isascii() else unicodedata.normalize("NFKC", name)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, complex)) and not isinstance(value, bool)


def _arith(func, a, b) -> object:
    try:
        result = func(a, b)
    except (ArithmeticError, ValueError, TypeError):
        return None
    return result if _is_number(result) else None


_ARITH = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
    ast.BitOr: lambda a, b: a | b, ast.BitAnd: lambda a, b: a & b, ast.BitXor: lambda a, b: a ^ b,
    ast.RShift: lambda a, b: a >> b,
}

_NODE_WORDS = {
    "Import": "`import`", "ImportFrom": "`from ... import`", "For": "a `for` loop", "While": "a `while` loop",
    "AsyncFor": "an `async for` loop", "ListComp": "a list comprehension", "SetComp": "a set comprehension",
    "DictComp": "a dict comprehension", "GeneratorExp": "a generator expression",
    "comprehension": "a comprehension", "Global": "`global`", "Nonlocal": "`nonlocal`",
    "ClassDef": "a `class` definition", "AsyncFunctionDef": "`async def`", "Await": "`await`",
    "AsyncWith": "`async with`", "Yield": "`yield`", "YieldFrom": "`yield from`",
    "MatchClass": "a class pattern in `match`", "With": "a `with` statement", "TryStar": "`except*`",
}


def _cycles(graph: dict[ast.AST, set[ast.AST]]) -> list[list[ast.AST]]:
    """Strongly connected components that contain a cycle (iterative Tarjan)."""
    index: dict[ast.AST, int] = {}
    low: dict[ast.AST, int] = {}
    on_stack: set[ast.AST] = set()
    stack: list[ast.AST] = []
    found: list[list[ast.AST]] = []
    counter = 0
    for root in list(graph):
        if root in index:
            continue
        work = [(root, iter(graph.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(graph.get(succ, ()))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member is node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(component)
    return found
