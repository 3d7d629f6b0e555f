"""Training statistics pooled over DDP ranks.

DDP copies rank 0's buffers to every rank before each forward, so a buffer that sums up training
data (the standardized head's totals, the trained lengths) would end up holding rank 0's batches
only: 1/world_size of the training set. Its updates go through these first. Plain
``torch.distributed`` collectives without a barrier: on a GPU they queue on the stream and the
host does not wait (``tests/test_host_sync.py``). Without a process group they return their input.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """The number of DDP ranks; 1 without a process group."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_ranks(tensor: torch.Tensor) -> list[torch.Tensor]:
    """``tensor`` of every rank, in rank order, on every rank (``[tensor]`` in one process)."""
    if world_size() == 1:
        return [tensor]
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return parts


def sum_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the ranks, in place (``tensor`` itself in one process)."""
    if world_size() > 1:
        dist.all_reduce(tensor)
    return tensor
