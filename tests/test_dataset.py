"""Datasets and collate: crop policy, labels, epochs and workers, predict windows."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ser import audio
from ser.data.cache import AudioCache
from ser.data.dataset import Batch, Item, UtteranceDataset, collate
from ser.data.utterance import Utterance

CLASSES = ("anger", "neutral", "sadness")
SPECS = [  # (utt_id, seconds, sample rate, label)
    ("F01A01", 1.0, 16000, "anger"),
    ("F01N02", 0.25, 44100, "neutral"),
    ("M02S03", 0.6, 22050, "sadness"),
    ("M02A04", 0.8, 16000, "anger"),
]


def noise(seconds: float, sample_rate: int, seed: int) -> np.ndarray:
    # Noise, not a tone: every window of it is different, so a crop's position is visible.
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal(round(seconds * sample_rate))).astype(np.float32)


@pytest.fixture
def rows(tmp_path: Path) -> list[Utterance]:
    out = []
    for i, (utt_id, seconds, rate, label) in enumerate(SPECS):
        path = tmp_path / "corpus" / f"{utt_id}.wav"
        audio.write(path, noise(seconds, rate, seed=i), rate)
        out.append(Utterance(utt_id, str(path), utt_id[:3], label, seconds, rate))
    return out


@pytest.fixture
def cache(rows: list[Utterance], tmp_path: Path) -> AudioCache:
    return AudioCache.build(rows, tmp_path / "cache")


def make(rows, cache, max_samples=4000, random_crop=True, seed=0) -> UtteranceDataset:
    return UtteranceDataset(rows, cache, CLASSES, max_samples, random_crop, seed)


def test_collate_pads_with_zeros() -> None:
    items = [
        Item(torch.ones(3), 0, "a"),
        Item(torch.full((5,), 2.0), 2, "b"),
        Item(torch.full((1,), -1.0), -1, "c"),
    ]
    batch = collate(items)
    assert isinstance(batch, Batch)
    assert batch.waves.shape == (3, 5) and batch.waves.dtype == torch.float32
    assert batch.lengths.tolist() == [3, 5, 1] and batch.lengths.dtype == torch.int64
    assert batch.labels.tolist() == [0, 2, -1] and batch.labels.dtype == torch.int64
    assert batch.utt_ids == ["a", "b", "c"]
    assert batch.waves[0, 3:].abs().sum() == 0 and batch.waves[2, 1:].abs().sum() == 0
    assert batch.waves[0, :3].tolist() == [1.0, 1.0, 1.0]
    assert batch.waves[1].tolist() == [2.0] * 5


def test_labels_index_class_names(rows, cache) -> None:
    dataset = make(rows, cache)
    assert dataset.labels == [0, 1, 2, 0]
    assert [dataset[i].label for i in range(4)] == [0, 1, 2, 0]
    assert [dataset[i].utt_id for i in range(4)] == [r.utt_id for r in rows]


def test_unknown_label_names_the_utterance(rows, cache) -> None:
    with pytest.raises(ValueError, match=r"F01A01.*'anger'.*\['neutral', 'sadness'\]"):
        UtteranceDataset(rows, cache, ("neutral", "sadness"), None, False)


def test_rows_missing_from_cache_are_dropped(rows, tmp_path: Path) -> None:
    partial = AudioCache.build(rows[:2], tmp_path / "partial")
    dataset = make(rows, partial)
    assert len(dataset) == 2 and [r.utt_id for r in dataset.rows] == ["F01A01", "F01N02"]


def test_eval_takes_the_first_max_samples(rows, cache) -> None:
    dataset = make(rows, cache, max_samples=4000, random_crop=False)
    for i, row in enumerate(dataset.rows):
        full = cache.read(row.utt_id)
        np.testing.assert_array_equal(dataset[i].wave.numpy(), full[:4000])
    assert [len(dataset[i].wave) for i in range(4)] == [4000, 4000, 4000, 4000]


def test_no_cap_keeps_whole_items_and_no_padding(rows, cache) -> None:
    whole = make(rows, cache, max_samples=None, random_crop=True)
    assert [len(whole[i].wave) for i in range(4)] == [16000, 4000, 9600, 12800]
    capped = make(rows, cache, max_samples=10000, random_crop=True)
    assert [len(capped[i].wave) for i in range(4)] == [10000, 4000, 9600, 10000]


def test_lengths_come_from_the_index(rows, cache, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = make(rows, cache, max_samples=10000)

    def no_reads(*args, **kwargs):
        raise AssertionError("decoded audio to get lengths")

    monkeypatch.setattr(cache, "read", no_reads)
    assert dataset.lengths == [10000, 4000, 9600, 10000]
    assert make(rows, cache, max_samples=None).lengths == [16000, 4000, 9600, 12800]


def crop_starts(dataset: UtteranceDataset) -> list[int]:
    """Where each item's crop starts in its utterance, found by matching the samples."""
    starts = []
    for i, row in enumerate(dataset.rows):
        full = dataset.cache.read(row.utt_id)
        wave = dataset[i].wave.numpy()
        found = [
            int(s)
            for s in np.flatnonzero(full[: len(full) - len(wave) + 1] == wave[0])
            if np.array_equal(full[s : s + len(wave)], wave)
        ]
        assert len(found) == 1
        starts.append(found[0])
    return starts


