"""Manifest scanning: CSV and JSONL, relative paths, optional columns, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from corpus_fixtures import link_copies, tiny_wav

from ser.data import splits
from ser.data.corpora import manifest

RECORDS = [
    {"path": "audio/a.wav", "label": "anger", "speaker": "s1", "split": "train"},
    {"path": "audio/b.wav", "label": "neutral", "speaker": "s2", "split": "val"},
    {"path": "audio/sub/c.wav", "label": "sadness", "speaker": "s3", "split": "test"},
    {"path": "audio/d.wav", "label": "happiness", "speaker": "s1", "split": "train"},
]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    source = tiny_wav(tmp_path / "source.wav")
    link_copies(source, [tmp_path / "corpus" / r["path"] for r in RECORDS])
    return tmp_path / "corpus"


def write_csv(path: Path, records: list[dict], columns: list[str]) -> Path:
    lines = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_csv_and_jsonl_give_the_same_rows(corpus: Path) -> None:
    from_csv = manifest.scan(
        write_csv(corpus / "m.csv", RECORDS, ["path", "label", "speaker", "split"])
    )
    from_jsonl = manifest.scan(write_jsonl(corpus / "m.jsonl", RECORDS))
    assert from_csv == from_jsonl
    assert [r.utt_id for r in from_csv] == ["a", "b", "c", "d"]
    c = from_csv[2]
    assert c.path == str(corpus / "audio" / "sub" / "c.wav")  # relative to the manifest's folder
    assert (c.label, c.speaker, c.split, c.sample_rate) == ("sadness", "s3", "test", 16_000)
    assert c.duration == pytest.approx(0.3)


def test_official_split_column(corpus: Path) -> None:
    rows = manifest.scan(write_jsonl(corpus / "m.jsonl", RECORDS))
    parts = splits.from_column(rows)
    assert {name: [r.utt_id for r in part] for name, part in parts.items()} == {
        "train": ["a", "d"],
        "val": ["b"],
        "test": ["c"],
    }


def test_optional_columns_and_defaults(corpus: Path, tmp_path: Path) -> None:
    records = [
        {"path": str(corpus / "audio" / "a.wav"), "label": "fear"},  # absolute path
        {"path": "audio/b.wav", "label": "surprise", "utt_id": "x7", "session": "S2", "extra": 1},
    ]
    rows = manifest.scan(write_jsonl(corpus / "m.jsonl", records))
    assert [(r.utt_id, r.speaker, r.split, r.session) for r in rows] == [
        ("a", "unknown", None, None),
        ("x7", "unknown", None, "S2"),
    ]


def test_missing_audio_is_left_for_the_cache(corpus: Path) -> None:
    rows = manifest.scan(write_jsonl(corpus / "m.jsonl", [{"path": "gone.wav", "label": "anger"}]))
    assert (rows[0].duration, rows[0].sample_rate) == (0.0, 0)


def test_labels_are_kept_as_written_and_an_empty_one_names_its_row(corpus: Path) -> None:
    records = [*RECORDS[:2], {"path": "audio/d.wav", "label": " Angry "}]
    rows = manifest.scan(write_jsonl(corpus / "m.jsonl", records))
    assert [r.label for r in rows] == ["anger", "neutral", "Angry"]  # the LabelSet normalises
    records[2]["label"] = ""
    path = write_csv(corpus / "m.csv", records, ["path", "label"])
    with pytest.raises(ValueError, match=r"empty label") as err:
        manifest.scan(path)
    assert f"{path}:4" in str(err.value)  # header is line 1


def test_csv_with_a_byte_order_mark_reads_like_one_without(corpus: Path) -> None:
    plain = write_csv(corpus / "m.csv", RECORDS, ["path", "label", "speaker", "split"])
    with_bom = corpus / "bom.csv"
    with_bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())  # as Excel saves "CSV UTF-8"
    assert manifest.scan(with_bom) == manifest.scan(plain)


def test_one_recording_under_two_ids_fails(corpus: Path) -> None:
    records = [RECORDS[0], {**RECORDS[0], "utt_id": "a-again"}]
    with pytest.raises(ValueError, match=r"m.jsonl:2: audio .*a.wav is listed twice.*m.jsonl:1"):
        manifest.scan(write_jsonl(corpus / "m.jsonl", records))


def test_duplicate_utt_id_fails(corpus: Path) -> None:
    records = [{"path": "audio/a.wav", "label": "anger"}, {"path": "other/a.wav", "label": "fear"}]
    with pytest.raises(ValueError, match=r"duplicate utt_id 'a'.*m.jsonl:1"):
        manifest.scan(write_jsonl(corpus / "m.jsonl", records))


def test_bad_split_value_fails(corpus: Path) -> None:
    records = [{"path": "audio/a.wav", "label": "anger", "split": "dev"}]
    with pytest.raises(ValueError, match=r"m.jsonl:1: split 'dev' is not one of"):
        manifest.scan(write_jsonl(corpus / "m.jsonl", records))


def test_missing_columns_and_bad_files(corpus: Path) -> None:
    with pytest.raises(ValueError, match=r"missing column\(s\) \['label'\]"):
        manifest.scan(write_csv(corpus / "m.csv", RECORDS, ["path", "speaker"]))
    with pytest.raises(ValueError, match=r"m.jsonl:2: missing key\(s\) \['path'\]"):
        manifest.scan(write_jsonl(corpus / "m.jsonl", [RECORDS[0], {"label": "anger"}]))
    (corpus / "broken.jsonl").write_text('{"path": "a.wav", "label": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken.jsonl:1: not valid JSON"):
        manifest.scan(corpus / "broken.jsonl")
    with pytest.raises(ValueError, match=r"unknown format '.txt'; expected .csv or .jsonl"):
        manifest.scan(write_jsonl(corpus / "m.txt", RECORDS))
    with pytest.raises(FileNotFoundError, match=r"manifest .*nope.csv not found"):
        manifest.scan(corpus / "nope.csv")
    with pytest.raises(ValueError, match=r"has no rows"):
        manifest.scan(write_csv(corpus / "empty.csv", [], ["path", "label"]))


def test_a_quote_never_closed_is_refused_not_read_as_one_long_field(corpus: Path) -> None:
    """csv reads everything after an unclosed quote as one field: the rows after it (here the
    val and test rows) would vanish without a word."""
    path = write_csv(corpus / "m.csv", RECORDS, ["path", "label", "speaker", "split"])
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace(",s1,", ',"s1,')
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"m.csv:2: the record runs over lines 2-5 .*quote"):
        manifest.scan(path)


def test_a_row_of_more_or_fewer_fields_than_the_header_names_its_line(corpus: Path) -> None:
    path = write_csv(corpus / "m.csv", RECORDS, ["path", "label", "speaker", "split"])
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, "audio/x.wav,anger,s9,train,extra"]) + "\n")
    with pytest.raises(ValueError, match=r"m.csv:6: 5 fields, the header has 4"):
        manifest.scan(path)
    path.write_text("\n".join([*lines[:3], "", "audio/x.wav"]) + "\n")  # a blank line before it
    with pytest.raises(ValueError, match=r"m.csv:5: 1 fields, the header has 4"):
        manifest.scan(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_manifest_not_in_utf8_names_its_line(corpus: Path, suffix: str) -> None:
    """A manifest saved as Latin-1 (Excel's plain "CSV" on Windows)."""
    records = [*RECORDS[:2], {**RECORDS[2], "transcript": "très"}]
    path = corpus / f"m{suffix}"
    if suffix == ".csv":
        write_csv(path, records, ["path", "label", "transcript"])
    else:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    path.write_bytes(path.read_text(encoding="utf-8").encode("latin-1"))
    line = 4 if suffix == ".csv" else 3
    with pytest.raises(ValueError, match=rf"m{suffix}:{line}: not UTF-8 text \(byte 0xe8\)"):
        manifest.scan(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_manifest_in_utf16_without_a_byte_order_mark_is_named(corpus: Path, suffix: str) -> None:
    """UTF-16 without a BOM is valid UTF-8 with a NUL after every letter: the header would not
    match and the message would list columns that look right."""
    path = corpus / f"m{suffix}"
    if suffix == ".csv":
        write_csv(path, RECORDS, ["path", "label"])
    else:
        write_jsonl(path, RECORDS)
    path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16-le"))
    with pytest.raises(ValueError, match=rf"m{suffix}:1: a NUL byte \(UTF-16 text\?\)"):
        manifest.scan(path)


@pytest.mark.parametrize("unknown", ["Unknown", "UNKNOWN", "N/A", " none ", ""])
def test_a_speaker_written_as_not_known_is_no_speaker_of_the_split(
    corpus: Path, unknown: str
) -> None:
    """ "Unknown" as written would be one speaker holding every such row, in one part."""
    records = [{**record, "speaker": unknown} for record in RECORDS[:2]] + RECORDS[2:]
    rows = manifest.scan(write_jsonl(corpus / "m.jsonl", records))
    assert [row.speaker for row in rows] == ["unknown", "unknown", "s3", "s1"]
