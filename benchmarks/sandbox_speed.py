"""Sandbox speed: a clean reference strategy through ``sandbox.run`` vs plainly in-process.

Prints games/s and moves/s for the same games played (a) in-process by plain ``exec`` of the
source through the game loop (``envs.play.play_trusted``), (b) through the sandbox with 1 and
2 workers (a fresh forked child per job, plus the determinism probe), and then the latency of
one GRPO-style group (8 distinct programs x 4 seeds, each new to the probe), of 6 distinct
programs that stall only when their boards are replayed by the probe, and ``check`` calls/s
on typical model outputs. Targets: sandbox overhead <= 1.5x plain on one worker, check >= 2,000/s.

The script only uses APIs that older versions of the sandbox also have, so it can be run in
a checkout of an earlier commit for a before/after table taken on the same machine.

    .venv/bin/python benchmarks/sandbox_speed.py [--games 200] [--strategy greedy]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import envs  # noqa: E402
from sandbox.records import Limits  # noqa: E402
from sandbox.runner import UNCHECKED, WorkerPool  # noqa: E402

FALLBACK = '''def strategy(board):
    # Left if it moves anything, else up, right, down.
    rows = list(map(lambda r: list(filter(lambda v: v != 0, r)), board))
    shifts = any(map(lambda i: rows[i] + [0] * (len(board) - len(rows[i])) != board[i], range(len(board))))
    merges = any(map(lambda r: any(map(lambda j: r[j] == r[j + 1], range(len(r) - 1))), rows))
    return "A" if shifts or merges else ["W", "D", "S"][sum(map(sum, board)) % 3]
'''

TYPICAL_OUTPUTS = [
    # Shapes seen in model samples: short clean programs, imports, loops, syntax errors, no function.
    "def strategy(board):\n    return 'A'\n",
    "def strategy(board):\n    if board[0][0] == 0:\n        return 'A'\n    return 'W'\n",
    "import random\ndef strategy(board):\n    return random.choice(['W', 'A', 'S', 'D'])\n",
    "def strategy(board):\n    for row in board:\n        if 0 in row:\n            return 'A'\n    return 'W'\n",
    "def strategy(board):\n    moves = ['W', 'A', 'S', 'D']\n    return moves[sum(map(sum, board)) % 4]\n",
    "def strategy(board)\n    return 'W'\n",
    "def move(board):\n    return 'S'\n",
    "def strategy(board):\n    empty = sum(map(lambda r: r.count(0), board))\n"
    "    return 'A' if empty > 4 else ('W' if board[0][0] >= board[0][1] else 'D')\n",
    "def strategy(board):\n    return eval('\"W\"')\n",
    "def strategy(board):\n    best = max(map(max, board))\n    corner = board[0][0] == best\n"
    "    return 'A' if corner else 'W'\n",
]


def reference_source(name: str) -> tuple[str, str]:
    try:
        from envs.game2048.baselines import SOURCES
    except ImportError:
        return "built-in left-first", FALLBACK
    return (f"baselines.{name}", SOURCES[name]) if name in SOURCES else ("built-in left-first", FALLBACK)


def plain(source: str, seeds: list[int], limits: Limits) -> tuple[float, int]:
    """The game loop in this process (envs.play.play_trusted), with the source exec'd plainly."""
    from envs.play import play_trusted

    namespace: dict = {}
    exec(compile(source, "<plain>", "exec"), namespace)
    start = time.perf_counter()
    games = play_trusted(namespace["strategy"], game="2048", seeds=seeds, max_moves=limits.max_moves,
                         stuck_moves=limits.stuck_moves)
    return time.perf_counter() - start, sum(int(g["moves"]) for g in games)


