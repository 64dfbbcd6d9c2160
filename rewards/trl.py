"""The reward rules as TRL-style reward functions, for TRL's GRPOTrainer or Unsloth, unchanged.

TRL calls each reward function as ``f(prompts=..., completions=..., **dataset_columns)`` and
expects one float per completion; completions are strings or chat messages. We return one
function per rule (``__name__`` = the rule name, so TRL logs ``rewards/<rule>``) and the
spec's weights for ``GRPOConfig(reward_weights=...)``. The functions share one evaluation
per batch: TRL calls them one after another on the same completions, and the programs run
once, not once per rule. TRL itself is not imported here.

Game seeds, as in the native loop, change from step to step and are shared by a GRPO group
(common random numbers): a sample's games come from its row's key (an int ``seed`` column,
else the prompt text) and the trainer's step (``trainer_state.global_step``, which TRL passes
to reward functions; without it, the number of batches this adapter has scored). A list in
the ``seed`` column fixes the row's games for every step. Seeds stay below 2**31 - 1, the
range the native loop trains on, so held-out games (from 2**31 up) are never trained on.

An answer prefill (``train.prompts.PREFILLS``: the prompt opens the model's answer, e.g. with the code
fence and ``def strategy(board):``) is given to TRL as a final assistant message of a chat prompt, with
``continue_final_message=True`` in the chat template call; TRL's completion is then only the
continuation. The program is prefill + completion, so each function prepends the prompt's final
assistant message (or the ``prefill`` given) before scoring, exactly as the native loop does.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

from envs.registry import DEFAULT_GAME
from rewards.group import RewardFn, group_reward_fn
from rewards.records import Breakdown
from rewards.spec import RewardSpec, default_spec

__all__ = ["trl_reward_funcs", "trl_reward_weights", "completion_text", "prompt_seeds", "answer_prefix"]

_SEED_LIMIT = 2**31 - 1  # train.config.TRAIN_SEED_LIMIT (rewards does not import train)


def _content_text(content: Any) -> str:
    """Text of a message's content: a string, or a list of parts ({"type": "text", "text": ...})."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def completion_text(completion: Any) -> str:
    """Plain text of a completion: a string, a message dict, or a list of chat messages (assistant turns joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, Sequence):
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role") == "assistant"] or messages
        return "\n".join(_content_text(m.get("content")) for m in assistant)
    raise TypeError(f"a completion must be a string or a list of chat messages, got {type(completion).__name__}")


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, dict):
        return f"{prompt.get('role', '')}:{_content_text(prompt.get('content'))}"
    if isinstance(prompt, Sequence):
        return "\n".join(_prompt_text(m) for m in prompt)
    return repr(prompt)


def prompt_seeds(prompt: Any, games: int, seed: Any = None, step: int | None = None) -> tuple[int, ...]:
    """The ``games`` seeds a sample plays at training step ``step``, shared by every completion of its row.

    A list or tuple ``seed`` (a dataset column) is the row's games as is, at every step. Otherwise
    the row's key (an int ``seed``, else the prompt text) and ``step`` derive them, so one prompt
    plays new games at every step, as the native loop does. ``step=None`` (no trainer step
    known) keeps the seeds of old: ``seed .. seed + games - 1``, or a run derived from the prompt.
    """
    if isinstance(seed, (list, tuple)):
        return tuple(int(s) for s in seed)
    if step is None:
        if seed is not None:
            return tuple(range(int(seed), int(seed) + games))
        base = int.from_bytes(hashlib.sha256(_prompt_text(prompt).encode("utf-8", "replace")).digest()[:4], "big")
        base &= 0x3FFFFFFF  # leaves room for base + games in a positive 31-bit int
        return tuple(range(base, base + games))
    key = f"seed:{int(seed)}" if seed is not None else f"prompt:{_prompt_text(prompt)}"
    digest = hashlib.sha256(f"{key}\x00step:{int(step)}".encode("utf-8", "replace")).digest()
    words = hashlib.shake_256(digest).digest(8 * games)
    return tuple(int.from_bytes(words[8 * i:8 * i + 8], "big") % _SEED_LIMIT for i in range(games))


def _trainer_step(kwargs: dict) -> int | None:
    """The trainer's optimizer step from TRL's ``trainer_state`` keyword, or None when it is not given."""
    state = kwargs.get("trainer_state")
    step = getattr(state, "global_step", None)
    return int(step) if isinstance(step, int) and not isinstance(step, bool) else None


def answer_prefix(prompt: Any) -> str:
    """The answer prefill a prompt carries: the text of its final message when that is the assistant's, else ''."""
    if isinstance(prompt, Sequence) and not isinstance(prompt, str) and prompt:
        last = prompt[-1]
        if isinstance(last, dict) and last.get("role") == "assistant":
            return _content_text(last.get("content"))
    return ""


