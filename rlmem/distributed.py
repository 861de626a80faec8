"""Data-parallel training across processes (``torchrun``), and the rules that keep ranks in step.

``torchrun --nproc_per_node=N -m rlmem.train ...`` starts N processes with ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` set; :func:`init` joins them into a process group (gloo on CPU, NCCL on CUDA). A plain
``python -m rlmem.train`` is a world of one and makes no collective call at all.

Rules (DESIGN.md, "The training engine, distribution and devices"):

* Every decision that changes how many collective calls a rank makes (stop on a time budget, leave PPO's epoch
  loop on ``target_kl``, how many segments a batch has) is taken from values all ranks agree on:
  :meth:`World.any` / :meth:`World.mean` of each rank's view, never from one rank's view alone.
* Gradients are averaged with :meth:`World.average_gradients`, one collective per optimizer step, over a flat
  buffer. We do this instead of wrapping the policy in ``DistributedDataParallel``: a policy's forward returns a
  distribution object and a state dict, not tensors DDP can trace; some parameters get no gradient in some steps
  (ELMUR's write path when memory is detached between segments), which DDP only tolerates with
  ``find_unused_parameters`` and a graph walk per step; and rollouts call the unwrapped ``policy.step`` anyway.
  Small RL models gain little from DDP's overlap of communication with the backward pass.
* Only rank 0 writes files.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (``size == 1``: no process group)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    comm_device: str = "cpu"  # where host values are put for a collective (NCCL needs CUDA tensors)

    @property
    def is_main(self) -> bool:
        """True on the rank that writes files and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self, requested: str) -> torch.device:
        """The device of this rank: ``cuda`` (without an index) becomes ``cuda:LOCAL_RANK`` under torchrun."""
        dev = torch.device(requested)
        if dev.type == "cuda" and dev.index is None and self.distributed:
            return torch.device("cuda", self.local_rank)
        return dev

    # -- agreement ---------------------------------------------------------------------------------------
    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one."""
        if not self.distributed:
            return flag
        t = torch.tensor([float(flag)], device=self.comm_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def sum_(self, t: Tensor) -> Tensor:
        """All-reduce (sum) ``t`` in place across ranks; returns it."""
        if self.distributed:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def mean(self, t: Tensor) -> Tensor:
        """The mean of ``t`` over ranks (a new tensor)."""
        if not self.distributed:
            return t
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t / self.size

    def broadcast_object(self, obj: object) -> object:
        """Rank 0's ``obj`` (picklable) on every rank."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=torch.device(self.comm_device))
        return box[0]

    def gather_objects(self, obj: object) -> list[object]:
        """Every rank's ``obj`` (picklable), in rank order."""
        if not self.distributed:
            return [obj]
        out: list[object] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    # -- parameters and gradients ------------------------------------------------------------------------
    def broadcast_(self, tensors: Iterable[Tensor]) -> None:
        """Copy rank 0's values of ``tensors`` (parameters, buffers) into every rank's, in place."""
        if not self.distributed:
            return
        for t in tensors:
            with torch.no_grad():
                dist.broadcast(t.data, src=0)

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over ranks, in one collective over a flat buffer.

        A parameter without a gradient on some rank counts as zero there; one without a gradient on every rank
        keeps ``grad = None``, as in a single process (so an optimizer skips it the same way)."""
        if not self.distributed:
            return
        params = [p for p in params if p.requires_grad]
        if not params:
            return
        ref = params[0]
        flat = torch.cat([
            *(p.grad.reshape(-1) if p.grad is not None else ref.new_zeros(p.numel()) for p in params),
            torch.tensor([float(p.grad is not None) for p in params], dtype=ref.dtype, device=ref.device),
        ])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.size
        present = flat[-len(params):] > 0
        offset = 0
        for p, has in zip(params, present.tolist(), strict=True):
            n = p.numel()
            if has:
                g = flat[offset:offset + n].view_as(p)
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.copy_(g)
            offset += n

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


#: how long a rank waits in a collective call before the run is aborted. Work that only rank 0 does while the others
#: wait (collecting a missing dataset, periodic evaluation) must fit in it; ``RLMEM_DIST_TIMEOUT_S`` overrides it.
DEFAULT_TIMEOUT_S = 4 * 3600.0


def init(device: str = "cpu", timeout_s: float | None = None) -> World:
    """Join the process group ``torchrun`` describes in the environment, or return a world of one.

    The backend is NCCL when ``device`` is CUDA, gloo otherwise."""
    if timeout_s is None:
        timeout_s = float(os.environ.get("RLMEM_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.device(device).type == "cuda"
    world = World(rank, size, local_rank, f"cuda:{local_rank}" if cuda else "cpu")
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(world.device(device))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return world


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