def pool_cpu(pool: WorkerPool) -> float:
    """CPU seconds used so far by the pool's processes and the children they reaped (Linux /proc).

    CPU time, unlike wall time, does not grow when another tenant of a shared machine takes
    the cores, so its ratio to plain play is the steadier figure. Works for the forking pool
    (zygotes and their reaped children) and for older pools of long-lived workers.
    """
    procs = [getattr(w, "proc", None) for w in
             list(getattr(pool, "_zygotes", [])) + list(getattr(pool, "_slots", [])) + [getattr(pool, "_probe_worker", None)]
             if w is not None]
    ticks = 0
    for proc in procs:
        try:
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, AttributeError):
            continue
        ticks += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def sandboxed(pool: WorkerPool, source: str, seeds: list[int], limits: Limits) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and moves for ``seeds`` played by ``source`` through a warm ``pool``."""
    cpu = pool_cpu(pool)
    start = time.perf_counter()
    records = pool.run(source, seeds=seeds, limits=limits)
    seconds = time.perf_counter() - start
    time.sleep(0.05)  # let the zygote reap the last child, so its CPU time is counted
    cpu = pool_cpu(pool) - cpu
    bad = [r for r in records if r.outcome not in ("finished", "won", "max_moves")]
    if bad:
        raise SystemExit(f"reference strategy did not play cleanly: {bad[0]}")
    return seconds, cpu, sum(r.moves for r in records)


def group_latency(source: str, limits: Limits) -> float:
    """Median seconds for 8 new programs x 4 seeds through run_many on 2 workers."""
    times = []
    with WorkerPool(workers=2) as pool:
        pool.warm()
        for round_ in range(3):
            # Distinct sources (a comment differs) so every program pays the determinism probe.
            sources = [source + f"\n# variant {round_}-{i}\n" for i in range(8)]
            start = time.perf_counter()
            pool.run_many(sources, seeds=[0, 1, 2, 3], limits=limits)
            times.append(time.perf_counter() - start)
    return sorted(times)[1]


def _staller() -> str:
    """A program that stalls only when its boards are replayed (envs.game2048.hacks' replay_staller)."""
    from envs.game2048.hacks import get_hack

    return get_hack("replay_staller").source


def staller_latency(limits: Limits) -> tuple[float, int]:
    """Seconds for 6 distinct probe-stalling programs x 4 seeds on 2 workers, and how many were flagged."""
    with WorkerPool(workers=2) as pool:
        pool.warm()
        sources = [_staller() + f"\n# variant {i}\n" for i in range(6)]
        start = time.perf_counter()
        results = pool.run_many(sources, seeds=[0, 1, 2, 3], limits=limits, policy=UNCHECKED)
        seconds = time.perf_counter() - start
    return seconds, sum(all(r.outcome == "violation" for r in records) for records in results)


def check_rate(seconds: float = 1.5) -> tuple[float, int] | None:
    try:
        from sandbox.check import check
    except ImportError:
        return None
    sources = TYPICAL_OUTPUTS + [reference_source("greedy")[1], envs.get("2048").example]
    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for s in sources:
            check(s)
        calls += len(sources)
    return calls / (time.perf_counter() - start), len(sources)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=40, help="games per setup and round (default 40)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of plain, 1 worker, 2 workers side by side; medians reported (default 5)")
    parser.add_argument("--strategy", default="greedy", help="baseline source name (default greedy)")
    args = parser.parse_args()
    name, source = reference_source(args.strategy)
    seeds = list(range(args.games))
    limits = Limits(move_seconds=2.0, game_seconds=60.0)
    plain(source, seeds[:3], limits)  # warm the engine in this process

    # The three setups run back to back in each round, so a load from elsewhere on a shared
    # machine hits all of them alike: the per-round ratios are what to read, their median the figure.
    pools, startups = {}, {}
    for workers in (1, 2):
        start = time.perf_counter()
        pools[workers] = WorkerPool(workers=workers)
        pools[workers].warm()
        startups[workers] = time.perf_counter() - start
    times: dict[str, list[float]] = {"plain": [], "1": [], "2": []}
    ratios: dict[str, list[float]] = {"1": [], "2": []}
    cpu_ratios: dict[str, list[float]] = {"1": [], "2": []}
    moves = 0
    try:
        for _ in range(args.rounds):
            cpu = time.process_time()
            p_sec, moves = plain(source, seeds, limits)
            p_cpu = time.process_time() - cpu
            times["plain"].append(p_sec)
            for workers in (1, 2):
                sec, cpu, _ = sandboxed(pools[workers], source, seeds, limits)
                times[str(workers)].append(sec)
                ratios[str(workers)].append(sec / p_sec)
                cpu_ratios[str(workers)].append(cpu / p_cpu)
    finally:
        for pool in pools.values():
            pool.close()

    med = statistics.median
    print(f"reference strategy: {name}; {args.games} games of 2048 (4x4), seeds 0..{args.games - 1}, "
          f"{args.rounds} rounds side by side; {os.cpu_count()} CPU cores; medians")
    print(f"{'setup':34} {'seconds':>8} {'games/s':>9} {'moves/s':>10} {'time vs plain':>14} {'per round':>24}")
    print(f"{'plain in-process (exec, same loop)':34} {med(times['plain']):8.2f} "
          f"{args.games / med(times['plain']):9.1f} {moves / med(times['plain']):10.0f} {1.0:13.2f}x")
    for workers in (1, 2):
        sec = med(times[str(workers)])
        label = f"sandbox.run, {workers} worker{'s' if workers > 1 else ''}"
        spread = " ".join(f"{r:.2f}" for r in ratios[str(workers)])
        print(f"{label:34} {sec:8.2f} {args.games / sec:9.1f} {moves / sec:10.0f} "
              f"{med(ratios[str(workers)]):13.2f}x {spread:>24}")
    print("CPU time vs plain (all processes of the pool, children included; steadier on a shared machine): "
          + ", ".join(f"{w} worker{'s' if w > 1 else ''} {med(cpu_ratios[str(w)]):.2f}x "
                      f"({' '.join(f'{r:.2f}' for r in cpu_ratios[str(w)])})" for w in (1, 2)))
    print(f"worker pool start (warm()): 1 worker {startups[1]:.2f}s, 2 workers {startups[2]:.2f}s")
    print(f"GRPO-style group, 8 new programs x 4 seeds, 2 workers: {group_latency(source, limits) * 1000:.0f} ms")
    seconds, flagged = staller_latency(Limits(move_seconds=1.0, game_seconds=10.0))
    print(f"6 programs that stall only when replayed, x 4 seeds, 2 workers: {seconds:.2f} s "
          f"({flagged} of 6 scored as violations)")
    rate = check_rate()
    if rate is None:
        print("sandbox.check not available: check calls/s not measured")
    else:
        print(f"sandbox.check on {rate[1]} typical outputs: {rate[0]:,.0f} calls/s (target >= 2,000/s)")


if __name__ == "__main__":
    main()
