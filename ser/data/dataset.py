"""Items, the crop policy and collate: cached utterances for fit/validate/test, files for predict.

Datasets never pad: each item keeps its own length and ``collate`` pads a batch with zeros to its
longest item, so a length-grouped sampler (``ser.data.sampler``) keeps padding small.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ser.data.cache import AudioCache
from ser.data.utterance import Utterance

log = logging.getLogger(__name__)

UNKNOWN_LABEL = -1


class Item(NamedTuple):
    """One example: ``wave`` (T,) float32 at 16 kHz, class index (-1 unknown), utterance id,
    ``targets`` (K,) float32, the values of the run's K dimensions (K = 0: none), and
    ``label_shares`` (C,) float32, the raters' vote share of each class (empty: hard labels)."""

    wave: torch.Tensor
    label: int
    utt_id: str
    targets: torch.Tensor = torch.zeros(0)
    label_shares: torch.Tensor = torch.zeros(0)


class Batch(NamedTuple):
    """A padded batch: ``waves`` (B, T) zero-padded, ``lengths`` (B,) int64 valid samples,
    ``labels`` (B,) int64 (-1 unknown), ``utt_ids`` the B utterance ids (or file paths),
    ``targets`` (B, K) float32 dimension values (K = 0 when the run has no dimensions),
    ``label_shares`` (B, C) float32 vote shares, the soft targets (B, 0 with hard labels)."""

    waves: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    utt_ids: list[str]
    targets: torch.Tensor = torch.zeros(0, 0)
    label_shares: torch.Tensor = torch.zeros(0, 0)


