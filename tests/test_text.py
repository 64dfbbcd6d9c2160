"""sandbox.text.safe_text: program text made safe for a terminal, and nothing else changed."""
from __future__ import annotations

import json
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.text import safe_text

FAST = settings(max_examples=200, deadline=None)

# What must never reach a terminal raw: C0/C1 controls, DEL, lone surrogates, bidi controls, line separators.
UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize("text, shown", [
    ("plain text", "plain text"),
    ("é, 中文, emoji 🎲, and \\ backslashes", "é, 中文, emoji 🎲, and \\ backslashes"),
    ("\x1b[2J\rFAKE RESULT", "\\x1b[2J\\x0dFAKE RESULT"),
    ("bad \udc80 byte", "bad \\udc80 byte"),
    ("tab\there", "tab\\x09here"),
    ("two\nlines", "two\\x0alines"),
    ("\x9b31m C1 CSI", "\\x9b31m C1 CSI"),
    ("\x7f", "\\x7f"),
    ("abc\u202edcba", "abc\\u202edcba"),          # right-to-left override
    ("\u2066isolate\u2069", "\\u2066isolate\\u2069"),
    ("mark\u200f\u061c", "mark\\u200f\\u061c"),
    ("line\u2028separator", "line\\u2028separator"),
    ("\x00", "\\x00"),
])
def test_unsafe_characters_are_escaped(text, shown):
    assert safe_text(text) == shown


def test_newlines_can_be_kept_but_nothing_else():
    assert safe_text("def f():\n\treturn 1\r\n", keep_newlines=True) == "def f():\n\\x09return 1\\x0d\n"
    assert safe_text("a\x1b[31mb\n", keep_newlines=True) == "a\\x1b[31mb\n"


def test_anything_is_shown():
    class Hostile:
        def __str__(self):
            raise RuntimeError("no")

    class Sneaky:
        def __str__(self):
            return "\x1b[2J"

    assert safe_text(Hostile()) == "<unprintable Hostile>"
    assert safe_text(Sneaky()) == "\\x1b[2J"
    assert safe_text(12) == "12" and safe_text(None) == "None"
    assert safe_text(b"\x1b") == "b'\\x1b'"


@FAST
@given(st.text())
def test_the_result_is_safe_and_printable_anywhere(text):
    shown = safe_text(text)
    assert not UNSAFE.search(shown)
    shown.encode("utf-8")  # no lone surrogate left: printing cannot raise
    assert "\n" not in shown and "\r" not in shown


@FAST
@given(st.text(st.characters(exclude_characters="\\")))
def test_only_unsafe_characters_change(text):
    # Without its escapes, what is shown is the text without its unsafe characters.
    assert re.sub(r"\\x[0-9a-f]{2}|\\u[0-9a-f]{4}", "", safe_text(text)) == UNSAFE.sub("", text)
    lines = safe_text(text, keep_newlines=True).split("\n")
    assert lines == [safe_text(line) for line in text.split("\n")]


@FAST
@given(st.text(st.characters(categories=["L", "M", "N", "P", "S", "Zs"])))
def test_printable_text_is_returned_as_is(text):
    assert safe_text(text) == text


def test_every_escape_is_of_an_unsafe_character():
    for code in list(range(0x0, 0x2070)) + list(range(0xD800, 0xE000, 0x3F)):
        ch = chr(code)
        shown = safe_text(ch)
        if shown != ch:
            assert UNSAFE.match(ch), hex(code)
            assert shown == (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")
        else:
            assert not UNSAFE.match(ch) and unicodedata.category(ch) not in ("Cc", "Cs"), hex(code)


def test_json_needs_no_help():
    text = "\udc80\x1b[2J\rFAKE RESULT"
    dumped = json.dumps({"error": text})
    assert dumped.isascii() and json.loads(dumped)["error"] == text


def test_a_long_text_is_escaped_in_one_pass():
    text = "x" * 1_000_000 + "\x1b"
    assert safe_text(text) == "x" * 1_000_000 + "\\x1b"


def test_parsing_a_program_never_warns_on_the_callers_stderr():
    # Odd but valid programs make CPython's parser warn; the program's text must not reach the
    # trainer's stderr as a warning line, from the checker, extraction or the source hash.
    import warnings

    from rewards.evaluate import source_hash
    from sandbox import check, extract

    odd = "def strategy(board):\n    x = '\\-'\n    return 1(2) or 'W'\n"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        verdict = check(odd)
        assert "def strategy" in extract("```python\n" + odd + "```")
        source_hash(odd)
    assert not [str(w.message) for w in seen]
    assert "syntax-error" not in {v.rule for v in verdict.violations}
