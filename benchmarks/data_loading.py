"""Data loading benchmark: the 16 kHz cache vs decoding 44.1 kHz files per item, and padding.

Writes a ShEMO-like corpus (44.1 kHz 16-bit mono, lognormal durations: median 3.1 s, ~27 % over
5 s, a few up to 30 s; noise + sines as content), builds the cache, then prints clips/s of
(a) a random 5 s crop read from the cache and (b) decoding + resampling the file per item,
through DataLoaders with the same workers and batch size, and the padded fraction of batches with
and without length grouping (batch 8 and 32, 5 s crop) on ShEMO-sized (3000) lengths.

    .venv/bin/python -m benchmarks.data_loading [--num-files 300] [--workers 2] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from ser import audio
from ser.data.cache import AudioCache
from ser.data.dataset import Item, UtteranceDataset, collate
from ser.data.sampler import LengthGroupedBatchSampler
from ser.data.utterance import Utterance
from ser.labels import SHEMO_CLASSES, SHEMO_CODES

FILE_RATE = 44_100
MEDIAN_SECONDS, SIGMA = 3.1, 0.78  # lognormal fit: P(> 5 s) = 27 %


def shemo_like_seconds(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.lognormal(np.log(MEDIAN_SECONDS), SIGMA, n), 0.4, 30.0)


def write_corpus(folder: Path, n: int, seed: int) -> list[Utterance]:
    """n files named like ShEMO (F01A01.wav); slices of one long signal keep writing fast."""
    rng = np.random.default_rng(seed)
    seconds = shemo_like_seconds(n, rng)
    t = np.arange(int(31 * FILE_RATE)) / FILE_RATE
    signal = 0.2 * np.sin(2 * np.pi * 180 * t) + 0.1 * np.sin(2 * np.pi * 1250 * t)
    signal = (signal + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    codes = list(SHEMO_CODES)
    rows = []
    for i, sec in enumerate(seconds):
        code = codes[i % len(codes)]
        name = f"{'FM'[i % 2]}{i // 100 % 100:02d}{code}{i % 100:02d}"
        path = folder / ("female" if i % 2 == 0 else "male") / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        start = int(rng.integers(0, len(signal) - int(sec * FILE_RATE)))
        sf.write(str(path), signal[start : start + int(sec * FILE_RATE)], FILE_RATE, "PCM_16")
        rows.append(Utterance(name, str(path), name[:3], SHEMO_CODES[code], float(sec), FILE_RATE))
    return rows


class DecodeEveryTime(Dataset[Item]):
    """The baseline: decode + resample the whole file, then take a random crop."""

    def __init__(self, rows: list[Utterance], max_samples: int) -> None:
        self.rows, self.max_samples = rows, max_samples

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Item:
        wave = audio.load(self.rows[index].path)  # (T,) 16 kHz
        start = int(np.random.randint(0, max(1, len(wave) - self.max_samples + 1)))
        crop = torch.from_numpy(wave[start : start + self.max_samples])
        return Item(crop, SHEMO_CLASSES.index(self.rows[index].label), self.rows[index].utt_id)


def clips_per_second(dataset: Dataset, batch_size: int, workers: int, epochs: int) -> float:
    """Clips/s over ``epochs`` epochs after one warm-up epoch (workers started, files cached)."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=workers > 0,
    )
    for _ in loader:  # warm-up: worker start-up and the OS page cache are not what we measure
        pass
    start = time.perf_counter()
    clips = 0
    for _ in range(epochs):
        for batch in loader:
            clips += len(batch.utt_ids)
    return clips / (time.perf_counter() - start)


def padded_fraction(batches: list[list[int]], lengths: np.ndarray) -> float:
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    return 1.0 - sum(int(lengths[b].sum()) for b in batches) / padded


def padding_report(n: int, crop_samples: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = np.minimum((shemo_like_seconds(n, rng) * 16000).astype(np.int64), crop_samples)
    print(f"\npadded fraction of batch samples ({n} ShEMO-like lengths, 5 s crop):")
    for batch_size in (8, 32):
        order = rng.permutation(n)
        random = [order[i : i + batch_size] for i in range(0, n, batch_size)]
        sampler = LengthGroupedBatchSampler(lengths.tolist(), batch_size, shuffle=True, seed=seed)
        grouped = [np.asarray(b) for b in sampler]
        print(
            f"  batch {batch_size:>2}: random {padded_fraction(random, lengths):6.1%}   "
            f"length-grouped {padded_fraction(grouped, lengths):6.1%}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-files", type=int, default=300, help="files in the corpus")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (both ways)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after a warm-up")
    parser.add_argument("--crop-seconds", type=float, default=5.0)
    parser.add_argument("--padding-items", type=int, default=3000, help="lengths for padding")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="the folder its temporary dir is made in (made if missing; default: the system's)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"machine: {platform.machine()} {platform.processor() or ''}".rstrip())
    print(f"cpu count: {os.cpu_count()}, torch threads: {torch.get_num_threads()}")
    print(f"torch {torch.__version__}, python {platform.python_version()}")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        rows = write_corpus(work / "corpus", args.num_files, args.seed)
        seconds = np.array([row.duration for row in rows])
        print(
            f"corpus: {len(rows)} files at 44.1 kHz, {seconds.sum() / 60:.1f} min, median "
            f"{np.median(seconds):.2f} s, {np.mean(seconds > 5):.0%} > 5 s, "
            f"max {seconds.max():.1f} s "
            f"(written in {time.perf_counter() - start:.1f} s)"
        )
        start = time.perf_counter()
        cache = AudioCache.build(rows, work / "cache")
        size_mb = (cache.directory / "audio.int16").stat().st_size / 2**20
        print(f"cache build: {time.perf_counter() - start:.1f} s, {size_mb:.0f} MB")
        crop = int(args.crop_seconds * audio.TARGET_SAMPLE_RATE)
        cached = UtteranceDataset(rows, cache, SHEMO_CLASSES, crop, random_crop=True)
        decoded = DecodeEveryTime(rows, crop)
        how = f"batch {args.batch_size}, {args.workers} workers, {args.crop_seconds:g} s crop"
        a = clips_per_second(cached, args.batch_size, args.workers, args.epochs)
        b = clips_per_second(decoded, args.batch_size, args.workers, args.epochs)
        print(f"(a) cache, random crop:            {a:8.0f} clips/s  ({how})")
        print(f"(b) decode + resample 44.1k/item:  {b:8.0f} clips/s  ({how})")
        print(f"    cache speed-up: {a / b:.1f}x")
    padding_report(args.padding_items, crop, args.seed)


if __name__ == "__main__":
    main()
