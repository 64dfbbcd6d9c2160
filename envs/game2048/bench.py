"""The 2048 speed benchmark behind ``codepolicy bench`` and ``benchmarks/env_speed.py``.

Measures in one run, and prints as a table with the targets beside the figures:
the batched kernel (random legal moves with spawns, one core), ``env.step()`` in a Python
loop, the vector env, the same loop on gymnasium-2048 when it is installed (with the
ratio), and the cold start (fresh process to first move) with the Numba cache warm and cold.
Figures only: nothing here asserts a timing.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["Row", "run", "format_table", "main",
           "bench_kernel", "bench_env_loop", "bench_vector", "bench_peer_loop", "cold_start"]

PEER_ID = "gymnasium_2048/TwentyFortyEight-v0"
_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Row:
    """One line of the table: what was measured, the figure, its unit, and the target note."""

    name: str
    value: float
    unit: str
    target: str = ""


def _timed(fn: Callable[[], int], seconds: float) -> float:
    """Call ``fn`` (returns work units done) repeatedly for about ``seconds``; units per second."""
    done, start = 0, time.perf_counter()
    while True:
        done += fn()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def bench_kernel(seconds: float = 1.0, boards: int = 256, steps: int = 2000) -> float:
    """Random legal moves per second of ``kernel.random_play_batch`` (spawns and resets included)."""
    from envs.game2048 import kernel, lines_for

    lines = lines_for(4)
    b = np.zeros((boards, 16), dtype=np.uint8)
    rngs = np.zeros(boards, dtype=np.uint64)
    seeds = np.arange(boards, dtype=np.int64)
    kernel.reset_batch(b, rngs, seeds)
    kernel.random_play_batch(b, rngs, lines, 10, seeds)  # compile / load from cache
    return _timed(lambda: int(kernel.random_play_batch(b, rngs, lines, steps, seeds)), seconds)


def _loop_rate(env, seconds: float, seed: int = 0) -> float:
    """env.step() calls per second with uniformly random actions, resetting when an episode ends."""
    actions = np.random.default_rng(seed).integers(0, 4, size=1 << 16).tolist()
    env.reset(seed=seed)
    state = {"k": 0}

    def chunk() -> int:
        k = state["k"]
        step, reset = env.step, env.reset
        for j in range(2000):
            _, _, term, trunc, _ = step(actions[(k + j) & 0xFFFF])
            if term or trunc:
                reset()
        state["k"] = k + 2000
        return 2000

    chunk()  # warm-up (first-step checks of the wrappers)
    return _timed(chunk, seconds)


def bench_env_loop(seconds: float = 1.0) -> float:
    """Steps per second of ``gymnasium.make("codepolicy/2048-v0")`` stepped in a Python loop."""
    import gymnasium

    import envs  # noqa: F401  (registers the gym id)

    with gymnasium.make("codepolicy/2048-v0") as env:
        return _loop_rate(env, seconds)


def bench_vector(seconds: float = 1.0, num_envs: int = 1024) -> float:
    """Board-steps per second of the vector env (random actions, autoreset on)."""
    import gymnasium

    import envs  # noqa: F401

    env = gymnasium.make_vec("codepolicy/2048-v0", num_envs=num_envs, vectorization_mode="vector_entry_point")
    env.reset(seed=0)
    acts = [a for a in np.random.default_rng(0).integers(0, 4, size=(16, num_envs))]
    state = {"k": 0}

    def chunk() -> int:
        for _ in range(20):
            env.step(acts[state["k"] & 15])
            state["k"] += 1
        return 20 * num_envs

    chunk()
    rate = _timed(chunk, seconds)
    env.close()
    return rate


def bench_peer_loop(seconds: float = 1.0) -> float | None:
    """Steps per second of gymnasium-2048's env in the same loop; None when it is not installed."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import gymnasium
        import gymnasium_2048  # noqa: F401  (registers its id)
    except ImportError:
        return None
    with gymnasium.make(PEER_ID) as env:
        return _loop_rate(env, seconds)


_FIRST_MOVE = ("import envs; s = envs.get('2048').make(0); envs.get('2048').step(s, 1)")


def cold_start(cache_dir: str | None = None, repeats: int = 1) -> float:
    """Seconds from launching a fresh Python to its first 2048 move (best of ``repeats``).

    ``cache_dir`` sets NUMBA_CACHE_DIR; an empty temporary directory gives a cold cache.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", _FIRST_MOVE], env=env, check=True)
        best = min(best, time.perf_counter() - start)
    return best


def run(seconds: float = 1.0, num_envs: int = 1024, cold: bool = True) -> list[Row]:
    """Measure everything -> table rows (about 6 x ``seconds`` plus the cold starts)."""
    rows = [Row("kernel: random legal moves, 1 core", bench_kernel(seconds), "moves/s", ">= 20 M")]
    ours = bench_env_loop(seconds)
    peer = bench_peer_loop(seconds)
    rows.append(Row("env.step() loop (codepolicy/2048-v0)", ours, "steps/s",
                    ">= 10x gymnasium-2048" if peer else ""))
    if peer is not None:
        rows.append(Row("env.step() loop (gymnasium-2048)", peer, "steps/s", "peer"))
        rows.append(Row("  ratio ours / gymnasium-2048", ours / peer, "x", ">= 10"))
    rows.append(Row(f"vector env, {num_envs} boards", bench_vector(seconds, num_envs), "steps/s", ">= 2 M"))
    if cold:
        cold_start(None)  # make sure the default cache is filled
        rows.append(Row("cold start to first move, warm cache", cold_start(None, repeats=3), "s"))
        with tempfile.TemporaryDirectory(prefix="codepolicy-numba-") as tmp:
            rows.append(Row("cold start to first move, cold cache", cold_start(tmp), "s"))
        rows.append(Row("  (python -c 'pass', for scale)", _bare_python(), "s"))
    return rows


def _bare_python() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def _fmt(value: float, unit: str) -> str:
    if unit in ("moves/s", "steps/s"):
        return f"{value / 1e6:10.2f} M" if value >= 1e6 else f"{value / 1e3:10.1f} k"
    if unit == "x":
        return f"{value:10.1f}"
    return f"{value:10.2f}"


def format_table(rows: list[Row]) -> str:
    """The rows as an aligned text table."""
    width = max(len(r.name) for r in rows)
    lines = [f"{'measure':<{width}}  {'figure':>12}  {'unit':<8} target", "-" * (width + 35)]
    for r in rows:
        lines.append(f"{r.name:<{width}}  {_fmt(r.value, r.unit):>12}  {r.unit:<8} {r.target}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python benchmarks/env_speed.py [--seconds S] [--num-envs K] [--no-cold]``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_from_args(args)


def add_arguments(parser) -> None:
    """The benchmark's options (shared by the script and ``codepolicy bench``)."""
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement (default 1.0)")
    parser.add_argument("--num-envs", type=int, default=1024, help="boards in the vector env (default 1024)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-start measurements")


def run_from_args(args) -> int:
    """Run with parsed arguments and print the table; returns 0."""
    if args.seconds <= 0:
        raise ValueError(f"--seconds must be positive, got {args.seconds}")
    if args.num_envs < 1:
        raise ValueError(f"--num-envs must be positive, got {args.num_envs}")
    rows = run(args.seconds, args.num_envs, cold=not args.no_cold)
    print(f"2048 engine speed (python {sys.version.split()[0]}, {os.cpu_count()} cpus visible)")
    print(format_table(rows))
    return 0
