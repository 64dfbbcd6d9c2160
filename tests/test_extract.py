"""sandbox.extract: the strategy code block out of whatever a model wrote around it."""
from __future__ import annotations

import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import FormatError, check, extract
from sandbox.records import FORMAT_REASONS

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CODE = "def strategy(board):\n    return 'W' if board[0][0] else 'A'\n"
OTHER = "def strategy(board):\n    return 'S'\n"


@pytest.mark.parametrize("completion", [
    f"```python\n{CODE}```",
    f"Here is my strategy:\n\n```python\n{CODE}```\n\nIt prefers up.",
    f"```py\n{CODE}```",
    f"```Python3\n{CODE}```",
    f"```\n{CODE}```",
    f"~~~python\n{CODE}~~~",
    f"Sure!\n```python\n{CODE}",                                # unterminated final fence
    f"Sure!\n```python\n{CODE}``",                              # truncated closing fence
    f"<think>I could use ```python\n{OTHER}```</think>\n```python\n{CODE}```",
    f"<THINK>\nhmm\n</THINK>```python\n{CODE}```",
    f"let me think... def strategy(b): pass\n</think>\n```python\n{CODE}```",  # template opened <think>
    f"```python\ndef helper(x):\n    return x\n```\n```python\n{CODE}```\nUsage:\n```python\nprint(strategy(b))\n```",
    f"```python\n{OTHER}```\nBetter:\n```python\n{CODE}```",   # the last definition wins
    f"```python\n{OTHER}```\nBroken fix:\n```python\ndef strategy(board:\n```\n```python\n{CODE}```",
    f"```json\n{{\"a\": 1}}\n```\n```python\n{CODE}```",
    CODE,                                                      # plain code, no fence
    f"\n\n{CODE}\nThis strategy prefers up because it keeps the corner.",
    f"My answer:\n{CODE}\nWhy: it keeps the corner.\nDone.",
    f"1. The code:\n    ```python\n    {CODE.replace(chr(10), chr(10) + '    ')}```\n",  # indented fence
    f"```python\r\n{CODE.replace(chr(10), chr(13) + chr(10))}```",
])
def test_finds_the_strategy(completion):
    assert extract(completion) == CODE


def test_keeps_the_whole_block_with_helpers_comments_and_docstrings():
    block = '"""Doc."""\n# comment\n\ndef strategy(board, depth=2, *, verbose=False):\n    def h(b):\n        return b\n    return "W"\n'
    assert extract(f"Intro\n```python\n{block}```\nOutro") == block
    assert extract(f"```python\nasync def strategy(*args):\n    return 'W'\n```")  # check rejects async


@pytest.mark.parametrize("completion,reason,line", [
    (None, "empty", None),
    (b"def strategy(b): pass", "empty", None),
    ("", "empty", None),
    ("  \n\t\n", "empty", None),
    ("<think>```python\ndef strategy(board):\n    return 'W'\n```</think>", "empty", None),
    ("<think>I will write def strategy(board): ... but never finish", "empty", None),
    ("I would move up, then left.", "no_code", None),
    ("```python\ndef move(board):\n    return 'W'\n```", "no_function", None),
    ("```python\nprint('W')\n```", "no_function", None),
    ("def move(board):\n    return 'W'\n", "no_function", None),
    ("```python\nclass A:\n    def strategy(self, board):\n        return 'W'\n```", "no_function", None),
    ("```python\ndef strategy():\n    return 'W'\n```", "wrong_signature", 1),
    ("```python\ndef strategy(board, depth):\n    return 'W'\n```", "wrong_signature", 1),
    ("```python\n\ndef strategy(board, *, depth):\n    return 'W'\n```", "wrong_signature", 1),
    ("```python\ndef strategy(board):\n    x = (1,\n    return 'W'\n```", "syntax_error", 2),
    ("```python\ndef strategy(board):\n    return 'W\n```", "syntax_error", 2),
    ("def strategy(board)\n    return 'W'\n", "syntax_error", 1),
    ("```python\ndef strategy(board):\n    return 'W'\0\n```", "syntax_error", 1),
    ("```python\ndef strategy(board):\n" + "    x = 1\n" * 5000 + "```", "too_long", None),
])
def test_failures_have_a_reason(completion, reason, line):
    with pytest.raises(FormatError) as info:
        extract(completion)
    assert info.value.reason == reason and info.value.reason in FORMAT_REASONS
    assert info.value.line == line
    assert info.value.message and "\n" not in info.value.message
    assert pickle.loads(pickle.dumps(info.value)) == info.value


def test_a_huge_completion_is_too_long_not_slow():
    with pytest.raises(FormatError) as info:
        extract("def strategy(board):\n" + "    x = 1\n" * 1_000_000)
    assert info.value.reason == "too_long"


def test_max_bytes_and_name_are_parameters():
    assert extract(f"```python\n{CODE}```", max_bytes=len(CODE)) == CODE
    with pytest.raises(FormatError, match="more than 10"):
        extract(f"```python\n{CODE}```", max_bytes=10)
    play = "def play(state):\n    return 0\n"
    assert extract(f"```python\n{play}```", name="play") == play


# -- properties --------------------------------------------------------------------------------

PROGRAMS = [
    CODE,
    "def strategy(board):\n    n = len(board)\n    return 'WASD'[sum(map(sum, board)) % 4]\n",
    '"""Corner."""\n\ndef strategy(board):\n    # keep the corner\n    if board[0][0]:\n        return "A"\n    return "W"\n',
    "def strategy(board):\n    s = '```'\n    return 'D'\n",
]
# Prose that is not code: no fences, no think tags, no line starting with code or indentation.
prose = st.lists(
    st.text(st.characters(codec="utf-8", categories=["L", "N", "Zs"], exclude_characters="\t"),
             min_size=1, max_size=40).map(str.strip).filter(lambda s: s and not s.startswith("def")),
    max_size=3).map("\n".join)


@FAST
@given(st.sampled_from(PROGRAMS), prose, prose, st.sampled_from(["python", "py", "", "python3"]),
       st.booleans(), st.booleans())
def test_wrapped_programs_come_back_unchanged(program, before, after, tag, closed, think):
    if program.count("```") and not closed:
        program = PROGRAMS[0]
    completion = (f"<think>{before}\n```python\n{OTHER}```\n</think>\n" if think else "") + \
        f"{before}\n```{tag}\n{program}" + (f"```\n{after}" if closed else "")
    assert extract(completion) == program


@FAST
@given(st.text(max_size=400))
def test_any_text_gives_source_or_a_format_error(text):
    try:
        source = extract(text)
    except FormatError as exc:
        assert exc.reason in FORMAT_REASONS
    else:
        assert "strategy" in source
        check(source)  # whatever came out is checkable


def test_extracted_code_passes_check():
    for program in PROGRAMS:
        assert check(extract(f"Answer:\n```python\n{program}```")).ok
