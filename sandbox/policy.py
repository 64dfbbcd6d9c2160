"""The static policy as data: which syntax, builtins and methods a strategy program may use.

A :class:`Policy` is a frozen dataclass of allowlists (AST node types, builtin names, method
and attribute names), a few switches (loops, comprehensions, recursion, module-level helpers,
bare ``except``, private names) and numeric limits, the checker's own work bound included.
Everything not on an allowlist is rejected, so new Python syntax or a builtin nobody reviewed
is refused by default.

Every rejection names a :class:`Rule` from :data:`RULES`: an id, a category and a one-line
explanation. The same explanations make up :meth:`Policy.describe`, the rule text shown to the
model in the prompt, so what the model is told and what the checker enforces cannot drift apart.

Tighten or relax a policy with :func:`dataclasses.replace`::

    relaxed = dataclasses.replace(DEFAULT_POLICY, allow_loops=True, allow_comprehensions=True)
    stricter = dataclasses.replace(DEFAULT_POLICY, allowed_builtins=DEFAULT_POLICY.allowed_builtins - {"print"})
"""
from __future__ import annotations

import _string  # the parser str.format itself uses
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Iterable

__all__ = ["Rule", "RULES", "RUNTIME_BUILTINS", "CATEGORIES", "Policy", "DEFAULT_POLICY", "LOOP_NODES", "COMPREHENSION_NODES",
           "INTERNAL_ATTRIBUTES", "INTERNAL_ATTRIBUTE_PREFIXES", "is_internal_attribute", "is_private_name",
           "format_problem", "with_game_api", "game_policy"]

# ``attribute`` is a name outside the sandbox's API that reaches nothing internal: an attribute
# or method (``board.size``: AttributeError at run time) or a builtin the runtime does not have
# (``bin``, ``SystemExit``: NameError). A hallucination, milder than an ``escape``, which is kept
# for what reaches interpreter internals or runs code the check cannot see.
CATEGORIES = ("import", "file_access", "randomness", "loop", "escape", "attribute", "state", "structure",
              "resource", "syntax")


@dataclass(frozen=True)
class Rule:
    """One rule of the policy: ``id`` (stable, used in violations), ``category``, one-line ``explanation``.

    ``names`` are identifiers this rule forbids (builtins or well-known modules), ``nodes`` the AST
    node type names it forbids; they route a rejected name or node to the most telling rule.
    The explanation may use ``{builtins}``, ``{methods}`` and the policy's numeric limits as
    ``str.format`` fields; :meth:`Policy.explain` fills them in.
    """

    id: str
    category: str
    explanation: str
    names: frozenset[str] = field(default_factory=frozenset)
    nodes: frozenset[str] = field(default_factory=frozenset)


def _rule(id: str, category: str, explanation: str, names: str = "", nodes: str = "") -> Rule:
    return Rule(id, category, explanation, frozenset(names.split()), frozenset(nodes.split()))


