"""How long ``sandbox.extract`` takes on adversarial completions of growing size.

Each shape is a way a completion (a broken model, or someone probing the trainer) can make a
careless extractor quadratic: unclosed ``<think>`` tags, an unterminated fence followed by lines
of stray backticks, thousands of fences or blocks, a huge line or indent, blocks as large as
the size limit allows (the most parsing a completion can ask for). Extraction must stay linear:
the last column is the time per KB at 1 MB over the time per KB at 64 KB (about 1 when linear,
about 16 when quadratic). The previous implementation is not kept for a side-by-side run; it
took 9.6 s on 140 KB of unclosed ``<think>`` and 29 s on 64 KB of backtick lines.

Run: ``python benchmarks/extract_speed.py [--sizes 64,256,1024] [--repeat 5]``. Prints measured
figures only; it never fails on a timing.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

from sandbox.extract import extract
from sandbox.records import FormatError

CODE = "def strategy(board):\n    return 'W'\n"


def _repeat(unit: str, size: int, head: str = "", tail: str = "") -> str:
    return head + unit * max(1, (size - len(head) - len(tail)) // len(unit)) + tail


def _big_blocks(size: int) -> str:
    # Distinct blocks just under the code-size limit that parse but have the wrong signature:
    # every one of them is parsed (the most parsing a completion can ask for).
    body = "def strategy(board, depth):\n" + "    x = board[0][1] + 2 * depth\n" * 600
    block = len(body) + 24
    return "".join(f"```python\n# block {i}\n{body}```\n" for i in range(max(1, size // block)))


def _prose_cuts(size: int) -> str:
    # Plain code with three places it may start and prose lines to cut at, none of which helps.
    code = "def strategy(board):\n    x = (\n" + "".join(f"    y{i} = {i}\nprose line {i}\n" for i in range(600))
    return _repeat("and more prose\n", size, head="Intro.\nimport math\n" + code)


SHAPES: dict[str, Callable[[int], str]] = {
    "unclosed <think>": lambda n: _repeat("<think>a\n", n),
    "lone </think>": lambda n: _repeat("</think>", n, tail=f"```python\n{CODE}```"),
    "open fence + backtick lines": lambda n: _repeat("``\n", n, head=f"```python\n{CODE}", tail="x"),
    "open fence + truncated fences": lambda n: _repeat("``\n", n, head=f"```python\n{CODE}"),
    "many fences": lambda n: _repeat("```\n", n),
    "many broken blocks": lambda n: _repeat("```python\ndef strategy(board:\n```\n", n),
    "many good blocks": lambda n: _repeat(f"```python\n{CODE}```\n", n),
    "blocks at the size limit": _big_blocks,
    "many def strategy lines": lambda n: _repeat("def strategy(board):\n", n),
    "unclosed triple quotes": lambda n: _repeat('"""\n', n, head="def strategy(board):\n    return \'\'\'\n"),
    "one huge line": lambda n: _repeat("x", n, head="def strategy(board): return "),
    "one huge indent": lambda n: _repeat(" ", n, head="def strategy(board):\n", tail="return 'W'\n"),
    "prose to cut": _prose_cuts,
}


def measure(text: str, repeat: int) -> tuple[float, str]:
    """Best wall time of ``repeat`` extractions of ``text``, and what came out (a size or a reason)."""
    best, result = float("inf"), ""
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            result = f"code, {len(extract(text))} chars"
        except FormatError as exc:
            result = exc.reason
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> int:
    """Print the table: shape, then seconds per size, then the per-KB ratio of the largest to the smallest."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,256,1024", help="completion sizes in KB (default 64,256,1024)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure, the best is shown (default 5)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    head = f"{'shape':31}" + "".join(f"{f'{kb} KB (s)':>13}" for kb in sizes) + \
        f"{f'per-KB {sizes[-1]}/{sizes[0]}':>17}  outcome at {sizes[-1]} KB"
    print(head)
    print("-" * len(head))
    for name, make in SHAPES.items():
        times, outcome = [], ""
        for kb in sizes:
            seconds, outcome = measure(make(kb * 1024), args.repeat)
            times.append(seconds)
        ratio = (times[-1] / sizes[-1]) / (times[0] / sizes[0]) if times[0] > 0 else float("nan")
        print(f"{name:31}" + "".join(f"{t:13.4f}" for t in times) + f"{ratio:17.2f}  {outcome}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
