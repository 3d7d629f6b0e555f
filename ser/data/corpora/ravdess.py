"""RAVDESS speech (English, 24 actors, 8 emotions) as it is on disk; users bring their copy.

``root/Actor_01/03-01-05-01-02-01-01.wav`` (``Audio_Speech_Actors_01-24.zip`` unpacked; a flat
folder works too). The name is seven two-digit fields: modality (01 audio-video, 02 video-only,
03 audio-only), vocal channel (01 speech, 02 song), emotion (``ser.labels.RAVDESS_CODES``:
neutral, calm, happy, sad, angry, fearful, disgust, surprised), intensity, statement, repetition,
actor (01-24, odd = male). 1440 speech files: neutral 96, every other emotion 192. Song files and
video files (a full download puts them beside the speech) are skipped and counted. The speaker
is the actor.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ser import audio
from ser.data.corpora import (
    absolute,
    corpus_files,
    emotion_of,
    log_summary,
    name_fields,
    read_header,
)
from ser.data.utterance import Utterance, by_utt_id
from ser.labels import RAVDESS_CODES

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")
EXPECTED_NAME = (
    "MM-VV-EE-II-SS-RR-AA (modality, vocal channel, emotion, intensity, statement, repetition, "
    "actor), e.g. 03-01-05-01-02-01-12.wav"
)
EXPECTED_LAYOUT = "root/Actor_01/03-01-01-01-01-01-01.wav ... root/Actor_24/..."
AUDIO_ONLY, SPEECH = "03", "01"


def scan(root: str | Path) -> list[Utterance]:
    """Rows for every audio-only speech file under ``root``, sorted by ``utt_id`` (the stem).

    Args:
        root: the folder holding ``Actor_01`` ... ``Actor_24`` (or the files themselves).

    Raises:
        FileNotFoundError: ``root`` is missing or holds no audio file where expected.
        ValueError: an audio file name breaks the RAVDESS naming or has an unknown emotion code.
    """
    rows, video, song = [], 0, 0
    for path in corpus_files(root, "Actor_*", "RAVDESS", EXPECTED_LAYOUT):
        is_audio = path.suffix.lower() in audio.AUDIO_SUFFIXES
        if not is_audio and NAME_PATTERN.fullmatch(path.stem) is None:
            continue  # a README or checksum file
        modality, channel, emotion, actor = parse_name(path)
        if modality != AUDIO_ONLY or not is_audio:
            video += 1
        elif channel != SPEECH:
            song += 1
        else:
            duration, sample_rate = read_header(path)
            speaker = f"Actor_{actor}"
            row = Utterance(path.stem, absolute(path), speaker, emotion, duration, sample_rate)
            rows.append(row)
    if video or song:
        log.info("RAVDESS %s: skipped %d song and %d video files", root, song, video)
    rows = by_utt_id(rows, "RAVDESS")
    if not rows:
        raise FileNotFoundError(f"no RAVDESS speech files in {root}; expected {EXPECTED_LAYOUT}")
    log_summary("RAVDESS", root, rows)
    return rows


def parse_name(path: str | Path) -> tuple[str, str, str, str]:
    """``(modality, vocal channel, emotion, actor)`` from a RAVDESS file name."""
    path = Path(path)
    modality, channel, code, *_, actor = name_fields(path, NAME_PATTERN, "RAVDESS", EXPECTED_NAME)
    return modality, channel, emotion_of(path, code, RAVDESS_CODES, "RAVDESS", "3rd field"), actor
