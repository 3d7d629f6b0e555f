"""AudioCache: decode once, rebuild on change, atomic builds, bad files, worker processes."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from ser import audio
from ser.data import cache as cache_module
from ser.data.cache import AudioCache, BadAudioFilesError, CacheNotBuiltError
from ser.data.utterance import Utterance
from ser.vad import SileroVAD, speech_span

INT16_STEP = 1.0 / 32768


def tone(seconds: float, sample_rate: int, freq: float = 220.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_row(path: Path, label: str = "anger") -> Utterance:
    return Utterance(path.stem, str(path), "F01", label, 0.0, 0)


def write_rows(folder: Path, specs: list[tuple[str, float, int]]) -> list[Utterance]:
    """Write one tone per (name, seconds, sample_rate); return their rows."""
    rows = []
    for i, (name, seconds, rate) in enumerate(specs):
        path = folder / f"{name}.wav"
        audio.write(path, tone(seconds, rate, freq=150.0 + 40 * i), rate)
        rows.append(make_row(path))
    return rows


@pytest.fixture
def rows(tmp_path: Path) -> list[Utterance]:
    specs = [("F01A01", 0.5, 16000), ("F01N02", 1.0, 44100), ("M02S03", 0.3, 22050)]
    return write_rows(tmp_path / "corpus", specs)


def finished_dirs(cache_dir: Path) -> list[Path]:
    return [p for p in cache_dir.iterdir() if p.is_dir() and ".tmp-" not in p.name]


def test_roundtrip_matches_audio_load(rows: list[Utterance], tmp_path: Path) -> None:
    cache = AudioCache.build(rows, tmp_path / "cache")
    for row in rows:
        expected = audio.load(row.path)
        got = cache.read(row.utt_id)
        assert got.dtype == np.float32
        assert cache.num_samples(row.utt_id) == len(expected) == len(got)
        np.testing.assert_allclose(got, expected, atol=INT16_STEP)
        np.testing.assert_allclose(
            cache.read(row.utt_id, 100, 300), expected[100:300], atol=INT16_STEP
        )
    assert cache.bad == []
    assert len(cache) == 3 and "F01A01" in cache and "nope" not in cache


def test_resamples_44k_to_16k(rows: list[Utterance], tmp_path: Path) -> None:
    cache = AudioCache.build(rows, tmp_path / "cache")
    assert cache.num_samples("F01N02") == 16000  # 1.0 s at 44.1 kHz
    assert cache.num_samples("M02S03") == 4800  # 0.3 s at 22.05 kHz
    assert cache.meta["sample_rate"] == 16000


def test_read_clips_range_and_rejects_unknown(rows: list[Utterance], tmp_path: Path) -> None:
    cache = AudioCache.build(rows, tmp_path / "cache")
    assert len(cache.read("F01A01", 7900, 10**9)) == 100
    assert len(cache.read("F01A01", 9000)) == 0
    with pytest.raises(KeyError, match="nope"):
        cache.read("nope")


def test_full_scale_peaks_are_kept_not_wrapped(tmp_path: Path) -> None:
    path = tmp_path / "F01A01.wav"
    sf.write(str(path), np.full(4000, 1.0, dtype=np.float32), 16000, subtype="FLOAT")
    cache = AudioCache.build([make_row(path)], tmp_path / "cache")
    assert cache.read("F01A01").min() == 1.0  # 1.0 * 32768 would wrap to -32768


def test_a_quiet_recording_keeps_its_precision(tmp_path: Path) -> None:
    """A recording at -57 dBFS (44.1 kHz, resampled): stored at one scale for all, its 16-bit
    copy kept about 6 bits, and its test scores were not those predict gives the file."""
    path = tmp_path / "F01A01.wav"
    rng = np.random.default_rng(0)
    quiet = 0.002 * np.sin(np.arange(44_100) * 0.05) + 0.0005 * rng.standard_normal(44_100)
    sf.write(str(path), quiet.astype(np.float32), 44_100, subtype="FLOAT")
    cache = AudioCache.build([make_row(path)], tmp_path / "cache")
    decoded = audio.load(path)
    error = np.abs(cache.read("F01A01") - decoded).max()
    assert error <= np.abs(decoded).max() / 65_000  # half a step of 16 bits at its own peak
    assert error < INT16_STEP / 100


def test_trimmed_reading_is_the_speech_span_predict_scores(tmp_path: Path) -> None:
    """A clip with a quiet room's second before it and half second after: opened with
    ``trim_silence`` the same cache reads it from its first speech to its last, the span
    ``speech_span`` (predict's) finds in the decoded file; opened without, whole."""
    rate = 22_050
    room = 1e-4 * np.random.default_rng(0).standard_normal(rate // 2).astype(np.float32)
    wave = np.concatenate([room, room, tone(1.0, rate), room])  # 1 s, 1 s of tone, 0.5 s
    path = tmp_path / "F01A01.wav"
    audio.write(path, wave, rate)
    rows = [make_row(path)]
    AudioCache.build(rows, tmp_path / "cache")
    whole = AudioCache.open(rows, tmp_path / "cache")
    trimmed = AudioCache.open(rows, tmp_path / "cache", trim_silence=True)
    start, stop = speech_span(audio.load(path), SileroVAD())
    assert whole.speech_span("F01A01") == trimmed.speech_span("F01A01") == (start, stop)
    assert start == pytest.approx(16_000, abs=800) and stop == pytest.approx(32_000, abs=800)
    assert whole.num_samples("F01A01") == 40_000 and trimmed.num_samples("F01A01") == stop - start
    np.testing.assert_array_equal(trimmed.read("F01A01"), whole.read("F01A01")[start:stop])
    np.testing.assert_array_equal(
        trimmed.read("F01A01", 100, 300), whole.read("F01A01", start + 100, start + 300)
    )
    assert len(finished_dirs(tmp_path / "cache")) == 1  # one cache serves both readings


def test_a_long_build_says_how_far_it_has_come(
    rows: list[Utterance], tmp_path: Path, caplog, monkeypatch
) -> None:
    """A build (a large corpus: minutes, with the speech spans) logs how many files it has read
    at most every ``PROGRESS_SECONDS`` (here 0: after each file), then the finished cache."""
    monkeypatch.setattr(cache_module, "PROGRESS_SECONDS", 0.0)
    with caplog.at_level(logging.INFO, logger="ser.data.cache"):
        AudioCache.build(rows, tmp_path / "cache")
    lines = [r.getMessage() for r in caplog.records]
    progress = [line for line in lines if "files read" in line]
    assert [line.split(": ")[1].split(" files read")[0] for line in progress] == [
        "1 of 3", "2 of 3", "3 of 3"
    ]  # fmt: skip
    assert "0.0 h of audio" in progress[-1]  # 1.8 s
    assert lines[-1].startswith("Built audio cache")


def test_second_build_reuses_without_decoding(
    rows: list[Utterance], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = AudioCache.build(rows, tmp_path / "cache")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(audio, "load", no_decoding)
    second = AudioCache.build(rows, tmp_path / "cache")
    assert second.directory == first.directory
    assert len(finished_dirs(tmp_path / "cache")) == 1
    opened = AudioCache.open(rows, tmp_path / "cache")
    np.testing.assert_array_equal(opened.read("F01N02"), first.read("F01N02"))


def test_a_build_another_process_finished_first_is_used_and_not_said_built(
    rows: list[Utterance], tmp_path: Path, monkeypatch, caplog
) -> None:
    """Two runs building one cache at once: the second to finish uses the first's folder and
    says so, without a "Built audio cache" line for a cache it threw away."""
    decode_all = cache_module.decode_all

    def other_process_finishes_meanwhile(*args, **kwargs):
        monkeypatch.setattr(cache_module, "decode_all", decode_all)
        with monkeypatch.context() as other:  # the other run: its own build folder
            other.setattr(cache_module, "tmp_suffix", lambda: ".tmp-otherhost-1")
            AudioCache.build(rows, tmp_path / "cache")  # done while this one decodes
        return decode_all(*args, **kwargs)

    monkeypatch.setattr(cache_module, "decode_all", other_process_finishes_meanwhile)
    with caplog.at_level(logging.INFO, logger="ser.data.cache"):
        cache = AudioCache.build(rows, tmp_path / "cache")
    assert caplog.text.count("Built audio cache") == 1  # the other run's
    assert "Another process finished audio cache" in caplog.text
    assert cache.read(rows[0].utt_id).size > 0


def test_open_before_build_says_what_to_do(rows: list[Utterance], tmp_path: Path) -> None:
    with pytest.raises(CacheNotBuiltError, match="prepare_data"):
        AudioCache.open(rows, tmp_path / "cache")
    AudioCache.build(rows, tmp_path / "cache", min_seconds=0.1)
    with pytest.raises(CacheNotBuiltError):  # min_seconds is part of the key
        AudioCache.open(rows, tmp_path / "cache", min_seconds=0.2)
    with pytest.raises(CacheNotBuiltError):  # other rows
        AudioCache.open(rows[:2], tmp_path / "cache")


def test_a_cache_damaged_after_its_build_is_refused_not_read(
    rows: list[Utterance], tmp_path: Path
) -> None:
    """A finished cache cut short later (an interrupted copy, a full disk) was read through a
    shorter memmap and failed deep in a run ("mmap length is greater than file size")."""
    folder = AudioCache.build(rows, tmp_path / "cache").directory
    samples = folder / "audio.int16"
    with samples.open("r+b") as f:
        f.truncate(samples.stat().st_size // 2)
    for reopen in (AudioCache.build, AudioCache.open):
        with pytest.raises(CacheNotBuiltError, match=rf"{folder} is damaged: audio\.int16 holds"):
            reopen(rows, tmp_path / "cache")
    # Its index cut short: a json traceback naming no file, before.
    index = folder / "index.json"
    index.write_text(index.read_text()[:40])
    with pytest.raises(CacheNotBuiltError, match=rf"file {index} is damaged \("):
        AudioCache.open(rows, tmp_path / "cache")


def test_rebuilt_after_file_changes(rows: list[Utterance], tmp_path: Path) -> None:
    before = AudioCache.build(rows, tmp_path / "cache")
    audio.write(rows[0].path, tone(0.7, 16000, freq=900.0), 16000)
    os.utime(rows[0].path, ns=(time.time_ns(), time.time_ns() + 10**9))  # mtime surely differs
    with pytest.raises(CacheNotBuiltError):
        AudioCache.open(rows, tmp_path / "cache")
    after = AudioCache.build(rows, tmp_path / "cache")
    assert after.directory != before.directory
    assert after.num_samples(rows[0].utt_id) == 11200
    np.testing.assert_allclose(
        after.read(rows[0].utt_id), audio.load(rows[0].path), atol=INT16_STEP
    )


def test_rebuilt_after_file_added(rows: list[Utterance], tmp_path: Path) -> None:
    before = AudioCache.build(rows, tmp_path / "cache")
    added = write_rows(tmp_path / "corpus", [("M03W04", 0.4, 16000)])
    after = AudioCache.build(rows + added, tmp_path / "cache")
    assert after.directory != before.directory
    assert "M03W04" in after and "M03W04" not in before
    assert len(finished_dirs(tmp_path / "cache")) == 2


def test_duplicate_utt_ids_fail(rows: list[Utterance], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="audio cache: utt_id 'F01A01' appears twice"):
        AudioCache.build([*rows, rows[0]], tmp_path / "cache")


def test_interrupted_build_leaves_no_finished_cache(
    rows: list[Utterance], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_load = audio.load
    calls = []

    def dies_on_second_file(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed mid-build")
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(audio, "load", dies_on_second_file)
    with pytest.raises(KeyboardInterrupt):
        AudioCache.build(rows, tmp_path / "cache", num_workers=1)
    assert finished_dirs(tmp_path / "cache") == []
    with pytest.raises(CacheNotBuiltError):
        AudioCache.open(rows, tmp_path / "cache")
    monkeypatch.setattr(audio, "load", real_load)
    cache = AudioCache.build(rows, tmp_path / "cache")
    assert len(cache) == 3
    assert list((tmp_path / "cache").iterdir()) == [cache.directory]


KILLED_BUILD = textwrap.dedent(
    """
    import os, signal, sys
    from ser import audio
    from ser.data.cache import AudioCache
    from ser.data.utterance import Utterance
    real_load, calls = audio.load, []
    def load(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup runs: like a node going down
        return real_load(path, *args, **kwargs)
    audio.load = load
    rows = [Utterance(p.split("/")[-1][:-4], p, "F01", "anger", 0.0, 0) for p in sys.argv[2:]]
    AudioCache.build(rows, sys.argv[1], num_workers=1)
    """
)


def test_killed_build_is_ignored_then_cleaned(rows: list[Utterance], tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    paths = [row.path for row in rows]
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_BUILD, str(cache_dir), *paths],
        cwd=Path(__file__).parents[1],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    leftovers = list(cache_dir.iterdir())
    assert len(leftovers) == 1 and ".tmp-" in leftovers[0].name
    assert (leftovers[0] / "audio.int16").stat().st_size > 0  # it died part-way
    with pytest.raises(CacheNotBuiltError):
        AudioCache.open(rows, cache_dir)
    # Another host's unfinished build in the shared folder: its process cannot be checked here.
    other_host = cache_dir / f"{'0' * 64}{cache_module.tmp_suffix('otherhost', 1)}"
    other_host.mkdir()
    old = time.time() - 7 * 24 * 3600  # idle for a week: still not ours to judge
    os.utime(other_host, (old, old))
    cache = AudioCache.build(rows, cache_dir)  # this host's killed build: removed at once
    np.testing.assert_allclose(cache.read("F01N02"), audio.load(rows[1].path), atol=INT16_STEP)
    assert sorted(cache_dir.iterdir()) == sorted([cache.directory, other_host])


def test_unwritable_cache_dir_says_to_set_cache_dir(rows: list[Utterance], tmp_path: Path) -> None:
    # A file where the folder should be: refused even for root (unlike a chmod'ed folder).
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    cache_dir = blocker / "cache"
    with pytest.raises(cache_module.CacheDirError, match=r"set --data.loader.cache_dir") as err:
        AudioCache.build(rows, cache_dir)
    assert str(cache_dir) in str(err.value)


@pytest.fixture
def bad_rows(tmp_path: Path) -> list[Utterance]:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "garbage.wav").write_bytes(b"RIFF this is not audio at all" * 20)
    (folder / "empty.wav").write_bytes(b"")
    sf.write(str(folder / "noframes.wav"), np.zeros(0, dtype=np.float32), 16000)
    audio.write(folder / "short.wav", tone(0.05, 16000), 16000)
    nan = tone(0.5, 16000)
    nan[100] = np.nan
    sf.write(str(folder / "nan.wav"), nan, 16000, subtype="FLOAT")
    # Digital silence: nothing to learn or test on (below half a 16-bit step is silence once
    # stored as 16-bit).
    audio.write(folder / "silent.wav", np.full(8000, 1e-6, dtype=np.float32), 16000, "FLOAT")
    names = ("garbage", "empty", "noframes", "short", "nan", "silent")
    paths = [folder / f"{n}.wav" for n in names]
    return [make_row(p) for p in [*paths, folder / "missing.wav"]]


EXPECTED_REASONS = {
    "garbage": "unreadable",
    "empty": "empty file",
    "noframes": "zero-length",
    "short": "too short",
    "nan": "NaN",
    "silent": "silent: every sample is 0 at 16 bits",
    "missing": "not found",
}


def test_bad_files_skipped_with_one_warning(
    rows: list[Utterance], bad_rows: list[Utterance], tmp_path: Path, caplog
) -> None:
    with caplog.at_level(logging.WARNING, logger="ser.data.cache"):
        cache = AudioCache.build(rows + bad_rows, tmp_path / "cache", on_bad_file="skip")
    reasons = {b["utt_id"]: b for b in cache.bad}
    assert set(reasons) == set(EXPECTED_REASONS)
    for utt_id, reason in EXPECTED_REASONS.items():
        assert reason in reasons[utt_id]["reason"]
        assert reasons[utt_id]["path"].endswith(f"{utt_id}.wav")
        assert utt_id not in cache
    assert all(row.utt_id in cache for row in rows)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "7 bad audio file(s)" in message and "garbage.wav" in message and "2 more" in message
    with pytest.raises(KeyError, match="bad file"):
        cache.read("nan")


def test_bad_files_fail_lists_every_file(
    rows: list[Utterance], bad_rows: list[Utterance], tmp_path: Path
) -> None:
    with pytest.raises(BadAudioFilesError) as info:
        AudioCache.build(rows + bad_rows, tmp_path / "cache", on_bad_file="fail")
    message = str(info.value)
    for row in bad_rows:
        assert row.path in message
    for reason in EXPECTED_REASONS.values():
        assert reason in message
    assert finished_dirs(tmp_path / "cache") == []
    AudioCache.build(rows + bad_rows, tmp_path / "cache", on_bad_file="skip")
    with pytest.raises(BadAudioFilesError):  # a reused cache with bad files fails as well
        AudioCache.build(rows + bad_rows, tmp_path / "cache", on_bad_file="fail")


def test_parallel_build_equals_serial(tmp_path: Path) -> None:
    specs = [(f"F{i:02d}A01", 0.2 + 0.01 * i, (16000, 44100, 22050)[i % 3]) for i in range(24)]
    many = write_rows(tmp_path / "corpus", specs)
    serial = AudioCache.build(many, tmp_path / "serial", num_workers=1)
    parallel = AudioCache.build(many, tmp_path / "parallel", num_workers=3)
    for row in many:
        np.testing.assert_array_equal(parallel.read(row.utt_id), serial.read(row.utt_id))
    assert (parallel.directory / "audio.int16").read_bytes() == (
        serial.directory / "audio.int16"
    ).read_bytes()


class _Reads(Dataset):
    def __init__(self, cache: AudioCache, utt_ids: list[str]) -> None:
        self.cache, self.utt_ids = cache, utt_ids

    def __len__(self) -> int:
        return len(self.utt_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.cache.read(self.utt_ids[index])), os.getpid()


def test_worker_processes_read_correctly(rows: list[Utterance], tmp_path: Path) -> None:
    cache = AudioCache.build(rows, tmp_path / "cache")
    cache.read("F01A01")  # the parent has a memmap open: it must not travel to the workers
    assert len(pickle.dumps(cache)) < 10_000  # the index, not the audio
    ids = [row.utt_id for row in rows] * 4
    loader = DataLoader(
        _Reads(cache, ids),
        batch_size=None,
        num_workers=2,
        multiprocessing_context="spawn",  # pickles the cache, the strict case
    )
    pids = set()
    for (wave, pid), utt_id in zip(loader, ids, strict=True):
        np.testing.assert_array_equal(wave.numpy(), cache.read(utt_id))
        pids.add(pid)
    assert os.getpid() not in pids and len(pids) == 2
