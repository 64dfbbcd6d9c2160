"""One TOML reader, checker and writer for the configuration dataclasses (RewardSpec, TrainConfig).

Standard library only (tomllib, difflib, dataclasses, typing) and no import of any other
codepolicy package, so every layer may use it: ``rewards`` (which must not import ``train``)
and ``train`` alike. Every error is one line that names the file and the key.

Reading::

    data = read_toml(path, what="config file")        # FileNotFoundError / ConfigError "<file>: line 3 is not valid TOML: ..."
    values = flatten_tables(data, origin=path)         # [lora] rank = 16  ->  lora_rank = 16
    checked = check_fields(values, TrainConfig, origin=path)   # types of the dataclass's fields

Checking follows the field annotations: ``bool``, ``int`` (a boolean is not an integer),
``float`` (an integer is accepted and converted), ``str``, ``tuple[X, ...]`` / ``list[X]``
(a TOML array; a single string stands for a one-string list of strings), ``Mapping[str, X]``
(a table), ``X | None``, ``Literal[...]`` (one of the choices) and ``Any``. Unknown keys are
all reported in one line, each with its close matches (difflib). ``from_text=True`` parses
strings the way command-line flags give them ("3e-4", "true", "a,b").

Writing: :func:`dumps_toml` writes a flat or nested mapping (scalars and arrays first, then
one ``[table]`` per sub-mapping); strings are escaped, floats written with ``repr`` (so they
read back exactly, ``inf`` and ``nan`` included), tuples as arrays. ``loads_toml(dumps_toml(d))``
gives ``d`` back (tuples as lists).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping as _MappingABC
from collections.abc import MutableMapping as _MutableMappingABC
from collections.abc import MutableSequence as _MutableSequenceABC
from collections.abc import Sequence as _SequenceABC
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

__all__ = [
    "ConfigError", "loads_toml", "read_toml", "flatten_tables",
    "describe_type", "check_value", "check_keys", "check_fields", "check_ranges", "close_matches",
    "field_types", "field_docs", "dumps_toml", "write_toml",
]

Range = tuple[Any, Any, bool, bool]
"""A number range: (low | None, high | None, low_inclusive, high_inclusive); None = unbounded."""


class ConfigError(ValueError):
    """A configuration value or file that cannot be used; the message is one line naming the key."""


def _where(origin: str | os.PathLike | None) -> str:
    return f"{origin}: " if origin not in (None, "") else ""


# ---------------------------------------------------------------------------- reading

_AT = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$", re.S)
_AT_END = re.compile(r"^(?P<msg>.*) \(at end of document\)$", re.S)


def loads_toml(text: str, origin: str | os.PathLike = "<toml>", *,
               error: type[Exception] = ConfigError) -> dict[str, Any]:
    """Parse TOML ``text``; a syntax error raises ``error`` naming ``origin`` and the line, in one line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raw = str(exc)
        line = getattr(exc, "lineno", None)  # Python >= 3.14 keeps them on the exception
        col = getattr(exc, "colno", None)
        msg = getattr(exc, "msg", None)
        if line is None:
            m = _AT.match(raw)
            if m:
                msg, line, col = m["msg"], int(m["line"]), int(m["col"])
            else:
                m = _AT_END.match(raw)
                msg = m["msg"] if m else raw
                if m:  # the last line of the document
                    line = text.count("\n") + (0 if text.endswith("\n") else 1) or 1
        msg = " ".join(str(msg or raw).split())
        if line is None:
            raise error(f"{_where(origin)}not valid TOML: {msg}") from None
        where = f"line {line}" + (f" (column {col})" if col else " (end of document)")
        raise error(f"{_where(origin)}{where} is not valid TOML: {msg}") from None


