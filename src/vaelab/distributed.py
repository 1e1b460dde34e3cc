"""Data-parallel training with PyTorch's own engine: DistributedDataParallel under torchrun.

    torchrun --nproc_per_node 2 -m vaelab train ...

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here is a no-op and
vaelab runs as one process. Every rank holds the whole data set and draws the same permutation
(same seed), then takes its own slice of each global batch, so the global batch size and the
order of examples are those of a one-process run. Gradients are averaged by DDP; metric sums
are all-reduced; rank 0 alone writes the run directory. The noise (z samples, dynamic
binarization) is drawn per rank from a rank-specific stream, so a 2-process run follows the
1-process loss trajectory statistically, not bit for bit.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import VaelabError


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def local_slice(self, n: int) -> slice:
        """This rank's part of a batch of n: as even as possible, the first ranks one larger."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def broadcast(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.broadcast(t, src=0)
        return t

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


_CONTEXT = Context()


def context() -> Context:
    return _CONTEXT


def init(device_name: str) -> Context:
    """Join the process group torchrun describes (gloo on CPU, nccl on GPU); idempotent."""
    global _CONTEXT
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or _CONTEXT.enabled:
        return _CONTEXT
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    except (RuntimeError, ValueError) as e:
        raise VaelabError(
            f"cannot join the torchrun process group ({e}); launch with "
            "`torchrun --nproc_per_node N -m vaelab train ...`"
        ) from None
    _CONTEXT = Context(rank, world, local_rank)
    # Leave the group while the interpreter is whole: a process that exits without it can abort
    # ("terminate called without an active exception", SIGABRT) when gloo's worker threads still
    # hold tensors as Python tears down; seen once on this project's CI, on rank 1 of an evaluate.
    atexit.register(_leave)
    return _CONTEXT


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def device_for(ctx: Context, device: torch.device) -> torch.device:
    """Each rank of a multi-GPU run gets its own GPU."""
    if ctx.enabled and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VaelabError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(name)
