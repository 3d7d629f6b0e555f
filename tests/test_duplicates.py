"""The same audio under two utt_ids is reported, above all when the split separates them."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from corpus_fixtures import tiny_wav

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
    assert "1 audio file(s) are listed under several utt_ids, 1 of them in different parts" in (
        caplog.text
    )
    assert "F01A01 (train) = F01A02 (test) = F01A03 (val)" in caplog.text


def test_distinct_files_are_not_reported(tmp_path, caplog) -> None:
    parts = {
        "train": [row("a", tiny_wav(tmp_path / "a.wav"))],
        "test": [row("b", tiny_wav(tmp_path / "b.wav"))],
    }
    with caplog.at_level(logging.WARNING, logger="ser.data.duplicates"):
        report_shared_audio(parts, "ShEMODataModule")
    assert caplog.text == ""
