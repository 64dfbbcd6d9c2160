"""RewardSpec: which rules, with which weights and parameters, for which game; loaded from TOML.

A spec file looks like ``rewards/default_2048.toml`` (copy it to start your own)::

    game = "2048"
    games = 8                 # seeded games per completion
    [options]                 # game options (2048: size, target)
    [limits]                  # sandbox.Limits fields
    [rules.format]            # one table per rule: weight, then the rule's parameters
    weight = 1.0
    syntax_error = -0.4

Validation names the file and the key: unknown rule, unknown parameter, wrong type.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

from rewards.rules import Rule, UnknownRuleError, as_rule, get_rule
from sandbox.records import Limits

__all__ = ["Term", "RewardSpec", "SpecError", "default_spec", "load_spec"]

_TOP_KEYS = ("game", "games", "imports", "options", "limits", "rules")


class SpecError(ValueError):
    """A reward spec that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Term:
    """One rule in a spec: the rule, its weight, and its parameters over the rule's defaults."""

    rule: Rule
    weight: float
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The rule's name (the key in Breakdown.values)."""
        return self.rule.name

    def all_params(self) -> dict[str, Any]:
        """The rule's defaults with this term's parameters applied."""
        return {**self.rule.params, **self.params}


@dataclass(frozen=True)
class RewardSpec:
    """Rules, weights and parameters for one game, plus how many games and which limits."""

    terms: tuple[Term, ...]
    game: str = "2048"
    games: int = 8
    options: Mapping[str, Any] = field(default_factory=dict)
    limits: Limits | None = None
    origin: str = "<spec>"

    def __post_init__(self) -> None:
        names = [t.name for t in self.terms]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise SpecError(f"{self.origin}: rule {dup!r} appears twice")
        if not isinstance(self.games, int) or isinstance(self.games, bool) or self.games < 1:
            raise SpecError(f"{self.origin}: games must be a positive integer, got {self.games!r}")

    # ------------------------------------------------------------------ views
    @property
    def names(self) -> tuple[str, ...]:
        """Rule names in order."""
        return tuple(t.name for t in self.terms)

    @property
    def weights(self) -> dict[str, float]:
        """Rule name -> weight."""
        return {t.name: t.weight for t in self.terms}

    def term(self, name: str) -> Term:
        """The term of rule ``name``; KeyError naming the spec's rules otherwise."""
        for t in self.terms:
            if t.name == name:
                return t
        raise UnknownRuleError(f"rule {name!r} is not in {self.origin}; it has: {', '.join(self.names)}")

    def total_bounds(self) -> tuple[float, float]:
        """(lowest, highest) possible total, from the rules' declared bounds (inf when undeclared)."""
        lo = hi = 0.0
        for t in self.terms:
            b = t.rule.bounds or (-math.inf, math.inf)
            a, c = t.weight * b[0], t.weight * b[1]
            lo += min(a, c)
            hi += max(a, c)
        return lo, hi

    def seeds(self, first: int = 0) -> tuple[int, ...]:
        """The default seeds: ``games`` consecutive seeds from ``first``."""
        return tuple(range(first, first + self.games))

    # ------------------------------------------------------------------ edits
    def with_rule(self, rule: Rule | str | Callable[..., float], weight: float = 1.0, *,
                  name: str | None = None, **params: Any) -> "RewardSpec":
        """A copy with ``rule`` added (or replaced, if a rule of that name is there)."""
        r = as_rule(rule, name)
        if name is not None and r.name != name:
            r = dataclasses.replace(r, name=name)
        term = _make_term(r, weight, params, self.origin)
        terms = [t for t in self.terms if t.name != r.name]
        index = next((i for i, t in enumerate(self.terms) if t.name == r.name), len(terms))
        terms.insert(index, term)
        return dataclasses.replace(self, terms=tuple(terms))

    def without(self, name: str) -> "RewardSpec":
        """A copy without rule ``name``."""
        self.term(name)
        return dataclasses.replace(self, terms=tuple(t for t in self.terms if t.name != name))

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "<spec>") -> "RewardSpec":
        """Build and validate a spec from the parsed TOML structure."""
        if not isinstance(data, Mapping):
            raise SpecError(f"{origin}: a spec is a table of keys, got {type(data).__name__}")
        unknown = [k for k in data if k not in _TOP_KEYS]
        if unknown:
            raise SpecError(f"{origin}: unknown key {unknown[0]!r}; expected some of {', '.join(_TOP_KEYS)}")
        imports = data.get("imports", [])
        if not isinstance(imports, list) or not all(isinstance(m, str) for m in imports):
            raise SpecError(f"{origin}: imports must be a list of module names")
        for module in imports:  # modules that register custom rules with @rewards.rule
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise SpecError(f"{origin}: cannot import {module!r} listed in imports: {exc}") from None
        game = data.get("game", "2048")
        if not isinstance(game, str):
            raise SpecError(f"{origin}: game must be a string, got {game!r}")
        games = data.get("games", 8)
        if not isinstance(games, int) or isinstance(games, bool) or games < 1:
            raise SpecError(f"{origin}: games must be a positive integer, got {games!r}")
        options = data.get("options", {})
        if not isinstance(options, Mapping):
            raise SpecError(f"{origin}: [options] must be a table")
        limits = _limits(data.get("limits"), origin)
        rules = data.get("rules")
        if not isinstance(rules, Mapping) or not rules:
            raise SpecError(f"{origin}: no [rules.NAME] tables; a spec needs at least one rule")
        terms = []
        for name, table in rules.items():
            if not isinstance(table, Mapping):
                raise SpecError(f"{origin}: rules.{name} must be a table with a weight")
            try:
                r = get_rule(name)
            except UnknownRuleError as exc:
                raise SpecError(f"{origin}: {exc}") from None
            table = dict(table)
            weight = table.pop("weight", None)
            if weight is None:
                raise SpecError(f"{origin}: rules.{name} has no weight")
            terms.append(_make_term(r, weight, table, origin))
        return cls(terms=tuple(terms), game=game, games=games, options=dict(options),
                   limits=limits, origin=origin)

    @classmethod
    def from_toml(cls, path: str | Path) -> "RewardSpec":
        """Load and validate a spec file; FileNotFoundError / SpecError name the file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"reward spec {str(path)!r} not found")
        return cls.from_text(path.read_text(encoding="utf-8"), origin=str(path))

    @classmethod
    def from_text(cls, text: str, origin: str = "<spec>") -> "RewardSpec":
        """Parse and validate TOML text."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{origin}: not valid TOML: {exc}") from None
        return cls.from_dict(data, origin)

    def to_dict(self) -> dict[str, Any]:
        """The TOML structure of this spec (every parameter written out, defaults included)."""
        out: dict[str, Any] = {"game": self.game, "games": self.games, "options": dict(self.options)}
        if self.limits is not None:
            out["limits"] = dataclasses.asdict(self.limits)
        out["rules"] = {t.name: {"weight": t.weight, **{k: _plain(v) for k, v in t.all_params().items()}}
                        for t in self.terms}
        return out

    def to_toml(self) -> str:
        """TOML text that :meth:`from_text` reads back to an equal spec."""
        return _dump_toml(self.to_dict())


