"""LightningDataModules: corpus on disk -> labelled rows -> cache -> split -> batches.

``prepare_data`` (one process per node) scans the corpus and builds the 16 kHz cache; ``setup``
(every rank) scans again, opens the finished cache and splits. The exact split is written into the
run directory as ``splits/{train,val,test}.csv``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Literal

import lightning as L
from torch.utils.data import DataLoader

from ser.audio import TARGET_SAMPLE_RATE
from ser.data import splits
from ser.data.cache import AudioCache, default_cache_dir
from ser.data.dataset import UtteranceDataset, collate
from ser.data.duplicates import report_shared_audio
from ser.data.sampler import LengthGroupedBatchSampler
from ser.data.utterance import Utterance, write_csv
from ser.labels import LabelSet

log = logging.getLogger(__name__)

PARTS: tuple[str, ...] = ("train", "val", "test")


class SERDataModule(L.LightningDataModule):
    """What every corpus shares; subclasses say how to scan and how to split.

    Args:
        labels: the classes of the run and how corpus emotions merge into them.
        batch_size: utterances per training batch (per device).
        eval_batch_size: utterances per validation/test batch; defaults to ``batch_size``.
        num_workers: DataLoader worker processes.
        max_seconds: training crop length (random crop; the paper's 5 s segments).
        eval_max_seconds: evaluation uses the whole utterance up to this cap (None: no cap).
        min_seconds: shorter files are reported as bad.
        on_bad_file: "skip" bad files with one summary warning, or "fail" listing them.
        cache_dir: where the 16 kHz cache lives (default ``~/.cache/ser``).
        seed: seed of the split and of the batch order.
    """

    def __init__(
        self,
        labels: LabelSet,
        batch_size: int,
        eval_batch_size: int | None,
        num_workers: int,
        max_seconds: float,
        eval_max_seconds: float | None,
        min_seconds: float,
        on_bad_file: Literal["skip", "fail"],
        cache_dir: str | None,
        seed: int,
    ) -> None:
        super().__init__()
        self.labels = labels
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.max_seconds = max_seconds
        self.eval_max_seconds = eval_max_seconds
        self.min_seconds = min_seconds
        self.on_bad_file = on_bad_file
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.seed = seed
        self.parts: dict[str, list[Utterance]] = {}
        self.cache: AudioCache | None = None
        # A curriculum stage indexes its labels by the final stage's classes (a superset of its
        # own) and writes its split beside the other stages'; a plain run keeps both defaults.
        self.label_space: list[str] | None = None
        self.splits_dir = "splits"

    # --- what subclasses provide ----------------------------------------------------------
    def scan(self) -> list[Utterance]:
        """Every utterance of the corpus with its canonical emotion."""
        raise NotImplementedError

    def split(self, rows: list[Utterance]) -> dict[str, list[Utterance]]:
        """train/val/test parts of the usable rows."""
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return list(self.labels.classes)

    def class_counts(self, part: str) -> list[int]:
        """Utterances per class in ``part`` (after setup), in class order."""
        return list(self.labels.count(row.label for row in self.parts[part]).values())

    def labelled_rows(self) -> list[Utterance]:
        """The corpus rows whose emotion is one of the run's classes, relabelled to the class."""
        rows, dropped = [], 0
        for row in self.scan():
            name = self.labels.map(row.label)
            if name is None:
                dropped += 1
                continue
            rows.append(row if name == row.label else replace(row, label=name))
        if dropped:
            log.info(
                "%d utterances have emotions outside %s and are not used", dropped, self.class_names
            )
        if not rows:
            raise ValueError(f"no utterance has one of the classes {self.class_names}")
        return rows

    def prepare_data(self) -> None:
        AudioCache.build(
            self.labelled_rows(),
            self.cache_dir,
            on_bad_file=self.on_bad_file,
            min_seconds=self.min_seconds,
        )

    def setup(self, stage: str) -> None:
        if self.parts:
            return
        rows = self.labelled_rows()
        self.cache = AudioCache.open(rows, self.cache_dir, min_seconds=self.min_seconds)
        usable = [row for row in rows if row.utt_id in self.cache]
        self.parts = self.split(usable)
        report_shared_audio(self.parts, type(self).__name__)
        for part in PARTS:
            counts = self.labels.count(row.label for row in self.parts[part])
            log.info("%s: %d utterances %s", part, len(self.parts[part]), counts)
        self._write_splits()

    def _write_splits(self) -> None:
        trainer = self.trainer
        # No logger, no run directory (log_dir would fall back to the working directory).
        if trainer is None or not trainer.loggers:
            return
        log_dir = trainer.log_dir  # on every rank: under DDP it is a broadcast from rank 0
        if not trainer.is_global_zero:
            return
        for part in PARTS:
            write_csv(Path(log_dir) / self.splits_dir / f"{part}.csv", self.parts[part])

    def _loader(self, part: str, train: bool) -> DataLoader:
        seconds = self.max_seconds if train else self.eval_max_seconds
        dataset = UtteranceDataset(
            self.parts[part],
            self.cache,
            self.label_space or self.class_names,
            max_samples=None if seconds is None else int(seconds * TARGET_SAMPLE_RATE),
            random_crop=train,
            seed=self.seed,
        )
        trainer = self.trainer
        sampler = LengthGroupedBatchSampler(
            dataset.lengths,
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            dataset=dataset,
        )
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) "
            "and sum to less than 1"
        )


SplitMethod = Literal["stratified", "speaker", "kfold", "speaker_kfold", "column"]


def split_by_method(
    rows: list[Utterance],
    method: SplitMethod,
    val_fraction: float,
    test_fraction: float,
    num_folds: int,
    fold: int,
    seed: int,
) -> dict[str, list[Utterance]]:
    """The split methods a ShEMO or manifest corpus can use (see ``ser.data.splits``)."""
    if method == "stratified":
        return splits.stratified(rows, val_fraction, test_fraction, seed)
    if method == "speaker":
        return splits.speaker_independent(rows, val_fraction, test_fraction, seed)
    if method == "kfold":
        return splits.kfold(rows, num_folds, fold, val_fraction, seed)
    if method == "speaker_kfold":
        return splits.kfold(rows, num_folds, fold, val_fraction, seed, by_speaker=True)
    if method == "column":
        return splits.from_column(rows)
    raise ValueError(f"unknown split {method!r}")
