"""Hypothesis strategies that generate clean (compliant, honest) 2048 strategy programs.

For property tests of a policy (``sandbox.check``) and of the runner (``sandbox.run``):
``clean_strategies()`` draws source strings ``def strategy(board): ...`` built from a typed
grammar of the allowed subset: straight-line code, nested helper functions (with immutable
default arguments, called positionally or by keyword), module-level helper functions and
constants (``N = 4``, ``ORDER: tuple = ("W", ...)``, ``A, B = 1, 2``), lambdas,
if/elif/else, ``match`` (value, or, singleton, sequence, star, mapping and capture patterns,
guards), conditional expressions, walrus, arithmetic and comparisons on board cells, indexing
and slicing, in-place operators on names, items and slices (``row[i] += 1``), annotated
assignments, literals, dict score tables, tuple unpacking, ``try/except ValueError``,
``str.format``/``format_map`` with specs and item fields, ``print``, variables named like
RestrictedPython's reserved names (``printed``, ``builtins``, ``breakpoint``), private names
(``_corner_score``) and the whitelisted builtins (``type(x) is list`` included). Every program
is deterministic and, on any 4x4 board of ints, returns one of ``"W" "A" "S" "D"`` on every path without raising: divisors, indices, slices and ``max`` of
possibly empty sequences are safe by construction.

The hostile programs are in :mod:`sandbox.cheats`: it splices one violation into a program of
this grammar, through ``_clean_module`` (the grammar as an ``ast.Module``), ``_unparse`` and
``_name``, the helpers the two modules share.

Example::

    from hypothesis import given
    from sandbox import check
    from sandbox.strategies import clean_strategies

    @given(clean_strategies())
    def test_my_policy_accepts(source):
        assert check(source, my_policy).ok

Importing this module needs Hypothesis (the ``test`` extra); ``import sandbox`` does not.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Callable

from hypothesis import strategies as st

__all__ = ["MOVES", "clean_strategies"]

MOVES = ("W", "A", "S", "D")

# ----------------------------------------------------------------------------------------------
# Clean programs: a typed expression grammar (int, bool, move, row of known length)
# ----------------------------------------------------------------------------------------------

INT, BOOL, MOVE = "int", "bool", "move"
BOARD = "board"    # the 4x4 board itself: a parameter of module-level helpers
TABLE = "table"    # a dict from each move to an int score
ORDER = "order"    # a module-level tuple of the four moves
TEMPLATE = "template"  # a str.format template with one int field, held in a variable
FLOOR = "floor"    # a module-level float constant below every int (-inf)
# Names RestrictedPython reserves for itself; honest programs use them as variables.
_RESERVED_NAMES = ("printed", "builtins", "breakpoint")


def _row(n: int) -> tuple[str, int]:
    return ("row", n)


def _is_row(ty: object) -> bool:
    return isinstance(ty, tuple) and ty[0] == "row"


_TILES = (0, 1, 2, 3, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
# Private names (`_corner_score`) are how honest programs name helpers: every kind of name has some.
_INT_PREFIXES = ("total", "best", "gap", "empty", "weight", "score", "count", "val", "edge", "corner", "_total")
_BOOL_PREFIXES = ("ok", "full", "safe", "can", "has", "flag", "_ok")
_ROW_PREFIXES = ("row", "col", "line", "cells", "top", "tail", "_row")
_MOVE_PREFIXES = ("move", "choice", "pick", "act", "_move")
_HELPER_PREFIXES = ("rate", "pick_move", "score_line", "helper", "edge_value", "choose", "merges", "_corner_score",
                    "_helper")
_LAMBDA_PREFIXES = ("fn", "calc", "mix", "weigh", "_calc")
_PARAM_PREFIXES = ("a", "b", "x", "y", "tile", "line", "_x")


def _name(ident: str) -> ast.Name:
    return ast.Name(id=ident, ctx=ast.Load())


def _store(ident: str) -> ast.Name:
    return ast.Name(id=ident, ctx=ast.Store())


def _const(value: object) -> ast.expr:
    # Negative literals as unary minus so ast.unparse parenthesises them correctly.
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=-value))
    return ast.Constant(value=value)


def _call(func: str | ast.expr, *args: ast.expr, **keywords: ast.expr) -> ast.Call:
    fn = _name(func) if isinstance(func, str) else func
    return ast.Call(func=fn, args=list(args), keywords=[ast.keyword(arg=k, value=v) for k, v in keywords.items()])


def _method(obj: ast.expr, name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=ast.Attribute(value=obj, attr=name, ctx=ast.Load()), args=list(args), keywords=[])


def _index(value: ast.expr, index: ast.expr | int) -> ast.Subscript:
    idx = _const(index) if isinstance(index, int) else index
    return ast.Subscript(value=value, slice=idx, ctx=ast.Load())


def _lambda(params: list[str], body: ast.expr) -> ast.Lambda:
    args = ast.arguments(posonlyargs=[], args=[ast.arg(arg=p) for p in params], kwonlyargs=[],
                         kw_defaults=[], defaults=[])
    return ast.Lambda(args=args, body=body)


def _safe_divisor(e: ast.expr) -> ast.expr:
    return ast.BinOp(left=_call("abs", e), op=ast.Add(), right=_const(1))


@dataclass
class _Ctx:
    """What generated code may refer to at one point of a program."""

    vars: dict[str, object]                       # readable name -> type
    funcs: dict[str, tuple[tuple, object, int, tuple]]  # name -> (param types, return type, n defaults, params)
    local: set[str]                               # names bound in the current function (augassign targets)
    returns: object                               # return type of the current function
    counter: list[int]                            # shared across the program, for fresh names
    helper_depth: int = 0

    def fresh(self, draw, prefixes: tuple[str, ...]) -> str:
        self.counter[0] += 1
        return f"{draw(st.sampled_from(prefixes))}{self.counter[0]}"

    def branch(self) -> "_Ctx":
        """A copy for a branch: names bound inside are not visible after it."""
        return _Ctx(dict(self.vars), dict(self.funcs), set(self.local), self.returns, self.counter,
                    self.helper_depth)

    def of(self, pred: Callable[[object], bool]) -> list[str]:
        return sorted(n for n, t in self.vars.items() if pred(t))


def _pick_row_var(draw, cx: _Ctx) -> tuple[str, int] | None:
    rows = cx.of(_is_row)
    if not rows:
        return None
    name = draw(st.sampled_from(rows))
    return name, cx.vars[name][1]


def _int_expr(draw, cx: _Ctx, depth: int) -> ast.expr:
    opts = ["const", "cell"]
    if cx.of(lambda t: t == INT):
        opts += ["var", "var"]
    if cx.of(_is_row):
        opts.append("rowvar_item")
    int_funcs = sorted(n for n, f in cx.funcs.items() if f[1] == INT)
    if depth > 0:
        opts += ["add", "add", "scale", "floordiv", "mod", "pow", "minmax", "abs", "ifexp", "int_bool",
                 "agg", "count", "sorted_item", "set_len", "filter_len", "filter_max", "map_sum",
                 "dict_zip", "divmod", "round_div", "float", "str_len", "range_sum", "pow_call",
                 "argmax", "tuple_item", "index_ifexp", "star_minmax", "format", "format",
                 "frozenset_len", "chr_ord", "slice_sum", "format_builtin"]
        if cx.of(lambda t: t == TEMPLATE):
            opts.append("template_len")
        if cx.of(lambda t: t == TABLE):
            opts.append("table_item")
        if int_funcs:
            opts += ["call", "call"]
    kind = draw(st.sampled_from(opts))
    d = depth - 1
    if kind == "const":
        return _const(draw(st.sampled_from(_TILES + (-1, 5, 7, 10))))
    if kind == "cell":
        r = draw(st.integers(-4, 3))
        c = draw(st.integers(-4, 3))
        return _index(_index(_name("board"), r), c)
    if kind == "var":
        return _name(draw(st.sampled_from(cx.of(lambda t: t == INT))))
    if kind == "rowvar_item":
        name, n = _pick_row_var(draw, cx)
        return _index(_name(name), draw(st.integers(-n, n - 1)))
    if kind == "add":
        op = draw(st.sampled_from([ast.Add(), ast.Sub()]))
        return ast.BinOp(left=_int_expr(draw, cx, d), op=op, right=_int_expr(draw, cx, d))
    if kind == "scale":
        # Only small literal factors: chained products over many statements stay float-sized.
        return ast.BinOp(left=_int_expr(draw, cx, d), op=ast.Mult(), right=_const(draw(st.integers(0, 4))))
    if kind in ("floordiv", "mod"):
        op = ast.FloorDiv() if kind == "floordiv" else ast.Mod()
        right = (_safe_divisor(_int_expr(draw, cx, d)) if draw(st.booleans())
                 else _const(draw(st.integers(1, 4))))
        return ast.BinOp(left=_int_expr(draw, cx, d), op=op, right=right)
    if kind == "pow":
        base = draw(st.sampled_from(["cell", "const"]))
        left = (_index(_index(_name("board"), draw(st.integers(0, 3))), draw(st.integers(0, 3)))
                if base == "cell" else _const(draw(st.integers(0, 4))))
        return ast.BinOp(left=left, op=ast.Pow(), right=_const(draw(st.integers(0, 3))))
    if kind == "minmax":
        n = draw(st.integers(2, 3))
        return _call(draw(st.sampled_from(["max", "min"])), *[_int_expr(draw, cx, d) for _ in range(n)])
    if kind == "abs":
        return _call("abs", _int_expr(draw, cx, d))
    if kind == "ifexp":
        return ast.IfExp(test=_bool_expr(draw, cx, d), body=_int_expr(draw, cx, d), orelse=_int_expr(draw, cx, d))
    if kind == "int_bool":
        return _call("int", _bool_expr(draw, cx, d))
    if kind == "agg":
        n = draw(st.integers(1, 4))
        return _call(draw(st.sampled_from(["sum", "max", "min", "len"])), _row_expr(draw, cx, n, d))
    if kind == "count":
        n = draw(st.integers(1, 4))
        return _method(_row_expr(draw, cx, n, d), "count", _const(draw(st.sampled_from(_TILES))))
    if kind == "sorted_item":
        n = draw(st.integers(1, 4))
        return _index(_call("sorted", _row_expr(draw, cx, n, d)), draw(st.integers(-n, n - 1)))
    if kind == "tuple_item":
        n = draw(st.integers(1, 4))
        return _index(_call("tuple", _row_expr(draw, cx, n, d)), draw(st.integers(-n, n - 1)))
    if kind == "set_len":
        return _call("len", _call("set", _row_expr(draw, cx, draw(st.integers(1, 4)), d)))
    if kind in ("filter_len", "filter_max"):
        p = cx.fresh(draw, ("v", "t", "cell"))
        inner = cx.branch()
        inner.vars[p] = INT
        cmp = ast.Compare(left=_name(p), ops=[draw(st.sampled_from([ast.Gt(), ast.Lt(), ast.Eq(), ast.NotEq()]))],
                          comparators=[_int_expr(draw, inner, min(d, 1))])
        filt = _call("filter", _lambda([p], cmp), _row_expr(draw, cx, draw(st.integers(1, 4)), d))
        if kind == "filter_len":
            return _call("len", _call("list", filt))
        return _call(draw(st.sampled_from(["max", "min"])), filt, default=_const(0))
    if kind == "map_sum":
        p = cx.fresh(draw, ("v", "t", "cell"))
        inner = cx.branch()
        inner.vars[p] = INT
        fn = _lambda([p], _int_expr(draw, inner, min(d, 1)))
        return _call("sum", _call("map", fn, _row_expr(draw, cx, draw(st.integers(1, 4)), d)))
    if kind == "dict_zip":
        n = draw(st.integers(1, 4))
        table = _call("dict", _call("zip", _call("range", _const(n)), _row_expr(draw, cx, n, d)))
        return _index(table, draw(st.integers(0, n - 1)))
    if kind == "divmod":
        pair = _call("divmod", _int_expr(draw, cx, d), _safe_divisor(_int_expr(draw, cx, d)))
        return _index(pair, draw(st.integers(0, 1)))
    if kind == "round_div":
        q = ast.BinOp(left=_int_expr(draw, cx, d), op=ast.Div(), right=_safe_divisor(_int_expr(draw, cx, d)))
        return _call(draw(st.sampled_from(["round", "int"])), q)
    if kind == "float":
        return _call("int", ast.BinOp(left=_call("float", _int_expr(draw, cx, d)), op=ast.Mult(),
                                      right=_const(draw(st.sampled_from([0.5, 1.5, 2.0])))))
    if kind == "str_len":
        return _call("len", _call("str", _int_expr(draw, cx, d)))
    if kind == "range_sum":
        return _call("sum", _call("range", _const(draw(st.integers(0, 10)))))
    if kind == "pow_call":
        return _call("pow", _const(draw(st.integers(0, 4))), _const(draw(st.integers(0, 3))))
    if kind == "argmax":
        p = cx.fresh(draw, ("pair", "item"))
        key = _lambda([p], _index(_name(p), 1))
        n = draw(st.integers(1, 4))
        best = _call(draw(st.sampled_from(["max", "min"])), _call("enumerate", _row_expr(draw, cx, n, d)), key=key)
        return _index(best, draw(st.integers(0, 1)))
    if kind == "index_ifexp":
        n = draw(st.integers(1, 4))
        return _index(_row_expr(draw, cx, n, d), ast.BinOp(left=_int_expr(draw, cx, d), op=ast.Mod(),
                                                          right=_const(n)))
    if kind == "star_minmax":
        # max(*row) needs at least two items: max(5) raises TypeError.
        row = _row_expr(draw, cx, draw(st.integers(2, 4)), d)
        return _call(draw(st.sampled_from(["max", "min"])), ast.Starred(value=row, ctx=ast.Load()))
    if kind == "format":
        return _format_int(draw, cx, d)
    if kind == "frozenset_len":
        return _call("len", _call("frozenset", _row_expr(draw, cx, draw(st.integers(1, 4)), d)))
    if kind == "chr_ord":
        # A letter from an int and back: chr of 65..90 never raises.
        code = ast.BinOp(left=_const(65), op=ast.Add(),
                         right=ast.BinOp(left=_call("abs", _int_expr(draw, cx, d)), op=ast.Mod(), right=_const(26)))
        return ast.BinOp(left=_call("ord", _call("chr", code)), op=ast.Sub(), right=_const(65))
    if kind == "slice_sum":
        n = draw(st.integers(1, 4))
        lo = draw(st.integers(0, n))
        part = _call("slice", _const(lo), _const(draw(st.integers(lo, n))))
        return _call("sum", _index(_row_expr(draw, cx, n, d), part))
    if kind == "format_builtin":
        spec = draw(st.sampled_from([">6", "d", "05d", "+", ",", ".2f", "^7"]))
        text = _call("format", _int_expr(draw, cx, d), _const(spec))
        return _call("len", text) if spec != "d" else _call("int", text)
    if kind == "template_len":
        template = _name(draw(st.sampled_from(cx.of(lambda t: t == TEMPLATE))))
        return _call("len", _call(ast.Attribute(value=template, attr="format", ctx=ast.Load()),
                                  _int_expr(draw, cx, d)))
    if kind == "table_item":
        return _index(_name(draw(st.sampled_from(cx.of(lambda t: t == TABLE)))), _const(draw(st.sampled_from(MOVES))))
    if kind == "call":
        return _call_expr(draw, cx, draw(st.sampled_from(int_funcs)), d)
    raise AssertionError(kind)


def _format_int(draw, cx: _Ctx, d: int) -> ast.expr:
    """An int read back from str.format / format_map output: specs, item fields, nested specs."""
    fmt = lambda template, *args, **kw: _call(ast.Attribute(value=_const(template), attr="format",  # noqa: E731
                                                            ctx=ast.Load()), *args, **kw)
    kind = draw(st.sampled_from(["spec_len", "int_d", "float_2f", "item", "named_item", "map", "nested",
                                 "board_item", "comma"]))
    x = _int_expr(draw, cx, d)
    if kind == "spec_len":
        return _call("len", fmt(draw(st.sampled_from(["{:>6}", "{0:<3}|", "{:^5}", "{:+}", "{:x}", "{!r:>4}"])), x))
    if kind == "int_d":
        return _call("int", fmt(draw(st.sampled_from(["{:d}", "{0}", "{:05d}", "{0:3d}"])), x))
    if kind == "float_2f":
        return _call("int", _call("float", fmt(draw(st.sampled_from(["{:.2f}", "{0:.1f}", "{:8.3f}"])), x)))
    if kind == "item":
        n = draw(st.integers(2, 4))
        return _call("int", fmt("{0[%d]}" % draw(st.integers(0, n - 1)), _row_expr(draw, cx, n, d)))
    if kind == "named_item":
        n = draw(st.integers(2, 4))
        return _call("len", fmt("{r[0]}-{r[%d]:>3}" % (n - 1), r=_row_expr(draw, cx, n, d)))
    if kind == "map":
        table = ast.Dict(keys=[_const("a"), _const("b")], values=[x, _row_expr(draw, cx, 2, d)])
        method = ast.Attribute(value=_const("{a:,} {b[1]}"), attr="format_map", ctx=ast.Load())
        return _call("len", ast.Call(func=method, args=[table], keywords=[]))
    if kind == "nested":
        return _call("len", fmt("{:{w}}", x, w=_const(draw(st.integers(1, 6)))))
    if kind == "board_item":
        return _call("len", fmt("{0[%d]}" % draw(st.integers(0, 3)), _name("board")))
    return _call("len", fmt("{:,}", x))


def _call_expr(draw, cx: _Ctx, fname: str, depth: int) -> ast.expr:
    params, _ret, ndefaults, names = cx.funcs[fname]
    keep = len(params) - draw(st.integers(0, ndefaults))
    args = [_expr(draw, cx, t, depth) for t in params[:keep]]
    by_keyword = draw(st.integers(0, len(args))) if names else 0
    positional = args[:len(args) - by_keyword]
    keywords = {n: a for n, a in zip(names[len(positional):keep], args[len(positional):])}
    return _call(fname, *positional, **keywords)


def _bool_expr(draw, cx: _Ctx, depth: int) -> ast.expr:
    opts = ["compare", "any_all", "in", "bool"]
    if cx.of(lambda t: t == BOOL):
        opts += ["var", "var"]
    bool_funcs = sorted(n for n, f in cx.funcs.items() if f[1] == BOOL)
    if depth > 0:
        opts += ["compare", "compare2", "boolop", "not", "isinstance", "type_is", "row_cmp", "any_map"]
        if bool_funcs:
            opts.append("call")
        if cx.of(lambda t: t == FLOOR):
            opts.append("above_floor")
    kind = draw(st.sampled_from(opts))
    d = max(depth - 1, 0)
    cmp_ops = [ast.Lt(), ast.LtE(), ast.Gt(), ast.GtE(), ast.Eq(), ast.NotEq()]
    if kind == "compare":
        return ast.Compare(left=_int_expr(draw, cx, d), ops=[draw(st.sampled_from(cmp_ops))],
                           comparators=[_int_expr(draw, cx, d)])
    if kind == "compare2":
        return ast.Compare(left=_int_expr(draw, cx, d), ops=[draw(st.sampled_from(cmp_ops)) for _ in range(2)],
                           comparators=[_int_expr(draw, cx, d) for _ in range(2)])
    if kind == "any_all":
        return _call(draw(st.sampled_from(["any", "all"])), _row_expr(draw, cx, draw(st.integers(1, 4)), d))
    if kind == "in":
        op = draw(st.sampled_from([ast.In(), ast.NotIn()]))
        return ast.Compare(left=_int_expr(draw, cx, min(d, 1)), ops=[op],
                           comparators=[_row_expr(draw, cx, draw(st.integers(1, 4)), d)])
    if kind == "bool":
        return _call("bool", _int_expr(draw, cx, d))
    if kind == "var":
        return _name(draw(st.sampled_from(cx.of(lambda t: t == BOOL))))
    if kind == "boolop":
        op = draw(st.sampled_from([ast.And(), ast.Or()]))
        return ast.BoolOp(op=op, values=[_bool_expr(draw, cx, d) for _ in range(draw(st.integers(2, 3)))])
    if kind == "not":
        return ast.UnaryOp(op=ast.Not(), operand=_bool_expr(draw, cx, d))
    if kind == "isinstance":
        what = draw(st.sampled_from(["int", "row", "tuple"]))
        if what == "int":
            return _call("isinstance", _int_expr(draw, cx, d), _name("int"))
        if what == "row":
            return _call("isinstance", _row_expr(draw, cx, 4, d), _name("list"))
        return _call("isinstance", _int_expr(draw, cx, d),
                     ast.Tuple(elts=[_name("int"), _name("float")], ctx=ast.Load()))
    if kind == "type_is":
        # `type(x) is list`: the one-argument `type` the runtime's stand-in answers.
        if draw(st.booleans()):
            subject, cls = _int_expr(draw, cx, d), draw(st.sampled_from(["int", "float", "bool", "str"]))
        else:
            subject, cls = _row_expr(draw, cx, draw(st.integers(1, 4)), d), draw(st.sampled_from(["list", "tuple"]))
        op = draw(st.sampled_from([ast.Is(), ast.IsNot(), ast.Eq(), ast.NotEq()]))
        return ast.Compare(left=_call("type", subject), ops=[op], comparators=[_name(cls)])
    if kind == "row_cmp":
        n = draw(st.integers(1, 4))
        left = _row_expr(draw, cx, n, d)
        right = _call(draw(st.sampled_from(["sorted", "list"])), _row_expr(draw, cx, n, d))
        return ast.Compare(left=left, ops=[draw(st.sampled_from([ast.Eq(), ast.NotEq()]))], comparators=[right])
    if kind == "any_map":
        p = cx.fresh(draw, ("v", "t", "cell"))
        inner = cx.branch()
        inner.vars[p] = INT
        body = ast.Compare(left=_name(p), ops=[draw(st.sampled_from(cmp_ops))],
                           comparators=[_int_expr(draw, inner, 0)])
        return _call(draw(st.sampled_from(["any", "all"])),
                     _call("map", _lambda([p], body), _row_expr(draw, cx, draw(st.integers(1, 4)), d)))
    if kind == "call":
        return _call_expr(draw, cx, draw(st.sampled_from(bool_funcs)), d)
    if kind == "above_floor":
        floor = _name(draw(st.sampled_from(cx.of(lambda t: t == FLOOR))))
        return ast.Compare(left=_int_expr(draw, cx, d), ops=[ast.Gt()], comparators=[floor])
    raise AssertionError(kind)


def _row_expr(draw, cx: _Ctx, n: int, depth: int) -> ast.expr:
    """A list of ints of length exactly ``n`` (1..4)."""
    opts = ["literal"]
    same = cx.of(lambda t: t == _row(n))
    if same:
        opts += ["var", "var"]
    if n == 4:
        opts += ["board_row", "board_row", "column"]
    if n < 4:
        opts += ["slice"]
    if depth > 0:
        opts += ["sorted", "reversed", "rev_slice", "copy", "map", "map2", "range", "enum_map", "zip_map"]
        if n >= 2:
            opts += ["concat", "star_concat"]
    kind = draw(st.sampled_from(opts))
    d = depth - 1
    if kind == "literal":
        return ast.List(elts=[_int_expr(draw, cx, max(min(d, 1), 0)) for _ in range(n)], ctx=ast.Load())
    if kind == "var":
        return _name(draw(st.sampled_from(same)))
    if kind == "board_row":
        return _index(_name("board"), draw(st.integers(-4, 3)))
    if kind == "column":
        c = draw(st.integers(0, 3))
        return ast.List(elts=[_index(_index(_name("board"), r), c) for r in range(4)], ctx=ast.Load())
    if kind == "slice":
        m = draw(st.integers(n + 1, 4))
        start = draw(st.integers(0, m - n))
        src = _row_expr(draw, cx, m, max(d, 0))
        lower = _const(start) if start or draw(st.booleans()) else None
        upper = _const(start + n) if start + n < m or draw(st.booleans()) else None
        return ast.Subscript(value=src, slice=ast.Slice(lower=lower, upper=upper), ctx=ast.Load())
    if kind == "sorted":
        kw = {"reverse": _const(True)} if draw(st.booleans()) else {}
        return _call("sorted", _row_expr(draw, cx, n, d), **kw)
    if kind == "reversed":
        return _call("list", _call("reversed", _row_expr(draw, cx, n, d)))
    if kind == "rev_slice":
        return ast.Subscript(value=_row_expr(draw, cx, n, d),
                             slice=ast.Slice(lower=None, upper=None, step=_const(-1)), ctx=ast.Load())
    if kind == "copy":
        if draw(st.booleans()):
            return _call("list", _call("tuple", _row_expr(draw, cx, n, d)))
        return _call("list", _row_expr(draw, cx, n, d))
    if kind == "map":
        p = cx.fresh(draw, ("v", "t", "cell"))
        inner = cx.branch()
        inner.vars[p] = INT
        return _call("list", _call("map", _lambda([p], _int_expr(draw, inner, min(d, 1))), _row_expr(draw, cx, n, d)))
    if kind == "map2":
        fn = draw(st.sampled_from(["max", "min"]))
        return _call("list", _call("map", _name(fn), _row_expr(draw, cx, n, d), _row_expr(draw, cx, n, d)))
    if kind == "range":
        start = draw(st.integers(0, 4))
        if start == 0 and draw(st.booleans()):
            return _call("list", _call("range", _const(n)))
        return _call("list", _call("range", _const(start), _const(start + n)))
    if kind == "enum_map":
        p = cx.fresh(draw, ("pair", "item"))
        op = draw(st.sampled_from([ast.Add(), ast.Mult(), ast.Sub()]))
        body = ast.BinOp(left=_index(_name(p), 0), op=op, right=_index(_name(p), 1))
        return _call("list", _call("map", _lambda([p], body), _call("enumerate", _row_expr(draw, cx, n, d))))
    if kind == "zip_map":
        p = cx.fresh(draw, ("pair", "item"))
        op = draw(st.sampled_from([ast.Add(), ast.Sub()]))
        body = ast.BinOp(left=_index(_name(p), 0), op=op, right=_index(_name(p), 1))
        pairs = _call("zip", _row_expr(draw, cx, n, d), _row_expr(draw, cx, n, d))
        return _call("list", _call("map", _lambda([p], body), pairs))
    if kind == "concat":
        k = draw(st.integers(1, n - 1))
        return ast.BinOp(left=_row_expr(draw, cx, k, d), op=ast.Add(), right=_row_expr(draw, cx, n - k, d))
    if kind == "star_concat":
        k = draw(st.integers(1, n - 1))
        parts = [_row_expr(draw, cx, k, d), _row_expr(draw, cx, n - k, d)]
        return ast.List(elts=[ast.Starred(value=p, ctx=ast.Load()) for p in parts], ctx=ast.Load())
    raise AssertionError(kind)


def _move_expr(draw, cx: _Ctx, depth: int) -> ast.expr:
    opts = ["const", "const", "wasd_index"]
    if cx.of(lambda t: t == MOVE):
        opts += ["var"]
    move_funcs = sorted(n for n, f in cx.funcs.items() if f[1] == MOVE)
    if depth > 0:
        opts += ["ifexp", "ifexp", "tuple_index", "dict", "minmax", "sorted_index", "upper", "str", "format"]
        if cx.of(lambda t: t == TABLE):
            opts += ["table_best"]
        if cx.of(lambda t: t == ORDER):
            opts += ["order"]
        if move_funcs:
            opts += ["call", "call"]
    kind = draw(st.sampled_from(opts))
    d = max(depth - 1, 0)
    mod4 = lambda: ast.BinOp(left=_int_expr(draw, cx, d), op=ast.Mod(), right=_const(4))  # noqa: E731
    if kind == "const":
        return _const(draw(st.sampled_from(MOVES)))
    if kind == "wasd_index":
        return _index(_const(draw(st.sampled_from(["WASD", "DSAW", "ADWS", "WDSA"]))), mod4())
    if kind == "var":
        return _name(draw(st.sampled_from(cx.of(lambda t: t == MOVE))))
    if kind == "ifexp":
        return ast.IfExp(test=_bool_expr(draw, cx, d), body=_move_expr(draw, cx, d), orelse=_move_expr(draw, cx, d))
    if kind == "tuple_index":
        order = draw(st.permutations(MOVES))
        seq = (ast.Tuple if draw(st.booleans()) else ast.List)(elts=[_const(m) for m in order], ctx=ast.Load())
        return _index(seq, mod4())
    if kind == "dict":
        names = ("up", "left", "down", "right")
        table = ast.Dict(keys=[_const(k) for k in names], values=[_const(m) for m in MOVES])
        return _index(table, _const(draw(st.sampled_from(names))))
    if kind == "minmax":
        return _call(draw(st.sampled_from(["max", "min"])), _move_expr(draw, cx, d), _move_expr(draw, cx, d))
    if kind == "sorted_index":
        return _index(_call("sorted", _const("DSAW")), mod4())
    if kind == "upper":
        return _index(_method(_const("wasd"), "upper"), mod4())
    if kind == "str":
        return _call("str", _move_expr(draw, cx, d))
    if kind == "format":
        if draw(st.booleans()):
            return _call(ast.Attribute(value=_const("{}"), attr="format", ctx=ast.Load()), _move_expr(draw, cx, d))
        return _index(_call(ast.Attribute(value=_const("{0}"), attr="format", ctx=ast.Load()), _const("WASD")),
                      mod4())
    if kind == "table_best":
        table = _name(draw(st.sampled_from(cx.of(lambda t: t == TABLE))))
        if draw(st.booleans()):
            return _call("max", table, key=ast.Attribute(value=table, attr="get", ctx=ast.Load()))
        p = cx.fresh(draw, ("m", "mv"))
        return _index(_call("sorted", table, key=_lambda([p], _index(table, _name(p)))), -1)
    if kind == "order":
        return _index(_name(draw(st.sampled_from(cx.of(lambda t: t == ORDER)))), mod4())
    if kind == "call":
        return _call_expr(draw, cx, draw(st.sampled_from(move_funcs)), d)
    raise AssertionError(kind)


def _expr(draw, cx: _Ctx, ty: object, depth: int) -> ast.expr:
    if ty == BOARD:
        return _name("board")
    if ty == INT:
        return _int_expr(draw, cx, depth)
    if ty == BOOL:
        return _bool_expr(draw, cx, depth)
    if ty == MOVE:
        return _move_expr(draw, cx, depth)
    return _row_expr(draw, cx, ty[1], depth)


def _prefixes(ty: object) -> tuple[str, ...]:
    if ty == INT:
        return _INT_PREFIXES
    if ty == BOOL:
        return _BOOL_PREFIXES
    if ty == MOVE:
        return _MOVE_PREFIXES
    return _ROW_PREFIXES


def _value_type(draw) -> object:
    return draw(st.sampled_from([INT, INT, INT, BOOL, MOVE, _row(4), _row(4), _row(2), _row(3), _row(1)]))


def _stmt(draw, cx: _Ctx, depth: int) -> list[ast.stmt]:
    """One or a few statements; binds only fresh names, so types never change."""
    opts = ["assign", "assign", "assign", "unpack", "print", "annassign", "board_aug", "table", "template"]
    if any(cx.vars.get(n) == INT for n in cx.local):
        opts.append("augassign")
    if any(_is_row(cx.vars.get(n)) for n in cx.local):
        opts += ["setitem", "itemaug", "itemaug", "sliceaug"]
    if any(cx.vars.get(n) == TABLE for n in cx.local):
        opts += ["tableaug", "tableaug"]
    if any(n not in cx.vars or (n in cx.local and cx.vars[n] == INT) for n in _RESERVED_NAMES):
        opts.append("reserved")
    if depth > 0:
        opts += ["if", "if", "try", "lambda", "match", "match"]
        if cx.helper_depth < 2:
            opts += ["helper", "helper"]
    kind = draw(st.sampled_from(opts))
    edepth = draw(st.integers(1, 3))
    if kind in ("assign", "annassign"):
        ty = _value_type(draw)
        value = _expr(draw, cx, ty, edepth)
        name = cx.fresh(draw, _prefixes(ty))
        cx.vars[name] = ty
        cx.local.add(name)
        if kind == "annassign":
            return [ast.AnnAssign(target=_store(name), annotation=_annotation(ty), value=value, simple=1)]
        return [ast.Assign(targets=[_store(name)], value=value)]
    if kind == "augassign":
        target = draw(st.sampled_from(sorted(n for n in cx.local if cx.vars.get(n) == INT)))
        op = draw(st.sampled_from([ast.Add(), ast.Sub()]))
        return [ast.AugAssign(target=_store(target), op=op, value=_int_expr(draw, cx, edepth))]
    if kind == "setitem":
        target = draw(st.sampled_from(sorted(n for n in cx.local if _is_row(cx.vars.get(n)))))
        n = cx.vars[target][1]
        sub = ast.Subscript(value=_name(target), slice=_const(draw(st.integers(-n, n - 1))), ctx=ast.Store())
        return [ast.Assign(targets=[sub], value=_int_expr(draw, cx, edepth))]
    if kind == "itemaug":
        target = draw(st.sampled_from(sorted(n for n in cx.local if _is_row(cx.vars.get(n)))))
        n = cx.vars[target][1]
        sub = ast.Subscript(value=_name(target), slice=_const(draw(st.integers(-n, n - 1))), ctx=ast.Store())
        return [_item_aug(draw, cx, sub, edepth)]
    if kind == "board_aug":
        # The board is a fresh copy each call: changing it is fine.
        cell = ast.Subscript(value=_index(_name("board"), draw(st.integers(-4, 3))),
                             slice=_const(draw(st.integers(-4, 3))), ctx=ast.Store())
        return [_item_aug(draw, cx, cell, edepth)]
    if kind == "sliceaug":
        # In-place slice operations that keep the row's length (its type).
        target = draw(st.sampled_from(sorted(n for n in cx.local if _is_row(cx.vars.get(n)))))
        n = cx.vars[target][1]
        lo = draw(st.integers(0, n))
        hi = draw(st.integers(lo, n))
        part = ast.Slice(lower=_const(lo) if lo or draw(st.booleans()) else None,
                         upper=_const(hi) if hi < n or draw(st.booleans()) else None)
        sub = ast.Subscript(value=_name(target), slice=part, ctx=ast.Store())
        if draw(st.booleans()):
            return [ast.AugAssign(target=sub, op=ast.Mult(), value=_const(1))]
        return [ast.AugAssign(target=sub, op=ast.Add(), value=ast.List(elts=[], ctx=ast.Load()))]
    if kind == "table":
        name = cx.fresh(draw, ("scores", "votes", "tally"))
        if draw(st.booleans()):
            value: ast.expr = ast.Dict(keys=[_const(m) for m in MOVES],
                                       values=[_int_expr(draw, cx, 1) for _ in MOVES])
        else:
            value = _call(ast.Attribute(value=_name("dict"), attr="fromkeys", ctx=ast.Load()), _const("WASD"),
                          _const(0))
        cx.vars[name] = TABLE
        cx.local.add(name)
        return [ast.Assign(targets=[_store(name)], value=value)]
    if kind == "tableaug":
        target = draw(st.sampled_from(sorted(n for n in cx.local if cx.vars.get(n) == TABLE)))
        sub = ast.Subscript(value=_name(target), slice=_const(draw(st.sampled_from(MOVES))), ctx=ast.Store())
        op = draw(st.sampled_from([ast.Add(), ast.Sub()]))
        return [ast.AugAssign(target=sub, op=op, value=_int_expr(draw, cx, edepth))]
    if kind == "template":
        # `.format` on a template held in a variable: the runtime checks it where it is used.
        name = cx.fresh(draw, ("fmt", "template", "layout"))
        cx.vars[name] = TEMPLATE
        cx.local.add(name)
        return [ast.Assign(targets=[_store(name)], value=_const(draw(st.sampled_from(_TEMPLATES))))]
    if kind == "reserved":
        name = draw(st.sampled_from([n for n in _RESERVED_NAMES
                                     if n not in cx.vars or (n in cx.local and cx.vars[n] == INT)]))
        value = _int_expr(draw, cx, edepth)
        cx.vars[name] = INT
        cx.local.add(name)
        return [ast.Assign(targets=[_store(name)], value=value)]
    if kind == "match":
        return [_match(draw, cx, depth)]
    if kind == "unpack":
        return _unpack(draw, cx, edepth)
    if kind == "print":
        ty = _value_type(draw)
        return [ast.Expr(value=_call("print", _const(draw(st.sampled_from(["debug", "board", "pick"]))),
                                     _expr(draw, cx, ty, 1)))]
    if kind == "if":
        return [_if(draw, cx, depth)]
    if kind == "try":
        return _try(draw, cx, depth)
    if kind == "lambda":
        return [_lambda_def(draw, cx)]
    if kind == "helper":
        return [_helper(draw, cx, depth)]
    raise AssertionError(kind)


_TEMPLATES = ("{:>5}", "{0:d}|", "[{}]", "{:+}", "{0:,}", "{:^7}")


def _annotation(ty: object, draw=None) -> ast.expr:
    """A type annotation for ``ty``: plain, generic (``list[int]``), a union (``int | None``) or a string."""
    if ty == MOVE:
        plain: ast.expr = _name("str")
    elif ty == BOARD:
        plain = _index(_name("list"), _index(_name("list"), _name("int")))
    elif _is_row(ty):
        plain = _index(_name("list"), _name("int"))
    else:
        plain = _name(ty)  # int, bool
    if draw is None:
        return plain
    form = draw(st.sampled_from(["plain", "plain", "union", "string"]))
    if form == "union":
        return ast.BinOp(left=plain, op=ast.BitOr(), right=_const(None))
    if form == "string":
        return _const(ast.unparse(plain))
    return plain


def _item_aug(draw, cx: _Ctx, target: ast.Subscript, depth: int) -> ast.AugAssign:
    """``target op= value`` on an int item, with values that keep ints small."""
    op = draw(st.sampled_from(["add", "sub", "mul", "floordiv", "or"]))
    if op in ("add", "sub"):
        return ast.AugAssign(target=target, op=ast.Add() if op == "add" else ast.Sub(),
                             value=_int_expr(draw, cx, depth))
    if op == "mul":
        return ast.AugAssign(target=target, op=ast.Mult(), value=_const(draw(st.integers(0, 3))))
    if op == "floordiv":
        return ast.AugAssign(target=target, op=ast.FloorDiv(), value=_const(draw(st.integers(1, 4))))
    return ast.AugAssign(target=target, op=ast.BitOr(), value=_const(draw(st.sampled_from(_TILES))))


def _match(draw, cx: _Ctx, depth: int) -> ast.Match:
    """A match statement on an int, a row, a move, a bool or a score table; ends with a catch-all."""
    kinds = ["int", "int", "row", "move", "bool"]
    if cx.of(lambda t: t == TABLE):
        kinds.append("table")
    kind = draw(st.sampled_from(kinds))
    cases: list[ast.match_case] = []

    def case(pattern: ast.AST, binds: dict[str, object], guard: ast.expr | None = None) -> None:
        inner = cx.branch()
        inner.vars.update(binds)
        inner.local.update(binds)
        g = None
        if guard is not None:
            g = guard(inner) if callable(guard) else guard
        cases.append(ast.match_case(pattern=pattern, guard=g,
                                    body=_block(draw, inner, depth - 1, 0, 2, draw(st.booleans()))))

    value = lambda v: ast.MatchValue(value=_const(v))  # noqa: E731
    if kind == "int":
        subject = _int_expr(draw, cx, 2)
        for _ in range(draw(st.integers(1, 3))):
            form = draw(st.sampled_from(["value", "or", "capture_guard"]))
            if form == "value":
                case(value(draw(st.sampled_from(_TILES + (-1, -2)))), {})
            elif form == "or":
                picks = draw(st.lists(st.sampled_from(_TILES), min_size=2, max_size=3, unique=True))
                case(ast.MatchOr(patterns=[value(v) for v in picks]), {})
            else:
                n = cx.fresh(draw, ("n", "k"))
                case(ast.MatchAs(pattern=None, name=n), {n: INT},
                     lambda inner, n=n: ast.Compare(left=_name(n), ops=[ast.Gt()],
                                                    comparators=[_int_expr(draw, inner, 1)]))
    elif kind == "row":
        size = draw(st.integers(1, 4))
        subject = _row_expr(draw, cx, size, 2)
        for _ in range(draw(st.integers(1, 3))):
            form = draw(st.sampled_from(["star", "exact", "head_value", "rest_len"]))
            if form == "star":
                a = cx.fresh(draw, ("first", "head"))
                case(ast.MatchSequence(patterns=[ast.MatchAs(pattern=None, name=a), ast.MatchStar(name=None)]),
                     {a: INT})
            elif form == "exact":
                names = [cx.fresh(draw, ("c", "cell")) for _ in range(size)]
                case(ast.MatchSequence(patterns=[ast.MatchAs(pattern=None, name=n) for n in names]),
                     {n: INT for n in names})
            elif form == "head_value":
                case(ast.MatchSequence(patterns=[value(draw(st.sampled_from(_TILES))), ast.MatchStar(name=None)]), {})
            else:
                rest = cx.fresh(draw, ("rest", "tail"))
                # `rest` is a list of unknown length: only its length is used.
                case(ast.MatchSequence(patterns=[ast.MatchAs(pattern=None, name=None), ast.MatchStar(name=rest)]), {},
                     ast.Compare(left=_call("len", _name(rest)), ops=[ast.GtE()], comparators=[_const(0)]))
    elif kind == "move":
        subject = _move_expr(draw, cx, 2)
        picks = draw(st.lists(st.sampled_from(MOVES), min_size=1, max_size=3, unique=True))
        case(ast.MatchOr(patterns=[value(m) for m in picks]) if len(picks) > 1 else value(picks[0]), {})
    elif kind == "bool":
        subject = _bool_expr(draw, cx, 2)
        case(ast.MatchSingleton(value=draw(st.booleans())), {})
    else:
        subject = _name(draw(st.sampled_from(cx.of(lambda t: t == TABLE))))
        w = cx.fresh(draw, ("w", "votes"))
        rest = cx.fresh(draw, ("others", "more"))
        case(ast.MatchMapping(keys=[_const(draw(st.sampled_from(MOVES)))],
                              patterns=[ast.MatchAs(pattern=None, name=w)], rest=rest), {w: INT})
    last = cx.fresh(draw, ("other", "value")) if draw(st.booleans()) and kind in ("int",) else None
    case(ast.MatchAs(pattern=None, name=last), {last: INT} if last else {})
    return ast.Match(subject=subject, cases=cases)


def _unpack(draw, cx: _Ctx, depth: int) -> list[ast.stmt]:
    kind = draw(st.sampled_from(["divmod", "pair", "row", "argmax"]))
    if kind == "divmod":
        names, types = [cx.fresh(draw, ("q", "whole")), cx.fresh(draw, ("rest", "rem"))], [INT, INT]
        value = _call("divmod", _int_expr(draw, cx, depth), _safe_divisor(_int_expr(draw, cx, depth)))
    elif kind == "pair":
        types = [_value_type(draw), _value_type(draw)]
        value = ast.Tuple(elts=[_expr(draw, cx, t, depth) for t in types], ctx=ast.Load())
        names = [cx.fresh(draw, _prefixes(t)) for t in types]
    elif kind == "row":
        n = draw(st.integers(2, 4))
        value = _row_expr(draw, cx, n, depth)
        names, types = [cx.fresh(draw, ("c", "cell", "tile")) for _ in range(n)], [INT] * n
    else:
        p = cx.fresh(draw, ("pair", "item"))
        value = _call(draw(st.sampled_from(["max", "min"])), _call("enumerate", _row_expr(draw, cx, 4, depth)),
                      key=_lambda([p], _index(_name(p), 1)))
        names, types = [cx.fresh(draw, ("where", "idx")), cx.fresh(draw, ("top", "low"))], [INT, INT]
    target = ast.Tuple(elts=[_store(n) for n in names], ctx=ast.Store())
    for n, t in zip(names, types):
        cx.vars[n] = t
        cx.local.add(n)
    return [ast.Assign(targets=[target], value=value)]


def _block(draw, cx: _Ctx, depth: int, lo: int, hi: int, must_return: bool) -> list[ast.stmt]:
    body: list[ast.stmt] = []
    for _ in range(draw(st.integers(lo, hi))):
        body.extend(_stmt(draw, cx, depth))
    if must_return:
        body.append(ast.Return(value=_expr(draw, cx, cx.returns, draw(st.integers(1, 3)))))
    if not body:
        body.append(ast.Pass())
    return body


def _if(draw, cx: _Ctx, depth: int) -> ast.If:
    if draw(st.integers(0, 3)) == 0:
        # Walrus in the test: always evaluated, so the name is bound after the statement too.
        w = cx.fresh(draw, _INT_PREFIXES)
        test: ast.expr = ast.Compare(left=ast.NamedExpr(target=_store(w), value=_int_expr(draw, cx, 2)),
                                     ops=[draw(st.sampled_from([ast.Gt(), ast.Lt(), ast.Eq(), ast.GtE()]))],
                                     comparators=[_int_expr(draw, cx, 1)])
        cx.vars[w] = INT
        cx.local.add(w)
    else:
        test = _bool_expr(draw, cx, 2)
    body = _block(draw, cx.branch(), depth - 1, 0, 3, draw(st.booleans()))
    tail = draw(st.sampled_from(["none", "else", "elif"]))
    if tail == "else":
        orelse = _block(draw, cx.branch(), depth - 1, 0, 3, draw(st.booleans()))
    elif tail == "elif":
        # A walrus in an elif test runs only when the first test fails: keep its name in the branch.
        orelse = [_if(draw, cx.branch(), depth - 1 if depth > 1 else 1)]
    else:
        orelse = []
    return ast.If(test=test, body=body, orelse=orelse)


def _try(draw, cx: _Ctx, depth: int) -> list[ast.stmt]:
    """try/except around the only things that raise ValueError: list.index and int() of a str."""
    name = cx.fresh(draw, ("idx", "pos", "parsed"))
    inner = cx.branch()
    if draw(st.booleans()):
        risky = _method(_row_expr(draw, inner, draw(st.integers(1, 4)), 1), "index",
                        _const(draw(st.sampled_from(_TILES))))
    else:
        text = ast.IfExp(test=_bool_expr(draw, inner, 1), body=_call("str", _int_expr(draw, inner, 1)),
                         orelse=_const(draw(st.sampled_from(["x", "2048", "", "-3"]))))
        risky = _call("int", text)
    body: list[ast.stmt] = [ast.Assign(targets=[_store(name)], value=risky)]
    inner.vars[name] = INT
    inner.local.add(name)
    for _ in range(draw(st.integers(0, 2))):
        body.extend(_stmt(draw, inner, depth - 1))
    handler_cx = cx.branch()
    alias = None
    handler_value = _int_expr(draw, handler_cx, 1)
    if draw(st.integers(0, 2)) == 0:
        alias = cx.fresh(draw, ("err", "exc"))
        handler_value = _call("len", _call("str", _name(alias)))
    exc_types = draw(st.sampled_from(["ValueError", "tuple"]))
    exc = (_name("ValueError") if exc_types == "ValueError"
           else ast.Tuple(elts=[_name("ValueError"), _name("IndexError")], ctx=ast.Load()))
    if alias is None and draw(st.integers(0, 3)) == 0:
        exc = None  # a bare `except:`: nothing a strategy can receive needs BaseException, it is allowed
    handler = ast.ExceptHandler(type=exc, name=alias,
                                body=[ast.Assign(targets=[_store(name)], value=handler_value)])
    # Both paths bind `name` (the risky assignment is first in the body).
    cx.vars[name] = INT
    cx.local.add(name)
    return [ast.Try(body=body, handlers=[handler], orelse=[], finalbody=[])]


def _lambda_def(draw, cx: _Ctx) -> ast.stmt:
    name = cx.fresh(draw, _LAMBDA_PREFIXES)
    nparams = draw(st.integers(1, 2))
    params = [cx.fresh(draw, _PARAM_PREFIXES) for _ in range(nparams)]
    inner = cx.branch()
    for p in params:
        inner.vars[p] = INT
    ret = draw(st.sampled_from([INT, INT, BOOL, MOVE]))
    body = _expr(draw, inner, ret, 2)
    cx.funcs[name] = (tuple([INT] * nparams), ret, 0, tuple(params))
    return ast.Assign(targets=[_store(name)], value=_lambda(params, body))


def _helper(draw, cx: _Ctx, depth: int, module_level: bool = False) -> ast.FunctionDef:
    name = cx.fresh(draw, _HELPER_PREFIXES)
    types = tuple(draw(st.lists(st.sampled_from([INT, INT, _row(4), _row(3)]), max_size=3)))
    if module_level:
        types = (BOARD,) + types  # a module-level helper sees the board only as a parameter
    params = ["board" if t == BOARD else cx.fresh(draw, _PARAM_PREFIXES) for t in types]
    if INT in types and draw(st.integers(0, 3)) == 0:
        # An int parameter named like a RestrictedPython reserved name (callers may pass it by keyword).
        spot = draw(st.sampled_from([i for i, t in enumerate(types) if t == INT]))
        params[spot] = draw(st.sampled_from(_RESERVED_NAMES))
    ndefaults = 0
    defaults: list[ast.expr] = []
    consts = cx.of(lambda t: t == INT) if module_level else []
    # Immutable defaults only (literals, negative literals, module-level constants), on a trailing
    # run of int parameters.
    while ndefaults < len(types) and types[len(types) - 1 - ndefaults] == INT and draw(st.booleans()):
        ndefaults += 1
        form = draw(st.sampled_from(["tile", "negative", "name"] if consts else ["tile", "negative"]))
        defaults.insert(0, _const(draw(st.sampled_from(_TILES))) if form == "tile"
                        else _const(-draw(st.integers(1, 9))) if form == "negative"
                        else _name(draw(st.sampled_from(consts))))
    ret = draw(st.sampled_from([INT, BOOL, MOVE]))
    inner = _Ctx(dict(cx.vars), dict(cx.funcs), set(params), ret, cx.counter, cx.helper_depth + 1)
    for p, t in zip(params, types):
        inner.vars[p] = t
    body = _block(draw, inner, depth - 1, 0, 3, True)
    arg_nodes = [ast.arg(arg=p) for p in params]
    if draw(st.integers(0, 2)) == 0:
        # A list or dict default the helper only reads: one object shared by every call, never changed.
        shared, first = _read_only_default(draw, inner)
        arg_nodes.append(ast.arg(arg=shared[0]))
        defaults.append(shared[1])
        body[0:0] = [first]
    if draw(st.integers(0, 3)) == 0:
        body.insert(0, ast.Expr(value=_const("Helper: " + name.rstrip("0123456789") + ".")))
    annotate = draw(st.integers(0, 2)) == 0
    if annotate:
        for a, t in zip(arg_nodes, types):
            a.annotation = _annotation(BOARD if t == BOARD else t, draw)
    args = ast.arguments(posonlyargs=[], args=arg_nodes, kwonlyargs=[], kw_defaults=[], defaults=defaults)
    cx.funcs[name] = (types, ret, ndefaults, tuple(params))
    return ast.FunctionDef(name=name, args=args, body=body, decorator_list=[],
                           returns=_annotation(ret, draw) if annotate else None, type_comment=None)


def _read_only_default(draw, cx: _Ctx) -> tuple[tuple[str, ast.expr], ast.stmt]:
    """A parameter with a list/dict default of literals, and a statement that only reads it into a new local."""
    param = cx.fresh(draw, ("weights", "bonus", "prefs"))
    local = cx.fresh(draw, _INT_PREFIXES)
    if draw(st.booleans()):
        values = [_const(draw(st.sampled_from(_TILES))) for _ in range(4)]
        default: ast.expr = ast.List(elts=values, ctx=ast.Load())
        read = draw(st.sampled_from(["item", "len", "sum", "count", "sorted", "star", "in"]))
        p = _name(param)
        value = {"item": lambda: _index(p, draw(st.integers(-4, 3))), "len": lambda: _call("len", p),
                 "sum": lambda: _call("sum", p), "count": lambda: _method(p, "count", _const(0)),
                 "sorted": lambda: _index(_call("sorted", p), 0),
                 "star": lambda: _call("max", ast.Starred(value=p, ctx=ast.Load())),
                 "in": lambda: _call("int", ast.Compare(left=_const(2), ops=[ast.In()], comparators=[p]))}[read]()
    else:
        default = ast.Dict(keys=[_const(m) for m in MOVES], values=[_const(draw(st.integers(0, 9))) for _ in MOVES])
        value = _call(ast.Attribute(value=_name(param), attr="get", ctx=ast.Load()),
                      _const(draw(st.sampled_from(MOVES))), _const(0))
    cx.vars[local] = INT
    cx.local.add(local)
    return (param, default), ast.Assign(targets=[_store(local)], value=value)


def _module_constants(draw, cx: _Ctx) -> list[ast.stmt]:
    """Module-level constants bound to immutable literals; they join ``cx`` for everything after."""
    out: list[ast.stmt] = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["int", "annotated", "negative", "move", "order", "pair", "reserved",
                                     "computed", "computed", "floor", "template"]))
        ints = cx.of(lambda t: t == INT)
        if kind == "computed":
            # Computed once from literals, other constants and pure builtins (`LAST = SIZE - 1`).
            name = cx.fresh(draw, ("LAST", "TOP", "SPAN", "BIG"))
            form = draw(st.sampled_from(["pow", "len", "abs", "minmax", "int_str"] + (["minus", "plus"] if ints else [])))
            value = {"pow": lambda: ast.BinOp(left=_const(2), op=ast.Pow(), right=_const(draw(st.integers(0, 10)))),
                     "len": lambda: _call("len", _const("WASD")), "abs": lambda: _call("abs", _const(-3)),
                     "minmax": lambda: _call(draw(st.sampled_from(["min", "max"])), _const(4), _const(7)),
                     "int_str": lambda: _call("int", _const("12")),
                     "minus": lambda: ast.BinOp(left=_name(draw(st.sampled_from(ints))), op=ast.Sub(), right=_const(1)),
                     "plus": lambda: ast.BinOp(left=_name(draw(st.sampled_from(ints))), op=ast.Add(),
                                               right=_const(draw(st.integers(0, 3))))}[form]()
            cx.vars[name] = INT
            out.append(ast.Assign(targets=[_store(name)], value=value))
            continue
        if kind == "floor":
            name = cx.fresh(draw, ("LOW", "FLOOR"))
            cx.vars[name] = FLOOR
            out.append(ast.Assign(targets=[_store(name)],
                                  value=ast.UnaryOp(op=ast.USub(), operand=_call("float", _const("inf")))))
            continue
        if kind == "template":
            name = cx.fresh(draw, ("LAYOUT", "FMT"))
            cx.vars[name] = TEMPLATE
            out.append(ast.Assign(targets=[_store(name)], value=_const(draw(st.sampled_from(_TEMPLATES)))))
            continue
        if kind == "order":
            name = cx.fresh(draw, ("ORDER", "MOVES", "PREFERENCE"))
            value = ast.Tuple(elts=[_const(m) for m in draw(st.permutations(MOVES))], ctx=ast.Load())
            cx.vars[name] = ORDER
            out.append(ast.AnnAssign(target=_store(name), annotation=_name("tuple"), value=value, simple=1)
                       if draw(st.booleans()) else ast.Assign(targets=[_store(name)], value=value))
        elif kind == "pair":
            names = [cx.fresh(draw, ("SIZE", "BONUS", "LIMIT")) for _ in range(2)]
            value = ast.Tuple(elts=[_const(draw(st.sampled_from(_TILES))) for _ in names], ctx=ast.Load())
            cx.vars.update(dict.fromkeys(names, INT))
            out.append(ast.Assign(targets=[ast.Tuple(elts=[_store(n) for n in names], ctx=ast.Store())], value=value))
        elif kind == "move":
            name = cx.fresh(draw, ("FIRST", "FALLBACK"))
            cx.vars[name] = MOVE
            out.append(ast.Assign(targets=[_store(name)], value=_const(draw(st.sampled_from(MOVES)))))
        else:
            if kind == "reserved" and "printed" not in cx.vars:
                name = "printed"
            else:
                name = cx.fresh(draw, ("SIZE", "WEIGHT", "CORNER", "EMPTY_BONUS"))
            value = _const(-draw(st.integers(1, 9)) if kind == "negative" else draw(st.sampled_from(_TILES)))
            cx.vars[name] = INT
            out.append(ast.AnnAssign(target=_store(name), annotation=_name("int"), value=value, simple=1)
                       if kind == "annotated" else ast.Assign(targets=[_store(name)], value=value))
    return out


@st.composite
def _clean_module(draw, max_statements: int, max_depth: int, module_level: bool = False) -> ast.Module:
    cx = _Ctx({}, {}, set(), MOVE, [0])
    # `board` is a list of rows, not a row: it is not in the row pool, it is read via board[r].
    top: list[ast.stmt] = []
    if module_level:
        top += _module_constants(draw, cx)
        for _ in range(draw(st.integers(0, 2))):
            top.append(_helper(draw, cx, max(max_depth, 1), module_level=True))
        if draw(st.integers(0, 3)) == 0:
            top.append(_module_lambda(draw, cx))
        helpers = sorted(cx.funcs)
        if helpers and draw(st.integers(0, 3)) == 0:
            # Another name for a helper (`rate = rate_board`): a function value is immutable.
            alias = cx.fresh(draw, ("use", "also"))
            target = draw(st.sampled_from(helpers))
            cx.funcs[alias] = cx.funcs[target]
            top.append(ast.Assign(targets=[_store(alias)], value=_name(target)))
    cx.local = set()
    body = _block(draw, cx, max_depth, 0, max_statements, True)
    if draw(st.integers(0, 2)) == 0:
        body.insert(0, ast.Expr(value=_const(draw(st.sampled_from(
            ["Pick a move for 2048.", "Prefer the corner.", "Keep big tiles on the edge."])))))
    annotated = draw(st.integers(0, 3)) == 0
    args = ast.arguments(posonlyargs=[], args=[ast.arg(arg="board", annotation=_name("list") if annotated else None)],
                         kwonlyargs=[], kw_defaults=[], defaults=[])
    fn = ast.FunctionDef(name="strategy", args=args, body=body, decorator_list=[],
                         returns=_name("str") if annotated else None, type_comment=None)
    module_body: list[ast.stmt] = [*top, fn]
    if draw(st.integers(0, 3)) == 0:
        module_body.insert(0, ast.Expr(value=_const("A generated 2048 strategy.")))
    return ast.Module(body=module_body, type_ignores=[])


def _module_lambda(draw, cx: _Ctx) -> ast.stmt:
    """``name = lambda board: ...`` at module level: a helper written as a lambda."""
    name = cx.fresh(draw, _LAMBDA_PREFIXES)
    ret = draw(st.sampled_from([INT, BOOL, MOVE]))
    inner = cx.branch()
    body = _expr(draw, inner, ret, 2)
    cx.funcs[name] = ((BOARD,), ret, 0, ("board",))
    return ast.Assign(targets=[_store(name)], value=_lambda(["board"], body))


def _unparse(module: ast.Module) -> str:
    return ast.unparse(ast.fix_missing_locations(module)) + "\n"


def clean_strategies(max_statements: int = 6, max_depth: int = 2, module_level: bool = True) -> st.SearchStrategy[str]:
    """Compliant, deterministic 2048 strategy programs (source text) that never raise.

    ``max_statements`` bounds the statements of each block before its ``return``; ``max_depth``
    bounds how deep helpers, branches, ``match`` and ``try`` nest. ``module_level`` adds
    module-level constants and helper functions beside ``strategy`` (the default policy allows
    them; pass False for a policy with ``allow_module_helpers``/``allow_module_constants`` off).
    """
    if max_statements < 0 or max_depth < 0:
        raise ValueError(f"clean_strategies: max_statements and max_depth must be >= 0, "
                         f"got {max_statements}, {max_depth}")
    return _clean_module(max_statements, max_depth, module_level).map(_unparse)
