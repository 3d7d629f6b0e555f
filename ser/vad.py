"""Speech regions of a 16 kHz mono waveform, so that silence is not classified.

``SileroVAD`` runs the Silero VAD model shipped inside the ``silero-vad`` wheel (MIT; nothing is
downloaded). ``EnergyVAD`` is the fallback without a model: frames louder than a threshold
relative to the recording's loudest frame. Both return sample spans ``(start, stop)``, and both
hear a quiet recording raised to an audible level (``audible``): what they find in a recording
quieter than ``QUIETEST_LEVEL_DB`` does not depend on how much quieter (within ``MAX_RAISE_DB``);
a louder one is heard as recorded.
"""

from __future__ import annotations

import threading
import warnings
from typing import Protocol

import numpy as np
import torch

from ser.audio import TARGET_SAMPLE_RATE

# Recordings quieter than this (RMS in dBFS about their mean) are raised to it, by at most
# MAX_RAISE_DB, before a detector hears them; louder ones are heard as recorded. Silero's speech
# probability falls with the level, and the level threshold never takes frames below its floor
# (-60 dBFS) for speech: a recording at -40 dBFS taken 20 dB lower kept only its loudest
# syllables, where the model itself hears every input at one level (``input_level_db``).
QUIETEST_LEVEL_DB = -30.0
MAX_RAISE_DB = 30.0


def audible(wave: np.ndarray) -> np.ndarray:
    """``wave`` as the detectors hear it: raised to ``QUIETEST_LEVEL_DB`` when quieter (by at
    most ``MAX_RAISE_DB``: near-silence stays quiet), else unchanged."""
    wave = np.asarray(wave, dtype=np.float32)
    target = 10.0 ** (QUIETEST_LEVEL_DB / 20.0)
    level = float(np.std(wave, dtype=np.float64)) if len(wave) else target
    if level >= target:
        return wave
    gain = min(target / max(level, 1e-12), 10.0 ** (MAX_RAISE_DB / 20.0))
    return wave * np.float32(gain)


class VoiceActivityDetector(Protocol):
    def __call__(self, wave: np.ndarray) -> list[tuple[int, int]]:
        """Speech spans ``(start, stop)`` in samples of ``wave`` (T,) at 16 kHz, in order."""


_per_thread = threading.local()
# Held while a thread loads its copy: the warning filters it sets are the process's, and
# threads swapping them at once would let the warnings through (catch_warnings is not thread-safe).
_loading = threading.Lock()


def _silero_model() -> torch.nn.Module:
    """This thread's copy of the model: it keeps state between the frames of one recording, so
    threads that read files in parallel (``EmotionRecognizer``'s) each need their own."""
    if not hasattr(_per_thread, "silero"):
        from silero_vad import load_silero_vad  # the JIT model inside the wheel

        # How the wheel finds and loads its model is deprecated by Python (importlib.resources'
        # path) and torch 2.14 (torch.jit.load): warnings no user of ser can act on.
        with _loading, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"path is deprecated\. Use files\(\)")
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated")
            _per_thread.silero = load_silero_vad()
    return _per_thread.silero


class SileroVAD:
    """Silero VAD speech regions (of the recording raised to an audible level, ``audible``).

    Args:
        threshold: speech probability above which a 32 ms frame is speech.
        min_speech_seconds: shorter speech bursts are dropped.
        min_silence_seconds: shorter pauses do not split a region.
        pad_seconds: added to both ends of each region.
    """

    def __init__(
        self,
        threshold: float = 0.5,
        min_speech_seconds: float = 0.25,
        min_silence_seconds: float = 0.5,
        pad_seconds: float = 0.03,
    ) -> None:
        self.threshold = threshold
        self.min_speech_seconds = min_speech_seconds
        self.min_silence_seconds = min_silence_seconds
        self.pad_seconds = pad_seconds

    def __call__(self, wave: np.ndarray) -> list[tuple[int, int]]:
        from silero_vad import get_speech_timestamps

        stamps = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(audible(wave))),
            _silero_model(),
            threshold=self.threshold,
            sampling_rate=TARGET_SAMPLE_RATE,
            min_speech_duration_ms=round(1000 * self.min_speech_seconds),
            min_silence_duration_ms=round(1000 * self.min_silence_seconds),
            speech_pad_ms=round(1000 * self.pad_seconds),
        )
        return [(stamp["start"], stamp["end"]) for stamp in stamps]


