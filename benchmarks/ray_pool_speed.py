"""Sandbox pools side by side: the local ``WorkerPool`` vs the Ray ``RayPool`` on this machine.

Both pools get the same width (``--workers``, default: this machine's cores), the same secret,
the same programs and the same seeds, and are warmed before timing. Printed:

1. games/s per kind of program (``--kind-programs`` distinct programs x ``--games`` seeds):
   the corner and greedy baselines (every copy made a distinct program by a constant, so each
   pays its own determinism probe) and clean programs drawn from ``sandbox.strategies``;
2. wall seconds for batches of ``--batches`` programs (default 64, 256, 1,024) x ``--games``
   games of the mix (1/4 corner, 1/4 greedy, 1/2 generated), both pools, and the ratio
   Ray/local measured in the same run (``--repeat``: medians of runs in alternating order);
   the records of both pools are compared (they must be equal but for the measured time);
3. where one node stops keeping up with a GPU's rollouts, from the programs/s measured per
   core and an explicit GPU figure (``--gpu-batch`` programs per rollout of ``--gpu-seconds``).

Ray is started locally (or joined, per Ray's own settings: ``RAY_ADDRESS``) by the pool.
Figures only; nothing is asserted.

    python benchmarks/ray_pool_speed.py [--batches 64,256,1024] [--games 8] [--workers N] [--repeat 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rewards  # noqa: E402
from envs.game2048.baselines import SOURCES  # noqa: E402
from sandbox_speed import pool_cpu  # noqa: E402  (this folder is on sys.path when run as a script)
from sandbox.runner import WorkerPool, _available_cores  # noqa: E402

SECRET = b"ray-pool-speed!!"

# The GPU side, from an earlier measurement (one H100, HF generate, batch 256, 256 new
# tokens): 11.6 ms per decoding step with the static cache, so 256 x 11.6 ms = 2.97 s for a
# rollout of 256 programs; 87 ms per step with the default dynamic cache (22.3 s).
GPU_BATCH = 256
GPU_SECONDS = 256 * 0.0116
GPU_SECONDS_DYNAMIC = 256 * 0.087


def distinct(source: str, tag: int) -> str:
    """``source`` made a distinct program (a constant in its body): no cache hit, its own probe."""
    return source.replace("def strategy(board):\n", f"def strategy(board):\n    variant = {tag}\n", 1)


def generated_programs(count: int) -> list[str]:
    """``count`` clean programs from ``sandbox.strategies.clean_strategies``, the same ones every run."""
    from hypothesis import HealthCheck, Phase, given, settings

    from sandbox.strategies import clean_strategies

    out: list[str] = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(clean_strategies(max_statements=4))
    def collect(source: str) -> None:
        out.append(source)

    collect()
    return out[:count] or [SOURCES["corner"]]


def programs(kind: str, count: int, generated: list[str], offset: int = 0) -> list[str]:
    """``count`` distinct programs of ``kind``: corner, greedy, generated, or mix (1/4, 1/4, 1/2)."""
    out = []
    for i in range(count):
        k = kind if kind != "mix" else ("corner", "greedy", "generated", "generated")[i % 4]
        source = SOURCES[k] if k in SOURCES else generated[(i + offset) % len(generated)]
        out.append(distinct(source, offset + i))
    return out


def timed(pool, sources: list[str], seeds: list[int], limits) -> tuple[float, list]:
    start = time.perf_counter()
    records = pool.run_many(sources, seeds=seeds, limits=limits)
    return time.perf_counter() - start, records


def local_cpu(pool: WorkerPool) -> float:
    """CPU seconds used so far by this process and the local pool's processes (``sandbox_speed.pool_cpu``).

    Unlike wall time, CPU time does not grow when another job takes the cores, so programs per
    CPU second is the figure to scale to another machine.
    """
    own = os.times()
    return pool_cpu(pool) + own.user + own.system


def both(local, ray_pool, sources: list[str], seeds: list[int], limits,
         repeat: int) -> tuple[float, float, float, bool]:
    """Median wall seconds of the local and the Ray pool on the same batch (the order alternates between
    repeats, so neither always runs first on a shared machine), the local pool's median CPU seconds,
    and whether the two pools' records agree."""
    local_times, ray_times, cpu_times, same = [], [], [], True
    for r in range(repeat):
        order = [(local, local_times), (ray_pool, ray_times)]
        records = []
        for pool, times in (order if r % 2 == 0 else order[::-1]):
            cpu = local_cpu(local) if pool is local else 0.0
            seconds, out = timed(pool, sources, seeds, limits)
            if pool is local:
                time.sleep(0.05)  # let the zygotes reap their last children, so their CPU time counts
                cpu_times.append(local_cpu(local) - cpu)
            times.append(seconds)
            records.append(timeless(out))
        same = same and records[0] == records[1]
    return statistics.median(local_times), statistics.median(ray_times), statistics.median(cpu_times), same


def timeless(records: list) -> list:
    return [[dataclasses.replace(r, wall_seconds=0.0) for r in rs] for rs in records]


