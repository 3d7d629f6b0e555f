"""``EmotionRecognizer``: a trained checkpoint applied to files and arrays, without Lightning."""

from __future__ import annotations

import csv
import math
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile
import torch
from models_tiny import SEGMENT_SECONDS, TINY, padded_batch

from ser import EmotionRecognizer, audio
from ser.data.cache import AudioCache
from ser.data.dataset import Batch
from ser.inference.recognizer import torch_scorer
from ser.labels import SHEMO_CLASSES
from ser.models import HFBackbone
from ser.models.checkpoint import TRIM_SILENCE
from ser.models.network import (
    LENGTH_BIN_SECONDS,
    LENGTH_BINS,
    TRAINED_LENGTHS,
    EmotionModel,
    NonFiniteOutputError,
    model_windows,
)
from ser.training.module import SERModule

# One second of audio that is not digital silence (which is a bad item).
TONE = (0.1 * np.sin(np.arange(16_000) * 0.05)).astype(np.float32)


def clips(corpus, count: int) -> list[tuple[str, np.ndarray]]:
    """Corpus files shorter than a 5 s window, trimmed to where the voice is (|x| > 5 % of max)."""
    found = []
    for path in sorted(corpus.rglob("*.wav")):
        wave = audio.load(path)
        loud = np.flatnonzero(np.abs(wave) > 0.05 * np.abs(wave).max())
        # Trimmed to the voice and brought to one peak level: the synthetic corpus gives each
        # file its own recording level, and a long recording of one speaker has one.
        wave = 0.5 * wave[loud[0] : loud[-1] + 1] / np.abs(wave).max()
        if len(wave) < 4.5 * 16_000:
            found.append((str(path), wave))
        if len(found) == count:
            return found
    raise AssertionError("not enough short clips")


