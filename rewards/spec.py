"""RewardSpec: which rules, with which weights and parameters, for which game; loaded from TOML.

A spec file looks like 2048's default, ``envs/game2048/rewards.toml`` (copy it to start your own)::

    game = "2048"
    games = 8                 # seeded games per completion
    game_api = true           # strategies may call the game's helpers (2048: legal_moves, slide)
    [options]                 # game options (2048: size, target)
    [limits]                  # sandbox.Limits fields
    [rules.format]            # one table per rule: weight, then the rule's parameters
    weight = 1.0
    syntax_error = -0.4

``game_api`` (default true): when the game declares an API (:attr:`envs.GameSpec.api`), the
static check accepts calls to its functions and the sandbox gives them to the program; when
false, a program naming one is rejected by the check (rule ``game-api-off``). Its effect goes
through :meth:`RewardSpec.policy`, the sandbox policy every check and run of the spec uses.

Validation names the file and the key: unknown rule, unknown parameter, wrong type.
Reading, type checks and writing go through :mod:`codepolicy.tomlconfig`, the TOML helper
shared with ``train.config``.

A rule parameter whose default is None takes its value from elsewhere when the spec leaves
it out: the performance rule's ``target`` and ``floor`` come from the game's declared progress
(``GameSpec.progress``; 2048: the ``target`` option of ``[options]``), diversity's ``actions`` from
the game's actions. Such a parameter is checked against the rule function's annotation (``target: float | None``)
and is not written out by :meth:`RewardSpec.to_toml` while unset.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from codepolicy import tomlconfig
from envs.registry import DEFAULT_GAME
from rewards.rules import Rule, UnknownRuleError, as_rule, get_rule
from sandbox.records import Limits

__all__ = ["Term", "RewardSpec", "SpecError", "BUILTIN_WEIGHTS", "default_spec", "load_spec"]

_TOP_KEYS = ("game", "games", "game_api", "imports", "options", "limits", "rules")


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
    game: str = DEFAULT_GAME
    games: int = 8
    options: Mapping[str, Any] = field(default_factory=dict)
    limits: Limits | None = None
    origin: str = "<spec>"
    game_api: bool = True
    """Whether strategies may call the game's API functions (see :meth:`policy`)."""

    def __post_init__(self) -> None:
        names = [t.name for t in self.terms]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise SpecError(f"{self.origin}: rule {dup!r} appears twice")
        if not isinstance(self.games, int) or isinstance(self.games, bool) or self.games < 1:
            raise SpecError(f"{self.origin}: games must be a positive integer, got {self.games!r}")
        if not isinstance(self.game_api, bool):
            raise SpecError(f"{self.origin}: game_api must be true or false, got {self.game_api!r}")

    def policy(self, base: Any = None) -> Any:
        """The sandbox policy for this spec: ``base`` (default: the mission's) with the game's API on or off.

        Pass it to every check and run of programs scored by this spec (``rewards.evaluate_group``,
        ``sandbox.run_many``), so that the check and the runtime agree with ``game_api``.
        """
        from sandbox.policy import game_policy

        return game_policy(self.game, self.game_api, base)

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
        tomlconfig.check_keys(data, _TOP_KEYS, origin=origin, error=SpecError)
        imports = data.get("imports", [])
        if not isinstance(imports, list) or not all(isinstance(m, str) for m in imports):
            raise SpecError(f"{origin}: imports must be a list of module names")
        for module in imports:  # modules that register custom rules with @rewards.rule
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise SpecError(f"{origin}: cannot import {module!r} listed in imports: {exc}") from None
        game = tomlconfig.check_value(data.get("game", DEFAULT_GAME), str, "game", origin=origin, error=SpecError)
        games = data.get("games", 8)
        if not isinstance(games, int) or isinstance(games, bool) or games < 1:
            raise SpecError(f"{origin}: games must be a positive integer, got {games!r}")
        options = data.get("options", {})
        if not isinstance(options, Mapping):
            raise SpecError(f"{origin}: [options] must be a table")
        game_api = data.get("game_api", True)
        if not isinstance(game_api, bool):
            raise SpecError(f"{origin}: game_api must be true or false, got {game_api!r}")
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
                   limits=limits, origin=origin, game_api=game_api)

    @classmethod
    def from_toml(cls, path: str | Path) -> "RewardSpec":
        """Load and validate a spec file; FileNotFoundError / SpecError name the file."""
        data = tomlconfig.read_toml(path, what="reward spec", error=SpecError)
        return cls.from_dict(data, str(Path(path)))

    @classmethod
    def from_text(cls, text: str, origin: str = "<spec>") -> "RewardSpec":
        """Parse and validate TOML text."""
        return cls.from_dict(tomlconfig.loads_toml(text, origin, error=SpecError), origin)

    def to_dict(self) -> dict[str, Any]:
        """The TOML structure of this spec: every parameter written out, defaults included, unset (None) ones left out."""
        out: dict[str, Any] = {"game": self.game, "games": self.games, "game_api": self.game_api,
                               "options": dict(self.options)}
        if self.limits is not None:
            out["limits"] = dataclasses.asdict(self.limits)
        out["rules"] = {t.name: {"weight": t.weight, **{k: _plain(v) for k, v in t.all_params().items()
                                                         if v is not None}}
                        for t in self.terms}
        return out

    def to_toml(self) -> str:
        """TOML text that :meth:`from_text` reads back to an equal spec."""
        return tomlconfig.dumps_toml(self.to_dict())


