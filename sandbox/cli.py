"""The sandbox's subcommands: ``check`` (static policy check) and ``play`` (games through the sandbox).

Each ``_add_<command>(sub)`` adds one subcommand; :func:`add_commands` calls them all.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the sandbox's subcommands to the ``codepolicy`` parser."""
    _add_check(sub)
    add_play = globals().get("_add_play")  # `play` is added by its own function, defined below
    if add_play is not None:
        add_play(sub)


# -- check ------------------------------------------------------------------------------------

def _add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", help="check a strategy program against the static policy",
        description="Check a strategy program (or, with --completion, a raw model completion) against "
                    "the static policy. Exit code 0: compliant; 1: rejected; 2: usage error.")
    p.add_argument("file", metavar="FILE", help="the program to check; '-' reads standard input")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.add_argument("--completion", action="store_true",
                   help="FILE is a model completion: extract the strategy code block first")
    p.set_defaults(handler=_run_check)


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, not a program file") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _run_check(args: argparse.Namespace) -> int:
    from sandbox.check import check
    from sandbox.extract import extract
    from sandbox.policy import DEFAULT_POLICY
    from sandbox.records import FormatError

    name = "<stdin>" if args.file == "-" else args.file
    data = _read_input(args.file)
    source: str | bytes = data
    if args.completion:
        try:
            source = extract(data.decode("utf-8", errors="replace"))
        except FormatError as exc:
            if args.json:
                print(json.dumps({"file": name, "ok": False, "format_error": {
                    "reason": exc.reason, "message": exc.message, "line": exc.line}, "violations": []}))
            else:
                where = f":{exc.line}" if exc.line else ""
                print(f"{name}{where}: format error [{exc.reason}] {exc.message}")
                print(f"{name}: rejected (no usable strategy function)")
            return 1
    verdict = check(source, DEFAULT_POLICY)
    if args.json:
        out = {"file": name, "ok": verdict.ok, "format_error": None,
               "violations": [dict(asdict(v), explanation=DEFAULT_POLICY.explain(v.rule))
                              for v in verdict.violations]}
        if args.completion:
            out["source"] = source
        print(json.dumps(out))
    else:
        for v in verdict.violations:
            print(f"{name}:{v.line}:{v.col}: {v.rule} ({v.category}) {v.message}")
            print(f"    rule: {DEFAULT_POLICY.explain(v.rule)}")
        count = len(verdict.violations)
        print(f"{name}: " + ("compliant" if verdict.ok else
                             f"rejected ({count} violation{'s' if count != 1 else ''})"))
    return 0 if verdict.ok else 1


# -- play -------------------------------------------------------------------------------------
# `_add_play(sub)` (codepolicy play FILE) goes here; add_commands picks it up when it exists.
