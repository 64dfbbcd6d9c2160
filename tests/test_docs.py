"""The documentation stays true: README.md and docs/*.md.

- Every relative link (and image) points to a file of the repository, and a link into a Markdown
  page with an anchor points to one of that page's headings.
- README.md stays a front page: at most README_MAX_LINES lines, its two opening commands between
  the markers `.ci/run` reads, and every docs page linked from it.
- Every command in a shell code block (```bash, ```sh, ```shell, ```console or an untagged fence)
  that runs `codepolicy ...`, `python -m codepolicy ...` or `... -m codepolicy ...` (torchrun,
  accelerate) parses with the command line's own parser, `codepolicy.cli.build_parser`: an unknown
  subcommand, an unknown or abbreviated flag, a bad choice or a missing value fails here. Commands
  are parsed, never run. `python benchmarks/X.py ...` must name a script that exists, and
  `pytest ...` / `python -m pytest ...` must name test files that exist.

Building the parser imports each package's ``cli`` module; they import torch, transformers and the
sandbox's workers inside their handlers only, so nothing here loads torch (the last test checks
it when it can) and the file runs in a few seconds.
"""
from __future__ import annotations

import contextlib
import io
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 220

# Fences whose lines may be shell commands; an untagged fence counts too (only lines that name a
# command this file checks are split, so a diagram or a program's output is left alone).
SHELL_INFOS = {"", "bash", "sh", "shell", "console"}



# ---------------------------------------------------------------------------------------- Markdown


@dataclass(frozen=True)
class Block:
    page: Path
    line: int          # line number of the block's first content line
    info: str          # the fence's language, lower case ("" when untagged)
    lines: tuple[str, ...]


_OPEN_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)")


