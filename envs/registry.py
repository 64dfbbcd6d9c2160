"""The game registry: a game is a small spec object registered by name.

The sandbox, the rewards and the trainer read only a :class:`GameSpec`, so a new game
needs no change outside its own folder: write the spec, call :func:`register`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["ApiFunction", "GameSpec", "register", "get", "names", "UnknownGameError"]


class UnknownGameError(KeyError):
    """Raised by :func:`get` for a name nobody registered."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want a plain sentence
        return str(self.args[0])


@dataclass(frozen=True)
class ApiFunction:
    """A pure helper a game publishes to strategies (its API), e.g. 2048's ``legal_moves(board)``.

    ``make(options)`` builds the function for the game's options (over the spec's defaults),
    e.g. for a board size. The function must be pure and deterministic, validate every
    argument before using it (a ValueError or TypeError with a one-line message for anything
    that is not a well-formed argument of this game), cost bounded time, and return fresh
    plain Python values. The sandbox gives it to a program as a builtin when the reward
    spec's ``game_api`` is on; ``signature`` and ``doc`` (one line) are what the prompt shows.
    """

    name: str
    signature: str
    doc: str
    make: Callable[[Mapping[str, Any]], Callable[..., Any]]


@dataclass(frozen=True)
class GameSpec:
    """Everything the rest of codepolicy needs to know about one game.

    A *state* is whatever mutable object ``new_state`` returns; only the spec's own
    functions look inside it. Action ids are indices into ``actions``.
    """

    name: str
    actions: tuple[str, ...]
    """Action names strategies return, e.g. ("W", "A", "S", "D"); index = action id."""
    new_state: Callable[[int, Mapping[str, Any]], Any]
    """(seed, options) -> a fresh state. Same seed and options, same game, in any process."""
    step: Callable[[Any, int], tuple[float, bool]]
    """Apply action id in place -> (reward gained, whether the state changed)."""
    legal_mask: Callable[[Any], np.ndarray]
    """state -> bool array of len(actions): which actions would change the state."""
    is_over: Callable[[Any], bool]
    """state -> True when no action can change the state any more."""
    won: Callable[[Any], bool]
    """state -> True when the goal (e.g. the target tile) has been reached."""
    view: Callable[[Any], Any]
    """state -> the plain-Python copy handed to a strategy (fresh on every call)."""
    metrics: Callable[[Any], dict[str, float]]
    """state -> the figures the game reports, keyed by ``metric_names``."""
    metric_names: tuple[str, ...]
    prompt: str
    """Per-game prompt text: what the view looks like, the actions, the goal."""
    example: str
    """A tiny example strategy (source of ``def strategy(board): ...``)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Default options for ``new_state`` (for 2048: size, target)."""
    gym_id: str | None = None
    """The Gymnasium id this game is also registered under, if any."""
    describe: Callable[[Any], str] | None = None
    """Optional state -> short text rendering (for ``--show``)."""
    api: tuple[ApiFunction, ...] = ()
    """Helper functions strategies may call (see :class:`ApiFunction`), in the order the prompt lists them."""
    seed_programs: Callable[[bool], Sequence[str]] | None = None
    """Optional: sources of honest strategies (each a lone ``def strategy(board):`` that plays every game to its
    end) a warm start may fill its first round with; the argument says whether the game's API is switched on."""

    def api_functions(self, **options: Any) -> dict[str, Callable[..., Any]]:
        """The game's API built for ``options`` over the spec's defaults: name -> function."""
        merged = {**self.options, **options}
        return {f.name: f.make(merged) for f in self.api}

    def make(self, seed: int, **options: Any) -> Any:
        """Create a state from a seed, with ``options`` over the spec's defaults."""
        unknown = set(options) - set(self.options)
        if unknown:
            raise ValueError(
                f"game {self.name!r} has no option {sorted(unknown)[0]!r}; "
                f"known options: {sorted(self.options) or 'none'}"
            )
        return self.new_state(int(seed), {**self.options, **options})

    def action_id(self, name: str) -> int:
        """The id of an action name; ValueError naming it when unknown."""
        try:
            return self.actions.index(name)
        except ValueError:
            raise ValueError(
                f"unknown move {name!r} for game {self.name!r}; expected one of {list(self.actions)}"
            ) from None


_REGISTRY: dict[str, GameSpec] = {}


def register(name: str, spec: GameSpec) -> GameSpec:
    """Register ``spec`` under ``name`` (re-registering the same name replaces it)."""
    if not isinstance(spec, GameSpec):
        raise TypeError(f"register({name!r}, ...) needs a GameSpec, got {type(spec).__name__}")
    if spec.name != name:
        raise ValueError(f"spec is named {spec.name!r} but was registered as {name!r}")
    _REGISTRY[name] = spec
    return spec


def get(name: str) -> GameSpec:
    """The spec registered as ``name``; UnknownGameError naming it and the known games otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownGameError(
            f"unknown game {name!r}; registered games: {', '.join(sorted(_REGISTRY)) or 'none'}"
        ) from None


def names() -> list[str]:
    """Names of all registered games, sorted."""
    return sorted(_REGISTRY)