def read_toml(path: str | os.PathLike, *, what: str = "TOML file",
              error: type[Exception] = ConfigError) -> dict[str, Any]:
    """Read and parse the TOML file ``path``.

    FileNotFoundError("<what> not found: <path>") when it is missing; ``error`` naming the
    file (and the line, for a syntax error) when it is not UTF-8 text or not valid TOML.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{p}: {what} is not UTF-8 text (byte {exc.start})") from None
    return loads_toml(text, origin=str(p), error=error)


def flatten_tables(data: Mapping[str, Any], *, sep: str = "_", origin: str | os.PathLike | None = None,
                   error: type[Exception] = ConfigError) -> dict[str, Any]:
    """One level of tables folded into flat keys: ``{"lora": {"rank": 4}}`` -> ``{"lora_rank": 4}``.

    A table inside a table raises ``error`` (one level allowed). Keys are kept in order.
    """
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, _MappingABC):
            for sub, subvalue in value.items():
                if isinstance(subvalue, _MappingABC):
                    raise error(f"{_where(origin)}table '{key}.{sub}' is nested too deep (one level allowed)")
                flat[f"{key}{sep}{sub}"] = subvalue
        else:
            flat[key] = value
    return flat


# ---------------------------------------------------------------------------- checking values

class _Mismatch(Exception):
    """A value that does not fit a type (turned into the caller's one-line error)."""


_NONE = type(None)
_BASE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
_PLURALS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if _NONE in args:
            rest = tuple(a for a in args if a is not _NONE)
            return (rest[0] if len(rest) == 1 else typing.Union[rest]), True  # type: ignore[return-value]
    return tp, False


def describe_type(tp: Any) -> str:
    """What a value of type ``tp`` is, in words: "an integer", "a list of strings", "one of a, b"."""
    tp, _ = _strip_optional(tp)
    if tp in _BASE_NAMES:
        return _BASE_NAMES[tp]
    if tp is Any or tp is object:
        return "any value"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in args)
    if origin in (tuple, list, _SequenceABC, _MutableSequenceABC):
        elem = _sequence_element(origin, args)
        return "a list of " + _PLURALS.get(elem, "values") if elem is not None else "a list"
    if origin in (dict, _MappingABC, _MutableMappingABC) or tp in (dict, _MappingABC):
        return "a table"
    if tp in (tuple, list):
        return "a list"
    return f"a {getattr(tp, '__name__', str(tp))}"


def _sequence_element(origin: Any, args: tuple) -> Any:
    """The element type of a homogeneous sequence type (None: any)."""
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return None
    return args[0] if args else None


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _parse_text(text: str, tp: Any) -> Any:
    """A flag's string as a value of ``tp`` (bool, int, float, list of strings), or the string unchanged."""
    t = text.strip()
    if tp is bool:
        if t.lower() in _TRUE:
            return True
        if t.lower() in _FALSE:
            return False
        raise _Mismatch
    if tp is int:
        try:
            return int(t)
        except ValueError:
            raise _Mismatch from None
    if tp is float:
        try:
            return float(t)
        except ValueError:
            raise _Mismatch from None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (tuple, list, _SequenceABC, _MutableSequenceABC) and _sequence_element(origin, args) is str:
        return [part.strip() for part in t.split(",") if part.strip()]
    return text


