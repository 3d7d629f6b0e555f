"""Corpus parsers: ``scan(root) -> list[Utterance]``, everything about one corpus in one file.

- ``shemo.scan(root, shemo_json=None)``: ShEMO, ``root/{female,male}/F01A01.wav`` or flat.
- ``iemocap.scan(root)``: IEMOCAP, ``root/Session{1..5}/...`` with EmoEvaluation labels.
- ``manifest.scan(path)``: any corpus listed in a CSV / JSONL manifest.
- ``ravdess.scan(root)``, ``cremad.scan(root)``, ``emodb.scan(root)``: corpora whose file names
  carry speaker and emotion (WAV or FLAC, any sample rate).

Only these parsers walk raw corpus folders. They read audio headers (duration, sample rate) but
never decode: a file whose header cannot be read is still returned, with ``duration=0.0`` and
``sample_rate=0``, so the cache step reports it with its reason and decides to skip or fail.
Rows come back sorted by ``utt_id`` so every later step sees the same order.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from ser import audio
from ser.data.utterance import Utterance, by_utt_id

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
    """The ``.wav`` files among ``entries`` (any suffix case; as ``files_of``)."""
    return [path for path in files_of(entries, corpus) if path.suffix.lower() == ".wav"]


def files_of(entries: Iterable[Path], corpus: str) -> list[Path]:
    """The files among ``entries``, hidden ones left out.

    A symlink that points to no file (a corpus copied without its link targets) is left out
    with a warning naming it, not silently.
    """
    files, dangling = [], []
    for path in entries:
        if path.name.startswith("."):  # "._F01A01.wav": macOS resource forks left by zip tools
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


def read_text(path: Path) -> str:
    """The text of ``path`` as UTF-8 (a leading byte-order mark dropped, as Excel writes one);
    else (bytes that are not UTF-8, or a NUL byte) a ValueError naming the file, the line and
    the byte."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path}:{_line_of(data, err.start)}: not UTF-8 text (byte {data[err.start]:#04x}); "
            "save it as UTF-8 (Excel: 'CSV UTF-8')"
        ) from None
    if "\0" in text:  # UTF-16 without a byte-order mark decodes as UTF-8 with a NUL per letter
        raise ValueError(
            f"{path}:{_line_of(data, data.index(0))}: a NUL byte (UTF-16 text?); save it as "
            "UTF-8 (Excel: 'CSV UTF-8')"
        )
    return text


def _line_of(data: bytes, offset: int) -> int:
    return data[:offset].count(b"\n") + 1


def read_table(path: Path, required: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """The records of the CSV table ``path`` (blank lines skipped), each with where it is
    (``path:line``); a record shorter than the header has ``""`` in the columns it lacks.

    Raises ValueError naming the file (and line) for text that is not UTF-8, a header without
    the ``required`` columns, a record with more fields than the header or too few to hold the
    ``required`` ones, and a record that runs over several lines (a quote opened in a field and
    never closed swallows every line after it).
    """
    records = csv.reader(io.StringIO(read_text(path), newline=""))
    header = next(records, [])
    missing = [column for column in required if column not in header]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; the header has {header}, expected at least "
            f"{list(required)}"
        )
    needed = max(header.index(column) for column in required) + 1 if required else 0
    end = records.line_num
    for fields in records:
        start, end = end + 1, records.line_num
        if not any(field.strip() for field in fields):
            continue
        where = f"{path}:{start}"
        if end > start:
            raise ValueError(
                f"{where}: the record runs over lines {start}-{end} (a field opens a quote it "
                "never closes?); a table holds one record per line"
            )
        if not needed <= len(fields) <= len(header):
            raise ValueError(f"{where}: {len(fields)} fields, the header has {len(header)}")
        yield where, dict(zip(header, fields + [""] * (len(header) - len(fields)), strict=True))


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