class _BatchScorer:
    """Scores a batch once and serves every rule's function from the result."""

    def __init__(self, reward_fn: RewardFn, games: int, prefill: str | None = None) -> None:
        self.reward_fn = reward_fn
        self.games = games
        self.prefill = prefill  # None: each prompt's own final assistant message
        self._key: tuple | None = None
        self._value: list[Breakdown] = []
        self._batch: tuple | None = None   # the last batch seen without a trainer step, and its number
        self.batches = -1
        self.last_seeds: list[tuple[int, ...]] = []  # the seeds of the last batch scored, one per sample

    def __call__(self, prompts: Sequence[Any] | None, completions: Sequence[Any], kwargs: dict) -> list[Breakdown]:
        texts = [completion_text(c) for c in completions]
        n = len(texts)
        prompts = list(prompts) if prompts is not None else [""] * n
        if len(prompts) != n:
            raise ValueError(f"got {len(prompts)} prompts for {n} completions")
        # The program is the answer's prefill followed by what the model wrote.
        texts = [(self.prefill if self.prefill is not None else answer_prefix(p)) + t for p, t in zip(prompts, texts)]
        column = kwargs.get("seeds", kwargs.get("seed"))
        if column is not None and len(column) != n:
            raise ValueError(f"the seed column has {len(column)} values for {n} completions")
        step = _trainer_step(kwargs)
        if step is None:
            # No trainer step (an older TRL, a direct call): count the batches instead. TRL asks every
            # rule's function about the same batch, so only a batch unlike the last one is a new step.
            batch = (tuple(texts), repr(prompts), repr(column))
            if batch != self._batch:
                self._batch, self.batches = batch, self.batches + 1
            step = self.batches
        seeds = [prompt_seeds(prompts[i], self.games, None if column is None else column[i], step)
                 for i in range(n)]
        self.last_seeds = seeds
        key = (tuple(texts), tuple(seeds))
        if key == self._key:
            return self._value
        # One reward_fn call per seed set: a GRPO group shares seeds (common random numbers).
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, s in enumerate(seeds):
            groups.setdefault(s, []).append(i)
        out: list[Breakdown | None] = [None] * n
        for s, index in groups.items():
            for i, b in zip(index, self.reward_fn([texts[i] for i in index], seeds=list(s))):
                out[i] = b
        self._key, self._value = key, out  # type: ignore[assignment]
        return self._value


def trl_reward_funcs(spec: RewardSpec | None = None, game: str | None = None, *, games: int | None = None,
                     pool: Any = None, reward_fn: RewardFn | None = None,
                     prefill: str | None = None) -> list[Callable[..., list[float]]]:
    """One TRL reward function per rule of ``spec``: ``f(prompts, completions, **kwargs) -> list[float]``.

    Each returns the rule's raw value; pass :func:`trl_reward_weights` as GRPOConfig's
    ``reward_weights`` to get the spec's total. ``reward_fn`` (a :class:`rewards.RewardFn`:
    ``reward_fn(completions, *, seeds) -> list[Breakdown]``, called once per group) replaces the
    default ``rewards.group_reward_fn(game, spec, pool=pool)``. ``prefill``: the text each answer opens
    with, prepended to every completion (None: a chat prompt's final assistant message, see the module doc).
    """
    spec = spec if spec is not None else default_spec(game or DEFAULT_GAME)
    game = game or spec.game
    games = games or spec.games
    if reward_fn is None:
        reward_fn = group_reward_fn(game, spec, pool=pool)
    scorer = _BatchScorer(reward_fn, games, prefill)
    funcs = []
    for name in spec.names:
        funcs.append(_rule_func(name, scorer, spec.term(name).rule.doc))
    return funcs


def _rule_func(name: str, scorer: _BatchScorer, doc: str) -> Callable[..., list[float]]:
    def reward(prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (), **kwargs: Any) -> list[float]:
        return [float(b.values[name]) for b in scorer(prompts, completions, kwargs)]

    reward.__name__ = reward.__qualname__ = name
    reward.__doc__ = f"TRL reward function for rule {name!r}: {doc}"
    return reward


def trl_reward_weights(spec: RewardSpec | None = None, game: str = DEFAULT_GAME) -> list[float]:
    """The spec's weights in the order of :func:`trl_reward_funcs` (for ``GRPOConfig(reward_weights=...)``)."""
    spec = spec if spec is not None else default_spec(game)
    return [spec.weights[name] for name in spec.names]
