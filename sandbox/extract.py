"""Finding the strategy program in a model completion.

``extract(completion)`` returns the source of the code block that defines ``strategy``, or
raises :class:`~sandbox.records.FormatError` with a reason code from ``FORMAT_REASONS``.
It accepts what small models actually write:

* fenced blocks (```` ```python ````, ```` ```py ````, bare ```` ``` ````, other tags too), an
  unterminated final fence, prose before and after, indented fences (the block is dedented);
* reasoning sections ``<think>...</think>`` are ignored (a lone ``</think>`` drops everything
  before it, an unclosed ``<think>`` everything after it);
* closing tags and end-of-turn markers after the answer (``</think>``, ``</answer>``, ``</s>``,
  ``<|im_end|>``, ``<eos>``, ...), with nothing but whitespace after them, are not part of it:
  they are cut first, so a stray ``</think>`` after a complete answer does not read as the end
  of reasoning that the answer belonged to, and a tag glued to the last line or the closing
  fence does not break it;
* several blocks: the **last** one that parses and defines ``strategy`` at module level wins (a
  model that corrects itself puts the final answer last; usage examples without ``strategy``
  are skipped);
* no fence at all: plain code is accepted when it contains ``def strategy``; prose after the
  code is cut off at the first unindented line that makes the rest fail to parse.

When no candidate works, the error is the most telling one, in the order of
``FORMAT_REASONS`` (``too_long`` over ``syntax_error`` over ``wrong_signature``); between two
of the same reason, the first in the completion.

The signature rule is "callable as ``strategy(board)``": at least one positional parameter
(or ``*args``), at most one without a default, and no keyword-only parameter without one.

Extraction takes time linear in the length of the completion, whatever its shape (thousands of
unclosed ``<think>`` tags or fences, lines of stray backticks, one huge line or indent): each
search resumes where the one before it stopped, each regex match either stays within one line
or is tried at one place only, and a candidate is parsed only when it can define ``strategy``,
each distinct source once. ``benchmarks/extract_speed.py`` measures it.
"""
from __future__ import annotations

import ast
import functools
import re

from sandbox.records import FORMAT_REASONS, FormatError
from sandbox.text import parse_program

__all__ = ["extract", "MAX_SOURCE_BYTES"]

MAX_SOURCE_BYTES = 20_000  # same default as Policy.max_source_bytes
_MAX_COMPLETION_FACTOR = 64  # a completion longer than this many code-size limits is not scanned
_PARSE_BUDGET_FACTOR = 16    # candidate code parsed per completion, in code-size limits (a hard time bound)
_MAX_CUTS = 12  # plain code: how many cuts before trailing prose are tried, per place it may start

