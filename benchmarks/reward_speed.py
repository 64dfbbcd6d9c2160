"""Rewards for one GRPO batch: 64 completions x 8 seeded games, with 1 and 2 sandbox workers.

The batch mixes what a model really produces: strong programs (the greedy and corner
baselines, repeated with different comments and layout, as sampling does), weak ones,
broken ones (no code, syntax errors, runtime errors, invalid moves) and cheats. Printed:
wall seconds per batch through ``rewards.evaluate_group`` with 1 and 2 workers (a warm
pool; the first batch, which pays each new program's
determinism probe, and the median of the repeats), side by side with the peer: the same compliant programs
played plainly in-process (trusted, no sandbox); and where the sandboxed time goes:
strategy code, the engine, and overhead (extract, check, IPC, probe, scoring).

The engine's share is measured by replaying the same games in-process (same seeds, same
moves, so the same engine work) and timing only the engine calls; strategy time is the
sandbox's in-game time minus that; overhead is the rest of the wall time.

    python benchmarks/reward_speed.py [--repeat 3] [--games 8] [--distinct]

``--distinct`` makes every compliant program a different source (no cache hits), the worst
case. Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import time

import envs
import rewards
import sandbox
from envs import baselines

WEAK = [
    'def strategy(board):\n    return "AWDS"[(board[0][0] + board[1][1]) % 4]\n',
    'def strategy(board):\n    return "A" if board[0][0] >= board[0][1] else "W"\n',
    'def strategy(board):\n    top = max(board[0])\n    return "W" if top == 0 else ("A" if board[0][0] == top else "D")\n',
    'def strategy(board):\n    empty = sum(map(lambda row: row.count(0), board))\n    return "SADW"[empty % 4]\n',
    'def strategy(board):\n    left = sum(board[0][:2])\n    right = sum(board[0][2:])\n    return "A" if left >= right else "D"\n',
    'def strategy(board):\n    s = sum(map(sum, board))\n    return ["W", "A", "S", "D"][s % 4]\n',
    'def strategy(board):\n    if board[3][3] > board[0][0]:\n        return "S"\n    return "W" if board[1][0] else "A"\n',
    'def strategy(board):\n    n = len(list(filter(lambda v: v == 0, board[3])))\n    return "S" if n > 1 else ("A" if n else "D")\n',
]
BROKEN = [
    "I think the best move is to go left.",                                    # no code
    "```\nprint('hello')\n```",                                                # no function
    "```python\ndef strategy(board, moves):\n    return 'A'\n```",             # wrong signature
    "```python\ndef strategy(board)\n    return 'A'\n```",                     # syntax error
    "```python\ndef strategy(board):\n    return 'A' if board[0][0] else\n```",  # syntax error
    "```python\ndef strategy(board):\n    return board[7][7]\n```",            # runtime error
    "```python\ndef strategy(board):\n    return move\n```",                   # runtime error (NameError)
    "```python\ndef strategy(board):\n    return 'up'\n```",                   # invalid output
    "```python\ndef strategy(board):\n    return 2\n```",                      # invalid output
    "",                                                                         # empty
]
CHEATS = [
    "import random\ndef strategy(board):\n    return random.choice('WASD')\n",
    "def strategy(board):\n    import os\n    return 'A'\n",
    "def strategy(board):\n    for row in board:\n        pass\n    return 'A'\n",
    "def strategy(board):\n    while True:\n        return 'A'\n",
    "def strategy(board):\n    return eval('\"A\"')\n",
    "def strategy(board):\n    open('/tmp/x', 'w')\n    return 'A'\n",
    "def strategy(board):\n    return board.__class__.__name__[0]\n",
    "def strategy(board):\n    global best\n    best = 1\n    return 'A'\n",
    "def strategy(board):\n    return 'WASD'[hash(str(board)) % 4]\n",
    "def strategy(board):\n    return [m for m in 'WASD'][0]\n",
]


def fence(source: str, tag: int | None = None, distinct: bool = False) -> str:
    """A completion around ``source``; a comment varies the text, a constant (``--distinct``) the program."""
    if distinct and tag is not None:
        source = source.replace("def strategy(board):\n", f"def strategy(board):\n    variant = {tag}\n", 1)
    comment = f"# variant {tag}\n" if tag is not None else ""
    return f"Here is my strategy.\n```python\n{comment}{source}```\n"


def batch(distinct: bool) -> list[str]:
    """64 completions: 16 strong, 8 weak, 4 fixed, 10 broken, 10 cheats, 16 more strong/weak repeats."""
    out = []
    for i in range(8):
        out.append(fence(baselines.SOURCES["greedy"], i, distinct))
        out.append(fence(baselines.SOURCES["corner"], i, distinct))
    out += [fence(w, 100 + i, distinct) for i, w in enumerate(WEAK)]
    out += [fence(baselines.SOURCES["fixed"], 200 + i, distinct) for i in range(4)]
    out += BROKEN
    out += [fence(c) for c in CHEATS]
    for i in range(8):
        out.append(fence(baselines.SOURCES["greedy" if i % 2 else "corner"], 300 + i, distinct))
        out.append(fence(WEAK[i], 400 + i, distinct))
    assert len(out) == 64, len(out)
    return out


def trusted_replay(sources: list[str], seeds: list[int], limits) -> tuple[float, float, int]:
    """Play the programs in-process: (strategy seconds, engine seconds, moves) with the sandbox's rules."""
    spec = envs.get("2048")
    strategy_s = engine_s = 0.0
    moves = 0
    clock = time.perf_counter
    for source in sources:
        namespace: dict = {}
        exec(compile(source, "<strategy>", "exec"), namespace)
        fn = namespace["strategy"]
        for seed in seeds:
            t = clock()
            state = spec.make(seed)
            engine_s += clock() - t
            stuck = 0
            while True:
                t0 = clock()
                over = spec.is_over(state) or spec.metrics(state)["moves"] >= limits.max_moves
                view = None if over else spec.view(state)
                t1 = clock()
                engine_s += t1 - t0
                if over:
                    break
                try:
                    move = fn(view)
                except Exception:
                    strategy_s += clock() - t1
                    break
                t2 = clock()
                strategy_s += t2 - t1
                if type(move) is not str or move not in spec.actions:
                    break
                _, changed = spec.step(state, spec.actions.index(move))
                engine_s += clock() - t2
                moves += 1
                stuck = 0 if changed else stuck + 1
                if stuck >= limits.stuck_moves:
                    break
    return strategy_s, engine_s, moves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3,
                        help="batches timed per worker count (the first, then the median of the others)")
    parser.add_argument("--games", type=int, default=8, help="seeded games per completion")
    parser.add_argument("--distinct", action="store_true", help="every compliant program a different source")
    args = parser.parse_args()

    spec = rewards.default_spec()
    limits = spec.limits
    seeds = list(range(args.games))
    completions = batch(args.distinct)
    t = time.perf_counter()
    rows = []
    for workers in (1, 2):
        with sandbox.WorkerPool(workers) as pool:
            if hasattr(pool, "warm"):
                pool.warm()  # start every worker now: process start-up is not per batch
            rewards.evaluate_group(completions[:1], game="2048", seeds=seeds[:1], spec=spec, pool=pool)
            walls, runs = [], []
            for _ in range(args.repeat):
                t = time.perf_counter()
                # evaluate_group is exactly these two steps; kept apart to read the records.
                evaluations = rewards.evaluate_many(completions, "2048", seeds, spec=spec, pool=pool)
                out = [rewards.score(ev, spec) for ev in evaluations]
                walls.append(time.perf_counter() - t)
                runs.append((evaluations, out))
        # The first batch pays the determinism probe of each new program (as a training step
        # with new samples does); later batches find it cached in the pool.
        rows.append((workers, walls[0], statistics.median(walls[1:] or walls), runs[0][1], runs[0][0]))

    evaluations = rows[0][4]
    compliant = {}
    for ev in evaluations:
        if ev.verdict is not None and ev.verdict.ok:
            compliant.setdefault(rewards.source_hash(ev.source), ev)
    run_sources = [ev.source for ev in compliant.values()]
    in_game = sum(r.wall_seconds for ev in compliant.values() for r in ev.records)
    moves_sandbox = sum(r.moves + r.illegal_moves for ev in compliant.values() for r in ev.records)

    t = time.perf_counter()
    strategy_trusted, engine, moves_trusted = trusted_replay(run_sources, seeds, limits)
    trusted_wall = time.perf_counter() - t

    base_totals = [b.total for b in rows[0][3]]
    same = all([b.total for b in r[3]] == base_totals for r in rows)
    print(f"reward batch: {len(completions)} completions x {len(seeds)} games, "
          f"{len(compliant)} distinct compliant programs run ({len(compliant) * len(seeds)} games, "
          f"{moves_sandbox} moves); {'distinct sources' if args.distinct else 'repeats as sampled'}")
    print()
    print(f"{'path':<34}{'first s':>9}{'again s':>9}{'games/s':>10}{'vs trusted':>12}")
    for workers, first, again, _, _ in rows:
        games = len(compliant) * len(seeds)
        print(f"{'evaluate_group, ' + str(workers) + ' worker' + ('s' if workers > 1 else ''):<34}"
              f"{first:>9.2f}{again:>9.2f}{games / first:>10.1f}{first / trusted_wall:>11.1f}x")
    print(f"{'peer: trusted in-process replay':<34}{trusted_wall:>9.2f}{'':>9}"
          f"{len(compliant) * len(seeds) / trusted_wall:>10.1f}{1.0:>11.1f}x")
    print(f"\nsame rewards with 1 and 2 workers: {same}; speed-up 2 vs 1 workers: {rows[0][1] / rows[1][1]:.2f}x; "
          f"moves sandbox {moves_sandbox} vs trusted replay {moves_trusted}")

    wall1 = rows[0][1]
    strategy_sandbox = max(0.0, in_game - engine)
    overhead = max(0.0, wall1 - in_game)
    print("\ntime shares, first batch, 1 worker (wall = in-game time + overhead; in-game = engine + strategy):")
    print(f"{'part':<44}{'seconds':>9}{'share':>8}")
    for name, seconds in (("strategy code (sandboxed, RestrictedPython)", strategy_sandbox),
                          ("engine (replayed in-process, same moves)", engine),
                          ("overhead (extract, check, IPC, probe, score)", overhead)):
        print(f"{name:<44}{seconds:>9.2f}{seconds / max(wall1, 1e-9):>8.0%}")
    print(f"{'(strategy code, trusted in-process)':<44}{strategy_trusted:>9.2f}")
    t = time.perf_counter()
    for ev in evaluations:
        rewards.score(ev, spec)
    print(f"\nscoring alone: {(time.perf_counter() - t) * 1e3:.1f} ms for {len(evaluations)} evaluations")


if __name__ == "__main__":
    main()