# The registry, in the order the rules are described to the model. Ids are stable: tests,
# the reward rules and users' policies refer to them.
_RULE_LIST = (
    _rule("no-import", "import",
          "Do not import anything: no `import`, `from ... import` or `__import__`.",
          names="__import__ importlib", nodes="Import ImportFrom"),
    _rule("no-file-access", "file_access",
          "Do not touch files, processes, the network or the OS: no `open`, `os`, `sys`, `io`, "
          "`pathlib`, `socket`, `subprocess`, and no `print(..., file=...)` or `print(..., **options)`.",
          names="open os sys io pathlib socket subprocess shutil tempfile glob builtins ctypes signal "
                "multiprocessing threading resource posix nt fcntl mmap pickle marshal shelve urllib "
                "http requests ftplib file gc inspect traceback code codecs atexit faulthandler "
                "sysconfig platform"),
    _rule("no-randomness", "randomness",
          "Be deterministic: no `random`, `secrets`, `time`, `datetime`, `uuid`, `hash()` or `id()`; "
          "the same board must always give the same move.",
          names="random secrets time datetime uuid hash id perf_counter monotonic urandom getrandbits"),
    _rule("no-loop", "loop",
          "No `for` or `while` loops: go over rows and cells with `map`, `filter`, `sorted`, `sum`, "
          "`any`, `all`, `max`, `min` and `zip`.",
          nodes="For While"),
    _rule("no-comprehension", "loop",
          "No list, set or dict comprehensions and no generator expressions.",
          nodes="ListComp SetComp DictComp GeneratorExp"),
    _rule("no-recursion", "loop",
          "No recursion: a function may not call itself, directly, through other functions, or by "
          "being passed as a value to code that calls it (`f(f)`, `map(f, [f])`, a default `g=f`)."),
    _rule("no-iter", "loop",
          "No `iter()` or `next()` (`iter(f, sentinel)` is an unbounded loop).",
          names="iter next aiter anext"),
    _rule("no-underscore", "escape",
          "No attribute that starts with `_`, and no name that starts with `__` or starts and ends "
          "with `_` (`__class__`, `_getattr_`): the sandbox keeps those for itself; `_helper` is fine."),
    # Harmless in itself (the program's own `_helper`): a policy that switches private names off
    # (allow_private_names=False) grades them as a mistake, not an escape.
    _rule("private-name", "structure",
          "Name your own functions and variables without a leading `_` (`helper`, not `_helper`)."),
    _rule("no-dynamic-code", "escape",
          "No dynamic code or introspection: no `eval`, `exec`, `compile`, `getattr`, `setattr`, "
          "`delattr`, `hasattr`, `globals`, `locals`, `vars`, `dir`, `object`, `super`, `memoryview`, and "
          "`type` only as `type(x)` with one argument (`type(x) is list`), never as a value.",
          names="eval exec compile getattr setattr delattr hasattr globals locals vars dir type object "
                "super memoryview classmethod staticmethod property callable issubclass"),
    _rule("no-interaction", "escape",
          "No `input`, `breakpoint`, `help`, `exit` or `quit`.",
          names="input breakpoint help exit quit copyright credits license"),
    _rule("builtin-not-allowed", "attribute",
          "Use only these builtins: {builtins}."),
    # A game helper (envs.registry.ApiFunction) named while the reward spec switches the game's
    # API off: the runtime would not have it (NameError), a hallucination like a builtin it lacks.
    _rule("game-api-off", "attribute",
          "The game's helper functions ({withheld}) are switched off in this run: do not call them."),
    _rule("internal-attribute", "escape",
          "No frame, code, generator or traceback attributes (`f_*`, `co_*`, `gi_*`, `tb_*`, ...) and no "
          "`mro`."),
    _rule("unknown-attribute", "attribute",
          "Use only these methods and attributes: {methods}."),
    _rule("no-format-attribute", "escape",
          "Format fields may index items but not reach attributes: `\"{{0[1]:>4}}\"` and "
          "`\"{{0:.2f}}\"` are fine in `.format`, `.format_map` and `format()`, `\"{{0.x}}\"` is not."),
    # The runtime gives none of these names (NameError): nothing they could do, so not an escape.
    _rule("no-base-exception", "attribute",
          "Catch ordinary exceptions (`except Exception:` or a bare `except:`); `BaseException`, "
          "`SystemExit`, `KeyboardInterrupt` and `GeneratorExit` are not available.",
          names="BaseException SystemExit KeyboardInterrupt GeneratorExit BaseExceptionGroup "
                "ExceptionGroup"),
    _rule("no-global", "state",
          "No `global` or `nonlocal`.",
          nodes="Global Nonlocal"),
    _rule("no-mutable-default", "state",
          "Default argument values must be literal numbers, strings, `True`, `False`, `None`, names or "
          "tuples of those; a list, dict or set of literals only if the function never changes it, "
          "returns it or hands it on; never a call, attribute, f-string, lambda or `:=` (they would "
          "keep state between moves)."),
    _rule("no-attribute-assign", "state",
          "Do not assign or delete attributes (such as attributes on functions)."),
    _rule("module-level-code", "structure",
          "{module_level}"),
    _rule("no-strategy", "structure",
          "Define the function `strategy(board)` at module level."),
    _rule("no-class", "structure",
          "No `class` definitions.",
          nodes="ClassDef"),
    _rule("no-decorator", "structure",
          "No decorators."),
    _rule("no-async", "structure",
          "No `async`, `await`, `async for` or `async with`.",
          nodes="AsyncFunctionDef Await AsyncFor AsyncWith"),
    _rule("no-generator", "structure",
          "No `yield`: `strategy` returns a move.",
          nodes="Yield YieldFrom"),
    _rule("no-match-class", "structure",
          "No class patterns (`case list():`) or dotted names (`case a.b:`) in `match` statements.",
          nodes="MatchClass"),
    _rule("annotation-not-type", "structure",
          "Annotations only name types (`int`, `list[int]`, `str | None`): no calls or other code in them."),
    _rule("syntax-not-allowed", "structure",
          "Use only plain statements and expressions (no `with`, `try/except*`, type aliases, ...).",
          nodes="With TryStar TypeAlias TypeVar ParamSpec TypeVarTuple"),
    _rule("too-long", "resource",
          "Keep the program under {max_source_bytes} bytes."),
    _rule("too-deep", "resource",
          "Nest expressions and blocks at most {max_depth} levels deep."),
    _rule("no-big-number", "resource",
          "No huge numbers: exponents at most {max_pow_exponent}, results at most {max_int_bits} bits."),
    _rule("pow-by-name", "resource",
          "Call `pow` directly by name with plain arguments (`pow(x, 2)`), not through an alias, a "
          "container or unpacked arguments."),
    _rule("no-big-sequence", "resource",
          "No huge sequences: repeats and ranges up to {max_sequence_length} items, literals up to "
          "{max_literal_length} characters."),
    _rule("too-complex", "resource",
          "Keep the program simple enough to analyse quickly (at most {max_check_steps} steps of static "
          "analysis; every honest program under the size limit is far below)."),
    _rule("syntax-error", "syntax",
          "The program must be valid Python 3.11 text (UTF-8, no NUL bytes)."),
    _rule("check-error", "structure",
          "The checker must be able to analyse the program."),
)