def test_random_crop_is_seeded_and_changes_per_epoch(rows, cache) -> None:
    dataset = make(rows, cache, max_samples=2000, seed=7)
    epoch0 = crop_starts(dataset)
    assert epoch0 == crop_starts(make(rows, cache, max_samples=2000, seed=7))  # reproducible
    assert epoch0 != crop_starts(make(rows, cache, max_samples=2000, seed=8))  # seed matters
    dataset.set_epoch(1)
    epoch1 = crop_starts(dataset)
    assert epoch1 != epoch0
    dataset.set_epoch(0)
    assert crop_starts(dataset) == epoch0
    assert all(0 <= s <= n - 2000 for s, n in zip(epoch1, [16000, 4000, 9600, 12800], strict=True))


def test_random_crops_cover_the_utterance(rows, cache) -> None:
    dataset = make(rows, cache, max_samples=2000)
    starts = set()
    for epoch in range(40):
        dataset.set_epoch(epoch)
        starts.add(dataset.window(0)[0])
    assert len(starts) > 30 and min(starts) < 3500 and max(starts) > 10500  # 0..14000 possible


def epoch_waves(loader: DataLoader) -> dict[str, torch.Tensor]:
    out = {}
    for batch in loader:
        for utt_id, wave, length in zip(batch.utt_ids, batch.waves, batch.lengths, strict=True):
            out[utt_id] = wave[:length].clone()
    return out


def test_workers_give_the_same_crops_and_follow_set_epoch(rows, cache) -> None:
    dataset = make(rows, cache, max_samples=2000, seed=3)
    serial = [epoch_waves(DataLoader(dataset, batch_size=2, collate_fn=collate))]
    dataset.set_epoch(1)
    serial.append(epoch_waves(DataLoader(dataset, batch_size=2, collate_fn=collate)))
    dataset.set_epoch(0)
    loader = DataLoader(
        dataset, batch_size=1, collate_fn=collate, num_workers=2, persistent_workers=True
    )
    for epoch in (0, 1):
        dataset.set_epoch(epoch)  # after the workers started: shared memory carries it
        got = epoch_waves(loader)
        assert got.keys() == serial[epoch].keys()
        for utt_id, wave in got.items():
            assert torch.equal(wave, serial[epoch][utt_id]), (epoch, utt_id)
    assert not torch.equal(serial[0]["F01A01"], serial[1]["F01A01"])


def test_a_large_dataset_pickles_its_labels_as_a_few_arrays() -> None:
    """A DataLoader worker started by spawn or forkserver (macOS; Linux from Python 3.14) gets
    the dataset pickled: two tensors a row (targets, vote shares) took 566 bytes a row, 40 s to
    start the workers of a 100 000-utterance corpus. They are one (N, K) and one (N, C) tensor."""
    rows = [
        Utterance(f"u{i}", f"/u{i}.wav", f"s{i % 50}", "anger" if i % 3 else "sadness", 1.0, 16_000,
                  dimensions={"arousal": 0.1 * (i % 7), "valence": 0.5}, votes={"anger": 1.0})
        for i in range(5000)
    ]  # fmt: skip
    ids = {row.utt_id for row in rows}  # the dataset only asks the cache whether it holds a row
    classes = ["anger", "sadness"]
    dataset = UtteranceDataset(rows, ids, classes, None, False, dimensions=["arousal", "valence"],
                               soft_labels=True, read_audio=False)  # fmt: skip
    assert len(pickle.dumps((dataset.targets, dataset.label_shares))) < 5000 * 4 * 4 + 2000
    item = dataset[7]
    assert item.targets.tolist() == pytest.approx([0.0, 0.5]) and item.label_shares.tolist() == [
        1,
        0,
    ]
    hard = UtteranceDataset(rows, ids, classes, None, False, read_audio=False)
    assert hard[7].targets.shape == (0,) and hard[7].label_shares.shape == (0,)
    assert collate([hard[0], hard[1]]).label_shares.shape == (2, 0)