def _convert(value: Any, tp: Any, from_text: bool, finite: bool) -> Any:
    """``value`` as a ``tp`` (int -> float, list -> tuple, ...), or _Mismatch."""
    tp, optional = _strip_optional(tp)
    if value is None:
        if optional or tp is Any or tp is object:
            return None
        raise _Mismatch
    if optional and from_text and isinstance(value, str) and tp is not str \
            and value.strip().lower() in ("", "none", "null"):
        return None
    if tp is Any or tp is object:
        return value
    if from_text and isinstance(value, str) and tp is not str:
        value = _parse_text(value, tp)
    if tp is bool:
        if not isinstance(value, bool):
            raise _Mismatch
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Mismatch
        value = float(value)
        if finite and not math.isfinite(value):
            raise _Mismatch
        return value
    if tp is str:
        if not isinstance(value, str):
            raise _Mismatch
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
        if from_text and isinstance(value, str):
            for choice in args:
                if not isinstance(choice, str) and str(choice).lower() == value.strip().lower():
                    return choice
        raise _Mismatch
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _convert(value, arg, from_text, finite)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin in (tuple, list, _SequenceABC, _MutableSequenceABC) or tp in (tuple, list):
        elem = _sequence_element(origin, args) if origin is not None else None
        if isinstance(value, str) and elem is str:
            value = [value]  # a single string where a list of strings is expected
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise _Mismatch
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis) and args:
            if len(value) != len(args):
                raise _Mismatch
            return tuple(_convert(v, a, from_text, finite) for v, a in zip(value, args))
        items = [v if elem is None else _convert(v, elem, from_text, finite) for v in value]
        return items if (origin is list or tp is list) else tuple(items)
    if origin in (dict, _MappingABC, _MutableMappingABC) or tp in (dict, _MappingABC):
        if not isinstance(value, _MappingABC):
            raise _Mismatch
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, vt, from_text, finite) for k, v in value.items()}
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise _Mismatch
        return value
    return value  # a type form we do not know: accepted as is


def check_value(value: Any, tp: Any, key: str, *, origin: str | os.PathLike | None = None,
                from_text: bool = False, finite: bool = False, error: type[Exception] = ConfigError) -> Any:
    """``value`` checked against type ``tp`` and converted (int -> float, list -> tuple).

    Raises ``error("<origin>: <key> must be <describe_type(tp)>, got <value!r>")``. ``finite``
    refuses inf and nan for floats; ``from_text`` parses strings as flags give them.
    """
    try:
        return _convert(value, tp, from_text, finite)
    except _Mismatch:
        pass
    raise error(f"{_where(origin)}{key} must be {describe_type(tp)}, got {value!r}")