_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[ \t]*([\w+.#-]*)[^\n]*$", re.MULTILINE)
_DEF_STRATEGY = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+strategy\b", re.MULTILINE)
_ANY_DEF = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+\w+", re.MULTILINE)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
# Closing tags and end-of-turn markers (``</name>``, ``<|name|>``, ``<eos>``, ``<end_of_turn>``)
# with only whitespace after them, matched on the reversed text from its start: one match,
# possessive, so a megabyte of trailing tags is one linear scan.
_REVERSED_TRAILING_TAGS = re.compile(
    r"(?:\s*+(?:>[\w:.-]{1,32}+/<|>\|[\w.-]{1,32}+\|<|>soe<|>nrut_fo_dne<))++", re.IGNORECASE)
# Lines of 1-3 backticks at the end of a block (what is left of a closing fence cut short),
# matched on the reversed text so that one match from its start finds them all. Possessive
# (nothing after could use a character given back), so that no state is kept per line to
# backtrack into: with it, time per line grew with the number of lines.
_REVERSED_TICK_LINES = re.compile(r"(?:[ \t]*+`{1,3}+[ \t]*+\n)++")
_BLANK_LINE = re.compile(r"^[ \t]+$", re.MULTILINE)
_INDENT = re.compile(r"^[ \t]*(?=[^ \t\n])", re.MULTILINE)
_LEADING_BLANK = re.compile(r"\A(?:[ \t]*+\n)++")  # possessive, as above
_CODE_START = re.compile(r"^(?:(?:async[ \t]+)?def |@|#|\"\"\"|'''|import |from \w)", re.MULTILINE)
_UNINDENTED = re.compile(r"^[^ \t\n#]", re.MULTILINE)
_REASON_RANK = {reason: rank for rank, reason in enumerate(FORMAT_REASONS)}


def extract(completion: str, name: str = "strategy", max_bytes: int = MAX_SOURCE_BYTES) -> str:
    """The source of the code block in ``completion`` that defines ``name``; raises FormatError."""
    if not isinstance(completion, str):
        raise FormatError("empty", f"the completion is not text (got {type(completion).__name__})")
    if len(completion) > _MAX_COMPLETION_FACTOR * max_bytes:  # no model writes this: don't scan it
        raise FormatError("too_long", f"the completion has {len(completion)} characters, more than "
                                      f"{_MAX_COMPLETION_FACTOR * max_bytes}")
    text = _strip_reasoning(_strip_trailing_tags(completion.replace("\r\n", "\n").replace("\r", "\n")))
    if not text.strip():
        raise FormatError("empty", "the completion is empty")
    blocks = _fenced_blocks(text)
    if blocks:
        return _choose_fenced(blocks, _Judge(name, max_bytes))
    candidates = _unfenced_candidates(text, name, max_bytes)
    if not candidates:
        if _ANY_DEF.search(text):
            raise FormatError("no_function", f"the completion defines no function `{name}`")
        raise FormatError("no_code", "the completion contains no code block")
    return _choose_unfenced(candidates, _Judge(name, max_bytes))


def _strip_trailing_tags(text: str) -> str:
    """``text`` without the closing tags and end-of-turn markers it ends with (and the whitespace between them)."""
    end = len(text.rstrip())
    if not end or text[end - 1] != ">":  # the common case: nothing to reverse
        return text
    tags = _REVERSED_TRAILING_TAGS.match(text[end - 1::-1])
    return text[:end - tags.end()] if tags is not None else text


def _strip_reasoning(text: str) -> str:
    """``text`` without ``<think>...</think>``, before a lone ``</think>``, after an unclosed ``<think>``."""
    # One pass from left to right. (A lazy ``<think>.*?</think>`` regex rescans the rest of the
    # text from every unclosed ``<think>``: quadratic.) When an opening tag has no closing tag
    # after it, no later opening tag has one either, so the first such tag ends the removal.
    kept = []
    pos = 0
    while (opening := _THINK_OPEN.search(text, pos)) is not None:
        closing = _THINK_CLOSE.search(text, opening.end())
        if closing is None:
            break
        kept.append(text[pos:opening.start()])
        pos = closing.end()
    kept.append(text[pos:])
    text = "".join(kept)
    # The same case-blind regexes find the tags left over: indices into ``text.lower()`` can
    # miss the original text, as lowering some characters changes the length.
    close = None
    for close in _THINK_CLOSE.finditer(text):
        pass
    if close is not None:  # the template opened <think> in the prompt: the answer follows the close tag
        text = text[close.end():]
    opening = _THINK_OPEN.search(text)
    if opening is not None:  # reasoning never closed: it has no answer in it
        text = text[:opening.start()]
    return text


def _fenced_blocks(text: str) -> list[str]:
    """The fenced blocks' contents in order, not dedented yet; an unterminated last one runs to the end."""
    blocks = []
    pos = 0
    # Each search resumes where the last one stopped: the text is scanned once, however many
    # fences it has and however many of them cannot close the open block.
    while (opening := _FENCE.search(text, pos)) is not None:
        fence = opening.group(1)
        body_start = opening.end() + 1
        closing = _closing_fence(fence[0], len(fence)).search(text, opening.end())
        if closing is None:  # unterminated: runs to the end, minus a truncated fence ("``")
            blocks.append(_strip_trailing_ticks(text[body_start:]))
            break
        blocks.append(text[body_start:closing.start()])
        pos = closing.end()
    return blocks


@functools.lru_cache(maxsize=64)
def _closing_fence(char: str, length: int) -> re.Pattern:
    """A line closing a fence of ``length`` times ``char``: as many or more, and only whitespace besides."""
    # The length is in the pattern so that the regex skips shorter fences itself: a Python loop
    # over them is linear too, but made 1 MB of "``" lines take ten times as long.
    return re.compile(rf"^[ \t]*{re.escape(char)}{{{length},}}[^\S\n]*$", re.MULTILINE)


def _strip_trailing_ticks(body: str) -> str:
    """``body`` without what is left of a closing fence cut short at its end.

    That is the trailing lines of one to three backticks (with the newline before them), or else
    three backticks glued to the end of the last line; and any whitespace after either.
    """
    # The regex this replaces, ``(?:\n[ \t]*`{1,3}[ \t]*)+\s*\Z|`{3}\s*\Z``, restarted at every
    # newline and ran over all the backtick lines after it each time: quadratic in their
    # number. Reversed, the same lines are one match at the start, tried once.
    end = len(body.rstrip())
    ticks = _REVERSED_TICK_LINES.match(body[end - 1::-1]) if end else None
    if ticks is not None:
        return body[:end - ticks.end()]
    if body.endswith("```", 0, end):
        return body[:end - 3]
    return body


def _dedent(text: str) -> str:
    """``textwrap.dedent(text)`` (by Python 3.11's rules) in linear time.

    Lines of only spaces and tabs become empty, and the longest run of spaces and tabs that
    starts every other line is removed from each of them.
    """
    # textwrap.dedent removes the margin with a regex made of it: a line indented by a million
    # spaces compiles a million-character pattern, which takes seconds. The margin is the
    # common prefix of the smallest and the largest indent; every line that has a margin to
    # lose starts with it, so removing that many spaces or tabs removes exactly the margin.
    text = _BLANK_LINE.sub("", text)
    indents = _INDENT.findall(text)
    width = _common_prefix_length(min(indents), max(indents)) if indents else 0
    return re.sub(rf"(?m)^[ \t]{{{width}}}", "", text) if width else text


def _common_prefix_length(a: str, b: str) -> int:
    """How many leading characters ``a`` and ``b`` share (a binary search: linear in their length)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # a[:lo] == b[:lo], and they differ before hi unless lo == hi
        mid = (lo + hi + 1) // 2
        if a.startswith(b[lo:mid], lo):
            lo = mid
        else:
            hi = mid - 1
    return lo


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
        code = _dedent(text[start:])
        candidates.append(code)
        # Prose after the code: cut at each later unindented line (most code kept first). Only
        # cuts within the size limit can leave a program, and only the last few are tried.
        cuts = [m.start() for m in _UNINDENTED.finditer(code, 1, max_bytes + 1)]
        for cut in reversed(cuts[-_MAX_CUTS:]):
            candidates.append(code[:cut])
    return candidates


def _choose_fenced(blocks: list[str], judge: _Judge) -> str:
    """The last block that defines the function well; else the most telling error of all blocks."""
    best_error: FormatError | None = None
    # From the last block back: the first good one is the answer, and no block before it is parsed.
    for block in reversed(blocks):
        if judge.cannot_concern(block):
            continue  # the most common block, skipped without dedenting it
        source, error = judge(_dedent(block))
        if error is None:
            return source
        if error is not _NOT_IT:
            best_error = _more_telling(best_error, error, ties_to_new=True)  # new = earlier block
    if best_error is not None:
        raise best_error
    raise FormatError("no_function", f"no code block defines a module-level function `{judge.name}`")


def _choose_unfenced(candidates: list[str], judge: _Judge) -> str:
    """The first candidate defining the function well (longest come first); else the most telling error."""
    best_error: FormatError | None = None
    for candidate in candidates:
        source, error = judge(candidate)
        if error is None:
            return source
        if error is not _NOT_IT:
            best_error = _more_telling(best_error, error)
    if best_error is not None:
        raise best_error
    raise FormatError("no_function", f"the completion defines no function `{judge.name}`")


# A candidate that does not even try to define the function: it is skipped, and its error never reported.
_NOT_IT = FormatError("no_function", "the candidate does not define the function")


class _Judge:
    """Judges the candidate sources of one completion, each distinct source once."""

    def __init__(self, name: str, max_bytes: int) -> None:
        self.name = name
        self.max_bytes = max_bytes
        self._def_name = re.compile(rf"\bdef[ \t]+{re.escape(name)}\b")
        self._seen: dict[str, FormatError | None] = {}
        # Parsing is the one cost that grows with each candidate; past this budget the rest are
        # not tried (never counted as a better failure), so even a completion of hundreds of
        # blocks at the size limit is judged in bounded time. No real completion comes near it.
        self._parse_budget = _PARSE_BUDGET_FACTOR * max_bytes

    def cannot_concern(self, text: str) -> bool:
        """True when ``text`` can neither define the function nor count as a failed try at it.

        Only said of ASCII text without the name (non-ASCII identifiers are NFKC-normalized, so
        fullwidth letters can spell it), and only for `strategy`: a block too long counts against
        any other name. Dedenting changes none of this, so blocks are asked before it.
        """
        return self.name == "strategy" and "strategy" not in text and text.isascii()

    def __call__(self, candidate: str) -> tuple[str, FormatError | None]:
        """(the source as it would be returned, None if it is the answer, else why it is not)."""
        source = _LEADING_BLANK.sub("", candidate).rstrip() + "\n"
        if source not in self._seen:
            self._seen[source] = self._problem(source)
        return source, self._seen[source]

    def _problem(self, source: str) -> FormatError | None:
        name, max_bytes = self.name, self.max_bytes
        # Characters <= bytes: skip encoding huge candidates.
        size = len(source) if len(source) > max_bytes else len(source.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            if _DEF_STRATEGY.search(source) or name != "strategy":
                return FormatError("too_long", f"the code has {size} bytes, more than {max_bytes}")
            return _NOT_IT
        # ASCII source can only define the function by spelling its name; other source is
        # parsed whatever it holds, as identifiers are NFKC-normalized ("ｓｔｒａｔｅｇｙ" counts).
        if name not in source and source.isascii():
            return _NOT_IT
        if self._parse_budget < len(source):
            return _NOT_IT
        self._parse_budget -= len(source)
        try:
            tree = parse_program(source, "<unknown>")
        except SyntaxError as exc:
            if not self._def_name.search(source):
                return _NOT_IT
            line = exc.lineno or 1
            return FormatError("syntax_error", f"syntax error on line {line}: {exc.msg}", line)
        except (ValueError, RecursionError, MemoryError) as exc:
            if not self._def_name.search(source):
                return _NOT_IT
            return FormatError("syntax_error", f"the code cannot be parsed ({type(exc).__name__}: {exc})", 1)
        function = _find_function(tree, name)
        if function is None:
            return _NOT_IT
        problem = _signature_problem(function.args)
        if problem:
            return FormatError("wrong_signature", f"`{name}` must be callable as `{name}(board)`: {problem}",
                               function.lineno)
        return None


def _more_telling(current: FormatError | None, new: FormatError, ties_to_new: bool = False) -> FormatError:
    """The error closer to a working program: the later reason in FORMAT_REASONS (the reward's order).

    Between two of the same reason ``current`` stays, or ``new`` with ``ties_to_new``.
    """
    if current is None:
        return new
    rank_new, rank_current = _REASON_RANK[new.reason], _REASON_RANK[current.reason]
    return new if rank_new > rank_current or (ties_to_new and rank_new == rank_current) else current


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
