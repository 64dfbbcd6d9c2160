"""The ``codepolicy`` command: one subcommand per job, each a thin layer over a package.

Each package contributes its subcommands from its own ``cli`` module through
``add_commands(subparsers)``; a subcommand's handler returns the exit code. Expected
errors (bad file, bad config, bad input) are raised as ``ValueError`` (or ``FileNotFoundError``,
``KeyError`` for an unknown name) and printed as one line, without a traceback (``CODEPOLICY_DEBUG=1`` shows it).

Text a program wrote (its errors, answers, source) and names taken from the input are printed
through :func:`sandbox.text.safe_text`; and while a command runs, standard output and error
write what their encoding cannot hold as backslash escapes instead of raising, so that no
report stops halfway on a terminal that is not UTF-8.

A reader that stops early (``codepolicy baselines | head -1``) is not an error of ours: the
command stops quietly, with no traceback, and exits with 141, the status of a program that
SIGPIPE ended (128 + 13), as ``cat`` or ``grep`` do in the same pipe; so ``set -o pipefail``
scripts still see that the output was cut short. Every parser and subparser refuses abbreviated
options (``--game`` is not ``--games``).
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
COMMAND_MODULES = ("envs.cli", "sandbox.cli", "rewards.cli", "train.cli", "train.export", "train.replay_cli")


# The exit status after the reader of standard output went away (a shell's 128 + SIGPIPE).
CLOSED_PIPE_EXIT = 141


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every package's subcommands."""
    parser = argparse.ArgumentParser(
        prog="codepolicy",
        description="Train LLMs to write game strategies as code: play, check, score, train.",
        allow_abbrev=False,
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
    for command in sub.choices.values():
        # argparse would read `baselines --game chess` as `--games chess`: a prefix is never an option.
        # Set here, after every package added its commands, so none can forget it.
        command.allow_abbrev = False
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    try:
        with _printing_never_fails():
            try:
                code = _main(argv)
            finally:
                # A block-buffered pipe fails here, inside the handler below, rather than at the
                # interpreter's exit (argparse's --help and usage errors end in SystemExit).
                sys.stdout.flush()
            return code
    except BrokenPipeError:
        return _reader_went_away()


def _reader_went_away() -> int:
    """The reader of our output closed it: print nothing more, and let the interpreter's exit print nothing."""
    # Python's own recipe (docs of `signal`, "Note on SIGPIPE"): what is still buffered for the closed pipe
    # would be flushed at exit and fail again ("Exception ignored ... BrokenPipeError"); send it to devnull.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                os.dup2(devnull, stream.fileno())
            except (AttributeError, ValueError, OSError):  # not a real file (a test's StringIO): nothing to flush
                pass
    finally:
        os.close(devnull)
    return CLOSED_PIPE_EXIT


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


def _unrecognized(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> None:
    """Refuse unknown arguments with the subcommand's usage, naming the options they resemble; exits 2."""
    import difflib

    command = None
    for action in parser._actions:  # the subparsers action: argparse keeps no public handle on it
        if isinstance(action, argparse._SubParsersAction) and getattr(args, "command", None):
            command = action.choices.get(args.command)
    target = command or parser
    known = [o for a in target._actions for o in a.option_strings if o.startswith("--")]
    hints = []
    for word in extra:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.75)
            if close:
                hints.append(f"{word.split('=', 1)[0]}: did you mean {close[0]}?")
    hint = f" ({'; '.join(hints)})" if hints else ""
    target.error(f"unrecognized arguments: {' '.join(extra)}{hint}")


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _unrecognized(parser, args, extra)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
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
