"""Timelines of real speech whose emotion changes: how much of it ``--timeline`` labels right.

    python benchmarks/timelines.py RUN_DIR [RUN_DIR ...] [--clips 5] [--groupings 3] \
        [--output timelines.md]

Each RUN_DIR is a run of ``python -m ser fit`` or a fold of ``ser cv`` (its ``splits/test.csv``
and ``checkpoints/last.ckpt``). The clips of its test split (``--part``; held-out speakers in a
speaker-independent split), all emotions mixed, are joined in random groups of ``--clips`` with
pauses of 0.2-0.8 s of their own noise floor (``long_recordings.join``): recordings whose emotion
changes from clip to clip, at known times. Each way runs ``EmotionRecognizer.predict(...,
timeline=True)`` (the path of ``python -m ser predict --timeline true``) and is scored on the
clips' time:

- time accuracy: the share of the clips' duration whose segment carries the clip's emotion
  (time in no segment counts as wrong);
- coverage: the share of the clips' duration inside some segment;
- clip UA: each clip labelled with the emotion its segments give most of its time, balanced
  accuracy over the clips; "clips alone" scores each clip by itself (the reference: the
  recording cut where the clips were joined);
- segments per recording.

Ways: the VAD (Silero, energy) and the hop between the windows (the checkpoint's timeline
window: the median length of its training inputs) laid over a speech region: half a window (the
default) or a quarter, each step between window edges scored by the mean of the windows over
it; and the timeline before 2026-12-06, reimplemented here: each region cut into the fewest
equal pieces of at most a window, each piece scored alone and whole (``trim_silence=False``;
the other ways and "clips alone" take the checkpoint's, as predict does). Prints per run, then
the mean ± std over runs and the paired difference of time accuracy against the first way;
writes the table as markdown (``--output``). Real speech and weights stay outside the
repository; the figures are in docs/using_a_model.md.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import time
from pathlib import Path

import numpy as np
from long_recordings import RATE, join, parse_runs, recording_arguments, report
from scipy import stats
from sklearn.metrics import balanced_accuracy_score

from ser import EmotionRecognizer, audio
from ser.inference.recognizer import torch_scorer
from ser.models.network import load_model

WAYS = {  # name: (vad, hop as a share of the window; none: pieces, the timeline before)
    "silero, hop 1/2 window (default)": ("silero", 0.5),
    "silero, hop 1/4 window": ("silero", 0.25),
    "silero, pieces (before 2026-12-06)": ("silero", None),
    "energy, hop 1/2 window": ("energy", 0.5),
    "energy, pieces": ("energy", None),
}


def recordings(run_dir: Path, args: argparse.Namespace, rng: np.random.Generator) -> list[dict]:
    """Recordings of ``run_dir``'s clips of ``args.part``, emotions mixed: wave, each clip's span
    (samples), label and path."""
    with open(run_dir / "splits" / f"{args.part}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    made = []
    for _ in range(args.groupings):
        order = [rows[i] for i in rng.permutation(len(rows))]
        for group in (order[i : i + args.clips] for i in range(0, len(order), args.clips)):
            if len(group) > 1:  # one clip alone has no change to follow
                wave, spans = join([audio.load(row["path"]) for row in group], rng)
                labels, paths = [row["label"] for row in group], [row["path"] for row in group]
                made.append({"wave": wave, "spans": spans, "labels": labels, "paths": paths})
    if not made:
        raise SystemExit(f"{run_dir}: fewer than two clips in splits/{args.part}.csv")
    return made


def time_labels(segments: list[tuple[float, float, str]], length: int, classes: list[str]):
    """The class index at each sample of a recording (-1 where no segment is)."""
    at = np.full(length, -1)
    for start, end, label in segments:
        at[round(start * RATE) : round(end * RATE)] = classes.index(label)
    return at


def timelines(
    recognizer: EmotionRecognizer, waves: list[np.ndarray], pieces: bool
) -> list[list[tuple[float, float, str]]]:
    """Each wave's segments (start s, end s, label): ``predict(..., timeline=True)``, or with
    ``pieces`` the timeline before 2026-12-06: each speech region cut into the fewest equal
    pieces of at most a window, each scored alone."""
    if not pieces:
        predictions = recognizer.predict([(wave, RATE) for wave in waves], timeline=True)
        return [[(s.start, s.end, s.label) for s in p.segments] for p in predictions]
    found = []
    for wave in waves:
        cut = []
        for start, stop in recognizer.vad(wave):
            count = math.ceil((stop - start) / recognizer.timeline_window)
            bounds = [start + round(k * (stop - start) / count) for k in range(count + 1)]
            cut.extend(itertools.pairwise(bounds))
        labels = [p.label for p in recognizer.predict([(wave[a:b], RATE) for a, b in cut])]
        found.append(
            [(a / RATE, b / RATE, label) for (a, b), label in zip(cut, labels, strict=True)]
        )
    return found


def score_way(
    recognizer: EmotionRecognizer, made: list[dict], classes: list[str], pieces: bool
) -> dict[str, float]:
    """Time accuracy, coverage, clip UA, segments per recording and wall seconds of one way."""
    started = time.perf_counter()
    found = timelines(recognizer, [r["wave"] for r in made], pieces)
    wall = time.perf_counter() - started
    right = covered = total = 0
    truth, chosen = [], []
    for recording, segments in zip(made, found, strict=True):
        at = time_labels(segments, len(recording["wave"]), classes)
        for (start, stop), label in zip(recording["spans"], recording["labels"], strict=True):
            clip = at[start:stop]
            right += int((clip == classes.index(label)).sum())
            covered += int((clip >= 0).sum())
            total += len(clip)
            heard = np.bincount(clip[clip >= 0], minlength=len(classes))
            truth.append(label)
            chosen.append(classes[int(heard.argmax())] if heard.any() else "none")
    return {
        "time accuracy": right / total,
        "coverage": covered / total,
        "clip UA": balanced_accuracy_score(truth, chosen),
        "segments": float(np.mean([len(segments) for segments in found])),
        "wall s": wall,
    }


def score_run(run_dir: Path, args: argparse.Namespace, rng: np.random.Generator) -> dict:
    """Every way's figures on ``run_dir``'s recordings, and the clips alone."""
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    made = recordings(run_dir, args, rng)
    model, classes, windows = load_model(ckpt)  # built once, scored every way
    window = windows.timeline
    score = torch_scorer(model, "cpu")
    result: dict[str, dict[str, float]] = {}
    for name, (vad, hop_share) in WAYS.items():
        pieces = hop_share is None
        hop = window if pieces else hop_share * window
        # predict's trim_silence is the checkpoint's; the timeline before scored each piece whole.
        trim = False if pieces else windows.trim_silence
        recognizer = EmotionRecognizer(score, classes, window, source=str(ckpt), vad=vad,
                                       hop_seconds=hop, trim_silence=trim)  # fmt: skip
        result[name] = score_way(recognizer, made, classes, pieces=pieces)
    alone = EmotionRecognizer(score, classes, windows.item, source=str(ckpt),
                              trim_silence=windows.trim_silence)  # fmt: skip
    started = time.perf_counter()
    paths = sorted({path for r in made for path in r["paths"]})
    label_of = {p.name: p.label for p in alone.predict(paths)}
    truth = [label for r in made for label in r["labels"]]
    chosen = [label_of[path] for r in made for path in r["paths"]]
    ua = balanced_accuracy_score(truth, chosen)
    wall = time.perf_counter() - started
    result["clips alone"] = {"clip UA": ua, "wall s": wall}
    result["recordings"] = {"count": len(made), "window s": window}
    return result


def table(results: list[dict]) -> str:
    """Markdown: one row per way, the mean ± std over the runs' ``results`` of each figure, and
    the paired difference of time accuracy against the first way."""
    first = next(iter(WAYS))
    lines = [
        "| way | time accuracy | paired vs first (p) | coverage | clip UA | segments a recording"
        " | wall s |",
        "|---|---|---|---|---|---|---|",
    ]

    def shown(name: str, figure: str) -> str:
        values = [result[name][figure] for result in results if figure in result[name]]
        if not values:
            return ""
        std = np.std(values, ddof=1) if len(values) > 1 else 0.0
        return f"{np.mean(values):.3f} ± {std:.3f}"

    for name in [*WAYS, "clips alone"]:
        paired = ""
        if name in WAYS and name != first and len(results) > 1:
            a = [result[name]["time accuracy"] for result in results]
            b = [result[first]["time accuracy"] for result in results]
            diff = np.subtract(a, b)
            paired = f"{diff.mean():+.3f} ({stats.ttest_rel(a, b).pvalue:.2g})"
        wall = sum(result[name]["wall s"] for result in results)
        cells = [shown(name, "time accuracy"), paired, shown(name, "coverage"),
                 shown(name, "clip UA"), shown(name, "segments"), f"{wall:.0f}"]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    counts = ", ".join(str(result["recordings"]["count"]) for result in results)
    windows = sorted({result["recordings"]["window s"] for result in results})
    lines.append(
        f"\n{len(results)} runs; recordings per run: {counts}; windows (s): "
        + ", ".join(f"{w:g}" for w in windows)
        + "."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_runs(recording_arguments(__doc__.split("\n\n")[0]), argv)
    rng = np.random.default_rng(args.seed)
    results = []
    for run in args.runs:
        results.append(score_run(run, args, rng))
        shown = {name: f"{v['time accuracy']:.3f}" for name, v in results[-1].items()
                 if "time accuracy" in v}  # fmt: skip
        print(run, results[-1]["recordings"]["count"], "recordings", shown, flush=True)
    report(table(results), args)


if __name__ == "__main__":
    main()
