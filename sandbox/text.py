"""Text that came from a program, made safe to show on a terminal, and parsed without a word to it.

A strategy controls the text of its exceptions, its wrong answers and its source, and all of
it ends up in records, tables and log lines. Printed raw, an ANSI escape sequence can forge
or hide result lines, a carriage return can overwrite one, and a lone surrogate makes
``print`` raise ``UnicodeEncodeError`` halfway through a report. :func:`safe_text` turns
every such character into a visible escape; JSON output needs nothing from here
(``json.dumps`` with its default ``ensure_ascii=True`` is already exact and ASCII).

Parsing a program can make CPython warn (``SyntaxWarning: 'int' object is not callable``,
``DeprecationWarning: invalid escape sequence``): the program's text would then reach the
trainer's stderr as a warning line. :func:`parse_program` parses with those warnings silenced.
"""
from __future__ import annotations

import ast
import re
import threading
import warnings

__all__ = ["safe_text", "parse_program"]

# warnings.catch_warnings swaps process-wide state: two threads interleaving it could leave the
# filters silenced for good. Every quiet parse holds this lock, so ours never interleave.
_QUIET = threading.Lock()


def parse_program(text: str, filename: str = "<strategy>") -> ast.Module:
    """``ast.parse(text, filename)`` with the parser's warnings about the program kept from the caller's stderr.

    Raises what ``ast.parse`` raises (SyntaxError, ValueError, RecursionError, MemoryError).
    """
    with _QUIET, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(text, filename)

# C0 controls and DEL, C1 controls (0x9b is a one-byte CSI), lone surrogates; the bidirectional
# marks, overrides and isolates that reorder what a terminal shows; and the line and paragraph
# separators, which end a line for str.splitlines() and some viewers.
_UNSAFE_BEYOND_C0 = r"\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(rf"[\x00-\x1f{_UNSAFE_BEYOND_C0}]")
_UNSAFE_BUT_NEWLINE = re.compile(rf"[\x00-\x09\x0b-\x1f{_UNSAFE_BEYOND_C0}]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"  # every unsafe character is in the BMP


def safe_text(text: object, keep_newlines: bool = False) -> str:
    """``text`` as a printable one-liner: control characters and lone surrogates escaped as ``\\xNN`` / ``\\uNNNN``.

    ``keep_newlines=True`` keeps ``\\n`` (for multi-line text such as a program's source);
    tabs and carriage returns are always escaped. Anything that is not a str is shown with
    ``str()`` first (and with its type's name if even that fails). Takes time linear in the
    length of the text (a regex does the scan).
    """
    if not isinstance(text, str):
        try:
            text = str(text)
        except Exception:  # noqa: BLE001 - a hostile __str__: show what it is, not what it says
            return f"<unprintable {type(text).__name__}>"
    if text.isprintable():
        return text  # the common case, without a copy
    return (_UNSAFE_BUT_NEWLINE if keep_newlines else _UNSAFE).sub(_escape, text)
