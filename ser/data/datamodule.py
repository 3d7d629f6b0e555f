"""LightningDataModules: corpus on disk -> labelled rows -> cache -> split -> batches.

``prepare_data`` (one process per node) scans the corpus and builds the 16 kHz cache; ``setup``
(every rank) opens the finished cache and splits. A datamodule scans its corpus once
(``corpus_rows``), so the scan's warnings are logged once, not per step. The exact split is
written into the run directory as ``splits/{train,val,test}.csv``, with ``splits/split.json``
saying how it was made (reader, classes, split kind and settings), which the protocol card of a
test reads.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, Sampler

from ser.audio import TARGET_SAMPLE_RATE
from ser.data.cache import AudioCache, default_cache_dir
from ser.data.dataset import UtteranceDataset, collate
from ser.data.duplicates import report_shared_audio
from ser.data.loader import LoaderSettings, pins_memory
from ser.data.sampler import LengthGroupedBatchSampler
from ser.data.splits import SplitStrategy
from ser.data.utterance import Utterance, write_csv
from ser.evaluation.protocol import HEARD_PARTS, heard_entry
from ser.labels import LabelSet

log = logging.getLogger(__name__)

PARTS: tuple[str, ...] = ("train", "val", "test")


class SERDataModule(L.LightningDataModule):
    """What every corpus shares; a subclass says how to scan its corpus and what its defaults are.

    Args:
        labels: the classes of the run and how corpus emotions merge into them.
        split: how the usable rows are split (``ser.data.splits``), called with
            ``loader.seed_of_split``.
        loader: batch size, workers, crop lengths, bad-file policy, cache folder and seed.
        dimensions: the numeric ratings (arousal, valence ...) batches carry as ``targets``, in
            this order; linked to the model's regression outputs (``docs/dimensional.md``).
        soft_labels: train on the distribution of the raters' votes (soft cross-entropy) where
            the corpus has them (IEMOCAP); val/test metrics stay on the label (docs/corpora.md).
    """

    def __init__(
        self,
        labels: LabelSet,
        split: SplitStrategy,
        loader: LoaderSettings,
        dimensions: Sequence[str] = (),
        soft_labels: bool = False,
    ) -> None:
        super().__init__()
        self.labels = labels
        self.dimensions = list(dimensions)
        self.soft_labels = soft_labels
        self.splitter = split
        self.loader = loader
        self.parts: dict[str, list[Utterance]] = {}
        self.cache: AudioCache | None = None
        # A curriculum stage indexes its labels by the final stage's classes (a superset of its
        # own) and writes its split beside the other stages'; a plain run keeps both defaults.
        self.label_space: list[str] | None = None
        self.splits_dir = "splits"
        # Set False by a model that reads stored features by utterance id (a feature-store probe,
        # ``SERModule(feature_store=...)``): training batches then carry ids and labels, no audio.
        # Evaluation batches keep theirs: an utterance longer than the model's window is scored
        # in windows of its audio, as predict scores it (the store holds whole utterances).
        self.read_audio = True

    @property
    def cache_dir(self) -> Path:
        return Path(self.loader.cache_dir) if self.loader.cache_dir else default_cache_dir()

    # --- what subclasses provide ----------------------------------------------------------
    def scan(self) -> list[Utterance]:
        """Every utterance of the corpus with its label (a word, or a manifest's raw label)."""
        raise NotImplementedError

    def split(self, rows: list[Utterance]) -> dict[str, list[Utterance]]:
        """train/val/test parts of the usable rows."""
        return self.splitter(rows, self.loader.seed_of_split)

    # --- shared -----------------------------------------------------------------------------
    @cached_property
    def corpus_rows(self) -> list[Utterance]:
        """``scan()``, read once per datamodule (prepare_data, setup and a manifest's class list
        share it, so each warning of the scan is logged once)."""
        return self.scan()

    @property
    def class_names(self) -> list[str]:
        return list(self.labels.classes)

    def class_counts(self, part: str) -> list[int]:
        """Utterances per class in ``part`` (after setup), in class order."""
        return list(self.labels.count(row.label for row in self.parts[part]).values())

    def labelled_rows(self) -> list[Utterance]:
        """The corpus rows whose label becomes one of the run's classes, relabelled to the class.

        Rows of other labels are dropped and counted; a class without any row is an error (a
        typo in ``classes`` or a ``label_map`` that maps nothing to it). Votes are mapped alike.
        """
        self._check_votes()
        rows, dropped = [], Counter()
        for row in self.corpus_rows:
            name = self.labels.map(row.label)
            if name is None:
                dropped[row.label] += 1
                continue
            rows.append(replace(row, label=name, votes=self.labels.map_votes(row.votes)))
        if dropped:
            log.info(
                "%d utterances have labels outside the classes %s and are not used: %s",
                dropped.total(),
                self.class_names,
                dict(sorted(dropped.items())),
            )
        found = {row.label for row in rows}
        missing = [name for name in self.class_names if name not in found]
        if missing:
            raise ValueError(
                f"classes {missing} have no utterance in this corpus (labels found: "
                f"{sorted(found | set(dropped))}); check `classes`, `merge` and `label_map`"
            )
        return rows

    def _check_votes(self) -> None:
        if self.soft_labels and not any(row.votes for row in self.corpus_rows):
            corpus = self.describe()["corpus"]
            raise ValueError(
                f"--data.soft_labels true trains on the raters' votes, and {type(self).__name__} "
                f"({corpus}) has none; set --data.soft_labels false (readers with votes: "
                "IEMOCAP; docs/corpora.md)"
            )

    def prepare_data(self) -> None:
        AudioCache.build(
            self.labelled_rows(),
            self.cache_dir,
            on_bad_file=self.loader.on_bad_file,
            min_seconds=self.loader.min_seconds,
        )

    def setup(self, stage: str) -> None:
        if self.parts:
            return
        rows = self.labelled_rows()
        self.cache = AudioCache.open(
            rows,
            self.cache_dir,
            min_seconds=self.loader.min_seconds,
            trim_silence=self.loader.trim_silence,
        )
        usable = [row for row in rows if row.utt_id in self.cache]
        self.parts = self.split(usable)
        report_shared_audio(self.parts, type(self).__name__, self.cache.content)
        for part in PARTS:
            counts = self.labels.count(row.label for row in self.parts[part])
            log.info("%s: %d utterances, per class %s", part, len(self.parts[part]), counts)
        if self.soft_labels:
            train = self.parts["train"]
            log.info(
                "soft labels: %d of %d training utterances have votes for the classes; the "
                "others train on their label",
                sum(1 for row in train if row.votes),
                len(train),
            )
        self._check_every_class_trains()
        self._write_splits()

    def _check_every_class_trains(self) -> None:
        """A class without a training row could never be predicted and lowers UA: stop, before
        anything is trained, naming it (a class missing from val or test only is allowed). A
        split without training rows (``AllTest``) only tests a model trained elsewhere."""
        if not self.parts["train"]:
            return
        counts = self.labels.count(row.label for row in self.parts["train"])
        untrained = [name for name, count in counts.items() if count == 0]
        if untrained:
            raise ValueError(
                f"{type(self).__name__}: class(es) {untrained} have no row in the train part of "
                f"the split ({self.splitter}); give them training rows, choose another split, or "
                "leave them out of `classes`"
            )

    def _write_splits(self) -> None:
        trainer = self.trainer
        # No logger, no run directory (log_dir would fall back to the working directory).
        if trainer is None or not trainer.loggers:
            return
        log_dir = trainer.log_dir  # on every rank: under DDP it is a broadcast from rank 0
        if log_dir is None or not trainer.is_global_zero:  # None: fast_dev_run's logger
            return
        for part in PARTS:
            write_csv(Path(log_dir) / self.splits_dir / f"{part}.csv", self.parts[part])
        path = Path(log_dir) / self.splits_dir / "split.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.describe(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    def heard(self) -> list[dict[str, Any]]:
        """What a model fitted on this split learns from: its train and val utterances and
        speakers (``ser.evaluation.protocol.HEARD``; after ``setup``)."""
        return [heard_entry(type(self).__name__, {part: self.parts[part] for part in HEARD_PARTS})]

    @property
    def tested(self) -> SERDataModule:
        """The datamodule whose test part a test scores: this one."""
        return self

    def describe(self) -> dict[str, Any]:
        """How this split was made: reader, corpus, classes and merges, split kind and settings."""
        corpus = getattr(self, "root", None) or getattr(self, "path", None)
        return {
            "reader": type(self).__name__,
            "corpus": str(corpus) if corpus is not None else None,
            "classes": self.class_names,
            "dimensions": self.dimensions,
            "soft_labels": self.soft_labels,
            "merge": dict(self.labels.merge),
            "label_map": dict(self.labels.label_map),
            "split": {
                "kind": type(self.splitter).__name__,
                "settings": dataclasses.asdict(self.splitter)
                if dataclasses.is_dataclass(self.splitter)
                else {},
                "seed": self.loader.seed_of_split,
                "speaker_independent": self.splitter.speaker_independent,
            },
        }

    def make_dataset(self, part: str, train: bool) -> UtteranceDataset:
        """The items of ``part`` (after setup): random crops for training, fixed ones for eval."""
        loader = self.loader
        seconds = loader.max_seconds if train else loader.eval_max_seconds
        return UtteranceDataset(
            self.parts[part],
            self.cache,
            self.label_space or self.class_names,
            max_samples=None if seconds is None else int(seconds * TARGET_SAMPLE_RATE),
            random_crop=train,
            seed=loader.seed,
            read_audio=self.read_audio or not train,
            dimensions=self.dimensions,
            # The training target only: val/test losses and metrics stay on the label.
            soft_labels=self.soft_labels and train,
        )

    def make_batch_sampler(
        self, dataset: UtteranceDataset, train: bool
    ) -> LengthGroupedBatchSampler:
        """Length-grouped batches of ``dataset``, dealt to this trainer's DDP ranks."""
        loader, trainer = self.loader, self.trainer
        return LengthGroupedBatchSampler(
            dataset.lengths,
            loader.batch_size if train else loader.eval_batch_size or loader.batch_size,
            shuffle=train,
            seed=loader.seed,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            dataset=dataset,
        )

    def make_loader(
        self, dataset: Dataset, batch_sampler: Sampler[list[int]], train: bool
    ) -> DataLoader:
        """A DataLoader of ``dataset`` in ``batch_sampler``'s batches, with this run's workers.

        Batches are padded to the loader's length buckets, never past the part's crop; their
        memory is pinned when the trainer runs on CUDA (``pins_memory``).
        """
        loader = self.loader
        seconds = loader.max_seconds if train else loader.eval_max_seconds
        pad = functools.partial(
            collate,
            multiple=loader.bucket_samples(),
            max_length=None if seconds is None else int(seconds * TARGET_SAMPLE_RATE),
        )
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=loader.num_workers,
            collate_fn=pad,
            pin_memory=pins_memory(self.trainer),
            persistent_workers=loader.num_workers > 0,
        )

    def _loader(self, part: str, train: bool) -> DataLoader:
        if not self.parts[part]:
            raise ValueError(
                f"the {part} part of the split ({type(self.splitter).__name__}) is empty: it "
                "serves `python -m ser test` of a trained model only; choose a split with train "
                "and val rows to fit or validate"
            )
        processes = self.trainer.world_size if self.trainer else 1
        if not train and len(self.parts[part]) < processes:  # a rank with no batch stops DDP
            raise ValueError(
                f"the {part} part holds {len(self.parts[part])} utterance(s), fewer than the "
                f"{processes} processes that evaluate it (each needs one): give it more (a larger "
                "val_fraction, another split) or run it on fewer devices (`ser test` of a "
                "checkpoint runs in one)"
            )
        dataset = self.make_dataset(part, train)
        return self.make_loader(dataset, self.make_batch_sampler(dataset, train), train)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
