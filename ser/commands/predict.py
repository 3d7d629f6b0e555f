"""``python -m ser predict``: score audio files with a checkpoint or ONNX file, write a CSV.

A bad file (unreadable, too short, NaN, a dangling symlink) is reported and skipped
(``--on_bad_file skip``, the default) and the other files are written; a model that gives
non-finite outputs is an error naming the checkpoint. Runs ``EmotionRecognizer``, no Trainer.
Rows are written as their files are scored, in path order, into a file beside ``--output`` that
is renamed onto it at the end (``StagedOutput``): an error leaves no CSV and no partial file.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Sequence
from contextlib import closing
from typing import TextIO

from jsonargparse import ArgumentParser
from jsonargparse.typing import NonNegativeInt, PositiveFloat, PositiveInt

from ser.commands.outputs import StagedOutput, check_output
from ser.commands.parsing import ShortErrors
from ser.inference.recognizer import EmotionRecognizer, Prediction

log = logging.getLogger(__name__)


class PredictParser(ShortErrors, ArgumentParser):
    """predict's options; a parse error is one line and a hint (``ShortErrors``)."""


def build_parser() -> ArgumentParser:
    parser = PredictParser(
        prog="python -m ser predict",
        description="Score audio files with a trained model; write one CSV row per file "
        "(and, with --timeline true, one per speech segment).",
        default_meta=False,
    )
    parser.add_argument("--ckpt_path", required=True,
                        help="checkpoint of `ser fit` or ONNX file of `ser export`")  # fmt: skip
    parser.add_argument("--data.paths", type=list[str] | str, required=True,
                        help="audio files, folders (recursive): [a.wav, dir/] or one")  # fmt: skip
    parser.add_argument("--output", default="predictions.csv",
                        help="the CSV to write (never one of the inputs)")  # fmt: skip
    parser.add_argument("--overwrite", type=bool, default=False,
                        help="replace --output if it exists")  # fmt: skip
    parser.add_argument("--timeline", type=bool, default=False,
                        help="also a row per stretch of one emotion in the speech")  # fmt: skip
    parser.add_argument("--trim_silence", type=bool | None, default=None,
                        help="true: score each file from its first speech to its last; false: "
                        "all of it, silence before and after included (default: as the model's "
                        "training read its corpus, data.loader.trim_silence; models saved "
                        "before it was recorded: false)")  # fmt: skip
    parser.add_argument("--vad", choices=["silero", "energy"], default="silero",
                        help="speech detector of --trim_silence and --timeline (silero: the "
                        "one training's speech spans were found with; energy: a level threshold "
                        "alone, faster, cuts otherwise)")  # fmt: skip
    parser.add_argument("--on_bad_file", choices=["skip", "fail"], default="skip",
                        help="skip: report a bad file, go on; fail: stop")  # fmt: skip
    parser.add_argument("--data.window_seconds", type=PositiveFloat | None, default=None,
                        help="window (default: what 90 % of training inputs fit in)")  # fmt: skip
    parser.add_argument("--data.timeline_window_seconds", type=PositiveFloat | None,
                        default=None, help="window of --timeline, at most --data.window_seconds "
                        "(default: median training input length)")  # fmt: skip
    parser.add_argument("--data.hop_seconds", type=PositiveFloat | None, default=None,
                        help="step between windows (default: half a window)")  # fmt: skip
    parser.add_argument("--data.batch_size", type=PositiveInt, default=8,
                        help="windows per batch")  # fmt: skip
    parser.add_argument("--data.num_workers", type=NonNegativeInt, default=2,
                        help="threads reading files ahead of the model (0: none)")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="torch device (checkpoints only)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse, score, write; a user error ends in one line (``ser.commands.console``)."""
    run(build_parser().parse_args(argv))


