"""What the recipes' augmentation costs a training batch and a stored copy, on ShEMO-like lengths.

Times ``configs/experiments/probe_with_augmented_copies.yaml``'s augmentation block (speed,
rooms, white/pink noise, low-pass: the fine-tuning recipes' block too) on noise waveforms of
``--files`` ShEMO-like durations (``data_loading.shemo_like_seconds``), two ways:
- training: length-grouped batches of ``--batch-size`` 5 s crops, the whole padded batch at once;
- copies: each utterance (up to ``--eval-max-seconds``) alone, as a feature store's augmented copy
  is drawn (``ser.features.extract.augmented``).
Each is timed with the FFTs at lengths with no prime factor above 5 (``augment.fft_length``, what
ser runs) next to the FFTs at the signals' own lengths (a padded batch's or an utterance's: what
``torch.fft`` and ``torchaudio.functional.fftconvolve`` do when given them as they are).

    python benchmarks/augmentation.py [--files 400] [--batch-size 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("ser") is None:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from data_loading import shemo_like_seconds  # noqa: E402

from ser.audio import TARGET_SAMPLE_RATE  # noqa: E402
from ser.data.sampler import LengthGroupedBatchSampler  # noqa: E402
from ser.training import augment  # noqa: E402

RECIPE = ROOT / "configs/experiments/probe_with_augmented_copies.yaml"


def seconds_taken(augmentation: augment.Augmentation, inputs: list[torch.Tensor]) -> float:
    """Seconds to augment every padded batch (B, T) of ``inputs`` (rows full length), from one
    random state: each way draws the same speeds, rooms and noises."""
    random.seed(0)
    torch.manual_seed(0)
    start = time.perf_counter()
    for waves in inputs:
        augmentation(waves, torch.full((len(waves),), waves.shape[-1]))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop-seconds", type=float, default=5.0)
    parser.add_argument("--eval-max-seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="the median of this many is shown")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    block = yaml.safe_load(RECIPE.read_text())["model"]["augmentation"]
    augmentation = augment.Augmentation(**block)
    rng = np.random.default_rng(args.seed)
    full = np.round(shemo_like_seconds(args.files, rng) * TARGET_SAMPLE_RATE).astype(np.int64)
    crops = np.minimum(full, round(args.crop_seconds * TARGET_SAMPLE_RATE))
    batches = [
        torch.randn(len(batch), int(crops[batch].max()))
        for batch in LengthGroupedBatchSampler(crops, args.batch_size, shuffle=True)
    ]
    alone = np.minimum(full, round(args.eval_max_seconds * TARGET_SAMPLE_RATE))
    utterances = [torch.randn(1, int(length)) for length in alone]
    audio_seconds = {"training": crops.sum(), "copies": alone.sum()}
    print(
        f"{args.files} ShEMO-like utterances, {args.threads} CPU thread(s), {RECIPE.name}'s "
        f"augmentation; ms per second of audio (median of {args.repeats})"
    )
    print("\n| what | FFT lengths 2^a 3^b 5^c (ser) | FFTs at the signals' lengths | speed-up |")
    print("|---|---|---|---|")
    rows = []
    own_length = augment.fft_length
    for what, inputs in (("training", batches), ("copies", utterances)):
        taken = {}
        for name, lengths in (("smooth", own_length), ("own", lambda samples: samples)):
            augment.fft_length = lengths
            try:
                times = [seconds_taken(augmentation, inputs) for _ in range(args.repeats)]
            finally:
                augment.fft_length = own_length
            per_second = audio_seconds[what] / TARGET_SAMPLE_RATE
            taken[name] = 1000 * statistics.median(times) / per_second
        rows.append({"what": what, **taken})
        print(
            f"| {what} | {taken['smooth']:.2f} | {taken['own']:.2f} "
            f"| {taken['own'] / taken['smooth']:.1f}x |"
        )
    return rows


if __name__ == "__main__":
    main()