class EnergyVAD:
    """Frames whose RMS is within ``threshold_db`` of the loudest frame are speech (the recording
    raised to an audible level first, ``audible``).

    Args:
        threshold_db: how far below the loudest frame (dB) a frame still counts as speech.
        floor_db: frames below this level (dBFS, as heard) are never speech (digital silence, hum).
        frame_seconds: frame length (frames do not overlap).
        min_speech_seconds: shorter speech bursts are dropped.
        min_silence_seconds: shorter pauses do not split a region.
        pad_seconds: added to both ends of each region.
    """

    def __init__(
        self,
        threshold_db: float = -35.0,
        floor_db: float = -60.0,
        frame_seconds: float = 0.02,
        min_speech_seconds: float = 0.25,
        min_silence_seconds: float = 0.5,
        pad_seconds: float = 0.03,
    ) -> None:
        self.threshold_db = threshold_db
        self.floor_db = floor_db
        self.frame = max(1, round(frame_seconds * TARGET_SAMPLE_RATE))
        self.min_speech = round(min_speech_seconds * TARGET_SAMPLE_RATE)
        self.min_silence = round(min_silence_seconds * TARGET_SAMPLE_RATE)
        self.pad = round(pad_seconds * TARGET_SAMPLE_RATE)

    def __call__(self, wave: np.ndarray) -> list[tuple[int, int]]:
        count = len(wave) // self.frame
        if count == 0:
            return []
        frames = np.asarray(audible(wave)[: count * self.frame], dtype=np.float64).reshape(
            count, -1
        )
        level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)  # (frames,) dBFS
        loud = level >= max(level.max() + self.threshold_db, self.floor_db)  # (frames,)
        regions = _runs(loud, self.frame)
        return _tidy(regions, len(wave), self.min_speech, self.min_silence, self.pad)


def _runs(flags: np.ndarray, frame: int) -> list[tuple[int, int]]:
    """Sample spans of the runs of True in per-frame ``flags``."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))  # (frames + 1,)
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a) * frame, int(b) * frame) for a, b in zip(starts, stops, strict=True)]


def _tidy(
    regions: list[tuple[int, int]], length: int, min_speech: int, min_silence: int, pad: int
) -> list[tuple[int, int]]:
    """Merge regions closer than ``min_silence``, drop those shorter than ``min_speech``, pad."""
    merged: list[tuple[int, int]] = []
    for start, stop in regions:
        if merged and start - merged[-1][1] < min_silence:
            merged[-1] = (merged[-1][0], stop)
        else:
            merged.append((start, stop))
    kept = [(a, b) for a, b in merged if b - a >= min_speech]
    return [(max(0, a - pad), min(length, b + pad)) for a, b in kept]


# How much of the speech next to a quiet edge the VAD hears with it (Silero needs a little).
EDGE_CONTEXT_SECONDS = 0.5


def speech_span(
    wave: np.ndarray, vad: VoiceActivityDetector, level: VoiceActivityDetector | None = None
) -> tuple[int, int] | None:
    """From the first speech in ``wave`` to the last (None: no speech), as ``vad`` or a level
    threshold (``level``, default ``EnergyVAD()``) hears it.

    Trimmed to it, a recording loses an edge only where both hear silence: Silero alone cut
    speech it misjudged (on a telephone line, UA -0.12 on one EmoDB fold), the level threshold
    alone the quiet ends of clean clips; silence stays silence to both. The level threshold
    runs first (about free); ``vad`` only on an edge it would cut, with ``EDGE_CONTEXT_SECONDS``
    of the loud part beside it: on clips cut to their utterance it has almost nothing to hear
    (Silero over whole files made a tiny model's predict 4x slower). The recording is raised
    to an audible level as a whole first (``audible``): an edge raised on its own level gave a
    quieter copy of a recording another span."""
    wave = audible(wave)
    loud = (level or EnergyVAD())(wave)
    if not loud:
        regions = vad(wave)
        return (regions[0][0], regions[-1][1]) if regions else None
    (start, _), (_, stop) = loud[0], loud[-1]
    context = round(EDGE_CONTEXT_SECONDS * TARGET_SAMPLE_RATE)
    if start > 0 and (head := vad(wave[: start + context])):
        start = min(start, head[0][0])
    tail_start = max(0, stop - context)
    if stop < len(wave) and (tail := vad(wave[tail_start:])):
        stop = max(stop, tail_start + tail[-1][1])
    return start, stop


def make_vad(kind: str) -> VoiceActivityDetector:
    """``"silero"`` or ``"energy"`` with their default settings."""
    if kind == "silero":
        return SileroVAD()
    if kind == "energy":
        return EnergyVAD()
    raise ValueError(f"unknown VAD {kind!r}; expected silero or energy")
