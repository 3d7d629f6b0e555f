"""ShEMO (Persian, 3000 utterances, 87 speakers, 6 emotions) as it is on disk.

The release is ``female.zip`` and ``male.zip``: ``root/female/F01A01.wav``, ``root/male/M01N03.wav``
(a flat ``root/*.wav`` is accepted too). The name is the only label source: characters 1-3 are
the speaker (F01..F31, M01..M56), character 4 the emotion (``ser.labels.SHEMO_CODES``), the last
two the utterance number.

``shemo.json`` from the public dataset repository belongs to a re-labelled version (162 of its
stems are not in the released audio, its emotion counts differ): it is joined by stem for
transcripts only, its mismatches are logged, and its labels are never used.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

from ser.data.corpora import emotion_of, name_fields, scan_named
from ser.data.utterance import Utterance
from ser.labels import SHEMO_CODES, read_json_object

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"([FM]\d\d)(.)(\d\d)")
EXPECTED_NAME = (
    "[FM]\\d\\d[AFHNSW]\\d\\d.wav, e.g. F01A01.wav (speaker F01, emotion A = anger, utterance 01)"
)
EXPECTED_LAYOUT = (
    "root/female/F01A01.wav ... and root/male/M01N01.wav ... (female.zip and male.zip unpacked "
    "into one folder), or every .wav directly in root"
)
# female/ and male/ in any case ("Female" from some unzip tools); a glob of the sub-folders.
GENDER_FOLDERS = "*[mM][aA][lL][eE]"


def scan(root: str | Path, shemo_json: str | Path | None = None) -> list[Utterance]:
    """Rows for every ShEMO file under ``root``, sorted by ``utt_id`` (the file stem).

    Args:
        root: the folder holding ``female/`` and ``male/`` (or the .wav files themselves).
        shemo_json: optional ``shemo.json``; its transcripts are joined by stem.

    Raises:
        FileNotFoundError: ``root`` is missing or holds no audio file where expected.
        ValueError: a file name breaks the ShEMO naming, or has an unknown emotion code.
    """
    rows = scan_named(root, GENDER_FOLDERS, "ShEMO", EXPECTED_LAYOUT, parse_name)
    _check_gender_folders(rows)
    if shemo_json is not None:
        rows = join_transcripts(rows, read_transcripts(shemo_json), str(shemo_json))
    return rows


def parse_name(path: str | Path) -> tuple[str, str]:
    """``(speaker, emotion)`` from a ShEMO file name, e.g. ``F01A01.wav -> ("F01", "anger")``."""
    path = Path(path)
    speaker, code, _ = name_fields(path, NAME_PATTERN, "ShEMO", EXPECTED_NAME)
    return speaker, emotion_of(path, code, SHEMO_CODES, "ShEMO", "4th character of the name")


def read_transcripts(path: str | Path) -> dict[str, str | None]:
    """``{stem: transcript}`` from ``shemo.json`` (``{"F21N37": {"transcript": ...}, ...}``)."""
    data = read_json_object(
        path, "shemo.json", dict, '{"F21N37": {"transcript": ...}, ...} keyed by file stem'
    )
    return {stem: entry.get("transcript") for stem, entry in data.items()}


def join_transcripts(
    rows: list[Utterance], transcripts: dict[str, str | None], source: str = "shemo.json"
) -> list[Utterance]:
    """Rows with ``transcript`` set by stem; stems only in one of the two are counted and logged."""
    on_disk = {row.utt_id for row in rows}
    only_json = sorted(set(transcripts) - on_disk)
    only_disk = sorted(on_disk - set(transcripts))
    if only_json or only_disk:
        log.warning(
            "%s: %d stems have no audio file (e.g. %s) and %d audio files have no entry (e.g. %s); "
            "it belongs to a re-labelled ShEMO version, so it is used for transcripts only, never "
            "for labels",
            source,
            len(only_json),
            only_json[:5],
            len(only_disk),
            only_disk[:5],
        )
    return [dataclasses.replace(row, transcript=transcripts.get(row.utt_id)) for row in rows]


def _check_gender_folders(rows: list[Utterance]) -> None:
    # A male speaker's file in female/ is a sign of a mixed-up copy; the name still decides.
    misplaced = [
        row.utt_id
        for row in rows
        if Path(row.path).parent.name.lower() in ("female", "male")
        and Path(row.path).parent.name[0].upper() != row.speaker[0]
    ]
    if misplaced:
        log.warning(
            "ShEMO: %d files sit in the other gender's folder (e.g. %s); labels and speakers "
            "come from the file name",
            len(misplaced),
            misplaced[:5],
        )