def padded_length(longest: int, multiple: int = 1, max_length: int | None = None) -> int:
    """``longest`` rounded up to a whole ``multiple``, but not past ``max_length`` (if longer)."""
    rounded = -(-longest // multiple) * multiple
    return rounded if max_length is None else max(longest, min(rounded, max_length))


def collate(items: list[Item], multiple: int = 1, max_length: int | None = None) -> Batch:
    """Stack ``items`` into a ``Batch``, zero-padding every wave to the longest one.

    ``multiple``: pad further, to a whole multiple of this many samples (length buckets: few batch
    shapes), but not past ``max_length`` (the longest item the dataset can give).
    """
    if not items:
        raise ValueError("collate got an empty list of items")
    lengths = torch.tensor([len(item.wave) for item in items], dtype=torch.int64)  # (B,)
    width = padded_length(int(lengths.max()), multiple, max_length)
    waves = torch.zeros(len(items), width, dtype=torch.float32)  # (B, T)
    for i, item in enumerate(items):
        waves[i, : len(item.wave)] = item.wave
    labels = torch.tensor([item.label for item in items], dtype=torch.int64)  # (B,)
    targets = torch.stack([item.targets for item in items])  # (B, K)
    shares = torch.stack([item.label_shares for item in items])  # (B, C) or (B, 0)
    return Batch(waves, lengths, labels, [item.utt_id for item in items], targets, shares)


class UtteranceDataset(Dataset[Item]):
    """Cached utterances with a crop policy; rows the cache left out (bad files) are dropped.

    Train (``random_crop=True``): a random ``max_samples`` window of longer items; shorter items
    are kept whole. Eval: the first ``max_samples`` (the whole item when None). Crops are drawn
    from ``numpy.random.default_rng([seed, epoch, index])``: they change with the epoch, do not
    depend on which DataLoader worker loads the item, and repeat for the same seed. The epoch lives
    in a shared-memory tensor, so ``set_epoch(epoch)`` (call it before each training epoch, e.g.
    from the datamodule or a callback) reaches workers that already exist, persistent ones too.

    Args:
        rows: the utterances of this part of the split.
        cache: the audio cache holding them.
        class_names: class ``i`` is ``class_names[i]``; every row label must be one of them.
        max_samples: crop length in 16 kHz samples (e.g. 80000 = 5 s); None keeps whole items.
        random_crop: random window (train) instead of the first ``max_samples`` (eval).
        seed: seed of the crop positions.
        read_audio: False gives items an empty wave (0,): for a model that reads stored features
            by utterance id instead (a feature-store probe, ``ser.features``).
        dimensions: the rows' numeric ratings each item carries as ``targets``, in this order.
        soft_labels: items carry their rows' vote shares over ``class_names`` as
            ``label_shares`` (a row without votes of these classes: all on its label).
    """

    def __init__(
        self,
        rows: Sequence[Utterance],
        cache: AudioCache,
        class_names: Sequence[str],
        max_samples: int | None,
        random_crop: bool,
        seed: int = 0,
        read_audio: bool = True,
        dimensions: Sequence[str] = (),
        soft_labels: bool = False,
    ) -> None:
        if max_samples is not None and max_samples <= 0:
            raise ValueError(f"max_samples must be positive or None, got {max_samples}")
        self.rows = [row for row in rows if row.utt_id in cache]
        if len(self.rows) < len(rows):
            log.warning(
                "Dropped %d of %d utterances missing from the audio cache (bad files, see %s)",
                len(rows) - len(self.rows),
                len(rows),
                cache.directory / "bad.json",
            )
        self.cache = cache
        self.class_names = tuple(class_names)
        self.labels = [self._label_index(row) for row in self.rows]
        # One tensor each, not one a row: a DataLoader worker started by spawn or forkserver
        # gets the dataset pickled (two tensors a row: 566 bytes a row, 40 s at 100 000 rows).
        self.targets = torch.tensor(
            [self._targets(row, dimensions) for row in self.rows], dtype=torch.float32
        ).reshape(len(self.rows), len(dimensions))  # (N, K)
        width = len(self.class_names) if soft_labels else 0
        self.label_shares = torch.zeros(len(self.rows), width)  # (N, C), or (N, 0): hard labels
        if soft_labels:
            for index, (row, label) in enumerate(zip(self.rows, self.labels, strict=True)):
                self.label_shares[index] = self._label_shares(row, label)
        self.max_samples = max_samples
        self.random_crop = random_crop
        self.seed = seed
        self.read_audio = read_audio
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def _label_index(self, row: Utterance) -> int:
        if row.label not in self.class_names:
            raise ValueError(
                f"Utterance {row.utt_id} ({row.path}) has label {row.label!r}, which is not one of "
                f"the classes {list(self.class_names)}; map or filter labels before the dataset."
            )
        return self.class_names.index(row.label)

    @staticmethod
    def _targets(row: Utterance, dimensions: Sequence[str]) -> list[float]:
        missing = [name for name in dimensions if name not in row.dimensions]
        if missing:
            raise ValueError(
                f"Utterance {row.utt_id} ({row.path}) has no {missing} rating (it has "
                f"{sorted(row.dimensions)}); `dimensions` must name ratings the corpus holds."
            )
        return [row.dimensions[name] for name in dimensions]

    def _label_shares(self, row: Utterance, label: int) -> torch.Tensor:
        """(C,) the row's votes normalised over the classes; all on ``label`` without votes."""
        shares = torch.zeros(len(self.class_names))  # (C,)
        for name, weight in row.votes.items():
            if name in self.class_names:
                shares[self.class_names.index(name)] += weight
        if shares.sum() <= 0:
            shares[label] = 1.0
        return shares / shares.sum()

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of ``epoch`` (seen by all DataLoader workers)."""
        self._epoch.fill_(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    @property
    def lengths(self) -> list[int]:
        """Item lengths after the ``max_samples`` cap, from the cache index (no decoding)."""
        full = [self.cache.num_samples(row.utt_id) for row in self.rows]
        if self.max_samples is None:
            return full
        return [min(n, self.max_samples) for n in full]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Item:
        utt_id = self.rows[index].utt_id
        targets, shares = self.targets[index], self.label_shares[index]  # (K,), (C,)
        if not self.read_audio:
            return Item(torch.zeros(0), self.labels[index], utt_id, targets, shares)
        start, stop = self.window(index)
        wave = torch.from_numpy(self.cache.read(utt_id, start, stop))  # (T,)
        return Item(wave, self.labels[index], utt_id, targets, shares)

    def window(self, index: int) -> tuple[int, int]:
        """The ``[start, stop)`` samples item ``index`` reads in the current epoch."""
        length = self.cache.num_samples(self.rows[index].utt_id)
        if self.max_samples is None or length <= self.max_samples:
            return 0, length
        start = 0
        if self.random_crop:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            start = int(rng.integers(0, length - self.max_samples + 1))
        return start, start + self.max_samples
