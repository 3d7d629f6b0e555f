"""Checkpoint saves: atomic in the checkpoint's own folder; a full disk keeps the last good one."""

from __future__ import annotations

import errno
import os

import pytest
import torch
from cli_process import REPO

from ser.commands.cli import build_cli
from ser.training import checkpoint_io
from ser.training.checkpoint_io import DurableCheckpointIO


def test_a_save_gives_a_loadable_file_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    DurableCheckpointIO().save_checkpoint({"epoch": 1, "w": torch.arange(5.0)}, path)
    DurableCheckpointIO().save_checkpoint({"epoch": 2, "w": torch.arange(5.0)}, path)
    loaded = DurableCheckpointIO().load_checkpoint(path, weights_only=True)
    assert loaded["epoch"] == 2 and torch.equal(loaded["w"], torch.arange(5.0))
    assert os.listdir(path.parent) == ["last.ckpt"]


def test_a_remote_path_goes_to_lightnings_own_save():
    DurableCheckpointIO().save_checkpoint({"epoch": 3}, "memory://run/last.ckpt")
    assert DurableCheckpointIO().load_checkpoint("memory://run/last.ckpt") == {"epoch": 3}


def test_a_disk_full_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    DurableCheckpointIO().save_checkpoint({"epoch": 1}, path)

    def disk_full(tmp, data):  # half the bytes reach the disk, then it is full
        tmp.write_bytes(bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_io, "write_synced", disk_full)
    big = {"epoch": 2, "w": torch.zeros(250_000)}  # 1 MB
    with pytest.raises(OSError) as err:
        DurableCheckpointIO().save_checkpoint(big, path)
    message = str(err.value)
    assert f"cannot save checkpoint last.ckpt in {tmp_path}: No space left" in message
    assert "it needs 1.0 MB" in message and "the previous last.ckpt is kept" in message
    assert "\n" not in message
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_every_fit_saves_through_it(shemo_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["ser"])  # only ``args`` are parsed
    configs = ["-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml")]
    args = [*configs, "--data.root", str(shemo_corpus), "--trainer.logger", "false"]
    cli = build_cli(args, run=False)  # parsed as for fit
    assert isinstance(cli.trainer.strategy.checkpoint_io, DurableCheckpointIO)
