"""The same audio listed under several ``utt_id``s: found after the split and reported.

Two rows are the same audio when their stored samples are equal (``AudioCache.content``: a copy
of the file, a hard link or symlink, the recording in a lossless format; not a re-encoding at
another level or by a lossy codec, whose samples differ), or,
without a cache, when their paths lead to the same file (the same path twice, a symlink, or a
hard link: same device and inode). Such rows split at random can put one recording in train and
the other in test, which inflates the test score; the warning names them.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Hashable

from ser.data.utterance import Utterance

log = logging.getLogger(__name__)

_SHOWN = 5


def shared_audio(
    parts: dict[str, list[Utterance]], content: Callable[[str], str] | None = None
) -> list[list[tuple[str, Utterance]]]:
    """Groups of ``(part, row)`` whose rows are one audio: equal ``content(utt_id)`` (the audio
    cache's digests), else one file; in utt_id order."""
    by_file: dict[Hashable, list[tuple[str, Utterance]]] = defaultdict(list)
    for part, rows in parts.items():
        for row in rows:
            if content is not None:
                by_file[content(row.utt_id)].append((part, row))
                continue
            try:
                st = os.stat(row.path)  # follows symlinks
            except OSError:
                continue  # missing: the cache step reports it
            by_file[(st.st_dev, st.st_ino)].append((part, row))
    groups = [sorted(g, key=lambda item: item[1].utt_id) for g in by_file.values() if len(g) > 1]
    return sorted(groups, key=lambda g: g[0][1].utt_id)


def report_shared_audio(
    parts: dict[str, list[Utterance]], corpus: str, content: Callable[[str], str] | None = None
) -> None:
    """Warn about audio listed under several utt_ids, above all across parts (a leak)."""
    groups = shared_audio(parts, content)
    if not groups:
        return
    leaks = [g for g in groups if len({part for part, _ in g}) > 1]
    shown = "; ".join(
        " = ".join(f"{row.utt_id} ({part})" for part, row in g) + f": {g[0][1].path}"
        for g in (leaks or groups)[:_SHOWN]
    )
    log.warning(
        "%s: %d recording(s) are listed under several utt_ids (one file, or copies of one "
        "recording), %d of them in different parts (the same recording in training and "
        "evaluation inflates the scores; remove the copies or list each recording once): %s",
        corpus,
        len(groups),
        len(leaks),
        shown,
    )
