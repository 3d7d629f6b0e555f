"""LengthGroupedBatchSampler: coverage per epoch and rank, equal counts, little padding."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities.data import _update_dataloader
from torch.utils.data import DataLoader, SequentialSampler

from ser.data.sampler import LengthGroupedBatchSampler, StagedBatchSampler, stage_of


def skewed_lengths(n: int, seed: int = 0) -> list[int]:
    """ShEMO-like durations (lognormal, median 3.1 s) in 16 kHz samples, capped at 5 s."""
    rng = np.random.default_rng(seed)
    seconds = np.clip(rng.lognormal(np.log(3.1), 0.78, n), 0.3, 30.0)
    return [min(int(s * 16000), 80000) for s in seconds]


def ranks(lengths, batch_size, shuffle, num_replicas, epoch=0, **kwargs):
    samplers = [
        LengthGroupedBatchSampler(
            lengths, batch_size, shuffle, num_replicas=num_replicas, rank=r, **kwargs
        )
        for r in range(num_replicas)
    ]
    for s in samplers:
        s.set_epoch(epoch)
    return samplers, [list(s) for s in samplers]


def padded_fraction(batches: list[list[int]], lengths: list[int]) -> float:
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1.0 - sum(lengths[i] for b in batches for i in b) / padded


@pytest.mark.parametrize("n", [1, 37, 250])
def test_train_one_rank_every_item_once_per_epoch(n: int) -> None:
    lengths = skewed_lengths(n)
    sampler = LengthGroupedBatchSampler(lengths, 8, shuffle=True, bucket_factor=4)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == -(-n // 8)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(n))
        assert sum(len(b) < 8 for b in batches) <= 1
        orders.append(flat)
    if n > 8:
        assert orders[0] != orders[1]  # a new order every epoch
        again = LengthGroupedBatchSampler(lengths, 8, shuffle=True, bucket_factor=4)
        assert [i for b in again for i in b] == orders[0]  # reproducible for the seed


@pytest.mark.parametrize("n", [1, 3, 37, 250])
def test_train_two_ranks_same_count_and_full_coverage(n: int) -> None:
    lengths = skewed_lengths(n)
    samplers, per_rank = ranks(lengths, 8, True, 2, epoch=5, bucket_factor=4)
    assert len(per_rank[0]) == len(per_rank[1]) == len(samplers[0]) == len(samplers[1])
    seen = Counter(i for batches in per_rank for b in batches for i in b)
    assert set(seen) == set(range(n))
    assert sum(seen.values()) - n <= 8  # at most one repeated batch of padding
    rank0 = {i for b in per_rank[0] for i in b}
    rank1 = {i for b in per_rank[1] for i in b}
    assert n <= 8 or len(rank0 & rank1) <= 8


def test_train_drop_last_keeps_full_batches_only() -> None:
    lengths = skewed_lengths(101)
    samplers, per_rank = ranks(lengths, 8, True, 3, drop_last=True)
    assert [len(b) for batches in per_rank for b in batches] == [8] * 12  # 12 full, 4 per rank
    assert [len(s) for s in samplers] == [4, 4, 4]
    flat = [i for batches in per_rank for b in batches for i in b]
    assert len(set(flat)) == len(flat)


@pytest.mark.parametrize("num_replicas", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 5, 37, 250])
def test_eval_every_item_exactly_once(num_replicas: int, n: int) -> None:
    lengths = skewed_lengths(n)
    samplers, per_rank = ranks(lengths, 8, False, num_replicas, drop_last=True)
    flat = [i for batches in per_rank for b in batches for i in b]
    assert sorted(flat) == list(range(n))  # drop_last does not drop in evaluation
    assert [len(s) for s in samplers] == [len(b) for b in per_rank]
    one = [i for b in LengthGroupedBatchSampler(lengths, 8, shuffle=False) for i in b]
    assert [lengths[i] for i in one] == sorted(lengths, reverse=True)  # longest first


def test_eval_is_independent_of_epoch() -> None:
    lengths = skewed_lengths(50)
    sampler = LengthGroupedBatchSampler(lengths, 8, shuffle=False)
    first = list(sampler)
    sampler.set_epoch(3)
    assert list(sampler) == first


def test_length_grouping_cuts_padding() -> None:
    lengths = skewed_lengths(3000)
    for batch_size in (8, 32):
        sampler = LengthGroupedBatchSampler(lengths, batch_size, shuffle=True)
        grouped = padded_fraction(list(sampler), lengths)
        order = np.random.default_rng(0).permutation(len(lengths)).tolist()
        random = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        assert grouped < 0.25 * padded_fraction(random, lengths), batch_size
        assert grouped < 0.05


def test_batches_mix_lengths_across_epochs() -> None:
    # Grouped by length, yet not the same batches every epoch.
    lengths = skewed_lengths(400)
    sampler = LengthGroupedBatchSampler(lengths, 8, shuffle=True, bucket_factor=10)
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        epochs.append({tuple(sorted(b)) for b in sampler})
    assert len(epochs[0] & epochs[1]) < 5


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rank"):
        LengthGroupedBatchSampler([1, 2], 2, True, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="batch_size"):
        LengthGroupedBatchSampler([1, 2], 0, True)


class EpochRecorder:
    def __init__(self) -> None:
        self.epoch = -1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


def test_lightning_sets_the_epoch_of_sampler_and_dataset() -> None:
    dataset = EpochRecorder()
    sampler = LengthGroupedBatchSampler(skewed_lengths(40), 4, shuffle=True, dataset=dataset)
    loader = DataLoader(range(40), batch_sampler=sampler)
    _set_sampler_epoch(loader, 7)  # what the fit loop calls each epoch
    assert sampler.epoch == 7
    assert dataset.epoch == 7  # the random crops follow the epoch too


def test_lightning_predict_keeps_the_sampler() -> None:
    # Lightning re-instantiates "batch-sampler-like" classes for predict; ours must be kept.
    sampler = LengthGroupedBatchSampler(skewed_lengths(30), 4, shuffle=False)
    loader = DataLoader(torch.arange(30), batch_sampler=sampler)
    with pytest.warns(UserWarning, match="custom batch sampler"):
        updated = _update_dataloader(
            loader, SequentialSampler(loader.dataset), mode=RunningStage.PREDICTING
        )
    assert [b.tolist() for b in updated] == list(sampler)


def test_stage_of_follows_the_plan() -> None:
    assert [stage_of(epoch, [2, 1]) for epoch in range(5)] == [0, 0, 1, 1, 1]


def test_staged_sampler_deals_the_epochs_stage_as_its_sampler_alone() -> None:
    first, second = skewed_lengths(40, seed=1), skewed_lengths(24, seed=2)

    def stage_samplers(rank: int) -> list[LengthGroupedBatchSampler]:
        return [
            LengthGroupedBatchSampler(lengths, 4, shuffle=True, num_replicas=2, rank=rank)
            for lengths in (first, second)
        ]

    staged = StagedBatchSampler(stage_samplers(1), epochs=[2, 3])
    loader = DataLoader(range(64), batch_sampler=staged)
    for epoch, stage, offset in [(0, 0, 0), (1, 0, 0), (2, 1, 40), (4, 1, 40), (5, 1, 40)]:
        _set_sampler_epoch(loader, epoch)  # what the fit loop calls each epoch
        alone = stage_samplers(1)[stage]
        alone.set_epoch(epoch)
        assert len(loader) == len(alone) == [5, 3][stage]  # per rank: 10 and 6 batches
        assert [b.tolist() for b in loader] == [[offset + i for i in b] for b in alone]
    with pytest.raises(ValueError, match="one epoch count per stage"):
        StagedBatchSampler(stage_samplers(0), epochs=[2])
