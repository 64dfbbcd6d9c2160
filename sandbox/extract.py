"""Finding the strategy program in a model completion.

``extract(completion)`` returns the source of the code block that defines ``strategy``, or
raises :class:`~sandbox.records.FormatError` with a reason code from ``FORMAT_REASONS``.
It accepts what small models actually write:

* fenced blocks (```` ```python ````, ```` ```py ````, bare ```` ``` ````, other tags too), an
  unterminated final fence, prose before and after, indented fences (the block is dedented);
* reasoning sections ``<think>...</think>`` are ignored (a lone ``</think>`` drops everything
  before it, an unclosed ``<think>`` everything after it);
* several blocks: the **last** one that parses and defines ``strategy`` at module level wins (a
  model that corrects itself puts the final answer last; usage examples without ``strategy``
  are skipped);
* no fence at all: plain code is accepted when it contains ``def strategy``; prose after the
  code is cut off at the first unindented line that makes the rest fail to parse.

The signature rule is "callable as ``strategy(board)``": at least one positional parameter
(or ``*args``), at most one without a default, and no keyword-only parameter without one.
"""
from __future__ import annotations

import ast
import re
import textwrap

from sandbox.records import FormatError

__all__ = ["extract", "MAX_SOURCE_BYTES"]

MAX_SOURCE_BYTES = 20_000  # same default as Policy.max_source_bytes
_MAX_COMPLETION_FACTOR = 64  # a completion longer than this many code-size limits is not scanned

