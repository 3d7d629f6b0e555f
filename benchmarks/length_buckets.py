"""What length buckets cost in padding and save in shapes, on ShEMO-like lengths (no audio).

Deals the batches of ``--epochs`` training epochs (length-grouped, 5 s random crops) and of one
evaluation pass (whole utterances up to 30 s) over ``--files`` ShEMO-like durations
(``data_loading.shemo_like_seconds``: lognormal, median 3.1 s, 27 % over 5 s), pads each batch as
``collate`` does for every ``data.loader.length_bucket_seconds`` in ``--buckets`` (0: none, pad to
the longest item), and prints the padded share of the samples and the number of distinct batch
lengths each run would see. The padded share is compute spent on zeros (wav2vec2 pays it
linearly; attention more); the shapes are what a GPU pays for in kernel choices and recompiles.

    python benchmarks/length_buckets.py [--files 3000] [--batch-size 8] [--buckets 0,0.25,0.5,1]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("ser") is None:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from data_loading import shemo_like_seconds  # noqa: E402

from ser.audio import TARGET_SAMPLE_RATE  # noqa: E402
from ser.data.dataset import padded_length  # noqa: E402
from ser.data.sampler import LengthGroupedBatchSampler  # noqa: E402


def padding(lengths: np.ndarray, batch_size: int, train: bool, epochs: int, bucket: float, cap):
    """(padded share, distinct batch lengths) of ``epochs`` passes over ``lengths`` (samples)."""
    multiple = max(1, round(bucket * TARGET_SAMPLE_RATE))
    sampler = LengthGroupedBatchSampler(lengths, batch_size, shuffle=train)
    valid = padded = 0
    widths = set()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in sampler:
            items = lengths[batch]
            width = padded_length(int(items.max()), multiple, cap)
            widths.add(width)
            valid += int(items.sum())
            padded += width * len(items)
    return 1.0 - valid / padded, len(widths)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=3000, help="utterances (ShEMO: 3000)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20, help="training epochs dealt")
    parser.add_argument("--crop-seconds", type=float, default=5.0)
    parser.add_argument("--eval-max-seconds", type=float, default=30.0)
    parser.add_argument("--buckets", default="0,0.1,0.25,0.5,1", help="seconds; 0: no buckets")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    seconds = shemo_like_seconds(args.files, np.random.default_rng(args.seed))
    full = np.round(seconds * TARGET_SAMPLE_RATE).astype(np.int64)  # (N,)
    parts = {
        "train": (round(args.crop_seconds * TARGET_SAMPLE_RATE), True, args.epochs),
        "eval": (round(args.eval_max_seconds * TARGET_SAMPLE_RATE), False, 1),
    }
    print(
        f"{args.files} ShEMO-like utterances, batch {args.batch_size}: training "
        f"{args.epochs} epochs of {args.crop_seconds:g} s crops, evaluation up to "
        f"{args.eval_max_seconds:g} s"
    )
    print("\n| bucket | train padded | train shapes | eval padded | eval shapes |")
    print("|---|---|---|---|---|")
    rows = []
    for bucket in (float(b) for b in args.buckets.split(",")):
        row = {"bucket": bucket}
        for part, (cap, train, epochs) in parts.items():
            lengths = np.minimum(full, cap)
            share, shapes = padding(lengths, args.batch_size, train, epochs, bucket, cap)
            row |= {f"{part} padded": share, f"{part} shapes": shapes}
        rows.append(row)
        name = f"{bucket:g} s" if bucket else "none"
        print(
            f"| {name} | {row['train padded']:.1%} | {row['train shapes']} "
            f"| {row['eval padded']:.1%} | {row['eval shapes']} |"
        )
    return rows


if __name__ == "__main__":
    main()
