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
from collections.abc import Iterable
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


def wav_files(entries: Iterable[Path], corpus: str) -> list[Path]:
    """The ``.wav`` files among ``entries`` (any suffix case, no hidden files).

    A symlink that points to no file (a corpus copied without its link targets) is left out
    with a warning naming it, not silently.
    """
    files, dangling = [], []
    for path in entries:
        # "._F01A01.wav" are macOS resource forks that some zip tools leave beside the audio.
        if path.suffix.lower() != ".wav" or path.name.startswith("."):
            continue
        if path.is_file():
            files.append(path)
        elif path.is_symlink():
            dangling.append(path)
    if dangling:
        shown = ", ".join(str(p) for p in dangling[:5])
        more = f" and {len(dangling) - 5} more" if len(dangling) > 5 else ""
        log.warning(
            "%s: %d symlink(s) point to no file and are left out: %s%s",
            corpus,
            len(dangling),
            shown,
            more,
        )
    return files


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
