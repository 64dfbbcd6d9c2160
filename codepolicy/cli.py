"""The ``codepolicy`` command: one subcommand per job, each a thin layer over a package.

Each package contributes its subcommands from its own ``cli`` module through
``add_commands(subparsers)``; a subcommand's handler returns the exit code. Expected
errors (bad file, bad config, bad input) are raised as :class:`UsageError` or ``ValueError``
and printed as one line, without a traceback (``CODEPOLICY_DEBUG=1`` shows it).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

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
        except ModuleNotFoundError as exc:  # a package not written yet, or an optional extra
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
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
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"codepolicy {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"codepolicy {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
