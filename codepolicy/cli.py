"""The ``codepolicy`` command: one subcommand per job, each a thin layer over a package.

Each package contributes its subcommands from its own ``cli`` module through
``add_commands(subparsers)``; a subcommand's handler returns the exit code. Expected
errors (bad file, bad config, bad input) are raised as :class:`UsageError` or ``ValueError``
and printed as one line, without a traceback (``CODEPOLICY_DEBUG=1`` shows it).

Text a program wrote (its errors, answers, source) and names taken from the input are printed
through :func:`sandbox.text.safe_text`; and while a command runs, standard output and error
write what their encoding cannot hold as backslash escapes instead of raising, so that no
report stops halfway on a terminal that is not UTF-8.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from typing import Iterator

from codepolicy import __version__

# Packages whose cli module adds subcommands, in the order of the data flow.
COMMAND_MODULES = ("envs.cli", "sandbox.cli", "rewards.cli", "train.cli")


class UsageError(Exception):
    """An error the user caused; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every package's subcommands."""
    parser = argparse.ArgumentParser(
        prog="codepolicy",
        description="Train LLMs to write game strategies as code: play, check, score, train.",
    )
    parser.add_argument("--version", action="version", version=f"codepolicy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # an optional extra missing: its subcommands are left out
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    with _printing_never_fails():
        return _main(argv)


@contextlib.contextmanager
def _printing_never_fails() -> Iterator[None]:
    """While inside, stdout and stderr write what their encoding cannot hold as backslash escapes."""
    changed = []
    for stream in (sys.stdout, sys.stderr):
        errors = getattr(stream, "errors", None)
        if not hasattr(stream, "reconfigure") or errors in (None, "backslashreplace"):
            continue  # not a TextIOWrapper (a test's StringIO holds any str), or already set
        try:
            stream.reconfigure(errors="backslashreplace")
        except (ValueError, OSError):  # closed or detached: nothing can be printed to it anyway
            continue
        changed.append((stream, errors))
    try:
        yield
    finally:
        for stream, errors in changed:  # the caller's streams as they were (main() runs in tests too)
            try:
                stream.reconfigure(errors=errors)
            except (ValueError, OSError):
                pass


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (UsageError, ValueError, FileNotFoundError, KeyError) as exc:
        if os.environ.get("CODEPOLICY_DEBUG"):  # the traceback, for bug reports
            raise
        from sandbox.text import safe_text

        # The message can quote the input: a file name, a program's syntax error, its text.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"codepolicy {args.command}: error: {safe_text(message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"codepolicy {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