def corpus_files(root: str | Path, subfolders: str, corpus: str, layout: str) -> list[Path]:
    """The files (no hidden ones) of ``root`` and of its sub-folders matching ``subfolders``.

    Raises FileNotFoundError, with the ``layout`` expected, when ``root`` is not a folder or no
    audio file is where it should be.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{corpus} root {root} does not exist or is not a folder; expected {layout}"
        )
    folders = [root, *sorted(p for p in root.glob(subfolders) if p.is_dir())]
    _warn_unread_audio(folders, corpus, layout)
    files = sorted(files_of((path for folder in folders for path in folder.iterdir()), corpus))
    if not any(path.suffix.lower() in audio.AUDIO_SUFFIXES for path in files):
        raise FileNotFoundError(
            f"no audio files ({', '.join(audio.AUDIO_SUFFIXES)}) in {corpus} root {root}; "
            f"expected {layout}"
        )
    return files


def _warn_unread_audio(folders: list[Path], corpus: str, layout: str) -> None:
    """Warn, naming them, about sub-folders of the read ``folders`` that hold audio the layout
    never reads (``female/female/`` of an archive unpacked into a folder of its own name)."""
    read = set(folders)
    unread = {}
    for folder in folders:
        for sub in sorted(folder.iterdir()):
            if sub in read or sub.name.startswith(".") or not sub.is_dir():
                continue
            found = sum(1 for p in sub.rglob("*") if is_audio_name(p))
            if found:
                unread[sub] = found
    if unread:
        shown = ", ".join(f"{folder} ({count} audio files)" for folder, count in unread.items())
        log.warning(
            "%s: audio in %d folder(s) where the layout reads none, left out: %s; expected %s",
            corpus,
            len(unread),
            shown,
            layout,
        )


def is_audio_name(path: Path) -> bool:
    """Whether ``path`` is named as an audio file (``audio.AUDIO_SUFFIXES``, not hidden)."""
    return path.suffix.lower() in audio.AUDIO_SUFFIXES and not path.name.startswith(".")


def name_fields(
    path: Path, pattern: re.Pattern[str], corpus: str, expected: str
) -> tuple[str, ...]:
    """The groups of ``pattern`` matching the whole stem of ``path``; otherwise a ValueError
    naming the file and the ``corpus``'s naming (``expected``)."""
    match = pattern.fullmatch(path.stem)
    if match is None:
        raise ValueError(f"{path}: file name does not follow the {corpus} naming {expected}")
    return match.groups()


def emotion_of(path: Path, code: str, codes: Mapping[str, str], corpus: str, field: str) -> str:
    """The emotion of ``code`` (read from ``field`` of ``path``'s name); otherwise a ValueError
    naming the file and the known codes."""
    if code not in codes:
        raise ValueError(
            f"{path}: unknown {corpus} emotion code {code!r} ({field}); expected one of {codes}"
        )
    return codes[code]


def scan_named(
    root: str | Path,
    subfolders: str,
    corpus: str,
    layout: str,
    parse_name: Callable[[Path], tuple[str, str]],
) -> list[Utterance]:
    """Rows of a corpus whose file names carry speaker and emotion (``parse_name``), by utt_id.

    The audio files of ``root`` and its ``subfolders`` (``corpus_files``), each parsed by name,
    its duration and rate read from the header; stems must be unique; one summary line is logged.
    """
    rows = []
    for path in corpus_files(root, subfolders, corpus, layout):
        if path.suffix.lower() not in audio.AUDIO_SUFFIXES:
            continue
        speaker, label = parse_name(path)
        duration, sample_rate = read_header(path)
        rows.append(Utterance(path.stem, absolute(path), speaker, label, duration, sample_rate))
    rows = by_utt_id(rows, corpus)
    log_summary(corpus, root, rows)
    return rows


def log_summary(corpus: str, root: str | Path, rows: list[Utterance]) -> None:
    """One INFO line: utterances, speakers and emotion counts of a scanned corpus."""
    count_unreadable(rows, f"{corpus} {root}")
    log.info(
        "%s %s: %d utterances, %d speakers, %s",
        corpus,
        root,
        len(rows),
        len({row.speaker for row in rows}),
        dict(sorted(Counter(row.label for row in rows).items())),
    )
