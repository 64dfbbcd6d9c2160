"""Reward rules for code strategies: pure functions of what the sandbox produced.

Data flow: completion -> ``sandbox.extract`` / ``check`` / ``run`` -> :class:`Evaluation`
-> :func:`score` with a :class:`RewardSpec` -> :class:`Breakdown` (every rule's value and
the weighted total). Rewards never execute code themselves. A trainer scores one GRPO group
at a time through a :class:`RewardFn` (``reward_fn(completions, *, seeds)``), e.g.
``group_reward_fn(game, spec)`` over :func:`evaluate_group`.

Write a rule in a few lines::

    @rewards.rule("short_games", bounds=(-1.0, 0.0))
    def short_games(ev, *, below=100):
        "Penalty when the mean game is shorter than ``below`` moves."
        ...

then add it to a spec (``spec.with_rule("short_games", 0.5)`` or a ``[rules.short_games]``
table in TOML). ``rewards.audit(spec)`` plays every known cheat and reward hack beside the
honest baselines and checks that none of them out-earns honest play under ``spec``.
Nothing here imports torch.
"""
from rewards.records import Breakdown, Evaluation
from rewards.rules import Rule, UnknownRuleError, as_rule, get_rule, rule, rule_names
from rewards.spec import RewardSpec, SpecError, Term, default_spec, load_spec
from rewards.score import score
from rewards.evaluate import RecordCache, evaluate, evaluate_group, evaluate_many, source_hash
from rewards.group import GroupRewardFn, RewardFn, group_reward_fn
from rewards.trl import trl_reward_funcs, trl_reward_weights
from rewards.audit import AuditReport, AuditRow, OrderCheck, audit

__all__ = [
    "Breakdown", "Evaluation", "Rule", "UnknownRuleError", "as_rule", "get_rule", "rule", "rule_names",
    "RewardSpec", "SpecError", "Term", "default_spec", "load_spec", "score",
    "RecordCache", "evaluate", "evaluate_group", "evaluate_many", "source_hash",
    "RewardFn", "GroupRewardFn", "group_reward_fn",
    "trl_reward_funcs", "trl_reward_weights", "audit", "AuditReport", "AuditRow", "OrderCheck",
]
