"""``codepolicy envs`` (list the registered games) and ``codepolicy bench`` (2048's engine speed table, from envs.game2048.bench).

``codepolicy baselines`` comes from ``envs.baselines_cli`` when that module exists.
"""
from __future__ import annotations

import argparse

__all__ = ["add_commands", "describe_games"]


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the ``codepolicy`` parser."""
    from envs.baselines_cli import add_baselines

    _add_envs(sub)
    _add_bench(sub)
    add_baselines(sub)


def _add_envs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("envs", allow_abbrev=False, help="list the registered games: actions, options, metrics, gym id")
    p.set_defaults(handler=_run_envs)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from envs.game2048.bench import add_arguments

    p = sub.add_parser("bench", allow_abbrev=False,
                       help="print the 2048 engine speed table (kernel, env, vector env, cold start)")
    add_arguments(p)
    p.set_defaults(handler=_run_bench)


def describe_games() -> str:
    """A text listing of every registered game."""
    import envs

    blocks = []
    for name in envs.names():
        spec = envs.get(name)
        options = ", ".join(f"{k}={v!r}" for k, v in spec.options.items()) or "none"
        blocks.append("\n".join([
            f"{name}",
            f"  actions: {', '.join(f'{i}={a}' for i, a in enumerate(spec.actions))}",
            f"  options: {options}",
            f"  metrics: {', '.join(spec.metric_names)}"
            + (f" (progress: {spec.progress.metric})" if spec.progress is not None else ""),
            f"  api:     {', '.join(f.signature for f in spec.api) or '-'}",
            f"  baselines: {', '.join(b.name for b in spec.baselines) or '-'}",
            f"  gym id:  {spec.gym_id or '-'}",
        ]))
    return "\n".join(blocks)


def _run_envs(args: argparse.Namespace) -> int:
    print(describe_games())
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    from envs.game2048.bench import run_from_args

    return run_from_args(args)
