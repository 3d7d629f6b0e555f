"""Trained models against the recording level: test UA with the test audio played louder or quieter.

    python benchmarks/recording_level.py RUN_OR_CV_DIR [...] [--gains -30 -20 -10 0 10]
        [--checkpoint last.ckpt]

A corpus is recorded at one level, new audio at any: a microphone farther away, another gain, a
phone. Each run (a ``ser fit`` run directory, or every ``fold_*`` of a ``ser cv`` directory)
predicts the files of its test split (``splits/test.csv``) through ``EmotionRecognizer`` with every
sample multiplied by ``10^(gain / 20)`` (then clipped to [-1, 1], as a louder recording clips),
once per gain; 0 dB is the test as recorded. Prints each directory's mean test UA per gain, and
the test files' RMS level. Used in docs/real_speech.md ("Recording level").
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from ser import audio
from ser.inference.recognizer import EmotionRecognizer


def runs_of(directory: Path) -> list[Path]:
    """The run directories of a ``ser cv`` directory (its finished folds), or the run itself."""
    folds = sorted(p for p in directory.glob("fold_*") if (p / "splits" / "test.csv").is_file())
    if folds:
        return folds
    if (directory / "splits" / "test.csv").is_file():
        return [directory]
    raise SystemExit(f"{directory}: no splits/test.csv, neither a ser fit run nor a ser cv folder")


def level_dbfs(wave: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(wave**2)) + 1e-12))


def score_run(run: Path, checkpoint: str, gains: list[float]) -> tuple[dict, list[float]]:
    """UA per gain of one run's checkpoint on its test files, and the files' levels (dBFS)."""
    with open(run / "splits" / "test.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labels = [row["label"] for row in rows]
    waves = [audio.load(row["path"]) for row in rows]  # (T,) at 16 kHz each
    recognizer = EmotionRecognizer.from_checkpoint(run / "checkpoints" / checkpoint)
    scores = {}
    for gain in gains:
        factor = 10.0 ** (gain / 20.0)
        items = [(np.clip(wave * factor, -1.0, 1.0), audio.TARGET_SAMPLE_RATE) for wave in waves]
        predicted = [p.label for p in recognizer.predict(items)]
        scores[gain] = float(balanced_accuracy_score(labels, predicted))  # UA
    return scores, [level_dbfs(wave) for wave in waves]


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", type=Path, nargs="+", help="ser fit runs or ser cv folders")
    parser.add_argument("--gains", type=float, nargs="+", default=[-30, -20, -10, 0, 10])
    parser.add_argument("--checkpoint", default="last.ckpt", help="file name in checkpoints/")
    args = parser.parse_args(argv)
    header = "| runs | " + " | ".join(f"{g:+g} dB" for g in args.gains) + " |"
    lines = [header, "|---" * (len(args.gains) + 1) + "|"]
    levels = []
    for directory in args.directories:
        per_gain = {gain: [] for gain in args.gains}
        runs = runs_of(directory)
        for run in runs:
            scores, run_levels = score_run(run, args.checkpoint, args.gains)
            levels += run_levels
            for gain, ua in scores.items():
                per_gain[gain].append(ua)
            print(run, " ".join(f"{g:+g} dB {s:.3f}" for g, s in scores.items()), flush=True)
        means = " | ".join(f"{statistics.mean(per_gain[g]):.3f}" for g in args.gains)
        lines.append(f"| {directory} ({len(runs)}) | {means} |")
    quantiles = np.percentile(levels, [5, 50, 95])
    lines.append(
        f"\nmean test UA per gain; the test files' RMS level as recorded: median "
        f"{quantiles[1]:.1f} dBFS, 90 % within {quantiles[0]:.1f} .. {quantiles[2]:.1f}"
    )
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
