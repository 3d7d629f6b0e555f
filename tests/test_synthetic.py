"""The synthetic corpus: real layouts and naming, deterministic, emotions not given away by one
trivial feature (duration, RMS, peak, zero-crossing rate, spectral centroid, mean F0) yet present
in the audio."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser import audio
from ser.commands.synth import main
from ser.data.corpora import iemocap as iemocap_corpus
from ser.data.synthetic import corpus, voice, write_corpus
from ser.labels import IEMOCAP_4_CLASSES, IEMOCAP_4_MERGE, IEMOCAP_CODES, SHEMO_CODES, LabelSet

SHEMO_NAME = re.compile(r"([FM]\d\d)([AFHNSW])(\d\d)\.wav")
EVAL_LINE = re.compile(r"\[(\d+\.\d{4}) - (\d+\.\d{4})\]\t(Ses0\d[FM]_\w+_([FM])\d{3})\t(\w{3})\t"
                       r"\[\d\.\d{4}, \d\.\d{4}, \d\.\d{4}\]")  # fmt: skip
EVAL_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"


@pytest.fixture(scope="module")
def shemo(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("shemo")
    return out, write_corpus("shemo", out, num_speakers=6, utterances_per_speaker=24, seed=3)


@pytest.fixture(scope="module")
def iemocap(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("iemocap")
    return out, write_corpus("iemocap", out, num_speakers=4, utterances_per_speaker=12, seed=1)


def _shemo_rows(root: Path) -> list[tuple[Path, str, str]]:
    """(path, speaker, emotion) parsed with the real naming rules."""
    rows = []
    for path in sorted(root.rglob("*.wav")):
        match = SHEMO_NAME.fullmatch(path.name)
        assert match, f"{path.name} does not follow the ShEMO naming"
        rows.append((path, match.group(1), SHEMO_CODES[match.group(2)]))
    return rows


def test_same_seed_same_bytes(tmp_path):
    def files(out: Path) -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.wav"))}

    for layout, speakers in (("shemo", 2), ("iemocap", 2)):
        write_corpus(layout, tmp_path / f"{layout}a", speakers, 3, seed=7)
        write_corpus(layout, tmp_path / f"{layout}b", speakers, 3, seed=7)
        write_corpus(layout, tmp_path / f"{layout}c", speakers, 3, seed=8)
        first, again = files(tmp_path / f"{layout}a"), files(tmp_path / f"{layout}b")
        assert first and first == again
        assert first != files(tmp_path / f"{layout}c")


def process_id(job: int) -> list[tuple]:
    return [(job, os.getpid())]


def test_a_process_with_another_thread_writes_without_forking():
    """A fork copies the locks other threads hold (a worker then waits forever, as one did in CI
    while a prediction's reading thread was inside libsndfile): with a second thread alive, the
    jobs run in this process."""
    release = threading.Event()
    other = threading.Thread(target=release.wait, name="busy")
    other.start()
    try:
        done = corpus._map(process_id, [(job,) for job in range(4)])
    finally:
        release.set()
        other.join()
    assert done == [[(job, os.getpid())] for job in range(4)]


def test_shemo_layout_names_and_rates(shemo):
    root, summary = shemo
    rows = _shemo_rows(root)
    assert {p.parent.name for p, _, _ in rows} == {"female", "male"}
    for path, speaker, _ in rows:
        assert path.parent.name == ("female" if speaker[0] == "F" else "male")
    assert len(rows) == summary["files"] == 6 * 24
    assert len({s for _, s, _ in rows}) == summary["speakers"] == 6
    per_class = Counter(e for _, _, e in rows)
    assert set(per_class) == set(SHEMO_CODES.values())
    assert max(per_class.values()) - min(per_class.values()) <= 6  # balanced-ish
    infos = [sf.info(str(p)) for p, _, _ in rows]
    assert all(i.channels == 1 and i.subtype == "PCM_16" for i in infos)
    rates = Counter(i.samplerate for i in infos)
    assert set(rates) <= {44_100, 22_050} and rates[44_100] > 0.85 * len(rows)
    assert summary["sample_rates"] == dict(sorted(rates.items()))
    durations = np.array([i.frames / i.samplerate for i in infos])
    assert 2.0 < np.median(durations) < 4.5 and (durations > 5.0).any()


def test_iemocap_layout_and_evaluation_format(iemocap):
    root, summary = iemocap
    wavs = {p.stem: p for p in root.glob("Session*/sentences/wav/*/*.wav")}
    assert len(wavs) == summary["files"] == 4 * 12
    labelled = {}
    for txt in sorted(root.glob("Session*/dialog/EmoEvaluation/*.txt")):
        text = txt.read_text(encoding="utf-8")
        assert text.startswith(EVAL_HEADER + "\n\n")
        for block in text[len(EVAL_HEADER) :].strip().split("\n\n"):
            first, *annotators = block.split("\n")
            match = EVAL_LINE.fullmatch(first)
            assert match, f"{txt.name}: bad label line {first!r}"
            start, end, utt, _, code = match.groups()
            assert float(start) < float(end) and code in IEMOCAP_CODES
            assert utt.startswith(txt.stem + "_")
            assert wavs[utt].parent.name == txt.stem
            assert annotators and all(re.match(r"[CA]-E\d:\t", a) for a in annotators)
            labelled[utt] = code
    assert set(labelled) == set(wavs)
    assert {"neu", "ang", "sad"} <= set(labelled.values())
    sessions = {p.parts[len(root.parts)] for p in wavs.values()}
    assert sessions == {"Session1", "Session2"}
    assert all(audio.probe(p).sample_rate == 16_000 for p in wavs.values())
    # speaker = session + gender letter of the last _F/_M part; the session folder agrees
    speakers = {f"{u[:5]}{u.rsplit('_', 1)[1][0]}" for u in wavs}
    assert speakers == {"Ses01F", "Ses01M", "Ses02F", "Ses02M"} and summary["speakers"] == 4


def _mean_f0(wave: np.ndarray, sample_rate: int = 16_000) -> float:
    """Mean F0 (Hz) over voiced 40 ms frames: centre-clipped autocorrelation, peak in 60-500 Hz
    (centre clipping keeps a strong first formant from passing for the pitch period)."""
    frame, lo, hi = 640, sample_rate // 500, sample_rate // 60
    frames = np.lib.stride_tricks.sliding_window_view(wave, frame)[::320]  # (N, 640)
    frames = frames - frames.mean(axis=1, keepdims=True)
    limit = 0.3 * np.abs(frames).max(axis=1, keepdims=True)
    clipped = np.sign(frames) * np.maximum(np.abs(frames) - limit, 0.0)
    corr = np.fft.irfft(np.abs(np.fft.rfft(clipped, 2 * frame)) ** 2)[:, : hi + 1]  # (N, lags)
    lags = lo + np.argmax(corr[:, lo:], axis=1)
    strength = corr[np.arange(len(corr)), lags] / (corr[:, 0] + 1e-12)
    voiced = strength > 0.4
    return float(np.median(sample_rate / lags[voiced])) if voiced.any() else 0.0


def _one_feature_ua(values: np.ndarray, labels: np.ndarray, bins: int = 8) -> float:
    """UA of the best one-feature classifier: quantile bins -> majority class, 2-fold."""
    rng = np.random.default_rng(0)
    folds = rng.permutation(len(values)) % 2
    recalls = []
    for fold in (0, 1):
        train, test = folds != fold, folds == fold
        edges = np.quantile(values[train], np.linspace(0, 1, bins + 1)[1:-1])
        bin_train, bin_test = np.digitize(values[train], edges), np.digitize(values[test], edges)
        classes = np.unique(labels)
        # majority in balanced terms: the class most over-represented in the bin
        prior = np.array([(labels[train] == c).mean() for c in classes])
        table = np.array(
            [[(labels[train][bin_train == b] == c).mean() if (bin_train == b).any() else 0
              for c in classes] for b in range(bins)]
        ) / prior  # fmt: skip
        predicted = classes[table.argmax(axis=1)][bin_test]
        recalls.append([(predicted[labels[test] == c] == c).mean() for c in classes])
    return float(np.mean(recalls))


def _trivial_features(waves: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per file: duration, RMS level, peak level, zero-crossing rate, spectral centroid."""

    def centroid(w: np.ndarray) -> float:
        frames = w[: len(w) // 512 * 512].reshape(-1, 512)  # (N, 512)
        spectrum = np.abs(np.fft.rfft(frames, axis=1))  # (N, 257)
        return float((spectrum * np.fft.rfftfreq(512, 1 / 16_000)).sum() / spectrum.sum())

    return {
        "duration": np.array([len(w) / 16_000 for w in waves]),
        "rms_db": np.array([10 * np.log10(np.mean(w**2) + 1e-12) for w in waves]),
        "peak": np.array([np.abs(w).max() for w in waves]),
        "zero_crossing_rate": np.array([np.mean(np.diff(np.sign(w)) != 0) for w in waves]),
        "spectral_centroid": np.array([centroid(w) for w in waves]),
    }


@pytest.fixture(scope="module")
def iemocap_4_classes(tmp_path_factory) -> tuple[list[np.ndarray], np.ndarray]:
    """Waves and 4-class labels of a 400-file IEMOCAP layout (enough for a stable UA)."""
    out = tmp_path_factory.mktemp("iemocap_large")
    write_corpus("iemocap", out, num_speakers=10, utterances_per_speaker=40, seed=1)
    labels = LabelSet(IEMOCAP_4_CLASSES, IEMOCAP_4_MERGE)
    rows = [(r, labels.map(r.label)) for r in iemocap_corpus.scan(out) if labels.map(r.label)]
    return [audio.load(r.path) for r, _ in rows], np.array([name for _, name in rows])


def test_no_single_trivial_feature_gives_the_label_in_iemocap(iemocap_4_classes):
    waves, labels = iemocap_4_classes
    for name, values in _trivial_features(waves).items():
        ua = _one_feature_ua(values, labels)
        assert ua < 0.45, f"{name} alone gives UA {ua:.2f} over 4 classes (chance 0.25)"


def test_no_single_trivial_feature_gives_the_label(shemo):
    rows = _shemo_rows(shemo[0])
    labels = np.array([e for _, _, e in rows])
    waves = [audio.load(p) for p, _, _ in rows]
    features = _trivial_features(waves)
    for name, values in features.items():
        ua = _one_feature_ua(values, labels)
        assert ua < 0.45, f"{name} alone gives UA {ua:.2f} over 6 classes (chance 0.17)"
    assert _one_feature_ua(features["duration"], labels) < 0.35
    features["mean_f0"] = np.array([_mean_f0(w) for w in waves])
    assert _one_feature_ua(features["mean_f0"], labels) < 0.55
    # the features still carry emotion in the realistic direction: anger louder than sadness,
    # higher pitched within each speaker
    by = {e: labels == e for e in ("anger", "sadness")}
    assert features["rms_db"][by["anger"]].mean() > features["rms_db"][by["sadness"]].mean() + 5
    speakers = np.array([s for _, s, _ in rows])
    for speaker in np.unique(speakers):
        f0 = features["mean_f0"]
        assert (
            f0[by["anger"] & (speakers == speaker)].mean()
            > f0[by["sadness"] & (speakers == speaker)].mean()
        )


def test_bad_arguments_fail_clearly(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        write_corpus("shemo", tmp_path / "used", 2, 2)
    with pytest.raises(ValueError, match="2, 4, 6, 8 or 10"):
        write_corpus("iemocap", tmp_path / "a", 3, 2)
    with pytest.raises(ValueError, match="layout"):
        write_corpus("crema", tmp_path / "b", 2, 2)  # type: ignore[arg-type]


def test_overwrite_replaces_the_corpus(tmp_path):
    write_corpus("shemo", tmp_path, 4, 3)
    summary = write_corpus("shemo", tmp_path, 2, 3, overwrite=True)
    assert len(list(tmp_path.rglob("*.wav"))) == summary["files"] == 6


def test_main_writes_and_logs_a_summary(tmp_path, caplog):
    out = tmp_path / "corpus"
    with caplog.at_level(logging.INFO):
        code = main(["--layout", "shemo", "--out", str(out), "--speakers", "2",
                     "--per-speaker", "6", "--seed", "1"])  # fmt: skip
    assert code == 0
    assert len(list(out.rglob("*.wav"))) == 12
    assert "wrote 12 shemo files (2 speakers)" in caplog.text
    assert "per code" in caplog.text and "durations" in caplog.text


def test_a_clip_shorter_than_its_first_syllable_is_rendered_to_its_length():
    """A short clip spoken slowly: its one syllable runs past the end (``ser synth`` of 40 x 500
    files crashed on one such draw). The clip is cut at its length, never longer."""
    speaker = voice.make_speaker("F", np.random.default_rng(0))
    slow = dataclasses.replace(voice.PROSODY["sadness"], rate=1.0)
    for seed in range(5):
        wave = voice.render(speaker, slow, 0.35, 16_000, np.random.default_rng(seed))
        assert wave.shape == (round(0.35 * 16_000),) and np.isfinite(wave).all()
