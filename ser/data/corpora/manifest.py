"""Any corpus, listed in a manifest: CSV (``.csv``) or JSON lines (``.jsonl``).

Columns (CSV header / JSON keys): ``path`` and ``label`` are required; ``speaker``, ``split``
(train/val/test, an official split for ``splits.from_column``), ``utt_id``, ``session`` and
``transcript`` are optional; numeric rating columns (``arousal``, ``valence`` ... any names, any
scale) are read when the datamodule declares them (``dimensions``); other columns are ignored.
A ``speaker`` left empty or written as a word for "not known" (``unknown``, ``N/A``, ``none``
... in any case) is the unknown speaker, whom speaker-independent splits leave out.
Relative paths are relative to the manifest's folder, so a corpus and its manifest move together.
``label`` is kept as written (``Angry``, ``calm``, ``W``): the datamodule's ``LabelSet``
normalises it and applies its ``label_map`` and ``merge``. A CSV may start with a UTF-8
byte-order mark (as Excel writes it).

Example CSV::

    path,label,speaker,split
    audio/a1.wav,anger,spk1,train
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

from ser.data.corpora import absolute, count_unreadable, read_header, read_table, read_text
from ser.data.utterance import Utterance
from ser.evaluation.protocol import speaker_or_unknown

REQUIRED = ("path", "label")
SPLITS = ("train", "val", "test")


def scan(path: str | Path, dimensions: Sequence[str] = ()) -> list[Utterance]:
    """Rows of the manifest at ``path``, sorted by ``utt_id``.

    Args:
        path: a ``.csv`` or ``.jsonl`` manifest.
        dimensions: numeric columns every row must hold (``Utterance.dimensions``).

    Raises:
        FileNotFoundError: the manifest does not exist.
        ValueError: unknown suffix, a missing column, an empty label, a bad split, a duplicate
            utt_id or audio path, a dimension that is missing or not a number; the message names
            the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise ValueError(f"manifest {path}: unknown format {suffix!r}; expected .csv or .jsonl")
    records = _read_csv(path) if suffix == ".csv" else _read_jsonl(path)
    rows: dict[str, tuple[Utterance, str]] = {}
    paths: dict[str, str] = {}
    for where, record in records:
        row = _row(record, path.parent, where, dimensions)
        if row.utt_id in rows:
            raise ValueError(
                f"{where}: duplicate utt_id {row.utt_id!r} (first at {rows[row.utt_id][1]}); "
                "utt_id (default: the file stem) must be unique, add an utt_id column"
            )
        if row.path in paths:  # one recording under two ids would sit in train and test
            raise ValueError(
                f"{where}: audio {row.path} is listed twice (first at {paths[row.path]}); "
                "list each recording once"
            )
        rows[row.utt_id] = (row, where)
        paths[row.path] = where
    if not rows:
        raise ValueError(f"manifest {path} has no rows")
    result = [rows[utt_id][0] for utt_id in sorted(rows)]
    count_unreadable(result, f"manifest {path}")
    return result


def _read_csv(path: Path) -> Iterator[tuple[str, dict]]:
    return read_table(path, REQUIRED)


def _read_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    for number, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON ({err})") from err
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object per line, got {record!r}")
        missing = [c for c in REQUIRED if c not in record]
        if missing:
            raise ValueError(
                f"{where}: missing key(s) {missing}; expected at least {list(REQUIRED)}"
            )
        yield where, record


def _row(record: dict, folder: Path, where: str, dimensions: Sequence[str]) -> Utterance:
    def text(key: str) -> str | None:
        value = record.get(key)
        return None if value is None or str(value).strip() == "" else str(value).strip()

    raw_path = text("path")
    if raw_path is None:
        raise ValueError(f"{where}: empty path")
    audio_path = Path(raw_path).expanduser()
    if not audio_path.is_absolute():
        audio_path = folder / audio_path
    label = text("label")
    if label is None:
        raise ValueError(f"{where}: empty label")
    split = text("split")
    if split is not None and split not in SPLITS:
        raise ValueError(f"{where}: split {split!r} is not one of {list(SPLITS)} (or empty)")
    duration, sample_rate = read_header(audio_path)
    return Utterance(
        utt_id=text("utt_id") or audio_path.stem,
        path=absolute(audio_path),
        speaker=speaker_or_unknown(text("speaker")),
        label=label,
        duration=duration,
        sample_rate=sample_rate,
        session=text("session"),
        split=split,
        transcript=text("transcript"),
        dimensions={name: _number(record, name, where) for name in dimensions},
    )


def _number(record: dict, name: str, where: str) -> float:
    """The finite number in column ``name``; else a ValueError naming the place."""
    if name not in record:
        raise ValueError(
            f"{where}: no column {name!r}, which `dimensions` declares; the row has "
            f"{sorted(record)}"
        )
    try:
        value = float(record[name])
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value):
        raise ValueError(f"{where}: {name} is {record[name]!r}; expected a number")
    return value
