"""IEMOCAP scanning: the real layout and EmoEvaluation format with every code, tiny audio."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
from corpus_fixtures import IEMOCAP_4_COUNTS, IEMOCAP_ALL, tiny_wav, write_iemocap

from ser.data import splits
from ser.data.corpora import iemocap
from ser.labels import IEMOCAP_4_CLASSES, IEMOCAP_4_MERGE, LabelSet


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_iemocap(tmp_path / "IEMOCAP_full_release")


def test_every_code_and_the_4_class_protocol(root: Path) -> None:
    rows = iemocap.scan(root)
    assert len(rows) == IEMOCAP_ALL  # the two xxx rows are dropped
    assert Counter(r.label for r in rows) == {
        "anger": 3,
        "excitement": 3,
        "happiness": 2,
        "neutral": 5,
        "sadness": 4,
        "frustration": 1,
        "fear": 1,
        "surprise": 1,
        "disgust": 1,
        "other": 1,
    }
    label_set = LabelSet(IEMOCAP_4_CLASSES, IEMOCAP_4_MERGE)
    four = [label_set.map(r.label) for r in rows if label_set.map(r.label) is not None]
    assert label_set.count(four) == IEMOCAP_4_COUNTS


def test_speaker_is_session_plus_last_gender_letter(root: Path) -> None:
    rows = {r.utt_id: r for r in iemocap.scan(root)}
    assert rows["Ses01F_impro01_F000"].speaker == "Ses01F"
    assert rows["Ses01F_impro01_M000"].speaker == "Ses01M"  # female-led dialog, male speaks
    assert rows["Ses04M_script02_2_F000"].speaker == "Ses04F"
    assert {r.speaker for r in rows.values()} == {f"Ses0{n}{g}" for n in range(1, 6) for g in "FM"}
    row = rows["Ses02M_impro02_M001"]
    assert (row.session, row.label, row.sample_rate) == ("Session2", "surprise", 16_000)
    assert row.path == str(root / "Session2/sentences/wav/Ses02M_impro02/Ses02M_impro02_M001.wav")
    assert row.duration == pytest.approx(0.3)


def test_speaker_of_names() -> None:
    assert iemocap.speaker_of("Ses05M_script01_1b_F012") == "Ses05F"
    with pytest.raises(ValueError, match=r"does not follow the IEMOCAP naming"):
        iemocap.speaker_of("Ses05M_script01")


def test_leave_one_session_out(root: Path) -> None:
    rows = iemocap.scan(root)
    for n in range(1, 6):
        parts = splits.by_session(rows, test_session=f"Session{n}", val_fraction=0.3, seed=0)
        assert {r.session for r in parts["test"]} == {f"Session{n}"}
        assert f"Session{n}" not in {r.session for r in parts["train"] + parts["val"]}
        assert sum(len(p) for p in parts.values()) == len(rows)
    parts = splits.by_session(rows, test_session="Session5", val_session="Session4")
    assert [{r.session for r in parts[name]} for name in ("val", "test")] == [
        {"Session4"},
        {"Session5"},
    ]
    with pytest.raises(ValueError, match=r"val part would be empty"):
        splits.by_session(rows, test_session="Session5", val_fraction=0.01)


def test_unmatched_wavs_and_labels_are_counted(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (root / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav").unlink()
    tiny_wav(root / "Session3/sentences/wav/Ses03F_impro03/Ses03F_impro03_F099.wav")
    tiny_wav(root / "Session3/sentences/wav/Ses03F_impro03/Ses03F_impro03_M099.wav")
    with caplog.at_level(logging.INFO, logger="ser.data.corpora.iemocap"):
        rows = iemocap.scan(root)
    assert len(rows) == IEMOCAP_ALL - 1
    assert "2 wav files have no EmoEvaluation label line" in caplog.text
    assert "1 label lines have no wav file" in caplog.text
    assert "dropped 2 utterances labelled xxx" in caplog.text


def test_unknown_code_fails_naming_file_and_line(root: Path) -> None:
    path = root / "Session2/dialog/EmoEvaluation/Ses02M_impro02.txt"
    path.write_text(path.read_text().replace("\tsur\t", "\tbored\t"))
    with pytest.raises(ValueError, match=r"unknown IEMOCAP emotion code 'bored'") as err:
        iemocap.scan(root)
    assert f"{path}:" in str(err.value)  # the file and the line number
    assert "Ses02M_impro02_M001" in str(err.value)


def test_malformed_label_line_fails(root: Path) -> None:
    path = root / "Session5/dialog/EmoEvaluation/Ses05F_impro04.txt"
    path.write_text(path.read_text() + "\n[1.0 - 2.0] Ses05F_impro04_F009\n")
    with pytest.raises(ValueError, match=r"Ses05F_impro04.txt:\d+: malformed label line"):
        iemocap.scan(root)


def test_windows_line_endings_are_read(root: Path) -> None:
    path = root / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert len(iemocap.scan(root)) == IEMOCAP_ALL


def test_missing_root_or_sessions_shows_expected_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist.*EmoEvaluation"):
        iemocap.scan(tmp_path / "nowhere")
    (tmp_path / "empty" / "sessions").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no Session<n> folders.*Session1/sentences/wav"):
        iemocap.scan(tmp_path / "empty")
    (tmp_path / "empty" / "Session1" / "dialog").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no IEMOCAP .wav files"):
        iemocap.scan(tmp_path / "empty")


def test_an_utterance_whose_audio_is_there_twice_fails(root: Path) -> None:
    """A copy in another dialog's folder (or a .wav beside a .WAV) is not taken silently."""
    wav = next((root / "Session1/sentences/wav").glob("*/*.wav"))
    copy = root / "Session1/sentences/wav/Ses01F_impro01_copy" / wav.name
    copy.parent.mkdir()
    copy.write_bytes(wav.read_bytes())
    with pytest.raises(ValueError, match=rf"utterance '{wav.stem}' appears twice"):
        iemocap.scan(root)
