"""EmoDB, the Berlin database of emotional speech (German, 10 speakers, 7 emotions), on disk.

``root/wav/03a01Fa.wav`` (or the files directly in ``root``): speaker (03, 08-16), text (a01-a07,
b01-b10), emotion (``ser.labels.EMODB_CODES``, German initials: W anger, L boredom, E disgust,
A fear, F happiness, T sadness, N neutral), version letter. 535 files. The speaker is the
two-digit number.
"""

from __future__ import annotations

import re
from pathlib import Path

from ser.data.corpora import emotion_of, name_fields, scan_named
from ser.data.utterance import Utterance
from ser.labels import EMODB_CODES

NAME_PATTERN = re.compile(r"(\d\d)([ab]\d\d)([A-Z])([a-z])")
EXPECTED_NAME = "<speaker><text><emotion><version>, e.g. 03a01Fa.wav (speaker 03, F = happiness)"
EXPECTED_LAYOUT = "root/wav/03a01Fa.wav ... (or every file directly in root)"


def scan(root: str | Path) -> list[Utterance]:
    """Rows for every EmoDB file under ``root``, sorted by ``utt_id`` (the stem).

    Args:
        root: the folder holding ``wav/`` (or the audio files themselves).

    Raises:
        FileNotFoundError: ``root`` is missing or holds no audio file where expected.
        ValueError: a file name breaks the EmoDB naming or has an unknown emotion code.
    """
    return scan_named(root, "wav", "EmoDB", EXPECTED_LAYOUT, parse_name)


def parse_name(path: str | Path) -> tuple[str, str]:
    """``(speaker, emotion)`` from an EmoDB name, e.g. ``03a01Fa -> ("03", "happiness")``."""
    path = Path(path)
    speaker, _, code, _ = name_fields(path, NAME_PATTERN, "EmoDB", EXPECTED_NAME)
    return speaker, emotion_of(path, code, EMODB_CODES, "EmoDB", "6th character")
