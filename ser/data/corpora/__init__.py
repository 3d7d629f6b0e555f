"""Corpus parsers: ``scan(root) -> list[Utterance]``, everything about one corpus in one file.

- ``shemo.scan(root, shemo_json=None)``: ShEMO, ``root/{female,male}/F01A01.wav`` or flat.
- ``iemocap.scan(root)``: IEMOCAP, ``root/Session{1..5}/...`` with EmoEvaluation labels.
- ``manifest.scan(path)``: any corpus listed in a CSV / JSONL manifest.

Only these parsers walk raw corpus folders. They read audio headers (duration, sample rate) but
never decode: a file whose header cannot be read is still returned, with ``duration=0.0`` and
``sample_rate=0``, so the cache step reports it with its reason and decides to skip or fail.
Rows come back sorted by ``utt_id`` so every later step sees the same order.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ser import audio
from ser.data.utterance import Utterance

log = logging.getLogger(__name__)


def read_header(path: str | Path) -> tuple[float, int]:
    """``(duration, sample_rate)`` from the header of ``path``, ``(0.0, 0)`` if unusable.

    Not fatal at scan time: the cache build decodes every file and reports the reason.
    """
    try:
        info = audio.probe(path)
    except audio.AudioError as err:
        log.debug("header unreadable, left for the cache step to report: %s", err)
        return 0.0, 0
    return info.duration, info.sample_rate


def absolute(path: str | Path) -> str:
    """An absolute path without resolving symlinks (a user's symlinked corpus keeps its name)."""
    return os.path.abspath(path)


def count_unreadable(rows: list[Utterance], corpus: str) -> None:
    """Log how many rows had an unreadable header (the cache step will report each one)."""
    bad = sum(1 for row in rows if row.sample_rate == 0)
    if bad:
        log.warning(
            "%s: %d of %d files have an unreadable audio header; the cache step reports each "
            "with its reason",
            corpus,
            bad,
            len(rows),
        )