def test_import_and_first_prediction_need_no_lightning(demo_run):
    script = (
        "import sys, ser\n"
        "from ser import EmotionRecognizer\n"  # transformers only once a model is built
        "assert 'transformers' not in sys.modules, 'transformers imported'\n"
        f"r = ser.EmotionRecognizer.from_checkpoint({str(demo_run['ckpt'])!r})\n"
        f"p = r.predict([{str(demo_run['long'])!r}])[0]\n"
        "assert p.label in r.classes and abs(sum(p.probs) - 1) < 1e-5, p\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'torchmetrics')"
        " or m in ('ser.training.module', 'ser.data')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_paths_and_arrays_at_any_rate_give_the_same_prediction(demo_run):
    recognizer = EmotionRecognizer.from_checkpoint(demo_run["ckpt"])
    assert recognizer.classes == list(SHEMO_CLASSES) and recognizer.sample_rate == 16_000
    path = sorted((demo_run["corpus"] / "female").glob("*.wav"))[0]
    raw, rate = soundfile.read(path, dtype="float32")
    assert rate != 16_000  # the array is resampled like the file
    from_path, from_array = recognizer.predict([path, (raw, rate)])
    assert from_array.name == "item1" and from_path.name == str(path)
    assert from_path.label == from_array.label
    assert np.allclose(from_path.probs, from_array.probs, atol=1e-5)


def test_items_batched_by_length_equal_items_alone(demo_run):
    files = [*sorted((demo_run["corpus"] / "male").glob("*.wav"))[:5], demo_run["long"]]
    together = EmotionRecognizer.from_checkpoint(demo_run["ckpt"], batch_size=8).predict(files)
    alone = EmotionRecognizer.from_checkpoint(demo_run["ckpt"], batch_size=1).predict(files)
    for a, b in zip(together, alone, strict=True):
        assert a.name == b.name and np.allclose(a.probs, b.probs, atol=1e-5)


@pytest.mark.parametrize("vad", ["energy", "silero"])
def test_timeline_finds_the_clips_and_their_labels(demo_run, vad):
    """Clips of known emotions with 1 s silences between: one segment per clip, where it is
    (within 0.25 s), labelled as the model labels the clip alone (5 s windows: every clip is
    shorter, so none is cut into pieces)."""
    recognizer = EmotionRecognizer.from_checkpoint(
        demo_run["ckpt"], window_seconds=5.0, timeline_window_seconds=5.0, vad=vad
    )
    chosen = clips(demo_run["corpus"], 4)
    silence = np.zeros(16_000, dtype=np.float32)
    parts, truth, at = [silence], [], 1.0
    for _, wave in chosen:
        parts += [wave, silence]
        truth.append((at, at + len(wave) / 16_000))
        at += len(wave) / 16_000 + 1.0
    (long,) = recognizer.predict([(np.concatenate(parts), 16_000)], timeline=True)
    alone = recognizer.predict([(wave, 16_000) for _, wave in chosen])
    assert len(long.segments) == len(chosen)
    for segment, (start, end), clip in zip(long.segments, truth, alone, strict=True):
        assert segment.start == pytest.approx(start, abs=0.25)
        assert segment.end == pytest.approx(end, abs=0.25)
        assert np.allclose(segment.probs, clip.probs, atol=0.05)
        # Every segment's label is checked: it is its own most probable class, and (the
        # probabilities agreeing within 0.05) the clip's unless the clip is a near tie of the
        # barely trained demo model, as it often is.
        assert segment.label == SHEMO_CLASSES[int(np.argmax(segment.probs))]
        top, second = sorted(clip.probs)[-2:][::-1]
        if top - second > 0.1:
            assert segment.label == clip.label
    assert long.duration == pytest.approx(at)


def share_of_positive_samples(waves: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A model that hears class "a" in positive samples and "b" in negative ones: probabilities
    (B, 2) are the shares of the valid samples, then a dimension (B, 1) equal to p(a)."""
    valid = np.arange(waves.shape[1]) < lengths[:, None]  # (B, T)
    positive = ((waves > 0) & valid).sum(axis=1) / lengths  # (B,)
    return np.stack([positive, 1 - positive, positive], axis=1).astype(np.float32)


def a_then_b(seconds_a: float, seconds_b: float) -> np.ndarray:
    """One stretch of speech, no pause: class "a" then class "b" (loud either way)."""
    rng = np.random.default_rng(0)
    a = 0.5 + 0.01 * rng.standard_normal(round(seconds_a * 16_000))
    b = -0.5 + 0.01 * rng.standard_normal(round(seconds_b * 16_000))
    return np.concatenate([a, b]).astype(np.float32)


def test_the_timeline_follows_a_change_of_emotion_inside_a_speech_region():
    """3 s of "a", then 3 s of "b", one speech region, 2 s windows every 1 s: each 1 s step is
    scored by the mean of the two windows over it, so the change is found where it is (3.0 s),
    and the steps of one label are one segment. Pieces cut to the window (what the timeline did
    before: 0-2, 2-4, 4-6 s) put a tie across the change instead."""
    recognizer = EmotionRecognizer(share_of_positive_samples, ["a", "b"], 2.0, vad="energy",
                                   dimensions=["share"])  # fmt: skip
    (long,) = recognizer.predict([(a_then_b(3.0, 3.0), 16_000)], timeline=True)
    assert [(s.label, s.start, s.end) for s in long.segments] == [("a", 0.0, 3.0), ("b", 3.0, 6.0)]
    # Steps 0-1 and 1-2 s heard only "a"; 2-3 s the windows 1-3 (all "a") and 2-4 (half): 0.75.
    assert long.segments[0].probs == pytest.approx([(1 + 1 + 0.75) / 3, (0 + 0 + 0.25) / 3])
    assert long.probs == pytest.approx([0.5, 0.5])  # the segments weighed by their durations
    # hop = window: pieces that do not overlap; the middle one straddles the change, a tie
    # (argmax: "a"), so the change is placed a second late.
    pieces = EmotionRecognizer(share_of_positive_samples, ["a", "b"], 2.0, hop_seconds=2.0,
                               vad="energy", dimensions=["share"])  # fmt: skip
    (cut,) = pieces.predict([(a_then_b(3.0, 3.0), 16_000)], timeline=True)
    assert [(s.label, s.start, s.end) for s in cut.segments] == [("a", 0.0, 4.0), ("b", 4.0, 6.0)]
    assert cut.segments[0].probs == pytest.approx([0.75, 0.25])


def test_a_timeline_scores_in_its_own_window_and_an_item_in_the_item_window():
    """An item's label comes from windows of ``window_seconds`` (4 s here), a timeline's steps
    from windows of ``timeline_window_seconds`` (1 s), which place the change at 3 s; a hop
    longer than the timeline's window is cut to it there."""
    heard = []

    def scorer(waves: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        heard.extend(lengths.tolist())
        return share_of_positive_samples(waves, lengths)

    wave = [(a_then_b(3.0, 3.0), 16_000)]
    recognizer = EmotionRecognizer(scorer, ["a", "b"], 4.0, vad="energy", dimensions=["share"],
                                   timeline_window_seconds=1.0, hop_seconds=2.0)  # fmt: skip
    assert (recognizer.timeline_window, recognizer.timeline_hop) == (16_000, 16_000)
    recognizer.predict(wave)
    assert sorted(set(heard)) == [64_000]  # 0-4 s and 2-6 s
    heard.clear()
    (long,) = recognizer.predict(wave, timeline=True)
    assert sorted(set(heard)) == [16_000]
    assert [(s.label, s.start, s.end) for s in long.segments] == [("a", 0.0, 3.0), ("b", 3.0, 6.0)]
    # Never longer than the item's window, whatever is asked.
    assert EmotionRecognizer(scorer, ["a", "b"], 2.0, vad="energy", dimensions=["share"],
                             timeline_window_seconds=3.0).timeline_window == 32_000  # fmt: skip


def test_a_timeline_of_a_quiet_room_has_no_segments_and_the_item_its_windows():
    recognizer = EmotionRecognizer(share_of_positive_samples, ["a", "b"], 2.0, vad="energy",
                                   dimensions=["share"])  # fmt: skip
    room = 1e-5 * np.random.default_rng(0).standard_normal(48_000).astype(np.float32)  # -100 dBFS
    (quiet,) = recognizer.predict([(room, 16_000)], timeline=True)
    assert quiet.segments == [] and quiet.duration == 3.0 and quiet.error is None


def test_digital_silence_is_a_bad_item_not_a_label():
    """Every sample 0 at 16 bits (a recorder left running without input): no emotion to label,
    as the audio cache leaves such a file out of training and test."""
    recognizer = EmotionRecognizer(share_of_positive_samples, ["a", "b"], 2.0, vad="energy",
                                   dimensions=["share"])  # fmt: skip
    silence = [(np.zeros(48_000, dtype=np.float32), 16_000), (np.full(16_000, 1e-6), 16_000)]
    with pytest.raises(audio.AudioError, match=r"item0: silent: every sample is 0 at 16 bits"):
        recognizer.predict(silence)
    skipped = recognizer.predict(silence, on_bad_file="skip")
    assert [p.error for p in skipped] == ["silent: every sample is 0 at 16 bits"] * 2


def test_silence_before_and_after_an_item_is_not_scored():
    """A recording started before the speaker spoke and stopped after (corpora cut each clip to
    its utterance): the item is scored from the VAD's first speech to its last, so 2 s of a quiet
    room either side of 1 s of "a" leave it "a"; scored whole (``trim_silence=False``), the
    room's half-positive noise pulls it to 0.625 (windows 0-2, 1-3, 2-4, 3-5 s: 0.5, 0.75, 0.75,
    0.5). An item with no speech is scored whole."""
    rng = np.random.default_rng(0)
    room = 1e-3 * rng.standard_normal(32_000).astype(np.float32)  # -60 dBFS, half positive
    speech = a_then_b(1.0, 0.0)
    item = [(np.concatenate([room, speech, room]), 16_000)]
    trimmed = EmotionRecognizer(share_of_positive_samples, ["a", "b"], 2.0, vad="energy",
                                dimensions=["share"])  # fmt: skip
    (recording,) = trimmed.predict(item)
    assert recording.probs[0] > 0.95 and recording.duration == 5.0
    whole = EmotionRecognizer(share_of_positive_samples, ["a", "b"], 2.0, vad="energy",
                              dimensions=["share"], trim_silence=False)  # fmt: skip
    assert whole.predict(item)[0].probs[0] == pytest.approx(0.625, abs=0.01)
    (quiet,) = trimmed.predict([(room, 16_000)])
    assert quiet.probs == whole.predict([(room, 16_000)])[0].probs


def test_a_dimensional_timeline_has_a_segment_per_step():
    """Without classes no two steps share a label: each 1 s step is its own segment, its value
    the mean of the windows over it."""
    recognizer = EmotionRecognizer(
        lambda w, n: share_of_positive_samples(w, n)[:, 2:], [], 2.0, vad="energy",
        dimensions=["share"],
    )  # fmt: skip
    (long,) = recognizer.predict([(a_then_b(2.0, 2.0), 16_000)], timeline=True)
    assert [(s.start, s.end) for s in long.segments] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    shares = [s.dimensions["share"] for s in long.segments]
    assert shares == pytest.approx([1.0, 0.75, 0.25, 0.0])
    assert long.label is None and long.dimensions["share"] == pytest.approx(0.5)


def test_bad_items_fail_or_are_skipped_with_their_reason(demo_run, tmp_path):
    recognizer = EmotionRecognizer.from_checkpoint(demo_run["ckpt"])
    good = sorted((demo_run["corpus"] / "male").glob("*.wav"))[0]
    items = [good, tmp_path / "missing.wav", (np.zeros(100, dtype=np.float32), 16_000)]
    with pytest.raises(audio.AudioError, match=r"missing\.wav: file not found"):
        recognizer.predict(items)
    scored, missing, short = recognizer.predict(items, on_bad_file="skip")
    assert scored.error is None and scored.label in SHEMO_CLASSES
    assert missing.error == "file not found" and missing.label is None
    assert short.error.startswith("too short")


def test_damaged_checkpoint_is_an_error_naming_it_and_its_weights(damaged_checkpoint):
    """NaN weights are found when the checkpoint is loaded, before any file is scored."""
    with pytest.raises(ValueError, match=str(damaged_checkpoint)) as err:
        EmotionRecognizer.from_checkpoint(damaged_checkpoint)
    assert re.search(r"the weights? backbone\.\S+ hold(s)? NaN/inf", str(err.value))


def test_a_model_that_gives_nan_is_an_error_naming_its_source():
    def scorer(waves: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return np.full((len(waves), 2), np.nan, dtype=np.float32)  # (B, C)

    recognizer = EmotionRecognizer(scorer, ["a", "b"], 1.0, source="model.onnx", vad="energy")
    with pytest.raises(NonFiniteOutputError, match=r"model\.onnx: the model gives non-finite"):
        recognizer.predict([(np.ones(16_000, dtype=np.float32), 16_000)])


def uniform(classes: int = 3) -> EmotionRecognizer:
    """A recognizer whose model says 1/``classes`` to everything: input handling alone."""

    def scorer(waves: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return np.full((len(waves), classes), 1 / classes, dtype=np.float32)  # (B, C)

    return EmotionRecognizer(scorer, SHEMO_CLASSES[:classes], 1.0, vad="energy")


@pytest.mark.parametrize(
    ("option", "value"),
    [("batch_size", 0), ("batch_size", -1), ("batch_size", 2.5), ("hop_seconds", -1.0),
     ("hop_seconds", 2.0), ("window_seconds", 0.0), ("window_seconds", float("nan")),
     ("window_seconds", 0.02), ("timeline_window_seconds", 0.0),
     ("timeline_window_seconds", float("nan")), ("timeline_window_seconds", 0.05)],
)  # fmt: skip
def test_sizes_that_would_score_nothing_are_refused(option, value):
    options = {"window_seconds": 1.0, option: value}
    with pytest.raises(ValueError, match=f"^{option}="):
        EmotionRecognizer(lambda w, n: w, ["a"], vad="energy", **options)


@pytest.mark.parametrize(
    ("rate", "reason"),
    [(0, "sample rate 0:"), (-2, "sample rate -2:"), (1, "sample rate 1:"),
     (16_000.5, "sample rate 16000.5:"), (1_000_000, "sample rate 1000000:")],
)  # fmt: skip
def test_an_array_with_an_impossible_rate_is_a_bad_item(rate, reason):
    (bad, good) = uniform().predict([(TONE, rate), (TONE, 16_000)], on_bad_file="skip")
    assert bad.error.startswith(reason) and "from 1000 to 384000" in bad.error
    assert good.error is None
    with pytest.raises(audio.AudioError, match=f"item0: {reason}"):
        uniform().predict([(TONE, rate)])


def energy(classes: int = 2) -> EmotionRecognizer:
    """A recognizer whose first probability is the mean square of what it is given."""

    def scorer(waves: np.ndarray, lengths: np.ndarray) -> np.ndarray:  # (B, T) -> (B, 2)
        power = np.array([(w[:n] ** 2).mean() for w, n in zip(waves, lengths, strict=True)])
        return np.stack([power, 1.0 - power], axis=1).astype(np.float32)

    return EmotionRecognizer(scorer, ["a", "b"], 1.0, vad="energy", trim_silence=False)


def test_integer_pcm_arrays_are_scaled_by_their_full_scale_as_files_are():
    """What ``soundfile.read(dtype="int16")`` or ``scipy.io.wavfile.read`` return: the samples of
    the file, not numbers 32768 times larger (which changed labels)."""
    wave = (0.5 * np.sin(np.arange(16_000) / 5)).astype(np.float32)
    items = [
        (np.round(wave * 2**15).astype(np.int16), 16_000),
        (np.round(wave * 2**31).astype(np.int32), 16_000),
        (np.round(wave * 2**7 + 2**7).astype(np.uint8), 16_000),  # 8-bit WAV: unsigned
        (torch.from_numpy(np.round(wave * 2**15).astype(np.int16)), 16_000),
        (torch.from_numpy(wave).double().requires_grad_(), 16_000),  # a tensor in a graph
    ]
    (reference,) = energy().predict([(wave, 16_000)])
    assert reference.probs[0] == pytest.approx(0.125, rel=1e-3)
    for prediction in energy().predict(items):
        assert prediction.probs == pytest.approx(reference.probs, abs=1e-3)


@pytest.mark.parametrize(
    ("item", "reason"),
    [(None, "expected a file path or a (waveform, sample_rate) pair, got NoneType"),
     (np.zeros(16_000), "expected a file path or a (waveform, sample_rate) pair, got ndarray"),
     ((np.zeros(16_000), 16_000, 1), "expected a file path or a (waveform, sample_rate) pair, "
                                     "got a tuple of 3"),
     ((np.zeros(16_000, dtype=np.complex64), 16_000), "expected real samples (float or integer"),
     ((np.zeros(16_000, dtype=bool), 16_000), "expected real samples (float or integer")],
)  # fmt: skip
def test_an_item_of_another_kind_is_a_bad_item_named_as_such(item, reason):
    good = (TONE, 16_000)
    bad, scored = uniform().predict([item, good], on_bad_file="skip")
    assert bad.error.startswith(reason) and bad.name == "item0"
    assert scored.error is None
    with pytest.raises(audio.AudioError, match=re.escape(f"item0: {reason}")):
        uniform().predict([item])


def test_one_waveform_pair_alone_is_one_item():
    (prediction,) = uniform().predict((TONE, 16_000))
    assert prediction.error is None and prediction.name == "item0"


def test_a_folder_is_a_bad_item_that_says_how_to_list_its_files(tmp_path):
    (prediction,) = uniform().predict([tmp_path], on_bad_file="skip")
    assert prediction.error.startswith("a folder, not an audio file")
    assert "expand_paths" in prediction.error


def test_on_bad_file_is_skip_or_fail():
    """A misspelt "fail" must not turn failing into skipping."""
    with pytest.raises(ValueError, match=r"on_bad_file='Fail'; expected 'fail' or 'skip'"):
        uniform().predict(["missing.wav"], on_bad_file="Fail")


def test_one_path_alone_is_one_item(tmp_path):
    audio.write(tmp_path / "a.wav", TONE, 16_000)
    for item in (tmp_path / "a.wav", str(tmp_path / "a.wav")):
        (prediction,) = uniform().predict(item)
        assert prediction.name == str(tmp_path / "a.wav") and prediction.error is None


def test_files_are_read_ahead_in_threads_in_order_with_errors_in_place(tmp_path, monkeypatch):
    """Threads read the next chunk while one is scored: rows in item order, a bad file's error
    raised (or reported) where it lies, as when each chunk is read in turn."""
    waves = [
        0.1 * np.sin(np.arange(16_000 + 400 * i, dtype=np.float32) / (3 + i)) for i in range(9)
    ]
    items = [tmp_path / f"{i}.wav" for i in range(len(waves))]
    for path, wave in zip(items, waves, strict=True):
        audio.write(path, wave, 16_000)
    items[4] = tmp_path / "missing.wav"
    readers: set[str] = set()
    load = audio.load

    def recording_load(path, *args, **kwargs):
        readers.add(threading.current_thread().name)
        return load(path, *args, **kwargs)

    monkeypatch.setattr(audio, "load", recording_load)

    def scorer(batch: np.ndarray, lengths: np.ndarray) -> np.ndarray:  # (B, T) -> (B, 2)
        energy = np.array([(w[:n] ** 2).mean() for w, n in zip(batch, lengths, strict=True)])
        return np.stack([energy, 1.0 - energy], axis=1).astype(np.float32)

    def recognizer(workers: int) -> EmotionRecognizer:
        made = EmotionRecognizer(scorer, ["a", "b"], 1.0, vad="energy", decode_workers=workers)
        made.chunk_items = 2  # several chunks from a few files
        return made

    ahead = recognizer(3).predict(items, on_bad_file="skip")
    assert readers and all(name.startswith("ser-decode") for name in readers)
    in_turn = recognizer(0).predict(items, on_bad_file="skip")
    assert [p.name for p in ahead] == [str(item) for item in items]
    for a, b in zip(ahead, in_turn, strict=True):
        assert a.error == b.error and np.allclose(a.probs, b.probs)
    assert ahead[4].error == "file not found" and ahead[5].error is None
    with pytest.raises(audio.AudioError, match=r"missing\.wav: file not found"):
        recognizer(3).predict(items)
    with pytest.raises(ValueError, match="decode_workers=-1"):
        recognizer(-1)


def histogram(seconds_and_counts: dict[float, int]) -> torch.Tensor:
    """``trained_lengths`` counts of inputs of these lengths (seconds -> how many)."""
    counts = torch.zeros(LENGTH_BINS, dtype=torch.int64)
    for seconds, count in seconds_and_counts.items():
        counts[min(math.ceil(round(seconds / LENGTH_BIN_SECONDS, 6)) - 1, LENGTH_BINS - 1)] += count
    return counts


@pytest.mark.parametrize(
    ("lengths", "item", "timeline"),
    [({2.0: 50}, 2.0, 2.0),  # EmoDB's clips: windows of 2 s, not of the 5 s segment
     ({1.8: 10, 2.0: 10, 2.3: 10}, 2.3, 2.0),  # speed perturbation of them
     ({1.0: 9, 3.0: 1}, 1.0, 1.0), ({1.0: 8, 3.0: 2}, 3.0, 1.0),  # 90 % no longer than it
     ({1.0: 2, 3.0: 2}, 3.0, 1.0),  # the median of an even count: the lower
     ({2.0: 60, 4.2: 20, 5.0: 20}, 5.0, 2.0),  # clips of many lengths: the long ones heard too
     ({2.0: 95, 30.0: 5}, 2.0, 2.0),  # a few outliers do not set it
     ({2.35: 3}, 2.4, 2.4),  # a bin's upper end: no training input is longer
     ({7.0: 5, 1.0: 1}, 5.0, 5.0), ({40.0: 3}, 5.0, 5.0),  # never beyond the segment
     ({}, 5.0, 5.0)],  # nothing counted: the segment
)  # fmt: skip
def test_an_items_window_holds_90_percent_of_training_inputs_a_timelines_half(
    lengths, item, timeline
):
    windows = model_windows(histogram(lengths), 5.0)
    assert windows.item == pytest.approx(item) and windows.timeline == pytest.approx(timeline)


def test_predict_trims_silence_as_the_models_training_read_its_corpus(demo_run, tmp_path):
    """The checkpoint records ``data.loader.trim_silence`` (the demo run's: the default, true),
    predict's default; a checkpoint without the record (saved before it, or trained on whole files
    as ``false`` records) is scored whole, as its test scored it; a value given wins."""
    checkpoint = torch.load(demo_run["ckpt"], map_location="cpu", weights_only=True)
    assert checkpoint[TRIM_SILENCE] is True
    assert EmotionRecognizer.from_checkpoint(demo_run["ckpt"]).trim_silence
    assert not EmotionRecognizer.from_checkpoint(demo_run["ckpt"], trim_silence=False).trim_silence
    del checkpoint[TRIM_SILENCE]
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    assert not EmotionRecognizer.from_checkpoint(old).trim_silence
    assert EmotionRecognizer.from_checkpoint(old, trim_silence=True).trim_silence


def test_a_checkpoint_from_before_lengths_were_counted_windows_its_segment(demo_run, tmp_path):
    """Checkpoints saved before ``trained_lengths`` existed: predict as before (the segment),
    and Lightning (test, resume) loads them with every key in place."""
    checkpoint = torch.load(demo_run["ckpt"], map_location="cpu", weights_only=True)
    del checkpoint["state_dict"][TRAINED_LENGTHS]
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    assert EmotionRecognizer.from_checkpoint(old).window == 5 * 16_000
    SERModule.load_from_checkpoint(old, map_location="cpu", weights_only=True)  # strict


def test_predict_windows_are_what_90_percent_of_training_inputs_fit_in_timelines_the_median(
    demo_run,
):
    """The demo run's checkpoint counted each training input by length (2 epochs x 3 batches
    of 4, TINY_RUN); each is one of the training utterances as the data reads it (from its first
    speech to its last), cropped to the 5 s segment; predict windows long recordings at the
    length 90 % of them are no longer than, a timeline at their median."""
    run_dir = demo_run["run_dir"]
    last = run_dir / "checkpoints/last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    counts = checkpoint["state_dict"][TRAINED_LENGTHS]  # (LENGTH_BINS,)
    assert int(counts.sum()) == 2 * 3 * 4
    with open(run_dir / "splits/train.csv", newline="") as f:
        trained = [row["utt_id"] for row in csv.DictReader(f)]
    caches = [
        AudioCache(folder, trim_silence=True) for folder in (demo_run["work"] / "cache").iterdir()
    ]
    cache = next(cache for cache in caches if all(utt_id in cache for utt_id in trained))
    crops = [min(cache.num_samples(utt_id) / 16_000, 5.0) for utt_id in trained]
    upper_ends = [(k + 1) * LENGTH_BIN_SECONDS for k in np.flatnonzero(counts.numpy())]
    for end in upper_ends:  # each bin holds a training crop (lengths in samples: 1 ms slack)
        assert any(end - LENGTH_BIN_SECONDS - 1e-3 < s <= end + 1e-3 for s in crops), end
    counted = np.repeat(np.arange(1, LENGTH_BINS + 1) * LENGTH_BIN_SECONDS, counts.numpy())
    window, median = np.quantile(counted, [0.9, 0.5], method="inverted_cdf")
    recognizer = EmotionRecognizer.from_checkpoint(last)
    assert recognizer.window == round(window * 16_000)
    assert recognizer.hop == round(window * 16_000 / 2)
    assert recognizer.timeline_window == round(median * 16_000)
    assert recognizer.timeline_hop == round(median * 16_000 / 2)


def window_module(name: str) -> SERModule:
    """A tiny multitask module of backbone family ``name`` that trained on 0.3 s inputs
    (``SEGMENT_SECONDS`` 0.5 s) and is calibrated at T = 2."""
    model_type, config = TINY[name]
    torch.manual_seed(0)
    backbone = HFBackbone(model_type=model_type, config=config, segment_seconds=SEGMENT_SECONDS)
    module = SERModule(
        backbone, ["anger", "neutral", "sadness"], dimensions=["arousal"], task="multitask"
    ).eval()
    module.trained_lengths.copy_(histogram({0.3: 20}))
    module.temperature.fill_(2.0)
    return module


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # no Trainer here
@pytest.mark.parametrize("name", ["wav2vec2-layer", "ast", "whisper"])
def test_evaluation_scores_an_utterance_as_predict_does(name):
    """Validation and test score each utterance longer than the window predict uses in the
    windows predict cuts, averaged: the test's calibrated probabilities and values are
    ``EmotionRecognizer``'s, and its logits give the mean uncalibrated probabilities."""
    module = window_module(name)
    assert module.scoring_window() == (4_800, 2_400)
    waves, lengths = padded_batch([13_000, 3_000, 4_800, 7_000])  # 4, 1, 1 and 3 windows
    batch = Batch(waves, lengths, torch.tensor([0, 1, 2, 0]), list("abcd"), torch.zeros(4, 1))
    with torch.no_grad():
        loss, logits, values, probs = module.model_step(batch, "test")
    network = EmotionModel(
        module.backbone, module.pooling, module.head, module.dimension_head, ["arousal"]
    ).eval()
    items = [(wave[:length].numpy(), 16_000) for wave, length in zip(waves, lengths, strict=True)]
    for temperature, scores in ((2.0, probs), (1.0, logits.softmax(dim=-1))):
        network.temperature.fill_(temperature)
        recognizer = EmotionRecognizer(  # the batch is what the data read: its speech spans
            torch_scorer(network, "cpu"), module.class_names, 0.3, dimensions=["arousal"],
            trim_silence=False,
        )  # fmt: skip
        predictions = recognizer.predict(items)
        expected = torch.tensor([p.probs for p in predictions])  # (B, C)
        torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-4)
    arousal = torch.tensor([[p.dimensions["arousal"]] for p in predictions])  # (B, 1)
    torch.testing.assert_close(values, arousal, atol=1e-5, rtol=1e-4)
    assert torch.isfinite(loss)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # no Trainer here
def test_evaluation_in_windows_never_predicts_a_class_the_stage_leaves_out():
    module = window_module("wav2vec2-layer")
    module.use_classes(["anger", "sadness"])
    waves, lengths = padded_batch([13_000, 3_000])
    batch = Batch(waves, lengths, torch.tensor([0, 2]), list("ab"), torch.zeros(2, 1))
    with torch.no_grad():
        loss, logits, _, probs = module.model_step(batch, "val")
    assert (logits[:, 1] == float("-inf")).all() and (probs[:, 1] == 0).all()
    assert torch.isfinite(logits[:, [0, 2]]).all() and torch.isfinite(loss)
    torch.testing.assert_close(probs.sum(dim=-1), torch.ones(2))


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # no Trainer here
def test_the_label_of_an_utterance_in_windows_is_predicts_at_its_temperature():
    """Averaged over windows, the temperature can change the most probable class: the metrics
    count the class predict reports (of the calibrated mean), not the uncalibrated one."""
    module = window_module("wav2vec2-layer")  # windows of 0.3 s every 0.15 s
    module.head = torch.nn.Identity()  # the pooled vectors below are the windows' logits
    module.dimension_head = None  # classes only
    window_logits = iter(torch.tensor([[[6.0, 0, 0]], [[0, 2.0, 0]], [[0, 2.0, 0]]]))
    module.encode = lambda waves, lengths: next(window_logits)  # one window per call (B = 1)
    module.temperature.fill_(4.0)
    waves, lengths = padded_batch([9_600])  # windows 0-0.3, 0.15-0.45, 0.3-0.6 s
    batch = Batch(waves, lengths, torch.tensor([0]), ["a"], torch.zeros(1, 1))
    with torch.no_grad():
        _, logits, _, probs = module.model_step(batch, "test")
    assert int(logits.argmax()) == 1 and int(probs.argmax()) == 0  # T = 1 vs T = 4
    assert module.test_metrics.compute()["test/WA"] == 1.0
