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


CLOSING_TAGS = ["</think>", "</THINK>", "</Think>", "</answer>", "</code>", "</solution>", "</s>", "<|im_end|>",
                "<|endoftext|>", "<|eot_id|>", "<|end|>", "<eos>", "<end_of_turn>"]
TAG_GAPS = ["", " ", "\n", "\n\n", "\t", " \n"]   # "" first: a tag glued to the answer's last character


@FAST
@given(st.sampled_from(PROGRAMS), prose, prose, st.sampled_from(["fenced", "fenced+prose", "unterminated", "plain"]),
       st.booleans(), st.lists(st.tuples(st.sampled_from(TAG_GAPS), st.sampled_from(CLOSING_TAGS)), min_size=1,
                               max_size=4), st.sampled_from(TAG_GAPS))
def test_a_trailing_closing_tag_never_discards_the_answer(program, before, after, form, think, tags, end):
    """A complete answer followed by stray closing tags (a lone </think> included), anywhere after it."""
    if form != "fenced" and form != "fenced+prose" and "```" in program:
        program = PROGRAMS[0]
    reasoning = f"<think>{before}\n```python\n{OTHER}```\n</think>\n" if think else ""
    body = {"fenced": f"{before}\n```python\n{program}```",
            "fenced+prose": f"{before}\n```python\n{program}```\n{after}",
            "unterminated": f"{before}\n```python\n{program}",
            "plain": program}[form]
    answer = reasoning + body
    assert extract(answer) == program
    assert extract(answer + "".join(gap + tag for gap, tag in tags) + end) == program


def test_trailing_tags_never_revive_reasoning_without_an_answer():
    """Cutting trailing tags first leaves an unclosed <think>: its draft is still not the answer."""
    for tail in ("</think>", "</think></answer>", "</think>\n<|im_end|>\n"):
        with pytest.raises(FormatError) as info:
            extract(f"<think>```python\n{CODE}```{tail}")
        assert info.value.reason == "empty"


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


def test_an_answer_after_reasoning_with_letters_that_grow_when_lowered():
    # "İ".lower() is two characters: indices into a lowered copy would miss the tags.
    assert extract(f"İİ plan</think>\n```python\n{CODE}```") == CODE
    assert extract(f"İİİİ hmm </think>{CODE}") == CODE


# -- the most telling failure ------------------------------------------------------------------

def test_the_most_telling_reason_follows_format_reasons_for_every_pair():
    from sandbox.extract import _more_telling

    for first in FORMAT_REASONS:
        for second in FORMAT_REASONS:
            a, b = FormatError(first, "a"), FormatError(second, "b")
            kept = _more_telling(a, b)
            if FORMAT_REASONS.index(second) > FORMAT_REASONS.index(first):
                assert kept is b, (first, second)
            else:
                assert kept is a, (first, second)  # a tie keeps the first one
            assert _more_telling(None, b) is b


BLOCK_FAILING_AS = {
    "wrong_signature": "```python\ndef strategy():\n    return 'W'\n```\n",
    "syntax_error": "```python\ndef strategy(board):\n    return (\n```\n",
    "too_long": "```python\ndef strategy(board):\n" + "    x = 1\n" * 3000 + "```\n",
}


@pytest.mark.parametrize("first", list(BLOCK_FAILING_AS))
@pytest.mark.parametrize("second", list(BLOCK_FAILING_AS))
def test_several_failing_blocks_report_the_most_telling_reason(first, second):
    completion = f"First try:\n{BLOCK_FAILING_AS[first]}\nSecond try:\n{BLOCK_FAILING_AS[second]}"
    with pytest.raises(FormatError) as info:
        extract(completion)
    assert info.value.reason == max(first, second, key=FORMAT_REASONS.index)
    assert extract(f"{completion}\nFixed:\n```python\n{CODE}```") == CODE  # any good block wins


def test_between_two_failures_of_the_same_reason_the_first_is_reported():
    completion = ("```python\ndef strategy(board):\n    return (\n```\n"
                  "```python\ndef strategy(board):\n    x = 1\n    return (\n```\n")
    with pytest.raises(FormatError) as info:
        extract(completion)
    assert (info.value.reason, info.value.line) == ("syntax_error", 2)


# -- linear time -------------------------------------------------------------------------------
# Each shape made an older extractor quadratic (or worse): minutes at 1 MB. The timeout is the
# test, with a wide margin for slow machines; timings are measured by benchmarks/extract_speed.py.

MB = 1 << 20


