"""The manifest row every corpus parser produces, and its CSV form (``splits/*.csv``)."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Utterance:
    """One labelled recording.

    Args:
        utt_id: unique id within the corpus (the file stem for ShEMO and IEMOCAP).
        path: absolute path of the audio file.
        speaker: speaker id, unique across the corpus (IEMOCAP: ``Ses01F``).
        label: the emotion label: a word of ``ser.labels`` from a corpus reader, a manifest's raw
            label (the datamodule's ``LabelSet`` makes it a class), or a class in a split file.
        duration: seconds, read from the file header.
        sample_rate: the file's sample rate in Hz.
        session: recording session (IEMOCAP ``Session1``), else None.
        split: an official split (train/val/test) given by a manifest, else None.
        transcript: optional text, e.g. from ShEMO's ``shemo.json``.
        dimensions: numeric ratings by name (``{"arousal": 3.5, "valence": 2.0}``, any scale),
            where the corpus has them; empty otherwise.
        votes: the raters' categories with their weight (``{"neutral": 1.5, "anger": 0.5}``),
            where the corpus has them (IEMOCAP); empty otherwise. ``--data.soft_labels`` trains
            on their distribution.
    """

    utt_id: str
    path: str
    speaker: str
    label: str
    duration: float
    sample_rate: int
    session: str | None = None
    split: str | None = None
    transcript: str | None = None
    # Not hashed: a dict is not hashable, and the id already tells rows apart.
    dimensions: dict[str, float] = field(default_factory=dict, hash=False)
    votes: dict[str, float] = field(default_factory=dict, hash=False)


def by_utt_id(rows: Iterable[Utterance], source: str) -> list[Utterance]:
    """``rows`` sorted by ``utt_id``; an id that appears twice (a .wav and a .flac of one stem,
    a manifest listing a file twice) is a ValueError naming both paths and ``source``."""
    found: dict[str, Utterance] = {}
    for row in rows:
        if row.utt_id in found:
            raise ValueError(
                f"{source}: utt_id {row.utt_id!r} appears twice ({found[row.utt_id].path} and "
                f"{row.path}); keep one copy"
            )
        found[row.utt_id] = row
    return [found[utt_id] for utt_id in sorted(found)]


SPLIT_COLUMNS: tuple[str, ...] = ("utt_id", "path", "speaker", "label", "duration")


def write_csv(path: str | Path, rows: Iterable[Utterance], columns=SPLIT_COLUMNS) -> None:
    """Write ``rows`` as CSV with ``columns``; written to a temporary name, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            record = dataclasses.asdict(row)
            writer.writerow([record[c] for c in columns])
    tmp.replace(path)