def close_matches(key: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known names closest to ``key`` (difflib), best first."""
    return difflib.get_close_matches(str(key), [str(k) for k in known], n=n, cutoff=0.6)


def check_keys(keys: Iterable[str], known: Iterable[str], *, origin: str | os.PathLike | None = None,
               noun: str = "key", prefix: str = "", error: type[Exception] = ConfigError) -> None:
    """Raise ``error`` naming every key of ``keys`` not in ``known``, each with its close matches.

    One line: ``<origin>: unknown key 'gmaes' (did you mean 'games'?); known keys: a, b``. The
    known names are listed when there are at most 20 of them or some key has no close match.
    """
    known = list(known)
    known_set = set(known)
    unknown = [k for k in keys if k not in known_set]
    if not unknown:
        return
    parts, unmatched = [], False
    for k in unknown:
        matches = close_matches(k, known)
        unmatched |= not matches
        hint = f" (did you mean {' or '.join(repr(prefix + m) for m in matches)}?)" if matches else ""
        parts.append(f"{prefix + str(k)!r}{hint}")
    nouns = noun + "s"
    head = f"unknown {noun} " if len(unknown) == 1 else f"unknown {nouns} "
    tail = f"; known {nouns}: {', '.join(known) or 'none'}" if (unmatched or len(known) <= 20) else ""
    raise error(f"{_where(origin)}{head}{', '.join(parts)}{tail}")


def field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved type annotation, for the init fields of dataclass ``cls``, in order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its one-line doc (``field(metadata={"doc": ...})``; "" when undocumented)."""
    return {f.name: str(f.metadata.get("doc", "")) for f in dataclasses.fields(cls)}


def check_fields(values: Mapping[str, Any], cls: type, *, origin: str | os.PathLike | None = None,
                 prefix: str = "", label: str = "{key}", noun: str = "key",
                 choices: Mapping[str, Sequence[Any]] | None = None, from_text: bool = False,
                 finite: bool = False, error: type[Exception] = ConfigError) -> dict[str, Any]:
    """``values`` checked against the field types of dataclass ``cls``; returns the converted values.

    Unknown keys first (all of them by name, with close matches; see :func:`check_keys`), then
    each value against its field's annotation, in order. ``choices`` adds a Literal-like choice to
    some fields (for ``str`` fields with a table of allowed names). Error messages show a key as
    ``label.format(key=prefix + name)`` (e.g. ``label="config field '{key}'"``).
    """
    types_ = field_types(cls)
    check_keys(values, types_, origin=origin, noun=noun, error=error)
    out: dict[str, Any] = {}
    for key, value in values.items():
        tp = types_[key]
        if choices is not None and key in choices:
            tp = Literal[tuple(choices[key])]  # type: ignore[valid-type]
        out[key] = check_value(value, tp, label.format(key=prefix + key), origin=origin, from_text=from_text,
                               finite=finite, error=error)
    return out


def check_ranges(values: Mapping[str, Any] | object, ranges: Mapping[str, Range], *,
                 origin: str | os.PathLike | None = None, label: str = "{key}",
                 error: type[Exception] = ConfigError) -> None:
    """Check numbers against ``ranges``: name -> (low, high, low_inclusive, high_inclusive), None = unbounded.

    ``values`` is a mapping or an object (a dataclass instance); names it lacks are skipped.
    Raises ``error("<label> must be >= 1, got 0")``.
    """
    for name, (lo, hi, lo_inc, hi_inc) in ranges.items():
        if isinstance(values, _MappingABC):
            if name not in values:
                continue
            v = values[name]
        elif hasattr(values, name):
            v = getattr(values, name)
        else:
            continue
        if lo is not None and (v < lo or (v == lo and not lo_inc)):
            raise error(f"{_where(origin)}{label.format(key=name)} must be {'>=' if lo_inc else '>'} {lo}, got {v}")
        if hi is not None and (v > hi or (v == hi and not hi_inc)):
            raise error(f"{_where(origin)}{label.format(key=name)} must be {'<=' if hi_inc else '<'} {hi}, got {v}")


# ---------------------------------------------------------------------------- writing

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F or ch in "\x85\u2028\u2029":  # controls; line breaks to some tools
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"TOML keys are strings, got {key!r}")
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_value(value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(int(value))
    if isinstance(value, float):
        return repr(float(value))  # shortest text that reads back to the same float; inf, -inf, nan are TOML
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, f"{path}[{i}]") for i, v in enumerate(value)) + "]"
    if isinstance(value, _MappingABC):  # inside an array: an inline table
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v, f'{path}.{k}')}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {path} = {value!r} to TOML (no TOML form for {type(value).__name__})")


def _dump_table(data: Mapping[str, Any], path: tuple[str, ...], lines: list[str]) -> None:
    scalars = [(k, v) for k, v in data.items() if not isinstance(v, _MappingABC)]
    tables = [(k, v) for k, v in data.items() if isinstance(v, _MappingABC)]
    if path and (scalars or not tables):
        if lines:
            lines.append("")
        lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
    for k, v in scalars:
        lines.append(f"{_toml_key(k)} = {_toml_value(v, '.'.join((*path, str(k))))}")
    for k, v in tables:
        _dump_table(v, (*path, k), lines)


def dumps_toml(data: Mapping[str, Any]) -> str:
    """TOML text of ``data``: its scalars and arrays, then one ``[table]`` per sub-mapping (any depth).

    Values: bool, int, float, str, list/tuple (arrays, mappings in them as inline tables) and
    mappings. None and other types raise TypeError naming the key. Ends with a newline.
    """
    lines: list[str] = []
    _dump_table(data, (), lines)
    return "\n".join(lines) + "\n" if lines else ""


def write_toml(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Write ``dumps_toml(data)`` to ``path`` atomically (a temporary file renamed into place)."""
    p = Path(path)
    text = dumps_toml(data)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(p)