def _make_term(r: Rule, weight: Any, params: Mapping[str, Any], origin: str) -> Term:
    """Validate a weight and parameters against rule ``r``'s defaults."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise SpecError(f"{origin}: rules.{r.name}.weight must be a finite number, got {weight!r}")
    checked: dict[str, Any] = {}
    for key, value in params.items():
        if key not in r.params:
            known = ", ".join(r.params) or "none"
            raise SpecError(f"{origin}: rule {r.name!r} has no parameter {key!r}; its parameters: {known}")
        checked[key] = _check_type(value, r.params[key], f"rules.{r.name}.{key}", origin)
    return Term(rule=r, weight=float(weight), params=checked)


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), "a table" if isinstance(value, Mapping) else type(value).__name__)


def _check_type(value: Any, default: Any, key: str, origin: str) -> Any:
    """``value`` converted to the type of ``default``, or SpecError naming the key."""
    def bad() -> SpecError:
        return SpecError(f"{origin}: {key} must be {_type_name(default)}, got {value!r}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad()
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad()
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad()
        return value
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping):
            raise bad()
        sample = next(iter(default.values()), 0.0)
        # A table parameter extends its defaults (e.g. one more violation category).
        merged = dict(default)
        for k, v in value.items():
            merged[str(k)] = _check_type(v, sample, f"{key}.{k}", origin)
        return merged
    if isinstance(default, (tuple, list)):
        if not isinstance(value, list):
            raise bad()
        return tuple(value)
    return value


def _limits(table: Any, origin: str) -> Limits | None:
    """sandbox.Limits from the [limits] table, each field type-checked."""
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise SpecError(f"{origin}: [limits] must be a table")
    defaults = Limits()
    fields = {f.name for f in dataclasses.fields(Limits)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise SpecError(f"{origin}: unknown limit {key!r}; known limits: {', '.join(sorted(fields))}")
        values[key] = _check_type(value, getattr(defaults, key), f"limits.{key}", origin)
        if values[key] <= 0 and key != "output_bytes":
            raise SpecError(f"{origin}: limits.{key} must be positive, got {value!r}")
    return Limits(**values)


def _plain(value: Any) -> Any:
    """Mappings and tuples as plain dicts and lists, for TOML output."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def _dump_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """A small TOML writer: scalars and arrays first, then sub-tables (enough for specs)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, Mapping)]
    for k, v in data.items():
        if isinstance(v, Mapping):
            name = f"{prefix}.{k}" if prefix else k
            body = _dump_toml(v, name)
            lines.append("")
            lines.append(f"[{name}]")
            if body:
                lines.append(body)
    return "\n".join(lines).strip("\n")


def load_spec(path: str | Path | None = None, game: str = "2048") -> RewardSpec:
    """The spec in ``path``, or the game's default spec when ``path`` is None."""
    return default_spec(game) if path is None else RewardSpec.from_toml(path)


def default_spec(game: str = "2048") -> RewardSpec:
    """The shipped default spec for ``game`` (``rewards/default_<game>.toml``)."""
    name = f"default_{game}.toml"
    try:
        text = resources.files("rewards").joinpath(name).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        shipped = sorted(p.name[len("default_"):-len(".toml")] for p in resources.files("rewards").iterdir()
                         if p.name.startswith("default_") and p.name.endswith(".toml"))
        raise ValueError(f"no default reward spec for game {game!r}; shipped: {', '.join(shipped)}") from None
    return RewardSpec.from_text(text, origin=f"rewards/{name}")
