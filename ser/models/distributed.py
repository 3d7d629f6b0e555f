"""What DDP ranks must share and what they must not.

DDP copies rank 0's buffers to every rank before each forward, so a buffer that sums up training
data (the standardized head's totals, the trained lengths) would end up holding rank 0's batches
only: 1/world_size of the training set. Its updates go through these first. Plain
``torch.distributed`` collectives without a barrier: on a GPU they queue on the stream and the
host does not wait (``tests/test_host_sync.py``). Without a process group they return their input.

Work one rank does while the others wait (rank 0 building a feature store over a large corpus)
can outlast the process group's timeout (30 min by default): ``wait_for_ranks`` waits without one.

``seed_everything`` gives every rank the same random state, so the N batches of a training step
would draw the same speed, noise rows, SpecAugment masks and dropout; ``seed_training_batch``
gives each rank its own, and each training batch a seed of its own.
"""

from __future__ import annotations

import os
import random
from datetime import timedelta

import numpy as np
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


# How long ranks wait for each other in ``wait_for_ranks``: for ever, in effect.
NO_TIMEOUT = timedelta(days=10000)


def wait_for_ranks() -> None:
    """Return when every rank has called this, however long that takes: a barrier over a gloo
    group of its own whose timeout never ends (the process group's own barrier fails after its
    timeout, 30 min by default, where rank 0 takes longer; Lightning waits for ``prepare_data``
    the same way). Returns at once in one process."""
    if world_size() == 1:
        return
    group = dist.new_group(backend="gloo", timeout=NO_TIMEOUT)
    try:
        dist.monitored_barrier(group, timeout=NO_TIMEOUT, wait_all_ranks=True)
    finally:
        dist.destroy_process_group(group)


def seed_training_batch(epoch: int, batch: int, rank: int) -> None:
    """Seed Python's, numpy's and torch's generators (host and devices) for one training batch
    from the run's seed, the epoch, the batch's index in it and the DDP rank.

    What a training step draws (speed, noise rows, SpecAugment masks, dropout, a probe's stored
    copy) then depends on where the step is in the run, not on what this process ran before it:
    a run resumed from a checkpoint draws what the uninterrupted run drew (checkpoints hold no
    random state, and a resumed process seeded once at its start drew epoch 0's draws again),
    and each DDP rank draws its own (``seed_everything`` gives every rank one state). Nothing is
    seeded without ``seed_everything`` (each process then draws from a seed of its own).
    """
    seed = os.environ.get("PL_GLOBAL_SEED")
    if seed is None:
        return
    batch_seed = int(np.random.SeedSequence([int(seed), epoch, batch, rank]).generate_state(1)[0])
    random.seed(batch_seed)
    np.random.seed(batch_seed)
    # The generators a step draws from. torch.manual_seed would also queue seeds for every
    # uninitialised backend (CUDA on a CPU run, XPU, MTIA), formatting a stack trace for each:
    # 0.2 ms a step.
    torch.default_generator.manual_seed(batch_seed)
    if torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(batch_seed)
    if torch.backends.mps.is_available():
        torch.mps.manual_seed(batch_seed)
