"""ShEMO scanning on the 3000 real file names (tiny audio), bad names, the shemo.json join."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

import pytest
from corpus_fixtures import (
    SHARED_DATA,
    SHEMO_COUNTS,
    SHEMO_SPEAKERS,
    shemo_json_stems,
    tiny_wav,
    write_shemo,
)

from ser.data import splits
from ser.data.corpora import shemo


@pytest.fixture(scope="module")
def shemo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shemo(tmp_path_factory.mktemp("shemo") / "ShEMO")


@pytest.fixture(scope="module")
def rows(shemo_root: Path) -> list:
    return shemo.scan(shemo_root)


def test_real_names_give_released_counts(rows: list) -> None:
    assert len(rows) == 3000
    assert Counter(row.label for row in rows) == SHEMO_COUNTS
    assert len({row.speaker for row in rows}) == SHEMO_SPEAKERS
    assert [row.utt_id for row in rows] == sorted(row.utt_id for row in rows)


def test_row_fields(rows: list, shemo_root: Path) -> None:
    row = next(row for row in rows if row.utt_id == "M12W03")
    assert (row.speaker, row.label) == ("M12", "surprise")
    assert row.path == str(shemo_root / "male" / "M12W03.wav")
    assert os.path.isabs(row.path) and Path(row.path).is_file()
    assert row.sample_rate == 16_000
    assert row.duration == pytest.approx(0.3)
    assert row.session is None and row.split is None and row.transcript is None


def test_stratified_split_of_scanned_corpus(rows: list) -> None:
    parts = splits.stratified(rows, val_fraction=0.1, test_fraction=0.1, seed=0)
    for label, n in SHEMO_COUNTS.items():
        counts = {name: sum(r.label == label for r in part) for name, part in parts.items()}
        assert abs(counts["val"] - 0.1 * n) <= 1 and abs(counts["test"] - 0.1 * n) <= 1
        assert abs(counts["train"] - 0.8 * n) <= 1


def test_flat_layout_and_upper_case_suffix(tmp_path: Path) -> None:
    write_shemo(tmp_path / "flat", [("", "F01A01.WAV"), ("", "M02S11.wav")], flat=True)
    rows = shemo.scan(tmp_path / "flat")
    assert [(r.utt_id, r.speaker, r.label) for r in rows] == [
        ("F01A01", "F01", "anger"),
        ("M02S11", "M02", "sadness"),
    ]


def test_non_wav_and_hidden_files_are_ignored(tmp_path: Path) -> None:
    root = write_shemo(tmp_path / "ShEMO", [("female", "F01H01.wav")])
    (root / "female" / "notes.txt").write_text("not audio")
    (root / "female" / "._F01H01.wav").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    assert [r.utt_id for r in shemo.scan(root)] == ["F01H01"]


@pytest.mark.parametrize("name", ["F1A01.wav", "X01A01.wav", "F01A1.wav", "recording.wav"])
def test_bad_name_fails_naming_file_and_pattern(tmp_path: Path, name: str) -> None:
    root = write_shemo(tmp_path / "ShEMO", [("female", "F01A01.wav"), ("female", name)])
    with pytest.raises(ValueError, match=r"does not follow the ShEMO naming") as err:
        shemo.scan(root)
    assert name in str(err.value) and "[FM]" in str(err.value)


def test_unknown_emotion_code_fails_naming_file(tmp_path: Path) -> None:
    root = write_shemo(tmp_path / "ShEMO", [("male", "M03X02.wav")])
    with pytest.raises(ValueError, match=r"unknown ShEMO emotion code 'X'") as err:
        shemo.scan(root)
    assert "M03X02.wav" in str(err.value)


def test_missing_root_or_no_audio_shows_expected_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist.*female/F01A01.wav"):
        shemo.scan(tmp_path / "nowhere")
    (tmp_path / "empty" / "female").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no audio files.*male/M01N01.wav"):
        shemo.scan(tmp_path / "empty")


def test_same_stem_twice_fails(tmp_path: Path) -> None:
    root = write_shemo(tmp_path / "ShEMO", [("female", "F01A01.wav"), ("", "F01A01.wav")])
    with pytest.raises(ValueError, match=r"ShEMO: utt_id 'F01A01' appears twice"):
        shemo.scan(root)


def test_unreadable_file_is_returned_for_the_cache_to_report(tmp_path: Path) -> None:
    root = write_shemo(tmp_path / "ShEMO", [("female", "F01A01.wav")])
    (root / "female" / "F01N02.wav").write_bytes(b"not a wav file at all")
    (root / "male").mkdir()
    (root / "male" / "M01N02.wav").write_bytes(b"")
    rows = {r.utt_id: r for r in shemo.scan(root)}
    assert (rows["F01N02"].duration, rows["F01N02"].sample_rate) == (0.0, 0)
    assert (rows["M01N02"].duration, rows["M01N02"].sample_rate) == (0.0, 0)
    assert rows["F01A01"].sample_rate == 16_000


def test_other_sample_rates_are_read_from_the_header(tmp_path: Path) -> None:
    tiny_wav(tmp_path / "ShEMO" / "female" / "F02W01.wav", seconds=0.5, sample_rate=44_100)
    (row,) = shemo.scan(tmp_path / "ShEMO")
    assert row.sample_rate == 44_100 and row.duration == pytest.approx(0.5)


def test_json_join_reports_162_each_way_and_never_changes_labels(
    rows: list, shemo_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The real json's keys; every emotion deliberately wrong: labels must still come from names.
    entries = {
        stem: {"emotion": "happy", "transcript": f"text {stem}"} for stem in shemo_json_stems()
    }
    json_path = tmp_path / "shemo.json"
    json_path.write_text(json.dumps(entries), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="ser.data.corpora.shemo"):
        joined = shemo.scan(shemo_root, shemo_json=json_path)
    assert "162 stems have no audio file" in caplog.text
    assert "162 audio files have no entry" in caplog.text
    assert [r.label for r in joined] == [r.label for r in rows]
    assert sum(r.transcript is None for r in joined) == 162
    m12w03 = next(r for r in joined if r.utt_id == "M12W03")
    assert m12w03.transcript == "text M12W03"
    assert next(r for r in joined if r.utt_id == "F01S23").transcript is None  # not in the json


@pytest.mark.skipif(not (SHARED_DATA / "shemo.json").is_file(), reason="../shared/data absent")
def test_real_shemo_json_transcripts(rows: list, caplog: pytest.LogCaptureFixture) -> None:
    transcripts = shemo.read_transcripts(SHARED_DATA / "shemo.json")
    with caplog.at_level(logging.WARNING, logger="ser.data.corpora.shemo"):
        joined = shemo.join_transcripts(rows, transcripts)
    assert "162 stems" in caplog.text and "162 audio files" in caplog.text
    assert sum(bool(r.transcript) for r in joined) == 3000 - 162


def test_bad_json_fails_naming_file(tmp_path: Path) -> None:
    bad = tmp_path / "shemo.json"
    bad.write_text('["F01A01"]', encoding="utf-8")
    with pytest.raises(
        ValueError, match=r"shemo.json: expected a JSON object .* keyed by file stem"
    ):
        shemo.read_transcripts(bad)
    with pytest.raises(FileNotFoundError, match=r"shemo.json .*shemo.json: no such file"):
        shemo.read_transcripts(tmp_path / "missing" / "shemo.json")


def test_file_in_the_other_gender_folder_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_shemo(tmp_path / "ShEMO", [("female", "M05N01.wav"), ("male", "M05N02.wav")])
    with caplog.at_level(logging.WARNING, logger="ser.data.corpora.shemo"):
        rows = shemo.scan(root)
    assert "1 files sit in the other gender's folder" in caplog.text and "M05N01" in caplog.text
    assert {r.speaker for r in rows} == {"M05"}


def test_dangling_symlinks_are_reported_not_dropped_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_shemo(tmp_path / "ShEMO", [("female", "F01A01.wav"), ("male", "M01N01.wav")])
    (root / "female" / "F01S02.wav").symlink_to(tmp_path / "gone" / "F01S02.wav")
    with caplog.at_level(logging.WARNING, logger="ser.data.corpora"):
        rows = shemo.scan(root)
    assert [row.utt_id for row in rows] == ["F01A01", "M01N01"]
    assert "1 symlink(s) point to no file" in caplog.text and "F01S02.wav" in caplog.text


def test_gender_folders_in_any_case(tmp_path: Path) -> None:
    root = write_shemo(tmp_path / "ShEMO", [("Female", "F01A01.wav"), ("MALE", "M01N01.wav")])
    assert [row.utt_id for row in shemo.scan(root)] == ["F01A01", "M01N01"]


def test_audio_in_folders_the_layout_never_reads_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """female.zip unpacked into a folder of its own name: female/female/*.wav."""
    files = [("female/female", "F01A01.wav"), ("male", "M01N01.wav")]
    root = write_shemo(tmp_path / "ShEMO", files)
    (root / "notes").mkdir()  # a folder without audio is no concern
    with caplog.at_level(logging.WARNING, logger="ser.data.corpora"):
        rows = shemo.scan(root)
    assert [row.utt_id for row in rows] == ["M01N01"]
    assert (
        f"ShEMO: audio in 1 folder(s) where the layout reads none, left out: "
        f"{root / 'female' / 'female'} (1 audio files)"
    ) in caplog.text
    assert "notes" not in caplog.text
