"""Reading and writing the user's files with one style of error for every command.

Every command that takes a file or folder from the user goes through these helpers, so a bad
path reads the same whichever command met it: the kind of input and its path in single quotes,
then what is wrong with it, in one line::

    reward spec 'my.toml' does not exist
    program file 'runs' is a folder, not a file
    run dir 'notes.txt' is a file, not a folder
    config file 'cfg.toml' cannot be read (Permission denied)
    program file 'a.out' is not UTF-8 text (byte 24)

Every one is a :class:`FileError` (a ``ValueError``; a missing path is also a
``FileNotFoundError``), which ``codepolicy`` prints as that one line with exit code 2, the code of
every usage error. Standard library only, so every package may use it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["FileError", "MissingFileError", "quote", "read_bytes", "read_text", "require_dir", "check_writable_dir",
           "write_text"]

STDIN = "-"


class FileError(ValueError):
    """A user's file or folder that cannot be used; ``kind`` says why, the message says it in one line.

    Kinds: ``missing``, ``is_dir`` (a folder where a file was expected), ``not_dir`` (a file where
    a folder was expected), ``unreadable``, ``not_utf8``, ``unwritable``.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class MissingFileError(FileError, FileNotFoundError):
    """A path that does not exist (also a ``FileNotFoundError``, what callers of the library expect)."""

    def __init__(self, message: str) -> None:
        FileError.__init__(self, message, "missing")


def quote(path: str | os.PathLike) -> str:
    """``path`` as every message shows it: in single quotes."""
    return f"'{os.fspath(path)}'"


def _name(path: str | os.PathLike, what: str) -> str:
    return f"{what} {quote(path)}"


def read_bytes(path: str | os.PathLike, what: str = "file") -> bytes:
    """The bytes of the user's file ``path`` ('-' reads standard input); FileError naming ``what`` and the path."""
    if os.fspath(path) == STDIN:
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise MissingFileError(f"{_name(path, what)} does not exist") from None
    except IsADirectoryError:
        raise FileError(f"{_name(path, what)} is a folder, not a file", "is_dir") from None
    except NotADirectoryError:  # a path through a file: 'notes.txt/x'
        raise MissingFileError(f"{_name(path, what)} does not exist") from None
    except OSError as exc:
        raise FileError(f"{_name(path, what)} cannot be read ({exc.strerror or exc})", "unreadable") from None


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The UTF-8 text of the user's file ``path`` ('-' reads standard input); FileError naming ``what`` and the path.

    Text that is not UTF-8 (a binary file, a Latin-1 file) is refused, with the offset of the first
    bad byte, rather than read with replacement characters that would then be checked, run or parsed.
    """
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = "standard input" if os.fspath(path) == STDIN else _name(path, what)
        raise FileError(f"{where} is not UTF-8 text (byte {exc.start})", "not_utf8") from None


def require_dir(path: str | os.PathLike, what: str = "folder") -> Path:
    """``path`` as a Path when it is an existing folder; FileError naming ``what`` and the path otherwise."""
    folder = Path(path)
    if not folder.exists():
        raise MissingFileError(f"{_name(path, what)} does not exist")
    if not folder.is_dir():
        raise FileError(f"{_name(path, what)} is a file, not a folder", "not_dir")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise FileError(f"{_name(path, what)} cannot be read (Permission denied)", "unreadable")
    return folder


def check_writable_dir(path: str | os.PathLike, what: str = "output folder") -> None:
    """Refuse ``path`` as a folder to write in before anything is written: a file there, or no write permission.

    ``path`` may not exist yet; then its nearest existing parent must be a writable folder.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise FileError(f"{_name(path, what)} is a file, not a folder", "not_dir")
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():  # 'notes.txt/run': a file where a folder must be made
        raise FileError(f"{_name(path, what)} cannot be made: {quote(probe)} is a file, not a folder", "not_dir")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise FileError(f"{_name(path, what)} cannot be written (Permission denied)", "unwritable")


def write_text(path: str | os.PathLike, text: str, what: str = "output file") -> None:
    """Write ``text`` as UTF-8 to the user's ``path``; FileError naming ``what`` and the path when it cannot."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except IsADirectoryError:
        raise FileError(f"{_name(path, what)} is a folder, not a file", "is_dir") from None
    except (FileNotFoundError, NotADirectoryError):
        raise FileError(f"{_name(path, what)} cannot be written (its folder does not exist)", "unwritable") from None
    except OSError as exc:
        raise FileError(f"{_name(path, what)} cannot be written ({exc.strerror or exc})", "unwritable") from None
