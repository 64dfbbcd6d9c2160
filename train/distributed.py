"""Data-parallel GRPO over ``torch.distributed``: which groups a rank owns and how the ranks agree.

``torchrun --nproc_per_node N -m codepolicy train ...`` (or ``accelerate launch``) starts N copies of the
same run; each reads its place from the environment the launcher sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``). Every rank derives the same
:class:`train.loop.StepPlan` from ``(seed, step)``, then:

1. samples its contiguous block of the step's groups (:meth:`Ranks.groups`), drawing the random numbers
   of its rows from the whole batch's stream, so a row's tokens do not depend on how many ranks there are;
2. scores its groups, then every rank gathers every group's rewards (:meth:`Ranks.gather`): the
   advantages, the logged figures and the best programs are those of the whole batch;
3. computes its share of the loss with the batch-wide normalisers (sequence count, token count from
   :meth:`Ranks.sum`), so the LoRA gradients summed over the ranks (:meth:`Ranks.sum_grads`) are exactly
   the one-process gradient, and every rank takes the same optimizer step.

Rank 0 alone writes (metrics, curves, best programs, checkpoints, held-out evaluation); every rank
restores the same checkpoint on ``--resume`` (the run directory must be on a filesystem all ranks
see). A stop request (Ctrl-C) is agreed at each safe point (:meth:`Ranks.any`), so all ranks stop
at the same one. Backends: NCCL when the ranks train on GPUs, gloo on the CPU.

One process is :data:`SINGLE`: the same calls, each the identity, so the loop has one code path.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

__all__ = ["Ranks", "SINGLE", "launched", "setup", "teardown"]

# How long a rank waits for the others at a collective: rank 0 alone runs the held-out evaluation and
# writes checkpoints while the others wait at the next step's gather.
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes, and the collectives the loop needs."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        """True on the rank that writes (rank 0)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when there is more than one rank (the collectives then communicate)."""
        return self.world > 1

    def groups(self, prompts_per_step: int) -> range:
        """This rank's groups of a step: a contiguous block, in rank order, of ``prompts_per_step / world``."""
        if prompts_per_step % self.world:
            raise ValueError(f"prompts_per_step ({prompts_per_step}) must be a multiple of the number of ranks "
                             f"({self.world}): each rank samples the same number of groups")
        share = prompts_per_step // self.world
        return range(self.rank * share, (self.rank + 1) * share)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank (picklable objects)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def _reduce(self, values: Sequence[float], op: str) -> list[float]:
        if not self.active:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._device())
        torch.distributed.all_reduce(t, op=getattr(torch.distributed.ReduceOp, op))
        return t.tolist()

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over the ranks."""
        return self._reduce(values, "SUM")

    def max(self, values: Sequence[float]) -> list[float]:
        """Element-wise maxima over the ranks (times: a step waits for its slowest rank)."""
        return self._reduce(values, "MAX")

    def any(self, flag: bool) -> bool:
        """True on every rank when any rank's ``flag`` is true (a stop request reaches all ranks at once)."""
        return bool(self.max([float(flag)])[0])

    def sum_grads(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Sum the gradients over the ranks in place, in one flat all-reduce per dtype and device."""
        if not self.active:
            return
        buckets: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
        for p in params:
            if p.grad is not None:
                buckets.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
        # Ranks must issue the same collectives in the same order: iterate in a fixed key order.
        for key in sorted(buckets, key=lambda k: (str(k[0]), str(k[1]))):
            grads = buckets[key]
            flat = torch.cat([g.reshape(-1) for g in grads])
            torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
            offset = 0
            for g in grads:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()

    def broadcast_params(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Copy rank 0's values of ``params`` to every rank (the same starting point, whatever happened before)."""
        if not self.active:
            return
        with torch.no_grad():
            for p in params:
                torch.distributed.broadcast(p.data, src=0)

    def _device(self) -> torch.device:
        # NCCL reduces only CUDA tensors; gloo reduces CPU ones.
        if torch.distributed.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


SINGLE = Ranks()


def launched() -> bool:
    """True when a launcher (torchrun, accelerate launch) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str) -> tuple[Ranks, str, bool]:
    """Join the process group the launcher set up; returns ``(ranks, device, joined_here)``.

    One process (no launcher): :data:`SINGLE`, ``device`` unchanged. Several: ``device`` ``auto``/``cuda``
    becomes this rank's GPU (``cuda:LOCAL_RANK``) with NCCL, the CPU uses gloo. ``joined_here`` says
    whether this call initialised the group (and :func:`teardown` should destroy it).
    """
    if not launched():
        return SINGLE, device, False
    import torch.distributed as dist

    env = os.environ
    ranks = Ranks(rank=int(env["RANK"]), world=int(env["WORLD_SIZE"]), local_rank=int(env.get("LOCAL_RANK", "0")),
                  local_world=int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])))
    wants_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if wants_gpu:
        if torch.cuda.device_count() < ranks.local_world:
            raise RuntimeError(f"{ranks.local_world} ranks on this node but {torch.cuda.device_count()} GPU(s) "
                               f"visible: start one rank per GPU (torchrun --nproc_per_node)")
        torch.cuda.set_device(ranks.local_rank)
        device = f"cuda:{ranks.local_rank}"
    elif device.startswith("cuda:"):
        raise ValueError(f"device {device!r}: under a launcher each rank picks its own GPU; use device = 'auto'")
    joined_here = not dist.is_initialized()
    if joined_here:
        dist.init_process_group(backend="nccl" if wants_gpu else "gloo", timeout=COLLECTIVE_TIMEOUT)
    if dist.get_world_size() != ranks.world or dist.get_rank() != ranks.rank:
        raise RuntimeError(f"process group (rank {dist.get_rank()} of {dist.get_world_size()}) does not match "
                           f"the launcher's environment (rank {ranks.rank} of {ranks.world})")
    return ranks, device, joined_here


def teardown(joined_here: bool) -> None:
    """Leave the process group if :func:`setup` joined it."""
    if joined_here and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
