"""Length-grouped batches, dealt to DDP ranks: little padding, every rank the same batch count.

Padding a batch to its longest item wastes compute in proportion to the spread of lengths
inside it. Grouping items of similar length into a batch removes most of it; doing so within
random chunks of ``batch_size * bucket_factor`` items (and shuffling the batches) keeps training
batches random enough. ``StagedBatchSampler`` deals the batches of one stage per epoch (a
curriculum) from one loader over all stages' items.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
from torch.utils.data import Sampler


class SupportsSetEpoch(Protocol):
    def set_epoch(self, epoch: int) -> None: ...


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Batches of indices of similar length, for ``DataLoader(batch_sampler=...)``.

    ``shuffle=True`` (train): each epoch a permutation seeded by (seed, epoch) is cut into chunks
    of ``batch_size * bucket_factor`` items; each chunk is sorted by length and cut into batches,
    and the batches are shuffled. The batches are dealt to ranks so that every rank gets the same
    number: missing batches are taken again from the start of the list (or, with ``drop_last``,
    the short final batch and the batches left over are dropped).
    ``shuffle=False`` (eval): items sorted by length (longest first), cut into batches and dealt
    round-robin to ranks: every item exactly once across ranks, no duplicates, so ranks may
    differ by one batch; ``drop_last`` is ignored. With fewer batches than ranks the items are
    cut into one smaller batch per rank (a rank without batches would hang DDP's metric sync).

    DDP: pass ``num_replicas=trainer.world_size`` and ``rank=trainer.global_rank``, and build the
    Trainer with ``use_distributed_sampler=False`` (this sampler already splits the data).
    Lightning calls ``set_epoch`` each epoch through ``.sampler`` (it looks for
    ``batch_sampler.sampler.set_epoch``). The sampler exposes no ``batch_size``/``drop_last``
    attributes on purpose: Lightning would then try to re-instantiate it for predict.

    Args:
        lengths: length of every item (e.g. ``dataset.lengths``), any unit.
        batch_size: items per batch.
        shuffle: random batches for training; sorted, deterministic ones for evaluation.
        seed: seed of the per-epoch permutation (with the epoch).
        num_replicas: number of DDP ranks.
        rank: this process' rank, in [0, num_replicas).
        drop_last: training only: drop the short final batch and leftover batches instead of
            repeating batches to give every rank the same count.
        bucket_factor: a chunk sorted by length holds ``batch_size * bucket_factor`` items; larger
            means less padding and less randomness.
        dataset: optional dataset with ``set_epoch`` that follows this sampler's epoch (its random
            crops then change every epoch; Lightning only tells the sampler).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        bucket_factor: int = 50,
        dataset: SupportsSetEpoch | None = None,
    ) -> None:
        if batch_size <= 0 or bucket_factor <= 0:
            raise ValueError(
                f"batch_size and bucket_factor must be positive, got {batch_size}, {bucket_factor}"
            )
        if num_replicas <= 0 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self._batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self._drop_last = drop_last
        self.bucket_factor = bucket_factor
        self.dataset = dataset
        self.epoch = 0

    @property
    def sampler(self) -> LengthGroupedBatchSampler:
        """Itself: Lightning calls ``batch_sampler.sampler.set_epoch(epoch)`` every epoch."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch`` (training), and the dataset's crops."""
        self.epoch = epoch
        if self.dataset is not None:
            self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._train_batches() if self.shuffle else self._eval_batches()
        for batch in self._deal(batches):
            yield batch.tolist()

    def __len__(self) -> int:
        num_batches = self._num_batches()
        if not self.shuffle:
            return len(range(self.rank, num_batches, self.num_replicas))
        if self._drop_last:
            return num_batches // self.num_replicas
        return -(-num_batches // self.num_replicas)

    def _num_batches(self) -> int:
        n = len(self.lengths)
        if self.shuffle and self._drop_last:
            return n // self._batch_size
        if not self.shuffle:  # see _eval_batches: at least one batch per rank
            return max(-(-n // self._batch_size), min(n, self.num_replicas))
        return -(-n // self._batch_size)

    def _train_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))  # (N,)
        size = self._batch_size
        chunk = size * self.bucket_factor
        batches = []
        for begin in range(0, len(order), chunk):
            part = order[begin : begin + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]  # by length
            batches += [part[i : i + size] for i in range(0, len(part), size)]
        if self._drop_last and batches and len(batches[-1]) < size:
            batches.pop()  # only the last chunk can end in a short batch
        return [batches[i] for i in rng.permutation(len(batches))]

    def _eval_batches(self) -> list[np.ndarray]:
        # Longest first: a batch that does not fit in memory fails at once, not at the end.
        order = np.argsort(-self.lengths, kind="stable")  # (N,)
        if self._num_batches() > -(-len(order) // self._batch_size):
            # Fewer batches than ranks: a rank with none would skip the loop and its epoch-end
            # metric sync, and the other ranks would wait for it forever. Smaller batches instead.
            return np.array_split(order, self._num_batches())
        return [order[i : i + self._batch_size] for i in range(0, len(order), self._batch_size)]

    def _deal(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        if self.shuffle and batches:
            per_rank = len(self)
            total = per_rank * self.num_replicas
            if total > len(batches):  # pad by repeating batches from the start
                repeats = -(-total // len(batches))
                batches = (batches * repeats)[:total]
            batches = batches[:total]
        return batches[self.rank :: self.num_replicas]


def stage_of(epoch: int, epochs: Sequence[int]) -> int:
    """The stage that trains ``epoch`` (0-based) when stage ``k`` trains ``epochs[k]`` epochs in
    turn; the last stage after the plan ends."""
    for index, end in enumerate(itertools.accumulate(epochs)):
        if epoch < end:
            return index
    return len(epochs) - 1


class StagedBatchSampler(Sampler[list[int]]):
    """The batches of one stage per epoch, over the stages' datasets concatenated in order.

    Stage ``k`` trains ``epochs[k]`` epochs, then stage ``k + 1``: ``set_epoch(epoch)`` selects
    the stage of ``epoch`` (``stage_of``) and passes the epoch on to that stage's sampler, so an
    epoch's batches (and crops) are those the stage's sampler gives alone, its indices offset to
    the stage's place in ``ConcatDataset(stage datasets)``. The epoch alone decides the stage, so
    a resumed run deals the right stage without any state of its own. ``len`` is the selected
    stage's batch count: a trainer must read it again each epoch (Lightning:
    ``reload_dataloaders_every_n_epochs=1``, set by ``ser.training.callbacks.Curriculum``).

    Args:
        samplers: each stage's batch sampler over its own dataset (length-grouped, DDP-aware).
        epochs: the training epochs of each stage, in order.
    """

    def __init__(
        self, samplers: Sequence[LengthGroupedBatchSampler], epochs: Sequence[int]
    ) -> None:
        if not samplers or len(samplers) != len(epochs):
            raise ValueError(
                f"one epoch count per stage sampler: {len(samplers)} samplers, epochs {epochs}"
            )
        self.samplers = list(samplers)
        self.epochs = list(epochs)
        sizes = [len(sampler.lengths) for sampler in self.samplers]
        self.offsets = [0, *itertools.accumulate(sizes)][:-1]
        self.epoch = 0

    @property
    def sampler(self) -> StagedBatchSampler:
        """Itself: Lightning calls ``batch_sampler.sampler.set_epoch(epoch)`` every epoch."""
        return self

    @property
    def stage(self) -> int:
        """The stage dealt in the current epoch."""
        return stage_of(self.epoch, self.epochs)

    def set_epoch(self, epoch: int) -> None:
        """Select the stage of ``epoch``, and that stage's permutation and crops."""
        self.epoch = epoch
        self.samplers[self.stage].set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        offset = self.offsets[self.stage]
        for batch in self.samplers[self.stage]:
            yield [offset + index for index in batch]

    def __len__(self) -> int:
        return len(self.samplers[self.stage])