RULES: dict[str, Rule] = {r.id: r for r in _RULE_LIST}
"""Every rule, by id."""

# Rules that describe syntax a switch can allow; describe() leaves them out once allowed.
LOOP_NODES = frozenset({"For", "While"})
COMPREHENSION_NODES = frozenset({"ListComp", "SetComp", "DictComp", "GeneratorExp", "comprehension"})

_ALLOWED_NODES = frozenset("""
    Module Expr FunctionDef arguments arg Lambda Return Assign AugAssign AnnAssign If IfExp Pass
    Break Continue Try ExceptHandler Raise Assert Delete NamedExpr
    Match match_case MatchValue MatchSingleton MatchSequence MatchMapping MatchStar MatchAs MatchOr
    BoolOp BinOp UnaryOp Compare Call keyword Constant Name Attribute Subscript Slice Starred
    List Tuple Dict Set JoinedStr FormattedValue
    Load Store Del
    And Or Add Sub Mult MatMult Div Mod Pow LShift RShift BitOr BitXor BitAnd FloorDiv
    Invert Not UAdd USub Eq NotEq Lt LtE Gt GtE Is IsNot In NotIn
""".split())

# The one table of builtins a strategy can ever be given: pure, deterministic functions and ordinary
# exception classes. The runtime builds every program's builtins from it (sandbox.restricted.make_builtins,
# narrowed to the policy's allowed_builtins), the default policy allows all of it, and a policy that allows
# a name outside it is refused when it is built: the check would pass a program the runtime cannot run.
RUNTIME_BUILTINS = frozenset("""
    len max min sum abs sorted reversed any all map filter zip enumerate range list tuple dict set
    int float str bool round divmod pow isinstance print True False None
    frozenset chr ord slice format type
    Exception ArithmeticError AssertionError AttributeError IndexError KeyError LookupError NameError
    OverflowError RuntimeError TypeError ValueError ZeroDivisionError UnboundLocalError
    NotImplementedError StopIteration
""".split())
_ALLOWED_BUILTINS = RUNTIME_BUILTINS