# Parameters renamed when the performance rule learned to grade any game's progress metric.
_RENAMED = {("performance", "tile_weight"): "progress_weight", ("performance", "floor_tile"): "floor"}


def _make_term(r: Rule, weight: Any, params: Mapping[str, Any], origin: str) -> Term:
    """Validate a weight and parameters against rule ``r``'s defaults."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise SpecError(f"{origin}: rules.{r.name}.weight must be a finite number, got {weight!r}")
    checked: dict[str, Any] = {}
    for key, value in params.items():
        if key not in r.params:
            if (r.name, key) in _RENAMED:
                raise SpecError(f"{origin}: rules.{r.name}.{key} is now called {_RENAMED[r.name, key]!r} "
                                "(it grades the game's own progress metric)")
            known = ", ".join(r.params) or "none"
            close = tomlconfig.close_matches(key, r.params)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise SpecError(f"{origin}: rule {r.name!r} has no parameter {key!r}; its parameters: {known}{hint}")
        checked[key] = _check_param(value, r.params[key], _param_type(r, key), f"rules.{r.name}.{key}", origin)
    return Term(rule=r, weight=float(weight), params=checked)


def _param_type(r: Rule, key: str) -> Any:
    """The type a rule parameter's value must have: its default's type, else (default None) its annotation."""
    default = r.params[key]
    if default is not None:
        return _type_of(default)
    try:
        hint = typing.get_type_hints(r.fn).get(key, Any)
    except Exception:  # an annotation that does not resolve: any value, as without an annotation
        hint = Any
    return Any if hint is Any else typing.Optional[hint]


def _type_of(default: Any) -> Any:
    """The checked type of a parameter whose default is ``default`` (a table: see _check_param)."""
    if isinstance(default, (bool, int, float, str)):
        return type(default)
    if isinstance(default, (tuple, list)):
        return tuple
    return Any


def _check_param(value: Any, default: Any, tp: Any, key: str, origin: str) -> Any:
    """``value`` converted to type ``tp``, or SpecError naming the key; a table parameter extends its default table."""
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping):
            raise SpecError(f"{origin}: {key} must be a table, got {value!r}")
        sample = next(iter(default.values()), 0.0)
        # A table parameter extends its defaults (e.g. one more violation category).
        merged = dict(default)
        for k, v in value.items():
            merged[str(k)] = _check_param(v, sample, _type_of(sample), f"{key}.{k}", origin)
        return merged
    return tomlconfig.check_value(value, tp, key, origin=origin, finite=True, error=SpecError)


def _limits(table: Any, origin: str) -> Limits | None:
    """sandbox.Limits from the [limits] table, each field type-checked."""
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise SpecError(f"{origin}: [limits] must be a table")
    values = tomlconfig.check_fields(table, Limits, origin=origin, prefix="limits.", noun="limit",
                                     finite=True, error=SpecError)
    for key, value in values.items():
        if value <= 0:
            raise SpecError(f"{origin}: limits.{key} must be positive, got {table[key]!r}")
    return Limits(**values)


def _plain(value: Any) -> Any:
    """Mappings and tuples as plain dicts and lists, for TOML output."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def load_spec(path: str | Path | None = None, game: str = DEFAULT_GAME) -> RewardSpec:
    """The spec in ``path``, or the game's default spec when ``path`` is None."""
    return default_spec(game) if path is None else RewardSpec.from_toml(path)


# The weights of the built-in rules in a game that ships no spec file of its own (the same as 2048's):
# format and compliance decide whether a program plays at all, performance how well.
BUILTIN_WEIGHTS: Mapping[str, float] = {"format": 1.0, "compliance": 1.0, "performance": 2.0, "diversity": 0.25,
                                        "length": 0.1}


def default_spec(game: str = DEFAULT_GAME) -> RewardSpec:
    """The default spec of ``game``: the TOML file its folder declares (``GameSpec.reward_spec``), else the
    built-in rules with :data:`BUILTIN_WEIGHTS` and their default parameters (which read the game's own
    declarations: its progress metric, its number of actions). ValueError naming the game when unknown."""
    import envs

    try:
        spec = envs.get(game)
    except envs.UnknownGameError as exc:
        raise ValueError(f"no default reward spec: {exc}") from None
    if spec.reward_spec is None:
        return RewardSpec(terms=tuple(Term(get_rule(name), weight) for name, weight in BUILTIN_WEIGHTS.items()),
                          game=game, origin=f"built-in default spec of game {game!r}")
    path = Path(spec.reward_spec)
    data = tomlconfig.read_toml(path, what=f"default reward spec of game {game!r}", error=SpecError)
    loaded = RewardSpec.from_dict(data, _shown_path(path))
    if loaded.game != game:
        raise SpecError(f"{_shown_path(path)}: the default spec of game {game!r} says game = {loaded.game!r}")
    return loaded


def _shown_path(path: Path) -> str:
    """``path`` relative to the repository root when it is inside it (error messages stay short)."""
    root = Path(__file__).resolve().parents[1]
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)
