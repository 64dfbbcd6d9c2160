"""From completions to Evaluations (through the sandbox) and Breakdowns, one GRPO group at a time.

Rewards never execute code: extraction, the static check and the games are the sandbox's
(``sandbox.extract``, ``sandbox.check``, ``sandbox.run_many``). What this module adds:

- common random numbers: every completion of a group plays the same seeds, so reward
  differences inside a group come from the strategies, not from the dice;
- a cache by normalised source hash: completions whose programs differ only in comments,
  blank lines or layout (same AST) are run once;
- a non-compliant program is never sent to run.
"""
from __future__ import annotations

import ast
import hashlib
from collections import OrderedDict
from typing import Any, Mapping, MutableMapping, Sequence

import envs
import sandbox
from envs.registry import DEFAULT_GAME
from rewards.records import Breakdown, Evaluation
from rewards.score import score
from rewards.spec import RewardSpec, default_spec
from sandbox.policy import game_policy
from sandbox.records import FormatError, GameRecord, Limits, Verdict
from sandbox.text import parse_program

__all__ = ["evaluate", "evaluate_many", "evaluate_group", "source_hash", "RecordCache"]


def source_hash(source: str) -> str:
    """SHA-256 of the program's AST dump: comments, blank lines and layout do not change it."""
    try:
        text = ast.dump(parse_program(source, "<unknown>"))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # Not parseable (the sandbox will say so); fall back to the text without trailing blanks.
        text = "\n".join(line.rstrip() for line in source.strip().splitlines())
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class RecordCache(OrderedDict):
    """A bounded LRU map from (source hash, game, seeds, limits, options) to game records.

    Keep one across calls of :func:`evaluate_group` to skip re-running programs a model
    repeats; the key holds the seeds, so new seeds always mean new games.
    """

    def __init__(self, maxsize: int = 4096) -> None:
        super().__init__()
        self.maxsize = maxsize

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        self.move_to_end(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.maxsize:
            self.popitem(last=False)


def _freeze(options: Mapping[str, Any] | None) -> tuple:
    return tuple(sorted((options or {}).items()))


def _settings(game: str | None, seeds: Sequence[int] | None, spec: RewardSpec | None,
              limits: Limits | None, options: Mapping[str, Any] | None):
    """Fill game/seeds/limits/options from the spec where the caller gave none."""
    if spec is None:
        spec = default_spec(game or DEFAULT_GAME)
    game = game or spec.game
    seeds = tuple(int(s) for s in (spec.seeds() if seeds is None else seeds))
    if not seeds:
        raise ValueError("evaluate: seeds is empty; give at least one seed")
    limits = limits if limits is not None else spec.limits
    merged = {**spec.options, **(options or {})} if game == spec.game else dict(options or {})
    return game, seeds, spec, limits, merged


def _policy(game: str, spec: RewardSpec, policy: Any) -> Any:
    """The policy given, else the default one with the game's API as the spec's ``game_api`` switch says.

    A game the registry does not know keeps the default policy: the sandbox names it when it runs.
    """
    if policy is not None or game not in envs.names():
        return policy
    return game_policy(game, spec.game_api)


def evaluate_many(completions: Sequence[str], game: str | None = None, seeds: Sequence[int] | None = None,
                  *, spec: RewardSpec | None = None, limits: Limits | None = None,
                  options: Mapping[str, Any] | None = None, pool: Any = None, policy: Any = None,
                  cache: MutableMapping | None = None) -> list[Evaluation]:
    """Evaluations of many completions on the same seeds; each distinct compliant program runs once."""
    game, seeds, spec, limits, options = _settings(game, seeds, spec, limits, options)
    policy = _policy(game, spec, policy)
    return _evaluate_many(completions, game, seeds, limits, options, pool, policy, cache)


def _evaluate_many(completions: Sequence[str], game: str, seeds: tuple[int, ...], limits: Limits | None,
                   options: dict[str, Any], pool: Any, policy: Any,
                   cache: MutableMapping | None) -> list[Evaluation]:
    """:func:`evaluate_many` once the settings are settled (by :func:`_settings`)."""
    sources: list[str | None] = []
    errors: list[FormatError | None] = []
    for completion in completions:
        try:
            sources.append(sandbox.extract(completion))
            errors.append(None)
        except FormatError as exc:
            sources.append(None)
            errors.append(exc)

    verdicts: dict[str, Verdict] = {}  # by raw source: violation lines are the program's own
    for src in sources:
        if src is not None and src not in verdicts:
            verdicts[src] = sandbox.check(src, policy)
    # One hash per distinct compliant source; programs with the same hash run once.
    hashes = {src: source_hash(src) for src, verdict in verdicts.items() if verdict.ok}

    cache = {} if cache is None else cache
    context = (game, seeds, limits, _freeze(options), repr(policy) if policy is not None else None)
    # This call's records by hash, read from the cache or run now: a small LRU cache may drop
    # an entry before the end of the call, so nothing is read back from it afterwards.
    found: dict[str, tuple[GameRecord, ...]] = {}
    to_run: dict[str, str] = {}  # hash -> the first source with it, in order of appearance
    for src, digest in hashes.items():
        if digest in found or digest in to_run:
            continue
        key = (digest,) + context
        if key in cache:
            found[digest] = cache[key]
        else:
            to_run[digest] = src
    if to_run:
        digests = list(to_run)
        results = sandbox.run_many([to_run[d] for d in digests], game, list(seeds), limits=limits,
                                   options=options or None, pool=pool, policy=policy)
        for digest, records in zip(digests, results):
            found[digest] = cache[(digest,) + context] = tuple(records)

    evaluations = []
    for completion, src, err in zip(completions, sources, errors):
        if src is None:
            evaluations.append(Evaluation(completion=completion, game=game, format_error=err,
                                          options=dict(options)))
            continue
        verdict = verdicts[src]
        records: tuple[GameRecord, ...] = found[hashes[src]] if verdict.ok else ()
        evaluations.append(Evaluation(completion=completion, game=game, source=src, verdict=verdict,
                                      records=records, options=dict(options)))
    return evaluations


def evaluate(completion: str, game: str = DEFAULT_GAME, seeds: Sequence[int] = (0,), limits: Limits | None = None,
             pool: Any = None, *, options: Mapping[str, Any] | None = None, policy: Any = None,
             spec: RewardSpec | None = None) -> Evaluation:
    """Extract, check and (if compliant) play ``completion``'s program on ``seeds``."""
    return evaluate_many([completion], game, seeds, spec=spec, limits=limits, options=options,
                         pool=pool, policy=policy)[0]


def evaluate_group(completions: Sequence[str], *, game: str | None = None, seeds: Sequence[int] | None = None,
                   spec: RewardSpec | None = None, pool: Any = None, limits: Limits | None = None,
                   options: Mapping[str, Any] | None = None, policy: Any = None,
                   cache: MutableMapping | None = None) -> list[Breakdown]:
    """Breakdowns for one GRPO group: every completion plays the same ``seeds``; same inputs, same rewards.

    Everything but the completions is a keyword. Game, seeds, limits and options default to
    the spec's (default spec: the game's shipped one); ``options`` go over the spec's when
    ``game`` is the spec's game. ``cache`` (a :class:`RecordCache`) keeps game records across
    calls. For a trainer, :func:`rewards.group_reward_fn` fixes game, spec, pool and a cache.
    """
    if isinstance(completions, str):
        raise TypeError("evaluate_group needs a list of completions, got one string")
    game, seeds, spec, limits, options = _settings(game, seeds, spec, limits, options)
    policy = _policy(game, spec, policy)
    evaluations = _evaluate_many(completions, game, seeds, limits, options, pool, policy, cache)
    return [score(ev, spec) for ev in evaluations]