def split_page(page: Path) -> tuple[list[Block], list[str], int | None]:
    """The fenced code blocks of a page, its prose lines (code block lines blanked, numbering kept),
    and the line of a fence that is never closed (None when every fence closes)."""
    blocks: list[Block] = []
    prose: list[str] = []
    fence = None
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if fence is None:
            match = _OPEN_FENCE.match(line)
            if match:
                fence, info, start, body = match.group(1), match.group(2).lower(), number + 1, []
                prose.append("")
            else:
                prose.append(line)
            continue
        prose.append("")
        if re.fullmatch(rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*", line):
            blocks.append(Block(page, start, info, tuple(body)))
            fence = None
        else:
            body.append(line)
    if fence is not None:  # Markdown runs an unclosed block to the end of the page
        blocks.append(Block(page, start, info, tuple(body)))
        return blocks, prose, start - 1
    return blocks, prose, None


def _blank_code_spans(paragraph: str) -> str:
    """A paragraph with each inline code span blanked: a run of N backticks opens a span that the next
    run of exactly N closes; a run that nothing closes is literal text (CommonMark)."""
    out, i, n = [], 0, len(paragraph)
    while i < n:
        if paragraph[i] != "`":
            out.append(paragraph[i])
            i += 1
            continue
        j = i
        while j < n and paragraph[j] == "`":
            j += 1
        close, k = -1, j
        while k < n:
            if paragraph[k] != "`":
                k += 1
                continue
            m = k
            while m < n and paragraph[m] == "`":
                m += 1
            if m - k == j - i:
                close = m
                break
            k = m
        if close < 0:
            out.append(paragraph[i:j])
            i = j
        else:
            out.append(re.sub(r"[^\n]", " ", paragraph[i:close]))
            i = close
    return "".join(out)


def _without_code_spans(prose: list[str]) -> str:
    """The prose as one text, each inline code span blanked (newlines kept, so offsets give line numbers)."""
    paragraphs = "\n".join(prose).split("\n\n")  # a code span never crosses a paragraph
    return "\n\n".join(_blank_code_spans(p) for p in paragraphs)


_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
_HTML = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""")


def links(page: Path) -> list[tuple[int, str]]:
    """(line, target) of every link, image, reference definition and HTML href/src in a page's prose."""
    text = _without_code_spans(split_page(page)[1])
    found = []
    for pattern in (_LINK, _REFERENCE, _HTML):
        for match in pattern.finditer(text):
            found.append((text.count("\n", 0, match.start()) + 1, match.group(1)))
    return sorted(found)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor a link may name in a Markdown page: its headings' slugs (repeats get -1, -2...) and HTML ids."""
    prose = split_page(page)[1]
    seen: dict[str, int] = {}
    result = set()
    for line in prose:
        match = re.match(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            result.add(base if count == 0 else f"{base}-{count}")
    result.update(re.findall(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""", "\n".join(prose)))
    return result


def link_problems(page: Path) -> list[str]:
    """What is wrong with a page's relative links: one line each, naming the page, the line and the target."""
    problems = []
    for line, target in links(page):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
            continue  # https:, mailto:: not a file of the repository
        path_part, _, anchor = target.partition("#")
        path_part = unquote(path_part.split("?", 1)[0])
        where = f"{page.relative_to(ROOT)}:{line}: {target}"
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.is_relative_to(ROOT):
            problems.append(f"{where}: points outside the repository")
        elif not destination.exists():
            problems.append(f"{where}: no such file")
        elif anchor and destination.suffix == ".md" and unquote(anchor) not in anchors(destination):
            problems.append(f"{where}: {destination.relative_to(ROOT)} has no heading with the anchor #{anchor}")
    return problems


# ---------------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Command:
    page: Path
    line: int
    kind: str                 # "cli", "script", "pytest" or "unsplittable" (an unclosed quote)
    args: tuple[str, ...]     # cli: argv after `codepolicy`; script: (path,); pytest: its arguments
    text: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: {self.text}"


_PYTHON = re.compile(r"(?:.*/)?python(?:\d+(?:\.\d+)?)?")
_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", "|&", ";;"}
_REDIRECTS = {">", ">>", "<", "<<", "<<<", ">&", "<&", "&>", ">|"}
# A shell line worth splitting: it names, as a word of its own, a command this file checks.
_MENTIONS = re.compile(r"(?:^|[\s;&|(])(?:\S*/)?(?:codepolicy|pytest|python[\d.]*)(?=[\s;&|)]|$)")


def logical_lines(block: Block) -> list[tuple[int, str]]:
    """(line, text) of each shell line of a block: `\\` continuations joined, `$ ` prompts dropped
    (in a console block only the prompted lines are commands)."""
    result, pending, start = [], "", 0
    for offset, raw in enumerate(block.lines):
        line = raw.strip()
        if not pending:
            start = block.line + offset
            if line.startswith("$ "):
                line = line[2:]
            elif block.info == "console":
                continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        result.append((start, pending + line))
        pending = ""
    if pending:
        result.append((start, pending))
    return result


def simple_commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line (split at ;, &&, ||, |), redirections and comments dropped.

    A line with a placeholder the parser cannot take (`<name>`, `$(...)`, a backtick) gives nothing;
    `...` (more arguments) is dropped, and so is an optional part written `[--flag VALUE]`.
    Raises ValueError for a line the shell could not split either (an unclosed quote).
    """
    if re.search(r"<[A-Za-z][^<>]*>|\$\(|`", line):
        return []
    line = re.sub(r"(?<=\s)\[-[^\]]*\]", " ", line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    commands: list[list[str]] = [[]]
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
        elif token in _SEPARATORS:
            commands.append([])
        elif token in _REDIRECTS:
            skip_next = True  # the target goes with it, and a file descriptor before it (2>)
            if commands[-1] and commands[-1][-1].isdigit():
                commands[-1].pop()
        elif token != "...":
            commands[-1].append(token)
    return [c for c in commands if c]


def classify(tokens: list[str]) -> tuple[str, tuple[str, ...]] | None:
    """("cli", argv) / ("script", (path,)) / ("pytest", args) for a command this file checks, else None."""
    while tokens and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", tokens[0]):
        tokens = tokens[1:]  # VAR=value before the command
    if not tokens:
        return None
    for i in range(len(tokens) - 1):
        if tokens[i] == "-m" and tokens[i + 1] == "codepolicy":  # python -m, torchrun -m, accelerate launch -m
            return "cli", tuple(tokens[i + 2:])
    head = tokens[0].rsplit("/", 1)[-1]
    if head == "codepolicy":
        return "cli", tuple(tokens[1:])
    if head == "pytest":
        return "pytest", tuple(tokens[1:])
    if _PYTHON.fullmatch(tokens[0]) and len(tokens) > 1:
        if tokens[1:3] == ["-m", "pytest"]:
            return "pytest", tuple(tokens[3:])
        if tokens[1].endswith(".py"):
            return "script", (tokens[1],)
    return None


def commands(page: Path) -> list[Command]:
    """Every command of a page's shell code blocks that this file checks; a line that cannot be split
    is kept as kind "unsplittable", so that a test fails on it instead of the collection."""
    found = []
    for block in split_page(page)[0]:
        if block.info not in SHELL_INFOS:
            continue
        for line, text in logical_lines(block):
            if not _MENTIONS.search(text):
                continue  # not a command we check (pip, ray, sed...), a diagram or a program's output
            try:
                parts = simple_commands(text)
            except ValueError as exc:  # an unclosed quote
                found.append(Command(page, line, "unsplittable", (str(exc),), text=text))
                continue
            for tokens in parts:
                kind_args = classify(tokens)
                if kind_args:
                    found.append(Command(page, line, *kind_args, text=text))
    return found


ALL_COMMANDS = [c for page in PAGES for c in commands(page)]


@pytest.fixture(scope="module")
def parser():
    from codepolicy.cli import build_parser

    return build_parser()


def parse_error(parser, argv) -> str | None:
    """Why `codepolicy ARGV` would be refused before its handler runs (as codepolicy.cli.main reads it), or None."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args, extra = parser.parse_known_args(list(argv))
    except SystemExit as exc:  # argparse's error (2) or --help/--version (0)
        return None if exc.code in (0, None) else (err.getvalue().strip().splitlines() or [f"exit {exc.code}"])[-1]
    if extra:
        return f"unrecognized arguments: {' '.join(extra)}"
    if getattr(args, "handler", None) is None:
        return "no subcommand: codepolicy would print its help and exit 2"
    return None


# ------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_files_of_the_repository(page):
    problems = link_problems(page)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_opens_with_the_two_commands_ci_reads():
    text = README.read_text(encoding="utf-8")
    first_section = text.find("\n## ")
    for name, ends_with in (("main", "codepolicy train"), ("tests", "python -m pytest -q")):
        match = re.search(rf"<!-- {name}:begin -->\n```\n([^\n]+)\n```\n<!-- {name}:end -->", text)
        assert match, f"README.md: no one-line command between <!-- {name}:begin --> and <!-- {name}:end -->"
        assert match.start() < first_section, f"README.md: the {name} command must come before the first section"
        assert match.group(1).endswith(ends_with)
    assert text.find("<!-- main:begin -->") < text.find("<!-- tests:begin -->")


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / unquote(t.split("#")[0])).resolve() for _, t in links(README)}
    pages = [p for p in sorted(DOCS.iterdir()) if p.suffix in (".md", ".html")]
    missing = [str(p.relative_to(ROOT)) for p in pages if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_the_documented_commands_are_found():
    # If the extraction broke, the checks below would pass on nothing.
    cli = {(c.page.name, c.args[0]) for c in ALL_COMMANDS if c.kind == "cli" and c.args}
    for sub in ("train", "play", "check", "score", "audit", "eval", "export", "replay"):
        assert ("README.md", sub) in cli, f"README.md: no `codepolicy {sub}` command found in a code block"
    assert any(c.kind == "pytest" for c in ALL_COMMANDS if c.page == README)
    assert any(c.kind == "script" for c in ALL_COMMANDS)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_fences_close(page):
    unclosed = split_page(page)[2]
    assert unclosed is None, f"{page.relative_to(ROOT)}:{unclosed}: this code fence is never closed"


def test_documented_commands_split_as_shell_words():
    bad = [f"{c}: {c.args[0]}" for c in ALL_COMMANDS if c.kind == "unsplittable"]
    assert not bad, "commands the shell could not split:\n" + "\n".join(bad)


@pytest.mark.parametrize("command", [c for c in ALL_COMMANDS if c.kind == "cli"], ids=str)
def test_documented_codepolicy_commands_parse(parser, command):
    error = parse_error(parser, command.args)
    assert error is None, f"{command}\n  codepolicy {' '.join(command.args)}: {error}"


@pytest.mark.parametrize("command", [c for c in ALL_COMMANDS if c.kind == "script"], ids=str)
def test_documented_scripts_exist(command):
    assert (ROOT / command.args[0]).is_file(), f"{command}: no script {command.args[0]}"


@pytest.mark.parametrize("command", [c for c in ALL_COMMANDS if c.kind == "pytest"], ids=str)
def test_documented_pytest_commands_name_existing_tests(command):
    paths = [a.split("::", 1)[0] for a in command.args if not a.startswith("-") and ("/" in a or a.endswith(".py"))]
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"{command}: no such test file {missing}"


# The checks themselves: each must catch what it is for.


def test_the_checks_catch_a_bad_flag_a_bad_subcommand_and_a_bad_choice(parser):
    assert parse_error(parser, ["play", "examples/strategy.py", "--games", "2"]) is None
    assert parse_error(parser, ["train", "--preset", "gpu", "--help"]) is None
    assert "unrecognized" in parse_error(parser, ["play", "examples/strategy.py", "--no-such-flag"])
    assert parse_error(parser, ["bench", "--second", "0.5"]) is not None  # never read as --seconds
    assert parse_error(parser, ["no-such-command"]) is not None
    assert parse_error(parser, ["train", "--preset", "no-such-preset"]) is not None
    assert parse_error(parser, []) is not None


def test_the_command_splitter(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```console\n$ codepolicy play x.py \\\n    --games 3   # a comment's quote\noutput line\n```\n"
        "```bash\nOMP_NUM_THREADS=1 torchrun --standalone -m codepolicy train --steps 2 ...\n"
        "pip install -e . && codepolicy rules | head -1\n"
        "python benchmarks/grpo_step.py --device cuda [--vs-trl]\n"
        "python -m pytest -q tests/test_docs.py::test_readme_is_a_front_page\n"
        "codepolicy replay <file>\n"
        "codepolicy play 'x.py\n```\n"
        "```python\ncodepolicy = 1\n```\n", encoding="utf-8")
    found = [(c.line, c.kind, c.args) for c in commands(page)]
    assert found == [
        (2, "cli", ("play", "x.py", "--games", "3")),
        (7, "cli", ("train", "--steps", "2")),
        (8, "cli", ("rules",)),
        (9, "script", ("benchmarks/grpo_step.py",)),
        (10, "pytest", ("-q", "tests/test_docs.py::test_readme_is_a_front_page")),
        (12, "unsplittable", ("No closing quotation",)),
    ]


def test_the_link_check_catches_a_missing_file_and_a_missing_anchor(tmp_path, monkeypatch):
    root = tmp_path.resolve()
    monkeypatch.setitem(globals(), "ROOT", root)
    (root / "docs").mkdir()
    (root / "README.md").write_text("# Title\n\n## A heading: with `code`, and more\n", encoding="utf-8")
    page = root / "docs" / "page.md"
    page.write_text(
        "# Page\n\n[ok](../README.md) [ok](../README.md#a-heading-with-code-and-more) [self](#page)\n"
        "[gone](nothing.md) [bad anchor](../README.md#no-such-heading) ![img](../x.png)\n"
        "`[not a link](nowhere.md)` [web](https://example.com)\n\n```\n[in code](nowhere.md)\n```\n",
        encoding="utf-8")
    problems = link_problems(page)
    assert [p.split(": ", 1)[0] for p in problems] == ["docs/page.md:4"] * 3
    assert any("nothing.md: no such file" in p for p in problems)
    assert any("#no-such-heading" in p for p in problems)
    assert any("x.png: no such file" in p for p in problems)


def test_parsing_the_commands_loads_no_torch():
    # In a fresh interpreter: in this one another test module may already have imported torch.
    import json
    import subprocess

    argvs = [list(c.args) for c in ALL_COMMANDS if c.kind == "cli"]
    code = ("import contextlib, io, json, sys\n"
            "from codepolicy.cli import build_parser\n"
            "parser = build_parser()\n"
            "for argv in json.loads(sys.stdin.read()):\n"
            "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()), "
            "contextlib.redirect_stderr(io.StringIO()):\n"
            "        parser.parse_known_args(argv)\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(argvs), capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", "building or using the CLI parser imported torch"