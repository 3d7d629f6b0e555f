"""Long recordings of real speech: how well predict's windows score a recording of several clips.

    python benchmarks/long_recordings.py RUN_DIR [RUN_DIR ...] [--clips 5] [--groupings 3] \
        [--windows 1,2,3,5] [--output long_recordings.md]

Each RUN_DIR is a run of ``python -m ser fit`` or a fold of ``ser cv`` (its ``splits/test.csv``
and ``checkpoints/last.ckpt``). The clips of one emotion in its test split (``--part``; held-out
speakers in a speaker-independent split)
are joined in random groups of ``--clips``, with pauses of 0.2-0.8 s of the clips' own noise
floor between them, into recordings whose emotion is known; ``--groupings`` random groupings
give each clip that many recordings. Each way scores every recording through
``EmotionRecognizer`` (the path of ``python -m ser predict``: the checkpoint's ``trim_silence``):

- default: the checkpoint's window (the length 90 % of its training inputs fit in), half-window
  hop;
- default, no overlap: the same windows one after another (``--data.hop_seconds`` = the window);
- segment: windows of the training segment, half-window hop (predict before it counted lengths);
- timeline: ``--timeline true``: the speech regions Silero VAD finds, scored in the checkpoint's
  timeline window (the median training length);
- window N s: N-second windows, half-window hop (``--windows``);
- clips alone: each clip scored by itself, the probabilities of a recording's clips averaged
  (the reference: what the model gives when the recording is cut where the clips were joined).

Prints, per run, the UA of each way over its recordings, then the mean ± std over runs and the
wall seconds, and writes the table as markdown (``--output``). Real speech and weights stay
outside the repository; the figures are in docs/using_a_model.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import platform
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score

from ser import EmotionRecognizer, audio
from ser.inference.recognizer import torch_scorer
from ser.models.checkpoint import load_checkpoint
from ser.models.network import load_model, training_segment_seconds

RATE = audio.TARGET_SAMPLE_RATE


def join(
    waves: list[np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """``waves`` one after another, with a pause of 0.2-0.8 s between two: noise at the clips'
    own floor (the 10th percentile of their 20 ms frames' RMS), as a room between sentences; and
    each clip's span (samples) in it."""
    frames = np.concatenate([w[: len(w) // 320 * 320].reshape(-1, 320) for w in waves])
    floor = np.percentile(np.sqrt((frames**2).mean(axis=1)), 10)
    pieces, spans, at = [], [], 0
    for wave in waves:
        pause = floor * rng.standard_normal(int(rng.uniform(0.2, 0.8) * RATE))
        pieces += [wave, pause]
        spans.append((at, at + len(wave)))
        at += len(wave) + len(pause)
    return np.concatenate(pieces[:-1]).astype(np.float32), spans


def recordings(
    run_dir: Path, args: argparse.Namespace, rng: np.random.Generator
) -> tuple[list[tuple[np.ndarray, int]], list[str], list[list[str]]]:
    """The recordings made of ``run_dir``'s clips of ``args.part``: waves, labels and each one's
    clips."""
    with open(run_dir / "splits" / f"{args.part}.csv", newline="") as f:
        by_label: dict[str, list[str]] = {}
        for row in csv.DictReader(f):
            by_label.setdefault(row["label"], []).append(row["path"])
    items, labels, groups = [], [], []
    for label, paths in sorted(by_label.items()):
        for _ in range(args.groupings):
            order = list(rng.permutation(paths))
            # Groups of `clips`; one clip left alone is not a long recording.
            size = args.clips
            for group in (order[i : i + size] for i in range(0, len(order), size)):
                if len(group) > 1:
                    items.append((join([audio.load(path) for path in group], rng)[0], RATE))
                    labels.append(label)
                    groups.append(group)
    if not items:
        raise SystemExit(f"{run_dir}: no emotion has two clips in splits/{args.part}.csv")
    return items, labels, groups


def ways(
    default_window: float, timeline: float, segment: float, windows: list[float]
) -> dict[str, tuple[dict, bool]]:
    """Each way's window and hop seconds (none: the constructor's default) and whether it scores
    speech regions (timeline, Silero VAD)."""
    found = {
        "default": ({"window_seconds": default_window}, False),
        "default, no overlap": (
            {"window_seconds": default_window, "hop_seconds": default_window},
            False,
        ),
        "segment": ({"window_seconds": segment}, False),
        "timeline": ({"window_seconds": default_window, "timeline_window_seconds": timeline}, True),
    }
    for seconds in windows:
        found[f"window {seconds:g} s"] = ({"window_seconds": seconds}, False)
    return found


def score_run(run_dir: Path, args: argparse.Namespace, rng: np.random.Generator) -> dict:
    """UA and wall seconds of each way on ``run_dir``'s recordings, and their count."""
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    items, labels, groups = recordings(run_dir, args, rng)
    # The network is built once and scores every way (EmotionRecognizer.from_checkpoint's parts).
    model, classes, model_windows = load_model(ckpt)
    window = model_windows.item
    score = torch_scorer(model, "cpu")
    hparams = load_checkpoint(ckpt, "RUN_DIR")["hyper_parameters"]
    segment = training_segment_seconds(hparams["backbone"])

    def recognizer_of(options: dict) -> EmotionRecognizer:
        return EmotionRecognizer(score, classes, source=str(ckpt), dimensions=model.dimensions,
                                 trim_silence=model_windows.trim_silence, **options)  # fmt: skip

    result, scored = {"recordings": len(items)}, {}
    found = ways(window, model_windows.timeline, segment, args.windows)
    for name, (options, timeline) in found.items():
        recognizer = recognizer_of(options)
        # e.g. default = segment: scored once
        same = (recognizer.window, recognizer.hop, recognizer.timeline_window, timeline)
        if same not in scored:
            started = time.perf_counter()
            predicted = [p.label for p in recognizer.predict(items, timeline=timeline)]
            wall = time.perf_counter() - started
            ua = balanced_accuracy_score(labels, predicted)
            shown = recognizer.timeline_window if timeline else recognizer.window
            scored[same] = (ua, wall, shown / RATE)
        result[name] = scored[same]
    recognizer = recognizer_of({"window_seconds": window})
    started = time.perf_counter()
    paths = sorted({path for group in groups for path in group})
    alone = {p.name: np.array(p.probs) for p in recognizer.predict(paths)}
    predicted = [
        recognizer.classes[int(np.mean([alone[path] for path in group], axis=0).argmax())]
        for group in groups
    ]
    wall = time.perf_counter() - started
    result["clips alone"] = (balanced_accuracy_score(labels, predicted), wall, None)
    return result


def table(results: dict[str, dict]) -> str:
    """Markdown: one row per way, UA per run, mean ± std and wall seconds in all."""
    names = [name for name in next(iter(results.values())) if name != "recordings"]
    runs = list(results)
    lines = [
        "| way | window s | "
        + " | ".join(Path(run).name for run in runs)
        + " | UA mean ± std | wall s |",
        "|---|---|" + "---|" * len(runs) + "---|---|",
    ]
    for name in names:
        ua = [results[run][name][0] for run in runs]
        windows = sorted({results[run][name][2] for run in runs if results[run][name][2]})
        shown = "/".join(f"{w:g}" for w in windows) or "the clips"
        std = np.std(ua, ddof=1) if len(ua) > 1 else 0.0
        wall = sum(results[run][name][1] for run in runs)
        cells = " | ".join(f"{u:.3f}" for u in ua)
        lines.append(f"| {name} | {shown} | {cells} | {np.mean(ua):.3f} ± {std:.3f} | {wall:.0f} |")
    counts = ", ".join(str(results[run]["recordings"]) for run in runs)
    lines.append(f"\nRecordings per run: {counts}.")
    return "\n".join(lines)


def recording_arguments(description: str) -> argparse.ArgumentParser:
    """The options of the benchmarks that score recordings made of runs' clips (this one and
    timelines.py): the runs, --clips, --part, --groupings, --seed, --output."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("runs", nargs="+", type=Path, help="run or fold directories")
    parser.add_argument("--clips", type=int, default=5, help="clips per recording")
    parser.add_argument("--part", choices=["test", "val", "train"], default="test",
                        help="the split whose clips make the recordings")  # fmt: skip
    parser.add_argument("--groupings", type=int, default=3, help="random groupings per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="write the table here")
    return parser


def parse_runs(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser``'s arguments; a run without ``checkpoints/last.ckpt`` is refused by name."""
    args = parser.parse_args(argv)
    missing = [str(run) for run in args.runs if not (run / "checkpoints" / "last.ckpt").is_file()]
    if missing:
        parser.error(f"no checkpoints/last.ckpt in {', '.join(missing)}")
    return args


def report(table_text: str, args: argparse.Namespace) -> None:
    """Print ``table_text`` with the date, machine, torch and recording options; write it to
    ``--output`` too."""
    stamp = f"{datetime.date.today()}, {platform.machine()}, torch {torch.__version__}"
    text = f"{table_text}\n\n({stamp}; --clips {args.clips} --groupings {args.groupings})\n"
    print("\n" + text)
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = recording_arguments(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--windows", type=lambda text: [float(x) for x in text.split(",") if x], default=[],
        help="also score windows of these seconds, e.g. 1,2,3",
    )  # fmt: skip
    args = parse_runs(parser, argv)
    rng = np.random.default_rng(args.seed)
    results = {}
    for run in args.runs:
        results[str(run)] = score_run(run, args, rng)
        shown = {k: f"{v[0]:.3f}" for k, v in results[str(run)].items() if k != "recordings"}
        print(run, results[str(run)]["recordings"], "recordings", shown, flush=True)
    report(table(results), args)


if __name__ == "__main__":
    main()
