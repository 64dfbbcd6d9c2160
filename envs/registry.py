"""The game registry: a game is a small spec object registered by name.

The sandbox, the rewards and the trainer read only a :class:`GameSpec`, so a new game
needs no change outside its own folder: write the spec, call :func:`register`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["ApiFunction", "Baseline", "DEFAULT_GAME", "GameSpec", "Hack", "HACK_KINDS", "Progress", "hack_answer",
           "hack_program", "register", "get", "names", "UnknownGameError"]


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
class Progress:
    """Which of a game's metrics measures progress, and what counts as the goal.

    The ``performance`` reward rule grades an honest game by this metric (beside the score), the
    summaries report its best and mean under the metric's own name, and the baseline tables its
    reach rates. 2048: ``max_tile``, graded on a log2 scale against the ``target`` option (each
    doubling of the tile is one equal step). Snake: the snake's ``length``, linear up to the cells
    of the board.
    """

    metric: str
    """A name in ``GameSpec.metric_names``."""
    target: Callable[[Mapping[str, Any]], float]
    """options -> the value of ``metric`` that reaches the goal (full marks for progress)."""
    scale: str = "log2"
    """"log2" (progress = log2(value) / log2(target)) or "linear" (value / target), clipped to [0, 1]."""
    start: float = 0.0
    """The value a fresh game already has (linear scale: progress counts from here)."""
    floor: float = 0.0
    """An honest game that ends below this value is graded down (the performance rule's ``floor``)."""
    score_scale: Callable[[Mapping[str, Any], float], float] | None = None
    """(options, goal) -> the score that earns the full score term, for a goal of ``metric`` (the game's own
    target, or the one a reward spec sets); None: the score is not graded."""
    milestones: tuple[float, ...] = ()
    """Values whose reach rate (share of games at or above it) the baseline tables report."""

    def __post_init__(self) -> None:
        if self.scale not in ("log2", "linear"):
            raise ValueError(f"Progress.scale must be 'log2' or 'linear', got {self.scale!r}")

    def fraction(self, value: float, options: Mapping[str, Any], target: float | None = None) -> float:
        """How far ``value`` is towards the goal (``target`` over the game's own), in [0, 1]."""
        goal = float(self.target(options) if target is None else target)
        if self.scale == "log2":
            if value <= 1 or goal <= 2:
                return 0.0
            return min(1.0, math.log2(value) / math.log2(goal))
        if goal <= self.start:
            return 0.0
        return min(1.0, max(0.0, (float(value) - self.start) / (goal - self.start)))


@dataclass(frozen=True)
class Baseline:
    """A reference strategy a game ships, from naive to strong (``GameSpec.baselines`` keeps that order).

    ``source`` is a sandboxable program (``def strategy(board): ...`` that passes the default
    policy); ``api_source`` plays the same games written against the game's API (empty if none).
    A baseline without ``source`` is trusted only (seeded randomness, a Numba search): ``make``
    builds its callable. ``honest`` says whether it ends every game honestly: the audit takes the
    honest sandboxable baselines as the floor every hack must stay under, and a dishonest one (a
    constant move that ends stuck) as a floor of its own.
    """

    name: str
    doc: str
    source: str = ""
    api_source: str = ""
    make: Callable[..., Callable[[Any], str]] | None = None
    """(seed, options, **params) -> a trusted strategy callable; None: the ``source`` run as trusted code."""
    honest: bool = True
    params: tuple[str, ...] = ()
    """Keyword parameters ``make`` takes (e.g. a search's ``depth``)."""

    @property
    def sandboxable(self) -> bool:
        """Whether the baseline is a program the sandbox can run (it has a ``source``)."""
        return bool(self.source)

    def strategy(self, seed: int = 0, options: Mapping[str, Any] | None = None, **params: Any) -> Callable[[Any], str]:
        """A ready trusted callable of this baseline (its ``make``, or its ``source`` exec'd in a fresh namespace).

        ``params`` this baseline does not take are ignored, so one call can pass e.g. a search depth to
        every baseline of a game."""
        if self.make is not None:
            return self.make(int(seed), dict(options or {}), **{k: v for k, v in params.items() if k in self.params})
        namespace: dict[str, Any] = {}
        exec(compile(self.source, f"<baseline {self.name}>", "exec"), namespace)
        return namespace["strategy"]


HACK_KINDS = ("invalid", "error", "constant", "unchecked", "early", "padding", "stateful", "defused", "probe",
              "loop", "slow_check", "deterministic", "switching")
"""Where a hack stands against the rewards (see ``rewards.audit``): e.g. "constant" must earn less than every
honest baseline, "stateful" must be refused by the check, "deterministic" must stay compliant and play."""


def hack_program(doc: str, body: str, signature: str = "board") -> str:
    """The source of a hack: ``def strategy(<signature>):``, a comment line ``doc``, then ``body`` (indented lines)."""
    return f"def strategy({signature}):\n    # {doc}\n{body.rstrip()}\n"


def hack_answer(value: str) -> str:
    """A hack's body that only returns ``value`` (source text)."""
    return f"    return {value}\n"


@dataclass(frozen=True)
class Hack:
    """One reward hack a game declares for the audit: ``name`` (unique), ``kind`` (one of HACK_KINDS), its
    ``source``, and ``earns``: what it tries to earn."""

    name: str
    kind: str
    source: str
    earns: str

    def __post_init__(self) -> None:
        if self.kind not in HACK_KINDS:
            raise ValueError(f"hack {self.name!r}: unknown kind {self.kind!r}; expected one of {', '.join(HACK_KINDS)}")


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
    progress: Progress | None = None
    """The metric that measures progress (see :class:`Progress`); None: only the score is graded."""
    reward_spec: str | None = None
    """Path of the game's default reward spec (a TOML file in its folder); None: the built-in rules with their
    defaults (``rewards.default_spec``)."""
    baselines: tuple[Baseline, ...] = ()
    """Reference strategies, naive to strong (see :class:`Baseline`)."""
    hacks: tuple[Hack, ...] = ()
    """Reward hacks of this game that ``codepolicy audit`` plays (see :class:`Hack`)."""
    api_hacks: tuple[Hack, ...] = ()
    """Hacks that abuse the game's API; the audit plays them when the spec's ``game_api`` is on."""
    moves_example: str = ""
    """A short example strategy without the API that checks its moves and plays every game to its end (the
    ``compact`` prompt templates show it)."""
    api_example: str = ""
    """A one-line example strategy written against the API (the ``api`` prompt templates show it)."""
    replay_frame: Callable[[Any, int], str] | None = None
    """Optional (view, score) -> a text frame of the board, ending in a newline (``codepolicy replay``)."""
    replay_media: str | None = None
    """Optional module (dotted path) with ``write_gif`` and ``replay_html`` for ``codepolicy replay --gif/--html``."""
    moves_example_note: str = ""
    """What the prompt says before ``moves_example``, ending with why it is weak; the prompt goes on with
    ": write a better one ..." (empty: a plain header)."""
    api_example_note: str = ""
    """The same for ``api_example``."""

    @property
    def progress_metric(self) -> str | None:
        """The name of the metric that measures progress (None when the game declares none)."""
        return self.progress.metric if self.progress is not None else None

    def progress_value(self, metrics: Mapping[str, float]) -> float:
        """The progress metric's value in a game's ``metrics`` (0 when the game declares none or it is missing)."""
        if self.progress is None:
            return 0.0
        return float(metrics.get(self.progress.metric, 0.0) or 0.0)

    def baseline(self, name: str) -> Baseline:
        """The baseline called ``name``; ValueError naming the known ones otherwise."""
        for b in self.baselines:
            if b.name == name:
                return b
        raise ValueError(f"game {self.name!r} has no baseline {name!r}; "
                         f"known: {', '.join(b.name for b in self.baselines) or 'none'}")

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


DEFAULT_GAME = "2048"
"""The game commands and functions play when none is named (the one game named outside its own folder)."""

_REGISTRY: dict[str, GameSpec] = {}


def register(name: str, spec: GameSpec) -> GameSpec:
    """Register ``spec`` under ``name`` (re-registering the same name replaces it)."""
    if not isinstance(spec, GameSpec):
        raise TypeError(f"register({name!r}, ...) needs a GameSpec, got {type(spec).__name__}")
    if spec.name != name:
        raise ValueError(f"spec is named {spec.name!r} but was registered as {name!r}")
    if spec.progress is not None and spec.progress.metric not in spec.metric_names:
        raise ValueError(f"game {name!r}: progress metric {spec.progress.metric!r} is not one of its metric_names "
                         f"{list(spec.metric_names)}")
    names_seen = [b.name for b in spec.baselines] + [h.name for h in spec.hacks + spec.api_hacks]
    if len(set(names_seen)) != len(names_seen):
        raise ValueError(f"game {name!r}: baseline and hack names must be unique")
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
