"""The reward-function contract a trainer relies on: ``reward_fn(completions, *, seeds) -> list[Breakdown]``.

A trainer samples G completions of one prompt (a GRPO group) and asks for their rewards
with the seeds the group plays: ``reward_fn(group, seeds=seeds)``. Every completion of the
list is one group and plays the same seeds (common random numbers), so reward differences
inside it come from the programs, not from the dice. :func:`group_reward_fn` builds the
standard one over :func:`rewards.evaluate_group`; anything with the same call (a test
stand-in, a remote scorer) satisfies :class:`RewardFn`.

Nothing here runs code or imports torch; the sandbox is reached through ``rewards.evaluate``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, MutableMapping, Protocol, Sequence

from rewards.records import Breakdown
from rewards.spec import RewardSpec, default_spec

if TYPE_CHECKING:
    from rewards.evaluate import RecordCache

__all__ = ["RewardFn", "GroupRewardFn", "group_reward_fn"]


class RewardFn(Protocol):
    """Scores one GRPO group: ``reward_fn(completions, *, seeds) -> list[Breakdown]``.

    ``completions`` is one group: every completion of the list plays the same ``seeds``
    (keyword), and the result has one Breakdown per completion, in order. Same completions,
    same seeds, same spec: same Breakdowns.
    """

    def __call__(self, completions: list[str], *, seeds: Sequence[int]) -> list[Breakdown]:
        ...


@dataclass(frozen=True, eq=False)
class GroupRewardFn:
    """A :class:`RewardFn` over :func:`rewards.evaluate_group` with a fixed game, spec, pool and record cache.

    Build it with :func:`group_reward_fn`. ``cache`` keeps the game records of programs
    across calls (its key holds the seeds, so new seeds always mean new games); ``pool`` is
    a ``sandbox.WorkerPool`` or None for the sandbox's shared one.
    """

    game: str
    spec: RewardSpec
    pool: Any = None
    cache: MutableMapping | None = None

    def __repr__(self) -> str:
        cache = "None" if self.cache is None else f"{type(self.cache).__name__} of {len(self.cache)}"
        return f"GroupRewardFn(game={self.game!r}, spec={self.spec.origin!r}, pool={self.pool!r}, cache={cache})"

    def __call__(self, completions: list[str], *, seeds: Sequence[int]) -> list[Breakdown]:
        """Breakdowns of one group, all of it playing ``seeds``; one per completion, in order."""
        from rewards.evaluate import evaluate_group  # read at call time: tests may stand in for it

        if isinstance(completions, str):
            raise TypeError("a reward function needs a list of completions (one GRPO group), got one string")
        completions = list(completions)
        out = list(evaluate_group(completions, game=self.game, seeds=seeds, spec=self.spec, pool=self.pool,
                                  cache=self.cache))
        if len(out) != len(completions):
            raise ValueError(f"evaluate_group returned {len(out)} breakdowns for {len(completions)} completions")
        return out


def group_reward_fn(game: str, spec: RewardSpec | None = None, *, pool: Any = None,
                    cache: RecordCache | None = None) -> GroupRewardFn:
    """The standard :class:`RewardFn` for ``game``: ``evaluate_group`` under ``spec`` (default: the game's shipped spec).

    Unless ``cache`` is given, the function gets its own :class:`rewards.RecordCache`, so a
    program the model repeats on the same seeds is not played again; games for new seeds
    are always played.
    """
    from rewards.evaluate import RecordCache

    if not isinstance(game, str) or not game:
        raise TypeError(f"group_reward_fn needs a game name, got {game!r}")
    spec = spec if spec is not None else default_spec(game)
    return GroupRewardFn(game=game, spec=spec, pool=pool, cache=RecordCache() if cache is None else cache)
