"""The game registry: a game is a small spec object registered by name.

The sandbox, the rewards and the trainer read only a :class:`GameSpec`, so a new game
needs no change outside its own folder: write the spec, call :func:`register`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["GameSpec", "register", "get", "names", "UnknownGameError"]


class UnknownGameError(KeyError):
    """Raised by :func:`get` for a name nobody registered."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want a plain sentence
        return str(self.args[0])


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
