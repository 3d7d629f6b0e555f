"""``EmotionRecognizer``: a trained model applied to files or arrays, without Lightning.

checkpoint (``SERModule``'s, rebuilt from its hyper-parameters) or ONNX file -> windows (or
windows over the steps of VAD speech regions) -> batches grouped by length -> probabilities
(and, for a dimensional model, values of arousal, valence ...) per segment and per item.
``python -m ser predict`` is a thin command around it.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ser import audio
from ser.models.network import NonFiniteOutputError, ScoringDefaults, load_model
from ser.models.windows import TimelinePlan, plan_timeline, window_and_hop, window_spans
from ser.vad import make_vad, speech_span

log = logging.getLogger(__name__)

Item = str | Path | tuple[np.ndarray | torch.Tensor, int]
# (B, T) float32 waves, (B,) int64 lengths -> (B, C + K) float32 probabilities, dimension values
Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
# An item read: its name, its wave (T,) at 16 kHz or why it could not be read, its speech regions.
Decoded = tuple[str, np.ndarray | str, list[tuple[int, int]]]


@dataclass
class Segment:
    """A stretch of one item (seconds) and what the model makes of it."""

    start: float
    end: float
    label: str | None
    probs: list[float]
    dimensions: dict[str, float] = field(default_factory=dict)


@dataclass
class Prediction:
    """One item: its name (path or ``item<i>``), label and class probabilities (none for a
    dimensional model), ``dimensions`` (``{"arousal": 3.1, ...}``, a dimensional model's);
    ``segments`` with ``timeline=True``; ``error`` (and no label) for a bad item skipped with
    ``on_bad_file="skip"``.
    """

    name: str
    label: str | None = None
    probs: list[float] = field(default_factory=list)
    duration: float = 0.0
    segments: list[Segment] = field(default_factory=list)
    error: str | None = None
    dimensions: dict[str, float] = field(default_factory=dict)


def torch_scorer(model: nn.Module, device: str) -> Scorer:
    """Run ``model`` on ``device`` without autograd."""
    model.to(device)

    def score(waves: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            probs = model(torch.from_numpy(waves).to(device), torch.from_numpy(lengths).to(device))
        return probs.float().cpu().numpy()  # (B, C + K)

    return score


def onnx_scorer(
    path: str | Path,
) -> tuple[Scorer, list[str], list[str], ScoringDefaults, float | None]:
    """An onnxruntime session of a ``python -m ser export`` file, its classes, dimensions,
    scoring defaults and longest window (None: any length)."""
    import onnxruntime

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's own error types (InvalidProtobuf, Fail, ...)
        said = str(err).splitlines()[0][:200] if str(err) else ""
        raise ValueError(
            f"{path}: onnxruntime cannot load it ({type(err).__name__}: {said}); give a file "
            "written by `python -m ser export`"
        ) from err
    meta = session.get_modelmeta().custom_metadata_map
    if "class_names" not in meta:
        raise ValueError(
            f"{path}: no class_names in the ONNX metadata; export it with `ser export`"
        )

    def score(waves: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return session.run(["probs"], {"waves": waves, "lengths": lengths})[0]  # (B, C + K)

    dimensions = json.loads(meta.get("dimensions", "[]"))  # files exported before: none
    longest = meta.get("longest_window_seconds")  # AST and Whisper graphs only
    window = float(meta["window_seconds"])
    # Files exported before the timeline had its own window: the item's.
    # Files exported before trim_silence was recorded: whole items, as their test scored them.
    defaults = ScoringDefaults(
        window,
        float(meta.get("timeline_window_seconds", window)),
        meta.get("trim_silence") == "true",
    )
    return (
        score,
        json.loads(meta["class_names"]),
        dimensions,
        defaults,
        None if longest is None else float(longest),
    )


def is_waveform_pair(items: object) -> bool:
    """Whether ``items`` is one ``(waveform, sample_rate)`` item rather than a sequence of items
    (a sample rate is a whole number; no item is)."""
    return (
        isinstance(items, tuple)
        and len(items) == 2
        and isinstance(items[1], int | np.integer)
        and not isinstance(items[1], bool)
    )


class EmotionRecognizer:
    """Emotion of audio files or arrays, per item and (``timeline=True``) per speech segment.

    An item is scored from its first speech to its last (``trim_silence``): corpora cut each clip
    to its utterance, recordings are not (Whisper-base fine-tuned on EmoDB fell from UA 0.93 to
    0.64 with 2 s of a quiet room either side; docs/real_speech.md), as training and the test
    read each corpus file (``data.loader.trim_silence``, the same ``speech_span``). Items longer
    than a window are scored in windows of ``window_seconds`` every ``hop_seconds``, averaged. With
    ``timeline=True`` the VAD's speech regions are scored instead: whole windows of
    ``timeline_window_seconds`` (shorter: finer in time) at most ``hop_seconds`` apart are laid
    over each, every step between window edges gets the mean of the windows over it, and
    consecutive steps with the same label make a segment (``plan_timeline``); the item's
    probabilities are the steps' mean weighted by duration (an item without speech falls back to
    its windows, with no segments).

    Args:
        scorer: waves (B, T) float32 and lengths (B,) int64 -> probabilities (B, C), then the
            values of the K dimensions: (B, C + K).
        classes: the class of each probability column (none: a dimensional model).
        window_seconds: the window long items are scored in (a checkpoint's default: the length
            90 % of its training inputs fit in, at most its training segment).
        source: what the model was loaded from (named in errors).
        hop_seconds: step between overlapping windows (default: half of each window; a
            timeline's at most its window).
        batch_size: windows per forward pass (windows of similar length are batched together).
        vad: the voice activity detector of ``trim_silence`` and ``timeline=True``: "silero" or
            "energy".
        dimensions: the dimension of each column after the probabilities.
        decode_workers: threads that read and resample the next items while the model scores
            the current ones (0: read each chunk of items in turn, in the calling thread).
        timeline_window_seconds: the window of a timeline's speech regions, at most
            ``window_seconds`` (default: ``window_seconds``; a checkpoint's: the median length
            of its training inputs).
        trim_silence: score each item from its first speech to its last (the VAD's and a level
            threshold's, ``speech_span``; pauses between kept); an item without speech is scored
            whole. False: the whole item, silence included.
    """

    sample_rate = audio.TARGET_SAMPLE_RATE
    chunk_items = 64  # items scored together; one more chunk is read ahead: bounds memory

    def __init__(
        self,
        scorer: Scorer,
        classes: Sequence[str],
        window_seconds: float,
        source: str = "model",
        hop_seconds: float | None = None,
        batch_size: int = 8,
        vad: Literal["silero", "energy"] = "silero",
        dimensions: Sequence[str] = (),
        decode_workers: int = 2,
        timeline_window_seconds: float | None = None,
        trim_silence: bool = True,
    ) -> None:
        # `not x >= 1` also refuses NaN; a size below one makes predict score nothing at all.
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not batch_size >= 1:
            raise ValueError(f"batch_size={batch_size!r} must be a whole number >= 1")
        if type(decode_workers) is not int or decode_workers < 0:
            raise ValueError(f"decode_workers={decode_workers!r} must be a whole number >= 0")
        if timeline_window_seconds is None:
            timeline_window_seconds = window_seconds
        for name, seconds in (("window_seconds", window_seconds),
                              ("timeline_window_seconds", timeline_window_seconds)):  # fmt: skip
            if not seconds >= audio.MIN_SECONDS:  # encoders need a few frames; NaN refused too
                raise ValueError(
                    f"{name}={seconds} must be at least {audio.MIN_SECONDS} s (the shortest "
                    "audio scored)"
                )
        if hop_seconds is not None and not 1 / self.sample_rate <= hop_seconds <= window_seconds:
            raise ValueError(f"hop_seconds={hop_seconds} must be in (0, window_seconds]")
        self.scorer, self.classes, self.source = scorer, list(classes), source
        self.dimensions = list(dimensions)
        self.window, self.hop = window_and_hop(window_seconds, hop_seconds, self.sample_rate)
        timeline_window_seconds = min(timeline_window_seconds, window_seconds)
        timeline_hop_seconds = (
            None if hop_seconds is None else min(hop_seconds, timeline_window_seconds)
        )
        self.timeline_window, self.timeline_hop = window_and_hop(
            timeline_window_seconds, timeline_hop_seconds, self.sample_rate
        )
        self.batch_size = batch_size
        self.decode_workers = decode_workers
        self.vad = make_vad(vad)
        self.trim_silence = trim_silence

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "cpu",
        window_seconds: float | None = None,
        timeline_window_seconds: float | None = None,
        trim_silence: bool | None = None,
        **options: Any,
    ) -> EmotionRecognizer:
        """From a ``python -m ser fit`` checkpoint; ``window_seconds`` defaults to the length 90 %
        of the model's training inputs fit in, ``timeline_window_seconds`` to their median, both
        at most its training segment (checkpoints from before ser counted them: the segment);
        ``trim_silence`` to how its training read the corpus (``data.loader.trim_silence``;
        checkpoints from before it was recorded: false, as their test scored); ``options`` as in
        the constructor."""
        model, classes, defaults = load_model(path)
        scorer = torch_scorer(model, device)
        chosen = defaults.chosen(window_seconds, timeline_window_seconds, trim_silence)
        return cls(scorer, classes, source=str(path), dimensions=model.dimensions, **chosen,
                   **options)  # fmt: skip

    @classmethod
    def from_onnx(
        cls,
        path: str | Path,
        window_seconds: float | None = None,
        timeline_window_seconds: float | None = None,
        trim_silence: bool | None = None,
        **options: Any,
    ) -> EmotionRecognizer:
        """From a ``python -m ser export`` file (onnxruntime on the CPU); windows and
        ``trim_silence`` as ``from_checkpoint``'s (recorded in the file; one exported before the
        timeline had its own: the item's), ``window_seconds`` at most the graph's longest row
        where it has one (AST: its segment; Whisper: 30 s)."""
        scorer, classes, dimensions, defaults, longest = onnx_scorer(path)
        chosen = defaults.chosen(window_seconds, timeline_window_seconds, trim_silence)
        window_seconds = chosen["window_seconds"]
        if longest is not None and window_seconds > longest:
            raise ValueError(
                f"{path}: window_seconds={window_seconds} is longer than the {longest} s this "
                "graph's encoder takes in one pass (AST: its training segment; Whisper: 30 s); "
                f"give at most {longest}"
            )
        return cls(scorer, classes, source=str(path), dimensions=dimensions, **chosen, **options)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", **options: Any) -> EmotionRecognizer:
        """``from_onnx`` for a ``.onnx`` file, else ``from_checkpoint`` (``device`` applies)."""
        if Path(path).suffix.lower() == ".onnx":
            return cls.from_onnx(path, **options)
        return cls.from_checkpoint(path, device=device, **options)

    def predict(
        self,
        items: str | Path | Sequence[Item],
        timeline: bool = False,
        on_bad_file: Literal["skip", "fail"] = "fail",
    ) -> list[Prediction]:
        """One ``Prediction`` per item, in order.

        Args:
            items: audio file paths, or ``(waveform, sample_rate)`` with a mono waveform (T,)
                (an array or tensor: float samples in [-1, 1], or integer PCM, scaled by its
                type's full scale as a file's); one path or pair alone is one item.
            timeline: also follow the emotion through the speech (``Prediction.segments``).
            on_bad_file: "fail" raises ``AudioError`` naming the item (a path, or ``item<i>``
                for the i-th item of another kind); "skip" returns it with ``error`` set and
                goes on.
        """
        return list(self.iter_predict(items, timeline, on_bad_file))

    def iter_predict(
        self,
        items: str | Path | Sequence[Item],
        timeline: bool = False,
        on_bad_file: Literal["skip", "fail"] = "fail",
    ) -> Iterator[Prediction]:
        """``predict``'s results one by one, each chunk's as soon as it is scored (a caller can
        write them while the rest of a large folder is scored); arguments as ``predict``'s."""
        if on_bad_file not in ("fail", "skip"):
            raise ValueError(f"on_bad_file={on_bad_file!r}; expected 'fail' or 'skip'")
        if isinstance(items, str | Path) or is_waveform_pair(items):
            items = [items]
        # Reading, resampling and the VAD (soundfile, torch) release the GIL: with workers,
        # threads read the next chunk while this one is scored, so the model does not wait.
        pool = (
            ThreadPoolExecutor(self.decode_workers, "ser-decode") if self.decode_workers else None
        )
        ahead = 2 * self.chunk_items if pool else self.chunk_items  # items read, not yet scored
        try:
            reading: deque[Future] = deque()
            for index, item in enumerate(items):
                reading.append(self._start_decoding(pool, index, item, on_bad_file, timeline))
                if len(reading) == ahead:
                    yield from self._score_chunk(self._take(reading), timeline)
            while reading:
                yield from self._score_chunk(self._take(reading), timeline)
        finally:  # an error, or a caller that stops early: no file is read for nothing
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _start_decoding(
        self,
        pool: ThreadPoolExecutor | None,
        index: int,
        item: Item,
        on_bad_file: str,
        timeline: bool,
    ) -> Future:
        """``_decode`` of one item in the pool, or here and now (its error kept for ``_take``)."""
        if pool is not None:
            return pool.submit(self._decode, index, item, on_bad_file, timeline)
        done: Future = Future()
        try:
            done.set_result(self._decode(index, item, on_bad_file, timeline))
        except Exception as err:
            done.set_exception(err)
        return done

    def _take(self, reading: deque[Future]) -> list[Decoded]:
        """The next chunk's decoded items, in order (a decoding error is raised here)."""
        count = min(self.chunk_items, len(reading))
        return [reading.popleft().result() for _ in range(count)]

    def _decode(self, index: int, item: Item, on_bad_file: str, timeline: bool) -> Decoded:
        """An item read at 16 kHz (or, when bad and skipped, the reason), with its speech regions
        where they are used (here, in a reading thread, not in the scoring one)."""
        name = str(item) if isinstance(item, str | Path) else f"item{index}"
        try:
            wave = self._samples(name, item)
        except audio.AudioError as err:
            if on_bad_file == "fail":
                raise
            return name, err.reason, []
        if timeline:
            return name, wave, self.vad(wave)
        span = speech_span(wave, self.vad) if self.trim_silence else None
        return name, wave, [] if span is None else [span]

    def _samples(self, name: str, item: object) -> np.ndarray:
        """The samples of a file or a ``(waveform, sample_rate)`` pair at 16 kHz."""
        if isinstance(item, str | Path):
            return audio.load(item)
        if not isinstance(item, tuple) or len(item) != 2:
            kind = f"a tuple of {len(item)}" if isinstance(item, tuple) else type(item).__name__
            raise audio.AudioError(
                name, f"expected a file path or a (waveform, sample_rate) pair, got {kind}"
            )
        wave, rate = item
        wave = audio.samples(name, wave)
        if wave.ndim != 1:
            raise audio.AudioError(name, f"expected a mono waveform (T,), got shape {wave.shape}")
        audio.check_wave(name, wave, rate, min_seconds=audio.MIN_SECONDS)
        return audio.resample(wave, rate, self.sample_rate)

    def _plan(
        self, wave: np.ndarray, regions: list[tuple[int, int]], timeline: bool
    ) -> tuple[list[tuple[int, int]], TimelinePlan | None]:
        """The spans to score and, for a timeline of speech regions, how they make its steps."""
        if timeline:
            plan = plan_timeline(regions, self.timeline_window, self.timeline_hop)
            if plan.windows:  # some speech
                return plan.windows, plan
        speech = regions if self.trim_silence and regions else [(0, len(wave))]
        start, stop = speech[0][0], speech[-1][1]
        spans = window_spans(stop - start, self.window, self.hop)
        return [(start + a, start + b) for a, b in spans], None

    def _score_chunk(self, decoded: list[Decoded], timeline: bool) -> list[Prediction]:
        plans = [
            ([], None) if isinstance(wave, str) else self._plan(wave, regions, timeline)
            for _, wave, regions in decoded
        ]
        spans = [(i, s) for i, (item_spans, _) in enumerate(plans) for s in item_spans]
        probs = self._score(
            [decoded[i][1][a:b] for i, (a, b) in spans], [decoded[i][0] for i, _ in spans]
        )  # (N, C)
        results, k = [], 0
        for (name, wave, _), (item_spans, plan) in zip(decoded, plans, strict=True):
            if isinstance(wave, str):  # a bad item: the reason
                results.append(Prediction(name, error=wave))
                continue
            part = probs[k : k + len(item_spans)]  # (S, C + K)
            k += len(item_spans)
            results.append(self._prediction(name, len(wave), part, plan))
        return results

    def _prediction(
        self, name: str, length: int, probs: np.ndarray, plan: TimelinePlan | None
    ) -> Prediction:
        """An item's prediction from the scores (S, C + K) of its spans: overlapping windows
        weigh equally (as predict always did); a timeline's steps by duration."""
        if plan is None:
            label, class_probs, dimensions = self._read(probs.mean(axis=0))
            return Prediction(name, label, class_probs, length / self.sample_rate, [], None,
                              dimensions)  # fmt: skip
        steps = np.stack([probs[a:b].mean(axis=0) for a, b in plan.covering])  # (steps, C + K)
        durations = np.array([b - a for a, b in plan.steps], dtype=np.float64)  # (steps,)
        # A segment: consecutive steps of one region with the same label (a dimensional model
        # has none: each step is a segment).
        labels = [self._read(row)[0] for row in steps]
        rate, segments, first = self.sample_rate, [], 0
        for step in range(1, len(steps) + 1):
            if (
                step < len(steps)
                and plan.region[step] == plan.region[first]
                and labels[step] is not None
                and labels[step] == labels[first]
            ):
                continue
            mean = np.average(steps[first:step], axis=0, weights=durations[first:step])
            start, stop = plan.steps[first][0], plan.steps[step - 1][1]
            segments.append(Segment(start / rate, stop / rate, *self._read(mean)))
            first = step
        label, class_probs, dimensions = self._read(np.average(steps, axis=0, weights=durations))
        return Prediction(name, label, class_probs, length / self.sample_rate, segments, None,
                          dimensions)  # fmt: skip

    def _read(self, scores: np.ndarray) -> tuple[str | None, list[float], dict[str, float]]:
        """Label, class probabilities and dimension values of one row (C + K,) of scores."""
        count = len(self.classes)
        label = self.classes[int(scores[:count].argmax())] if count else None
        values = dict(zip(self.dimensions, scores[count:].tolist(), strict=True))
        return label, scores[:count].tolist(), values

    def _score(self, pieces: list[np.ndarray], names: list[str]) -> np.ndarray:
        """Scores (N, C + K) of N waveform pieces, batched longest first."""
        width = len(self.classes) + len(self.dimensions)
        out = np.zeros((len(pieces), width), dtype=np.float32)  # (N, C + K)
        order = sorted(range(len(pieces)), key=lambda i: -len(pieces[i]))
        for first in range(0, len(order), self.batch_size):
            rows = order[first : first + self.batch_size]
            lengths = np.array([len(pieces[i]) for i in rows], dtype=np.int64)  # (B,)
            waves = np.zeros((len(rows), lengths.max()), dtype=np.float32)  # (B, T)
            for row, i in enumerate(rows):
                waves[row, : lengths[row]] = pieces[i]
            out[rows] = self.scorer(waves, lengths)
            if not np.isfinite(out[rows]).all():
                bad = sorted({names[i] for i in rows})
                raise NonFiniteOutputError(
                    f"{self.source}: the model gives non-finite probabilities (NaN/inf) for "
                    f"{', '.join(bad[:3])}: the checkpoint is damaged (torch does not verify its "
                    "checksums) or its training diverged; use another checkpoint"
                )
        return out