def load() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="64,256,1024", help="programs per batch, comma-separated")
    parser.add_argument("--games", type=int, default=8, help="seeded games per program")
    parser.add_argument("--workers", type=int, default=None, help="width of both pools (default: cores)")
    parser.add_argument("--kind-programs", type=int, default=32, help="programs per kind in part 1 (0: skip)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measure, alternating the order; medians")
    parser.add_argument("--gpu-batch", type=int, default=GPU_BATCH, help="programs per GPU rollout")
    parser.add_argument("--gpu-seconds", type=float, default=GPU_SECONDS, help="seconds per GPU rollout")
    args = parser.parse_args(argv)
    try:
        from sandbox.ray_pool import RayPool, _import_ray

        _import_ray()
    except ImportError as exc:
        print(f"ray_pool_speed: {exc}")
        return 0

    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    workers = args.workers or _available_cores()
    limits = rewards.default_spec().limits
    seeds = list(range(args.games))
    print(f"shared machine, other jobs running: {os.cpu_count()} cores, {load()} at the start")
    print(f"both pools: {workers} workers, {args.games} games per program, limits {limits}")
    generated = generated_programs(64)

    t0 = time.perf_counter()
    local = WorkerPool(workers, secret=SECRET)
    local.warm()
    local_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    ray_pool = RayPool(workers, secret=SECRET)
    ray_pool.warm()
    ray_start = time.perf_counter() - t0
    print(f"start: local pool {local_start:.1f} s; Ray pool {ray_start:.1f} s (ray.init, actors, zygotes): "
          f"{ray_pool!r}")
    try:
        # Warm-up: the first games of each kind in each process (Numba caches are warm already).
        warm = programs("mix", 8, generated, offset=10_000)
        timed(local, warm, seeds[:2], limits)
        timed(ray_pool, warm, seeds[:2], limits)

        per_core: dict[str, float] = {}
        if args.kind_programs > 0:
            print(f"\n1. games/s by kind ({args.kind_programs} distinct programs x {args.games} games each)\n")
            print("| programs | games | local s | local games/s | local games/CPU-s | Ray s | Ray games/s "
                  "| Ray/local time |")
            print("|---|---|---|---|---|---|---|---|")
            for kind in ("corner", "greedy", "generated", "mix"):
                sources = programs(kind, args.kind_programs, generated, offset=20_000)
                ls, rs, cpu, equal = both(local, ray_pool, sources, seeds, limits, args.repeat)
                games = len(sources) * len(seeds)
                same = "" if equal else " (records DIFFER)"
                per_core[kind] = len(sources) / cpu
                print(f"| {kind} | {games} | {ls:.2f} | {games / ls:.1f} | {games / cpu:.1f} | {rs:.2f} | "
                      f"{games / rs:.1f} | {rs / ls:.2f}x{same} |", flush=True)

        print(f"\n2. a batch of the mix (1/4 corner, 1/4 greedy, 1/2 generated) x {args.games} games\n")
        print("| programs | games | local s | local programs/s | local CPU s | Ray s | Ray programs/s "
              "| Ray/local time | records |")
        print("|---|---|---|---|---|---|---|---|---|")
        rates = []
        for n in batches:
            sources = programs("mix", n, generated, offset=100_000 * (1 + batches.index(n)))
            ls, rs, cpu, equal = both(local, ray_pool, sources, seeds, limits, args.repeat)
            rates.append((n, n / ls, n / rs, n / cpu))
            same = "equal" if equal else "DIFFER"
            print(f"| {n} | {n * len(seeds)} | {ls:.1f} | {n / ls:.1f} | {cpu:.1f} | {rs:.1f} | {n / rs:.1f} | "
                  f"{rs / ls:.2f}x | {same} |", flush=True)
        print(f"\n{load()} at the end")

        if rates:
            n, local_rate, ray_rate, core_rate = rates[-1]
            gpu_rate = args.gpu_batch / args.gpu_seconds
            dyn_rate = args.gpu_batch / GPU_SECONDS_DYNAMIC
            print("\n3. one node against a GPU's rollouts\n")
            print(f"assumption: a GPU rollout samples {args.gpu_batch} programs in {args.gpu_seconds:.2f} s "
                  f"(H100, batch 256 x 256 new tokens, 11.6 ms per decoding step with the static cache, "
                  f"an earlier H100 measurement): {gpu_rate:.1f} programs/s to score, each on {args.games} games; "
                  f"with the dynamic cache (87 ms per step) {dyn_rate:.1f} programs/s. Every program is "
                  f"assumed distinct and compliant (no cache hit, none rejected before running).")
            print(f"measured: the mix at {n} programs, local pool {local_rate:.1f} programs/s on {workers} "
                  f"workers (wall; shared machine), {core_rate:.2f} programs per CPU second; "
                  f"Ray pool {ray_rate:.1f} programs/s ({ray_rate / local_rate:.2f}x the local pool's rate)")
            for kind, rate in per_core.items():
                print(f"  {kind}: {rate:.2f} programs per CPU second -> {gpu_rate / rate:.0f} cores to keep up")
            need = gpu_rate / core_rate
            print(f"cores to keep up with one GPU on the mix: {need:.0f} (static cache), "
                  f"{dyn_rate / core_rate:.0f} (dynamic cache)")
            for cores in (8, 32, 64, 128):
                sustained = core_rate * cores
                verdict = "keeps up" if sustained >= gpu_rate else f"falls behind ({gpu_rate / sustained:.1f}x)"
                print(f"  a node of {cores} cores: {sustained:.0f} programs/s, {verdict}; "
                      f"a rollout's {args.gpu_batch} programs in {args.gpu_batch / sustained:.1f} s; "
                      f"keeps up with {sustained / gpu_rate:.1f} GPUs")
    finally:
        ray_pool.close()
        local.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
