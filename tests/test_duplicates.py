"""The same audio under two utt_ids is reported, above all when the split separates them."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
from corpus_fixtures import tiny_wav

from ser import audio
from ser.data.cache import AudioCache
from ser.data.duplicates import report_shared_audio, shared_audio
from ser.data.utterance import Utterance


def row(utt_id: str, path: Path) -> Utterance:
    return Utterance(utt_id, str(path), "F01", "anger", 0.2, 16_000)


@pytest.fixture
def parts(tmp_path: Path) -> dict[str, list[Utterance]]:
    original = tiny_wav(tmp_path / "F01A01.wav")
    os.link(original, tmp_path / "F01A02.wav")  # a hard link: the same file
    (tmp_path / "F01A03.wav").symlink_to(original)
    other = tiny_wav(tmp_path / "F01A04.wav")
    return {
        "train": [row("F01A01", original), row("F01A04", other)],
        "test": [row("F01A02", tmp_path / "F01A02.wav")],
        "val": [row("F01A03", tmp_path / "F01A03.wav")],
    }


def test_hard_links_and_symlinks_are_one_audio(parts) -> None:
    (group,) = shared_audio(parts)
    assert [(part, r.utt_id) for part, r in group] == [
        ("train", "F01A01"),
        ("test", "F01A02"),
        ("val", "F01A03"),
    ]


def test_shared_audio_across_parts_is_a_reported_leak(parts, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="ser.data.duplicates"):
        report_shared_audio(parts, "ShEMODataModule")
    assert "1 recording(s) are listed under several utt_ids (one file, or copies of one " in (
        caplog.text
    )
    assert "1 of them in different parts" in caplog.text
    assert "F01A01 (train) = F01A02 (test) = F01A03 (val)" in caplog.text


def test_distinct_files_are_not_reported(tmp_path, caplog) -> None:
    parts = {
        "train": [row("a", tiny_wav(tmp_path / "a.wav"))],
        "test": [row("b", tiny_wav(tmp_path / "b.wav"))],
    }
    with caplog.at_level(logging.WARNING, logger="ser.data.duplicates"):
        report_shared_audio(parts, "ShEMODataModule")
    assert caplog.text == ""


def test_copies_of_one_recording_are_found_by_content(tmp_path, caplog) -> None:
    """A copy of a file (another inode) and the recording as FLAC (lossless): the same audio
    under three ids, found by the audio cache's digests (by inode they were three)."""
    t = np.arange(8000) / 16_000
    wave = (0.3 * np.sin(2 * np.pi * 180.0 * t) * np.hanning(8000)).astype(np.float32)
    audio.write(tmp_path / "a.wav", wave, 16_000)
    shutil.copy(tmp_path / "a.wav", tmp_path / "b.wav")
    pcm, rate = soundfile.read(tmp_path / "a.wav", dtype="int16")  # as a converter copies it
    soundfile.write(tmp_path / "c.flac", pcm, rate)
    audio.write(tmp_path / "d.wav", wave[::-1].copy(), 16_000)  # other audio
    rows = {name: row(name, tmp_path / file) for name, file in
            [("a", "a.wav"), ("b", "b.wav"), ("c", "c.flac"), ("d", "d.wav")]}  # fmt: skip
    cache = AudioCache.build(list(rows.values()), tmp_path / "cache")
    parts = {"train": [rows["a"], rows["d"]], "test": [rows["b"]], "val": [rows["c"]]}
    assert shared_audio(parts) == []  # three files
    (group,) = shared_audio(parts, cache.content)
    assert [(part, r.utt_id) for part, r in group] == [("train", "a"), ("test", "b"), ("val", "c")]
    with caplog.at_level(logging.WARNING, logger="ser.data.duplicates"):
        report_shared_audio(parts, "ManifestDataModule", cache.content)
    assert "a (train) = b (test) = c (val)" in caplog.text