# Methods of list, dict, set, str and numbers. Mutating methods are fine: the board is a fresh
# copy each call and mutable defaults / function attributes (the only state that would survive
# a call) are rejected by other rules. ``format`` and ``format_map`` are checked separately
# (no-format-attribute).
_ALLOWED_METHODS = frozenset("""
    append extend insert pop remove index count copy reverse sort clear
    get keys values items setdefault update fromkeys popitem
    add discard union intersection difference symmetric_difference issubset issuperset isdisjoint
    join split rsplit strip lstrip rstrip upper lower replace startswith endswith find rfind
    isdigit isalpha isalnum isspace isupper islower isnumeric isdecimal zfill ljust rjust center
    splitlines partition rpartition title capitalize swapcase casefold format format_map
    bit_length bit_count is_integer
""".split())


@dataclass(frozen=True)
class Policy:
    """What a strategy program may contain. Frozen: derive variants with ``dataclasses.replace``."""

    allowed_nodes: frozenset[str] = _ALLOWED_NODES        # AST node class names
    allowed_builtins: frozenset[str] = _ALLOWED_BUILTINS  # builtin names a program may refer to
    allowed_methods: frozenset[str] = _ALLOWED_METHODS    # attribute names a program may use
    rules: tuple[Rule, ...] = _RULE_LIST                  # the registry the checker reports from
    allow_loops: bool = False            # adds For/While to allowed_nodes
    allow_comprehensions: bool = False   # adds comprehensions and generator expressions
    # A relaxed policy's recursion runs (the job tells the worker): bounded by the interpreter's
    # recursion depth (a RecursionError, the program's error) and the time limits, like its loops.
    allow_recursion: bool = False
    allow_module_helpers: bool = True    # other top-level defs besides strategy (same rules as nested)
    allow_module_constants: bool = True  # top-level NAME = immutable value (literals, arithmetic, pure builtins)
    # A bare `except:` also catches BaseException, but nothing a strategy can raise or receive
    # needs it: sandbox violations are sticky, timeouts and memory limits kill the worker.
    allow_bare_except: bool = True
    # The program's own `_name`s (not dunders, not the runtime's `_x_` / `_print` / `_tmpN`):
    # harmless, and the runtime's transformer accepts exactly these (see is_private_name).
    allow_private_names: bool = True
    # The game's API (the names of its envs.registry.ApiFunction helpers) that the runtime gives the
    # program as builtins: the check accepts them like allowed builtins. Only something that knows
    # the game sets them: see with_game_api / game_policy. A program may bind the same names itself
    # (a `def legal_moves(b):` of its own): its own binding is then what it calls, here as at run time.
    api_names: frozenset[str] = frozenset()
    # The game's API names while the API is switched off: naming one is a `game-api-off` violation.
    withheld_api_names: frozenset[str] = frozenset()
    strategy_name: str = "strategy"
    max_source_bytes: int = 20_000
    max_depth: int = 200                 # AST nesting; deeper programs are rejected, not analysed
    max_pow_exponent: int = 100
    max_int_bits: int = 4096
    max_sequence_length: int = 100_000
    max_literal_length: int = 10_000
    max_check_steps: int = 1_000_000     # the checker's own work bound: exhausting it is a violation

    def __post_init__(self) -> None:
        extra = set(self.allowed_builtins) - RUNTIME_BUILTINS
        if extra:
            raise ValueError(f"Policy: builtin {sorted(extra)[0]!r} cannot be allowed: the sandbox runtime never gives "
                             f"it to a program (it gives only sandbox.policy.RUNTIME_BUILTINS)")

    def nodes(self) -> frozenset[str]:
        """The AST node types allowed, switches included."""
        nodes = self.allowed_nodes
        if self.allow_loops:
            nodes = nodes | LOOP_NODES
        if self.allow_comprehensions:
            nodes = nodes | COMPREHENSION_NODES
        return nodes

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id (from the policy's registry, falling back to :data:`RULES`)."""
        for r in self.rules:
            if r.id == rule_id:
                return r
        return RULES[rule_id]

    def explain(self, rule_id: str) -> str:
        """The rule's one-line explanation with this policy's lists and limits filled in."""
        text = self.rule(rule_id).explanation
        try:
            return text.format(
                builtins=", ".join(sorted(self.allowed_builtins - {"True", "False", "None"},
                                          key=_builtin_order)),
                methods=", ".join(sorted(self.allowed_methods)),
                max_source_bytes=self.max_source_bytes, max_depth=self.max_depth,
                max_pow_exponent=self.max_pow_exponent, max_int_bits=self.max_int_bits,
                max_sequence_length=self.max_sequence_length,
                max_literal_length=self.max_literal_length, max_check_steps=self.max_check_steps,
                module_level=self._module_level_text(),
                withheld=", ".join(f"`{n}`" for n in sorted(self.withheld_api_names)) or "none")
        except (KeyError, IndexError, ValueError):  # a user's rule text with other braces
            return text

    def _module_level_text(self) -> str:
        what = [f"`def {self.strategy_name}(board):`"]
        if self.allow_module_helpers:
            what.append("helper functions (`def` or `name = lambda ...`)")
        if self.allow_module_constants:
            what.append("constants: numbers, strings, `True`, `False`, `None`, tuples, other constants and "
                        "functions, arithmetic on them and pure builtins such as `float` or `len` "
                        "(`SIZE = 4`, `LAST = SIZE - 1`)")
        text = f"At module level write only {', '.join(what)}, comments and docstrings"
        if self.allow_module_constants:
            # Module-level lists, dicts and sets would be state shared by every move.
            return text + "; no other calls or statements there, and no module-level list, dict or set."
        return text + f"; put {'constants' if self.allow_module_helpers else 'helper functions and constants'} " \
                      f"inside `{self.strategy_name}`."

    def active_rules(self) -> tuple[Rule, ...]:
        """The rules this policy enforces (switched-off ones and internal ones left out)."""
        # game-api-off: a prompt that does not list the game's API should not name it either.
        off = {"check-error", "syntax-error", "game-api-off"}
        if self.allow_loops:
            off.add("no-loop")
        if self.allow_comprehensions:
            off.add("no-comprehension")
        if self.allow_recursion:
            off.add("no-recursion")
        if self.allow_private_names:
            off.add("private-name")
        nodes = self.nodes()
        return tuple(r for r in self.rules if r.id not in off and not (r.nodes and r.nodes <= nodes))

    def describe(self) -> str:
        """The rules as a bullet list of one-line explanations, used verbatim in prompts."""
        return "\n".join(f"- {self.explain(r.id)}" for r in self.active_rules())


def _builtin_order(name: str) -> tuple[int, str]:
    # Functions first, then exception classes, so the prompt list reads naturally.
    return (name[:1].isupper(), name)


DEFAULT_POLICY = Policy()
"""The mission's policy: no imports, I/O, randomness, loops, recursion, escapes or state."""


def with_game_api(policy: Policy | None, names: Iterable[str], enabled: bool = True) -> Policy:
    """``policy`` (default: :data:`DEFAULT_POLICY`) with the game API ``names`` on or off.

    On, the check accepts the names and the runner gives the program the game's functions of
    those names; off, the check rejects a reference to one (``game-api-off``) and the runtime
    has none of them.
    """
    policy = DEFAULT_POLICY if policy is None else policy
    names = frozenset(names)
    for name in names:
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"game API name {name!r} must be an identifier without a leading `_`")
    if enabled:
        return replace(policy, api_names=policy.api_names | names,
                       withheld_api_names=policy.withheld_api_names - names)
    return replace(policy, api_names=policy.api_names - names, withheld_api_names=policy.withheld_api_names | names)


