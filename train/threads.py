"""How many CPU threads the trainer's own work uses: torch's intra-op pool and the Numba kernels' pool.

Sampling and the update run on torch and :mod:`train.cpu_kernels`; the sandbox's games run in separate
worker processes during the reward phase, while the trainer waits for them, so the phases take turns
on the cores rather than competing. What does compete is anything else on the machine: a parallel
region of N threads on N cores waits for its slowest thread, so one busy process beside a 2-thread
rollout stalls every region it lands on. ``threads = cores - busy cores`` avoids that (docs/benchmarks.md, "Beside
a busy process", has the measured slowdowns).
"""
from __future__ import annotations

__all__ = ["use_threads"]


def use_threads(threads: int = 0) -> int:
    """Set torch's and Numba's thread counts to ``threads``; returns the count set.

    0 keeps torch's own count (every core, or ``OMP_NUM_THREADS`` where it is set, as torchrun sets it
    for each rank) and gives the Numba kernels the same. Numba's pool cannot grow past the size it
    started with (``NUMBA_NUM_THREADS``, every core by default), so a larger request is capped there.
    """
    import numba
    import torch

    n = threads if threads > 0 else torch.get_num_threads()
    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return n
