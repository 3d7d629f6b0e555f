"""CREMA-D (English, 91 actors, 6 emotions) as it is on disk; users bring their copy.

``root/AudioWAV/1001_DFA_ANG_XX.wav`` (or the files directly in ``root``): actor (1001-1091),
sentence (``DFA``, ``IEO`` ...), emotion (``ser.labels.CREMAD_CODES``: ANG DIS FEA HAP NEU SAD),
intensity level (LO, MD, HI, XX unspecified). 7442 files. The speaker is the actor.
"""

from __future__ import annotations

import re
from pathlib import Path

from ser.data.corpora import emotion_of, name_fields, scan_named
from ser.data.utterance import Utterance
from ser.labels import CREMAD_CODES

NAME_PATTERN = re.compile(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})")
EXPECTED_NAME = "<actor>_<sentence>_<emotion>_<level>, e.g. 1001_DFA_ANG_XX.wav (actor 1001, anger)"
EXPECTED_LAYOUT = "root/AudioWAV/1001_DFA_ANG_XX.wav ... (or every file directly in root)"


def scan(root: str | Path) -> list[Utterance]:
    """Rows for every CREMA-D file under ``root``, sorted by ``utt_id`` (the stem).

    Args:
        root: the folder holding ``AudioWAV/`` (or the audio files themselves).

    Raises:
        FileNotFoundError: ``root`` is missing or holds no audio file where expected.
        ValueError: a file name breaks the CREMA-D naming or has an unknown emotion code.
    """
    return scan_named(root, "AudioWAV", "CREMA-D", EXPECTED_LAYOUT, parse_name)


def parse_name(path: str | Path) -> tuple[str, str]:
    """``(speaker, emotion)`` from a CREMA-D name, e.g. ``1001_DFA_ANG_XX -> ("1001", "anger")``."""
    path = Path(path)
    actor, _, code, _ = name_fields(path, NAME_PATTERN, "CREMA-D", EXPECTED_NAME)
    return actor, emotion_of(path, code, CREMAD_CODES, "CREMA-D", "3rd field")