def game_policy(game: str, game_api: bool = True, policy: Policy | None = None) -> Policy:
    """``policy`` (default: :data:`DEFAULT_POLICY`) with game ``game``'s declared API on or off.

    What a reward spec's ``game_api`` switch means (:meth:`rewards.RewardSpec.policy`); a game
    that declares no API gets ``policy`` unchanged.
    """
    import envs  # the registry; sandbox.policy itself stays importable without the engine

    spec = envs.get(game)
    policy = DEFAULT_POLICY if policy is None else policy
    if not spec.api:
        return policy
    return with_game_api(policy, (f.name for f in spec.api), game_api)


# -- what both the static check and the runtime guard refuse, kept in one place --------------------

INTERNAL_ATTRIBUTE_PREFIXES = ("_", "f_", "co_", "gi_", "cr_", "ag_", "tb_", "func_", "im_")
"""Attribute name prefixes of frames, code, generators, coroutines, tracebacks and old-style functions."""

INTERNAL_ATTRIBUTES = frozenset({
    # Named without a prefix above, or listed for the reader: they reach frames, code or classes.
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "cr_origin", "ag_frame",
    "ag_code", "ag_await", "tb_frame", "tb_next", "f_back", "f_globals", "f_locals", "f_builtins",
    "f_code", "f_trace", "f_generator", "co_code", "co_consts", "mro", "cell_contents",
})
"""Attribute names that reach interpreter internals (``escape``); any other unknown one is ``attribute``."""