def run(args) -> None:
    from ser.audio import expand_paths

    files = sorted(expand_paths(args.data.paths), key=str)  # rows in path order, as scored
    # Before the model is loaded: a bad --output must not cost a whole folder's scoring.
    output = check_output(args.output, [args.ckpt_path, *files], args.overwrite)
    started = time.perf_counter()
    recognizer = EmotionRecognizer.load(
        args.ckpt_path,
        device=args.device,
        window_seconds=args.data.window_seconds,
        timeline_window_seconds=args.data.timeline_window_seconds,
        hop_seconds=args.data.hop_seconds,
        batch_size=args.data.batch_size,
        vad=args.vad,
        trim_silence=args.trim_silence,
        decode_workers=args.data.num_workers,
    )
    predictions = recognizer.iter_predict(
        files, timeline=args.timeline, on_bad_file=args.on_bad_file
    )
    scored = skipped = 0
    # closing: an error while writing stops the threads reading ahead at once (an unclosed
    # generator keeps them reading, and alive, until it is garbage collected).
    with closing(predictions), StagedOutput(output) as out:
        writer = PredictionWriter(
            out, recognizer.classes, timeline=args.timeline, dimensions=recognizer.dimensions
        )
        for p in predictions:
            if p.error is not None:
                log.warning("skipped %s: %s", p.name, p.error)
                skipped += 1
                continue
            check_probabilities([p], args.ckpt_path)
            writer.write(p)
            scored += 1
        if not scored:
            raise ValueError(f"none of the {len(files)} files could be scored; no CSV written")
    log.info(
        "scored %d files, skipped %d%s in %.1f s; predictions: %s",
        scored,
        skipped,
        " (listed above)" if skipped else "",
        time.perf_counter() - started,
        output,
    )


def check_probabilities(
    predictions: list[Prediction], source: str, tolerance: float = 1e-3
) -> None:
    """``ValueError`` unless every row to be written holds probabilities that sum to 1.

    A row that was never scored is all zeros, which the model's NaN check lets through.

    Args:
        predictions: the scored items (with their segments).
        source: the checkpoint or ONNX file, named in the error.
        tolerance: the largest accepted distance of a row's sum from 1.
    """
    for p in predictions:
        for probs in [p.probs, *(s.probs for s in p.segments)]:
            if not probs:  # a dimensional model: no classes
                continue
            total = sum(probs)
            if not abs(total - 1.0) <= tolerance:
                raise ValueError(
                    f"{source}: probabilities for {p.name} sum to {total:.4f}, not 1 (a row that "
                    "was not scored, or a model without a softmax); no CSV written"
                )


class PredictionWriter:
    """The CSV rows of predictions: ``path, pred, prob_<class>...`` per file (no ``pred``
    without classes), then one column per dimension; with ``timeline`` also ``kind`` (file or
    segment), ``start`` and ``end`` (seconds), a file's segments after its file row. The header
    is written first.

    Args:
        out: where the CSV text goes (a ``StagedOutput`` or any text file).
        classes: the model's classes, one probability column each.
        timeline: also write each prediction's segments.
        dimensions: a dimensional model's dimensions, one value column each.
    """

    def __init__(
        self, out: TextIO, classes: list[str], timeline: bool, dimensions: Sequence[str] = ()
    ) -> None:
        self.writer = csv.writer(out)
        self.timeline = timeline
        self.with_classes = bool(classes)
        self.dimensions = list(dimensions)
        span = ["kind", "start", "end"] if timeline else []
        scores = ["pred", *(f"prob_{name}" for name in classes)] if classes else []
        self.writer.writerow(["path", *span, *scores, *self.dimensions])

    def write(self, p: Prediction) -> None:
        rows = [("file", 0.0, p.duration, p.label, p.probs, p.dimensions)]
        rows += [("segment", s.start, s.end, s.label, s.probs, s.dimensions) for s in p.segments]
        for kind, start, end, label, probs, values in rows if self.timeline else rows[:1]:
            where = [kind, f"{start:.3f}", f"{end:.3f}"] if self.timeline else []
            scores = [label, *(f"{q:.6f}" for q in probs)] if self.with_classes else []
            dimensions = [f"{values[name]:.6f}" for name in self.dimensions]
            self.writer.writerow([p.name, *where, *scores, *dimensions])
