"""Functions run in processes that ``torch.multiprocessing.spawn`` starts (a module of its own,
light to import: each process imports it anew)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from ser.models.distributed import wait_for_ranks


def wait_late(rank: int, folder: Path, late_s: float) -> None:
    """One of two gloo ranks whose process group times out after 1 s: rank 0 arrives ``late_s``
    later at ``wait_for_ranks``; each writes a file once past it."""
    store = f"file://{folder / 'store'}"
    timeout = timedelta(seconds=1)
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2, timeout=timeout)
    time.sleep(late_s if rank == 0 else 0.0)
    wait_for_ranks()
    (folder / f"rank{rank}").write_text("past")
    dist.destroy_process_group()