# Names the runtime gives the code it generates that a trailing `_` does not already mark: the
# print collector (``_print``) and temporaries (``_tmp0``...), and the stems of the guards
# (``_getattr_``...) in case a later version drops their trailing `_`. A program binding one would
# replace a guard; every other name the runtime injects (``_active_``, ``_reentered_``,
# ``_guard_lambda_``, the guards) ends with `_`, and hoisted lambdas get names no program can write.
_RESTRICTED_PREFIXES = ("_print", "_tmp", "_apply", "_write", "_getattr", "_getitem", "_getiter",
                        "_inplacevar", "_unpack", "_iter_unpack")


def is_private_name(name: str) -> bool:
    """Whether ``name`` is an ordinary private identifier (``_helper``) that reaches nothing internal.

    A single leading underscore, a letter or digit next, no trailing underscore and none of the
    names the runtime generates: not a dunder (``__class__``), not a guard (``_getattr_``,
    ``_active_``), not the print collector or a temporary. Give it the NFKC form of the name (the
    one Python binds). The static check (with ``allow_private_names``) and the runtime's name check
    both accept exactly these.
    """
    return (len(name) > 1 and name[0] == "_" and name[1].isalnum() and not name.endswith("_")
            and not name.startswith(_RESTRICTED_PREFIXES))


def is_internal_attribute(name: str) -> bool:
    """Whether the attribute ``name`` reaches interpreter internals (frames, code, classes, dunders)."""
    # RestrictedPython also reserves names ending in __roles__ (Zope security declarations).
    return name.startswith(INTERNAL_ATTRIBUTE_PREFIXES) or name in INTERNAL_ATTRIBUTES \
        or name.endswith("__roles__")


# str.format renders the replacement fields of a format spec one level deep and raises
# "Max string recursion exceeded" below that (Objects/stringlib/unicode_format.h).
_FORMAT_RECURSION = 2


def format_problem(template: str) -> str | None:
    """Why ``template.format(...)`` / ``.format_map(...)`` could reach an attribute, or None if it cannot.

    A field name may index items (``{0[0]}``, ``{row[1]}``) but not reach attributes
    (``{0.x}``, ``{0[0].x}``); replacement fields nested in a format spec (``{:{width}}``) are
    checked the same way; format specs themselves (``.2f``, ``>8``, ``,``) are fine. The template
    is read with the parser ``str.format`` uses, in the order ``str.format`` evaluates it: where
    that parser fails, ``str.format`` raises ``ValueError`` before evaluating anything further, so
    a malformed rest is not a problem here. The static check and the runtime guard both call
    this, so they agree on every template.
    """
    if len(template) <= 200:  # the runtime asks on every `.format` lookup, often in an inner loop
        return _short_format_problem(template)
    return _format_fields(template, _FORMAT_RECURSION)


@lru_cache(maxsize=4096)  # short templates only: the cache holds at most about a megabyte
def _short_format_problem(template: str) -> str | None:
    return _format_fields(template, _FORMAT_RECURSION)


def _format_fields(text: str, depth: int) -> str | None:
    if depth <= 0:
        return None  # str.format raises before evaluating this spec's fields
    try:
        for _literal, field, spec, _conversion in _string.formatter_parser(text):
            if field is None:
                continue
            _first, rest = _string.formatter_field_name_split(field)
            for is_attribute, _key in rest:
                if is_attribute:
                    return f"the format field `{{{field}}}` reaches an attribute"
            if spec and "{" in spec:
                problem = _format_fields(spec, depth - 1)
                if problem:
                    return problem
    except ValueError:
        return None
    return None
