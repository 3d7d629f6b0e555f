"""Audio files to score with a trained model: no labels, no cache, windows for long files."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from ser.audio import TARGET_SAMPLE_RATE, expand_paths
from ser.data.dataset import AudioFileDataset, collate
from ser.data.sampler import LengthGroupedBatchSampler


class AudioFilesDataModule(L.LightningDataModule):
    """Files and folders to predict; files longer than a window are scored window by window.

    Args:
        paths: audio files and/or folders (searched recursively).
        window_seconds: window length; use the training segment length (``max_seconds``).
        hop_seconds: step between windows (default: half a window); overlapping windows are
            averaged per file.
        batch_size: windows per batch (grouped by length).
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        paths: list[str],
        window_seconds: float = 5.0,
        hop_seconds: float | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        hop_seconds = window_seconds / 2 if hop_seconds is None else hop_seconds
        if not 0 < hop_seconds <= window_seconds:
            raise ValueError(f"hop_seconds={hop_seconds} must be in (0, window_seconds]")
        self.paths = paths
        self.window_seconds = window_seconds
        self.hop_seconds = hop_seconds
        self.batch_size = batch_size
        self.num_workers = num_workers

    def predict_dataloader(self) -> DataLoader:
        dataset = AudioFileDataset(
            expand_paths(self.paths),
            window_samples=int(self.window_seconds * TARGET_SAMPLE_RATE),
            hop_samples=int(self.hop_seconds * TARGET_SAMPLE_RATE),
        )
        trainer = self.trainer
        sampler = LengthGroupedBatchSampler(
            dataset.lengths,
            self.batch_size,
            shuffle=False,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
        )
        return DataLoader(
            dataset, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=collate
        )