def _repeat(unit, size=MB, head="", tail=""):
    return head + unit * ((size - len(head) - len(tail)) // len(unit)) + tail


ADVERSARIAL = {
    "unclosed think": (_repeat("<think>a\n"), "empty"),
    "unclosed think, then code": (_repeat("<think>a\n", head=f"```python\n{CODE}```\n"), CODE),
    "lone think closes": (_repeat("</think>", tail=f"```python\n{CODE}```"), CODE),
    "many trailing closing tags": (_repeat("</think>\n", head=f"```python\n{CODE}```\n"), CODE),
    "many trailing markers glued": (_repeat("<|im_end|></s>", head=CODE), CODE),
    "almost a trailing tag": (_repeat("</think", head=f"```python\n{CODE}```\n", tail=">"), CODE),
    "open fence then backtick lines": (_repeat("``\n", head=f"```python\n{CODE}", tail="x"), "too_long"),
    "open fence then truncated fences": (_repeat("``\n", head=f"```python\n{CODE}"), CODE),
    "long fence then shorter fences": (_repeat("```\n", head="`````python\n"), "no_function"),
    "many fences": (_repeat("```\n"), "no_function"),
    "many tilde and backtick fences": (_repeat("~~~\n```py\n"), "no_function"),
    "many broken blocks": (_repeat("```python\ndef strategy(board:\n```\n"), "syntax_error"),
    "many good blocks": (_repeat(f"```python\n{OTHER}```\n", tail=f"```python\n{CODE}```\n"), CODE),
    "many def strategy lines": (_repeat("def strategy(board):\n"), "too_long"),
    "many indented def lines": (_repeat("    def strategy(board):\n", head="x\n"), "too_long"),
    "unclosed triple quotes": (_repeat('"""\n', head="def strategy(board):\n    return '''\n"), "too_long"),
    "unclosed triple quotes, fenced": (_repeat('"""\n', head="```py\ndef strategy(board):\n    return '''\n"),
                                       "too_long"),
    "unclosed triple quotes, many blocks": (_repeat("```py\ndef strategy(board):\n    return '''\n```\n"),
                                            "syntax_error"),
    "one huge line": (_repeat("x", head="def strategy(board): return "), "too_long"),
    "one huge indent": (_repeat(" ", head="def strategy(board):\n", tail="return 'W'\n"), "too_long"),
    "huge indented block": (_repeat("        x = 1\n", head="```python\n" + " " * 40_000 + "def strategy(b):\n"),
                            "too_long"),
    "prose to cut": (_repeat("more prose (\n", head="Intro.\nimport math\ndef strategy(board):\n    x = (\n"),
                     "too_long"),
}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("shape", list(ADVERSARIAL))
def test_adversarial_completions_of_a_megabyte_take_linear_time(shape):
    completion, expected = ADVERSARIAL[shape]
    assert len(completion) > MB - 100
    try:
        result = extract(completion)
    except FormatError as exc:
        result = exc.reason
    assert result == expected


def _parse_counter():
    """A stand-in for ast.parse that counts the calls and the characters parsed."""
    import ast
    from unittest import mock

    return mock.patch.object(ast, "parse", side_effect=ast.parse)


ADVERSARIAL_UNITS = ["<think>", "</think>", "</answer>", "<|im_end|>", "```", "```python", "````", "~~~", "``", "`",
                     "def strategy(board):",
                     "def strategy(board:", "    return 'W'", '"""', "'''", "prose (", "", "    ", "\t"]


@FAST
@given(st.lists(st.tuples(st.sampled_from(ADVERSARIAL_UNITS), st.integers(1, 200)), max_size=6),
       st.integers(20, 400))
def test_parsing_is_bounded_by_the_completion_size(runs, max_bytes):
    # The work that dominates is parsing: each candidate is parsed once, fenced blocks do not
    # overlap, and plain code has a fixed number of candidates of at most max_bytes each.
    from sandbox.extract import _MAX_CUTS

    completion = "\n".join("\n".join([unit] * count) for unit, count in runs)
    with _parse_counter() as parse:
        try:
            extract(completion, max_bytes=max_bytes)
        except FormatError:
            pass
    parsed = sum(len(call.args[0]) for call in parse.call_args_list)
    fences = completion.count("```") + completion.count("~~~")
    plain_candidates = 3 * (1 + _MAX_CUTS)
    assert parse.call_count <= fences + plain_candidates
    assert parsed <= 2 * len(completion) + plain_candidates * max_bytes


# -- the linear helpers do what the quadratic code did --------------------------------------------

def _dedent_311(text):
    """textwrap.dedent as Python 3.11 wrote it (later versions changed some edge cases)."""
    import re

    text = re.sub(r"(?m)^[ \t]+$", "", text)
    margin = None
    for indent in re.findall(r"(?m)(^[ \t]*)(?:[^ \t\n])", text):
        if margin is None or margin.startswith(indent):
            margin = indent
        elif not indent.startswith(margin):
            margin = next((margin[:i] for i, (x, y) in enumerate(zip(margin, indent)) if x != y), margin)
    return re.sub(r"(?m)^" + re.escape(margin), "", text) if margin else text


@FAST
@given(st.text(st.sampled_from([" ", "\t", "\n", "x", "\x0c", "\r", "é"]), max_size=60))
def test_dedent_matches_textwrap(text):
    from sandbox.extract import _dedent

    assert _dedent(text) == _dedent_311(text)


@FAST
@given(st.lists(st.sampled_from(["`", "``", "```", "\n", " ", "\t", "x", "\x0c", "\xa0"]), max_size=20)
       .map("".join))
def test_trailing_ticks_are_cut_as_the_old_regex_did(body):
    import re

    from sandbox.extract import _strip_trailing_ticks

    old = re.compile(r"(?:\n[ \t]*`{1,3}[ \t]*)+\s*\Z|`{3}\s*\Z")
    assert _strip_trailing_ticks(body) == old.sub("", body)


@FAST
@given(st.lists(st.sampled_from(["<think>", "</think>", "<THINK>", "</Think>", "a", "\n", "<", ">"]), max_size=20)
       .map("".join))
def test_reasoning_is_stripped_as_the_old_regexes_did(text):
    import re

    from sandbox.extract import _strip_reasoning

    old = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL | re.IGNORECASE)
    old = old[old.lower().rfind("</think>") + len("</think>"):] if "</think>" in old.lower() else old
    old = old[:old.lower().find("<think>")] if "<think>" in old.lower() else old
    assert _strip_reasoning(text) == old