_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[ \t]*([\w+.#-]*)[^\n]*$", re.MULTILINE)
_DEF_STRATEGY = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+strategy\b", re.MULTILINE)
_ANY_DEF = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+\w+", re.MULTILINE)
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_TRAILING_TICKS = re.compile(r"(?:\n[ \t]*`{1,3}[ \t]*)+\s*\Z|`{3}\s*\Z")
_LEADING_BLANK = re.compile(r"\A(?:[ \t]*\n)+")
_CODE_START = re.compile(r"^(?:(?:async[ \t]+)?def |@|#|\"\"\"|'''|import |from \w)", re.MULTILINE)


def extract(completion: str, name: str = "strategy", max_bytes: int = MAX_SOURCE_BYTES) -> str:
    """The source of the code block in ``completion`` that defines ``name``; raises FormatError."""
    if not isinstance(completion, str):
        raise FormatError("empty", f"the completion is not text (got {type(completion).__name__})")
    if len(completion) > _MAX_COMPLETION_FACTOR * max_bytes:  # no model writes this: don't scan it
        raise FormatError("too_long", f"the completion has {len(completion)} characters, more than "
                                      f"{_MAX_COMPLETION_FACTOR * max_bytes}")
    text = _strip_reasoning(completion.replace("\r\n", "\n").replace("\r", "\n"))
    if not text.strip():
        raise FormatError("empty", "the completion is empty")
    blocks = _fenced_blocks(text)
    if blocks:
        candidates = blocks
    else:
        candidates = _unfenced_candidates(text, name, max_bytes)
        if not candidates:
            if _ANY_DEF.search(text):
                raise FormatError("no_function", f"the completion defines no function `{name}`")
            raise FormatError("no_code", "the completion contains no code block")
    return _choose(candidates, name, max_bytes, fenced=bool(blocks), text=text)


def _strip_reasoning(text: str) -> str:
    text = _THINK_BLOCK.sub("", text)
    lower = text.lower()
    close = lower.rfind("</think>")
    if close >= 0:  # the template opened <think> in the prompt: the answer follows the close tag
        text = text[close + len("</think>"):]
        lower = text.lower()
    start = lower.find("<think>")
    if start >= 0:  # reasoning never closed: it has no answer in it
        text = text[:start]
    return text


def _fenced_blocks(text: str) -> list[str]:
    """The contents of fenced blocks, in order; an unterminated last block runs to the end."""
    blocks = []
    matches = list(_FENCE.finditer(text))
    i = 0
    while i < len(matches):
        opening = matches[i]
        fence = opening.group(1)
        body_start = opening.end() + 1
        closing = None
        for j in range(i + 1, len(matches)):
            m = matches[j]
            # A closing fence has the same character, at least as long, and no info string.
            if m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not m.group(2) \
                    and text[m.start():m.end()].strip() == m.group(1):
                closing = j
                break
        if closing is None:  # unterminated: runs to the end, minus a truncated fence ("``")
            blocks.append(textwrap.dedent(_TRAILING_TICKS.sub("", text[body_start:])))
            break
        blocks.append(textwrap.dedent(text[body_start:matches[closing].start()]))
        i = closing + 1
    return blocks


def _unfenced_candidates(text: str, name: str, max_bytes: int) -> list[str]:
    """Plain code without fences: the whole text, or from the first code-looking line, trimmed."""
    match = re.search(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(name)}\b", text, re.MULTILINE)
    if match is None:
        return []
    starts = [0]
    first_code = _CODE_START.search(text)
    if first_code is not None and first_code.start() <= match.start():
        starts.append(first_code.start())
    line_start = text.rfind("\n", 0, match.start()) + 1
    starts.append(line_start)
    candidates = []
    for start in dict.fromkeys(starts):
        code = textwrap.dedent(text[start:])
        candidates.append(code)
        # Prose after the code: cut at each later unindented line (most code kept first).
        cuts = [m.start() for m in re.finditer(r"^[^ \t\n#]", code[:max_bytes + 1], re.MULTILINE)
                if m.start() > 0]
        for cut in reversed(cuts[-12:]):
            candidates.append(code[:cut])
    return candidates


def _choose(candidates: list[str], name: str, max_bytes: int, fenced: bool, text: str) -> str:
    best_error: FormatError | None = None
    chosen = None
    for source in candidates:
        source = _LEADING_BLANK.sub("", source).rstrip() + "\n"
        # Characters <= bytes: skip encoding huge candidates.
        size = len(source) if len(source) > max_bytes else len(source.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            error = FormatError("too_long", f"the code has {size} bytes, more than {max_bytes}")
            if _DEF_STRATEGY.search(source) or name != "strategy":
                best_error = _more_telling(best_error, error)
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            if re.search(rf"\bdef[ \t]+{re.escape(name)}\b", source):
                line = exc.lineno or 1
                best_error = _more_telling(best_error, FormatError(
                    "syntax_error", f"syntax error on line {line}: {exc.msg}", line))
            continue
        except (ValueError, RecursionError, MemoryError) as exc:
            if re.search(rf"\bdef[ \t]+{re.escape(name)}\b", source):
                best_error = _more_telling(best_error, FormatError(
                    "syntax_error", f"the code cannot be parsed ({type(exc).__name__}: {exc})", 1))
            continue
        function = _find_function(tree, name)
        if function is None:
            continue
        problem = _signature_problem(function.args)
        if problem:
            best_error = _more_telling(best_error, FormatError(
                "wrong_signature", f"`{name}` must be callable as `{name}(board)`: {problem}", function.lineno))
            continue
        chosen = source
        if not fenced:
            break  # unfenced candidates come longest first: the first that parses is the answer
    if chosen is not None:
        return chosen
    if best_error is not None:
        raise best_error
    if fenced:
        raise FormatError("no_function", f"no code block defines a module-level function `{name}`")
    raise FormatError("no_function", f"the completion defines no function `{name}`")


def _more_telling(current: FormatError | None, new: FormatError) -> FormatError:
    """Keep the error closest to a working program (later in FORMAT_REASONS' order of grading)."""
    order = {"wrong_signature": 1, "syntax_error": 2, "too_long": 0}
    if current is None or order.get(new.reason, 0) > order.get(current.reason, 0):
        return new
    return current


def _find_function(tree: ast.Module, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    found = None
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name:
            found = stmt  # the last definition is the one Python binds
    return found


def _signature_problem(args: ast.arguments) -> str | None:
    positional = [*args.posonlyargs, *args.args]
    required = len(positional) - len(args.defaults)
    if not positional and args.vararg is None:
        return "it takes no positional parameter"
    if required > 1:
        return f"it requires {required} positional parameters"
    missing = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is None]
    if missing:
        return f"the keyword-only parameter `{missing[0]}` has no default"
    return None
