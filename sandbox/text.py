"""Text that came from a program, made safe to show on a terminal.

A strategy controls the text of its exceptions, its wrong answers and its source, and all of
it ends up in records, tables and log lines. Printed raw, an ANSI escape sequence can forge
or hide result lines, a carriage return can overwrite one, and a lone surrogate makes
``print`` raise ``UnicodeEncodeError`` halfway through a report. :func:`safe_text` turns
every such character into a visible escape; JSON output needs nothing from here
(``json.dumps`` with its default ``ensure_ascii=True`` is already exact and ASCII).
"""
from __future__ import annotations

__all__ = ["safe_text"]


def _escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _unsafe(ch: str) -> bool:
    code = ord(ch)
    # C0 controls and DEL, C1 controls (0x9b is a one-byte CSI), lone surrogates, and the
    # bidirectional overrides and isolates that reorder what a terminal shows.
    return (code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF
            or 0x202A <= code <= 0x202E or 0x2066 <= code <= 0x2069)


def safe_text(text: object, keep_newlines: bool = False) -> str:
    """``text`` as a printable one-liner: control characters and lone surrogates escaped as ``\\xNN`` / ``\\uNNNN``.

    ``keep_newlines=True`` keeps ``\\n`` (for multi-line text such as a program's source);
    tabs and carriage returns are always escaped. Anything that is not a str is shown with
    ``str()`` first (and with its type's name if even that fails).
    """
    if not isinstance(text, str):
        try:
            text = str(text)
        except Exception:  # noqa: BLE001 - a hostile __str__: show what it is, not what it says
            return f"<unprintable {type(text).__name__}>"
    if text.isprintable():
        return text  # the common case, without a copy
    out = []
    for ch in text:
        if ch == "\n" and keep_newlines:
            out.append(ch)
        elif _unsafe(ch):
            out.append(_escape(ch))
        else:
            out.append(ch)
    return "".join(out)
