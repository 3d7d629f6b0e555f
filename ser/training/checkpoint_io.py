"""Checkpoints written so that a full disk or a kill never costs the last good one.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction whose temporary file lives
under ``$TMPDIR`` and is *moved* onto the checkpoint: across file systems that move is a copy, so a
full disk or a kill during it leaves a truncated ``last.ckpt`` and the previous good one is gone.
``DurableCheckpointIO`` writes beside the checkpoint, syncs and renames: atomic on one file system.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO


class DurableCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are atomic: temporary file in the same folder,
    flush + fsync, ``os.replace``; a failed save removes it and keeps the previous checkpoint.

    Remote paths (``s3://`` ...) and ``storage_options`` go to Lightning's own save.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        """Save ``checkpoint`` to ``path``; one-line ``OSError`` naming the folder on failure.

        Args:
            checkpoint: the state Lightning dumps (anything ``torch.save`` takes).
            path: the checkpoint file to write or replace.
            storage_options: passed to Lightning's save, which refuses it as ours would.
        """
        if storage_options is not None or not is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()  # serialised first: its size is the space the error names
        torch.save(checkpoint, buffer)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            write_synced(tmp, buffer.getbuffer())
            os.replace(tmp, path)
        except BaseException as err:  # Ctrl-C too: no stray temporary file
            tmp.unlink(missing_ok=True)
            if isinstance(err, OSError):
                raise OSError(save_error(path, buffer.getbuffer().nbytes, err)) from None
            raise
        sync_folder(path.parent)


def is_local(path: str | Path) -> bool:
    """Whether ``path`` is on a local file system (not ``s3://`` ...), as Lightning sees it."""
    protocol = get_filesystem(path).protocol  # fsspec's: a name or a tuple of names
    return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))


def write_synced(path: Path, data: memoryview) -> None:
    """Write ``data`` to ``path`` and wait until it is on the disk, not in the page cache."""
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; Windows cannot open a folder)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_error(path: Path, size: int, err: OSError) -> str:
    """One line: what failed, where, how much space the checkpoint needs and what is kept."""
    free = shutil.disk_usage(path.parent).free
    kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} written"
    return (
        f"cannot save checkpoint {path.name} in {path.parent}: {err.strerror or err}; it needs "
        f"{size / 1e6:.1f} MB, {free / 1e6:.1f} MB are free there; {kept}"
    )
