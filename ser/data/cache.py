"""Decode-once 16 kHz audio store: one flat int16 memory-mapped file per set of utterances.

Layout of a finished cache, ``cache_dir/<key[:16]>/``:

- ``audio.int16``: every good utterance, 16 kHz mono, int16 scaled to its own peak, back to
  back (so a quiet recording keeps 16 bits of precision: at one scale for all, a file at
  -57 dBFS kept about 6, and its test scores were not those predict gives the file);
- ``index.json``: ``{utt_id: [offset, length, speech_start, speech_stop, scale]}``: where the
  utterance lies in ``audio.int16`` and, within it, its first speech to its last in samples
  (``ser.vad.speech_span``, the span predict scores of a recording; no speech: the whole), and
  the factor that turns its int16 samples back into the float samples decoded;
- ``bad.json``: ``[{utt_id, path, reason}]`` for files ``audio.load`` rejected;
- ``meta.json``: the full key, format version, sample rate, min_seconds and totals.

The key is a sha256 of (format version, target rate, min_seconds, sorted (utt_id, path, size,
mtime_ns)), so a changed, added or removed file gives a new cache, and the same rows reuse the old
one. A build writes into ``cache_dir/<key>.tmp-<host>-<pid>`` and renames it into place only when
complete: a killed build leaves only a tmp dir, which is never opened. A later build on the same
host removes it once its process is gone; tmp dirs of other hosts sharing the folder are never
removed automatically (their process cannot be checked from here): ``python -m ser cache list``
shows them and ``python -m ser cache clean`` removes them (``ser.data.cache_admin``).

A cache opened with ``trim_silence=True`` reads each utterance as its speech span (``read`` and
``num_samples`` count from its first speech); the same cache serves both readings.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Literal

import numpy as np

from ser import audio
from ser.data.utterance import Utterance, by_utt_id
from ser.vad import SileroVAD, speech_span

log = logging.getLogger(__name__)

# 2: speech spans in the index; 3: spans of quiet recordings heard raised; 4: samples scaled to
# each utterance's peak (its scale in the index); 5: a quiet recording raised as a whole for its
# span; 6: a digest of each utterance's stored samples (copies of one recording found by content)
FORMAT_VERSION = 6
AUDIO_FILE = "audio.int16"
_REPORT_FIRST = 5  # bad files shown in the "skip" warning
PROGRESS_SECONDS = 30.0  # a build logs how far it has come at most this often


class CacheNotBuiltError(FileNotFoundError):
    """``AudioCache.open`` found no finished cache for these rows."""


class CacheDirError(OSError):
    """The cache folder cannot be written (read-only, no permission, not a folder, disk full)."""


class BadAudioFilesError(ValueError):
    """``on_bad_file="fail"`` and some files could not be decoded; ``.bad`` lists them."""

    def __init__(self, bad: list[dict[str, str]]) -> None:
        lines = [f"  {b['path']}: {b['reason']}" for b in bad]
        super().__init__(
            f"{len(bad)} audio file(s) cannot be used (on_bad_file='fail'):\n"
            + "\n".join(lines)
            + "\nFix or remove them, or build with on_bad_file='skip'."
        )
        self.bad = bad


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ser`` (``~/.cache/ser``): corpora often live on read-only storage."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ser"


def cache_key(rows: Sequence[Utterance], min_seconds: float) -> str:
    """The sha256 hex digest that names the cache of ``rows`` (see the module docstring)."""
    files = []
    for row in rows:
        try:
            st = os.stat(row.path)
            size, mtime_ns = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime_ns = -1, -1  # missing now: audio.load reports it as a bad file
        files.append((row.utt_id, str(row.path), size, mtime_ns))
    payload = [FORMAT_VERSION, audio.TARGET_SAMPLE_RATE, float(min_seconds), sorted(files)]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


class ProcessMemmap:
    """A read-only memory-mapped array of a file, opened anew in each process that reads it.

    A memmap inherited through fork or pickled to a spawned DataLoader worker would share (or
    lose) the parent's file handle, so the array is opened per process and never pickled. A
    zero-size array needs no file.

    Args:
        path: the file of raw values.
        dtype: their numpy type.
        shape: the array's shape.
    """

    def __init__(self, path: Path, dtype: type, shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.shape = path, dtype, tuple(shape)
        self._array: np.ndarray | None = None
        self._pid: int | None = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None or self._pid != os.getpid():
            if 0 in self.shape:
                self._array = np.zeros(self.shape, dtype=self.dtype)
            else:
                self._array = np.memmap(self.path, dtype=self.dtype, mode="r", shape=self.shape)
            self._pid = os.getpid()
        return self._array

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None, "_pid": None}


class AudioCache:
    """A finished cache: ``.read(utt_id)`` gives 16 kHz float32 audio without decoding.

    Make one with ``AudioCache.build`` (in ``prepare_data``) or ``AudioCache.open`` (in
    ``setup``). Safe in DataLoader workers: the memmap is opened lazily in each process and never
    pickled.

    Args:
        directory: a finished cache folder ``cache_dir/<key[:16]>``.
        trim_silence: read each utterance from its first speech to its last (its speech span)
            instead of whole.
    """

    def __init__(self, directory: str | Path, trim_silence: bool = False) -> None:
        self.directory = Path(directory)
        self.trim_silence = trim_silence
        self.meta: dict = read_json(self.directory / "meta.json")
        self._index: dict[str, list[int]] = read_json(self.directory / "index.json")
        self._bad: list[dict[str, str]] = read_json(self.directory / "bad.json")
        total = int(self.meta["total_samples"])
        self._samples = ProcessMemmap(self.directory / AUDIO_FILE, np.int16, (total,))

    @classmethod
    def build(
        cls,
        rows: Sequence[Utterance],
        cache_dir: str | Path,
        on_bad_file: Literal["skip", "fail"] = "skip",
        min_seconds: float = audio.MIN_SECONDS,
        num_workers: int = 4,
    ) -> AudioCache:
        """Decode ``rows`` once into ``cache_dir``; reuse the finished cache if it exists.

        Args:
            rows: the utterances to store (utt_ids must be unique).
            cache_dir: folder holding caches; created if missing.
            on_bad_file: "skip" logs one warning and leaves bad files out; "fail" raises
                ``BadAudioFilesError`` listing every bad path and reason.
            min_seconds: shorter files are bad (passed to ``audio.load``).
            num_workers: decoding threads when there are many files (1 decodes serially).
        """
        if on_bad_file not in ("skip", "fail"):
            raise ValueError(f"on_bad_file must be 'skip' or 'fail', got {on_bad_file!r}")
        rows = list(rows)
        by_utt_id(rows, "audio cache")  # ids name the stored waves
        cache_dir = Path(cache_dir)
        key = cache_key(rows, min_seconds)
        final = cache_dir / key[:16]
        if not final.is_dir():
            try:
                cache_dir.mkdir(parents=True, exist_ok=True)
                remove_dead_builds(cache_dir, "audio cache")
                _build_into(final, key, rows, min_seconds, num_workers, on_bad_file)
            except OSError as err:  # read-only, no permission, not a folder, disk full
                raise CacheDirError(
                    f"cannot write the audio cache in {cache_dir} ({err}); "
                    "set --data.loader.cache_dir to a writable folder"
                ) from err
        else:
            log.info("Reusing audio cache %s (%d utterances)", final, len(rows))
        cache = cls._open_checked(final, key, trim_silence=False)
        _report_bad(cache.bad, on_bad_file)
        return cache

    @classmethod
    def open(
        cls,
        rows: Sequence[Utterance],
        cache_dir: str | Path,
        min_seconds: float = audio.MIN_SECONDS,
        trim_silence: bool = False,
    ) -> AudioCache:
        """Open the finished cache of exactly these ``rows``; raise ``CacheNotBuiltError`` if none.

        Args:
            rows: the same utterances the cache was built from.
            cache_dir: the folder given to ``build``.
            min_seconds: the value given to ``build`` (part of the key).
            trim_silence: read each utterance's speech span instead of the whole.
        """
        rows = list(rows)
        key = cache_key(rows, min_seconds)
        final = Path(cache_dir) / key[:16]
        if not final.is_dir():
            raise CacheNotBuiltError(
                f"No finished audio cache for these {len(rows)} utterances in {cache_dir} "
                f"(expected folder {final.name}/; files or min_seconds may have changed since the "
                "last build). Run prepare_data / AudioCache.build first."
            )
        return cls._open_checked(final, key, trim_silence)

    @classmethod
    def _open_checked(cls, final: Path, key: str, trim_silence: bool) -> AudioCache:
        cache = cls(final, trim_silence)
        with contextlib.suppress(OSError):  # a shared read-only cache keeps no record of use
            os.utime(final)  # last use, for `python -m ser cache clean --older_than`
        if cache.meta.get("key") != key or cache.meta.get("format_version") != FORMAT_VERSION:
            raise CacheNotBuiltError(
                f"Audio cache {final} belongs to other rows or an older format "
                f"(meta.json key {cache.meta.get('key')!r}, expected {key!r}); delete it and "
                "run prepare_data / AudioCache.build again."
            )
        check_size(final / AUDIO_FILE, 2 * int(cache.meta["total_samples"]), "Audio cache")
        return cache

    @property
    def bad(self) -> list[dict[str, str]]:
        """Files left out: ``[{utt_id, path, reason}]``."""
        return list(self._bad)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    @property
    def utt_ids(self) -> list[str]:
        """Every utterance the cache holds, in storage order."""
        return list(self._index)

    def num_samples(self, utt_id: str) -> int:
        """Length of ``utt_id`` (its speech span with ``trim_silence``) in samples at 16 kHz,
        from the index (no decoding)."""
        first, end = self._extent(utt_id)
        return end - first

    def read(self, utt_id: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples ``[start, stop)`` of ``utt_id`` (counted from its first speech with
        ``trim_silence``) as float32 in [-1, 1) (a copy)."""
        first, end = self._extent(utt_id)
        stop = end - first if stop is None else min(stop, end - first)
        start = max(0, min(start, stop))
        pcm = self._samples.array[first + start : first + stop]  # (stop - start,) int16
        return pcm.astype(np.float32) * np.float32(self._entry(utt_id)[4])

    def speech_span(self, utt_id: str) -> tuple[int, int]:
        """``[start, stop)`` samples of ``utt_id``'s first speech to its last, in the whole file."""
        _, _, start, stop, *_ = self._entry(utt_id)
        return start, stop

    def _extent(self, utt_id: str) -> tuple[int, int]:
        """Where the utterance as read lies in ``audio.int16``: ``[first, end)`` samples."""
        offset, length, start, stop, *_ = self._entry(utt_id)
        return (offset + start, offset + stop) if self.trim_silence else (offset, offset + length)

    def content(self, utt_id: str) -> str:
        """A digest of ``utt_id``'s stored samples (16 kHz, scaled to its peak): equal for copies
        of one recording, whatever their file or lossless format."""
        return self._entry(utt_id)[5]

    def _entry(self, utt_id: str) -> list:
        """``[offset, length, speech_start, speech_stop, scale, content]`` of ``utt_id``."""
        try:
            return self._index[utt_id]
        except KeyError:
            why = "it is a bad file" if any(b["utt_id"] == utt_id for b in self._bad) else "unknown"
            raise KeyError(f"{utt_id!r} is not in audio cache {self.directory} ({why})") from None


def _build_into(
    final: Path,
    key: str,
    rows: list[Utterance],
    min_seconds: float,
    num_workers: int,
    on_bad_file: str,
) -> None:
    tmp = final.parent / f"{key}{tmp_suffix()}"
    lock = start_build(tmp)
    start = time.perf_counter()
    try:
        index, bad = decode_all(rows, tmp / AUDIO_FILE, min_seconds, num_workers)
        if bad and on_bad_file == "fail":
            raise BadAudioFilesError(bad)
        total = sum(entry[1] for entry in index.values())  # [offset, length, start, stop]
        meta = {
            "key": key,
            "format_version": FORMAT_VERSION,
            "sample_rate": audio.TARGET_SAMPLE_RATE,
            "min_seconds": float(min_seconds),
            "num_utterances": len(index),
            "total_samples": total,
        }
        _write_json(tmp / "index.json", index)
        _write_json(tmp / "bad.json", bad)
        _write_json(tmp / "meta.json", meta)  # written last: the rename below is the commit
        if not publish_build(tmp, final, "audio cache"):
            return
        seconds = total / audio.TARGET_SAMPLE_RATE
        log.info(
            "Built audio cache %s: %d utterances, %.1f h, %d bad, in %.1f s",
            final,
            len(index),
            seconds / 3600,
            len(bad),
            time.perf_counter() - start,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        lock.close()


def decode_all(
    rows: list[Utterance], out_path: Path, min_seconds: float, num_workers: int
) -> tuple[dict[str, list[int]], list[dict[str, str]]]:
    """Decode ``rows`` in order, appending int16 audio to ``out_path``; return (index, bad), the
    index with each utterance's speech span, scale and content digest."""
    index: dict[str, list] = {}
    bad: list[dict[str, str]] = []
    offset = 0
    started = reported = time.perf_counter()
    with out_path.open("wb") as out:
        decoded = zip(rows, _decoded(rows, min_seconds, num_workers), strict=True)
        for done, (row, result) in enumerate(decoded, start=1):
            if isinstance(result, audio.AudioError):
                bad.append({"utt_id": row.utt_id, "path": str(row.path), "reason": result.reason})
            else:
                pcm, scale, (start, stop) = result
                data = pcm.tobytes()
                out.write(data)
                content = hashlib.blake2b(data, digest_size=8).hexdigest()
                index[row.utt_id] = [offset, len(pcm), start, stop, scale, content]
                offset += len(pcm)
            if (now := time.perf_counter()) - reported >= PROGRESS_SECONDS:
                reported = now
                log.info(
                    "audio cache: %d of %d files read, %.1f h of audio, %.0f s",
                    done,
                    len(rows),
                    offset / audio.TARGET_SAMPLE_RATE / 3600,
                    now - started,
                )
    return index, bad


def _decoded(
    rows: list[Utterance], min_seconds: float, num_workers: int
) -> Iterator[tuple[np.ndarray, float, tuple[int, int]] | audio.AudioError]:
    """Decoded rows with their speech spans, in input order; a few threads when many
    (libsndfile and torch release the GIL), with a bounded number in flight so memory stays
    small."""
    if num_workers <= 1 or len(rows) < 4 * num_workers:
        yield from (_decode_one(row, min_seconds) for row in rows)
        return
    with ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="audio-cache") as pool:
        pending: deque[Future] = deque()
        for row in rows:
            pending.append(pool.submit(_decode_one, row, min_seconds))
            if len(pending) >= 4 * num_workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _decode_one(
    row: Utterance, min_seconds: float
) -> tuple[np.ndarray, float, tuple[int, int]] | audio.AudioError:
    """The row at 16 kHz as int16 scaled to its peak, the scale back and its speech span, found
    as predict finds a recording's (``speech_span`` with Silero's default settings:
    ``EmotionRecognizer``'s)."""
    try:
        wave = audio.load(row.path, audio.TARGET_SAMPLE_RATE, min_seconds)  # (T,) float32
    except audio.AudioError as err:
        return err
    scale = float(np.abs(wave).max()) / 32767.0  # audio.load refused digital silence
    samples = np.round(wave / scale).astype(np.int16)  # (T,): the peak at full scale
    return samples, scale, speech_span(wave, SileroVAD()) or (0, len(wave))


def _report_bad(bad: list[dict[str, str]], on_bad_file: str) -> None:
    if not bad:
        return
    if on_bad_file == "fail":
        raise BadAudioFilesError(bad)
    shown = "; ".join(f"{b['path']}: {b['reason']}" for b in bad[:_REPORT_FIRST])
    more = (
        f" (and {len(bad) - _REPORT_FIRST} more, see bad.json)" if len(bad) > _REPORT_FIRST else ""
    )
    log.warning("Skipping %d bad audio file(s): %s%s", len(bad), shown, more)


def tmp_suffix(host: str | None = None, pid: int | None = None) -> str:
    """``.tmp-<host>-<pid>``: the name of a build in progress says who is building it."""
    host = socket.gethostname() if host is None else host
    return f".tmp-{host}-{os.getpid() if pid is None else pid}"


# A build in progress: ``<sha256 key>.tmp-<host>-<pid>`` (an audio cache's, a feature store's).
# Nothing else matches: a folder ser did not write (``thesis.tmp-2024-05``) is never removed.
TMP_NAME = re.compile(r"[0-9a-f]{64}\.tmp-(?P<host>.+)-(?P<pid>\d+)")
# The file in a build folder its builder holds an exclusive lock on while it builds.
BUILD_LOCK = "build.lock"


def tmp_owner(folder: Path) -> tuple[str, int] | None:
    """``(host, pid)`` of a ``<key>.tmp-<host>-<pid>`` build folder, None for other names."""
    match = TMP_NAME.fullmatch(folder.name)
    return None if match is None else (match["host"], int(match["pid"]))


def start_build(tmp: Path) -> IO[bytes]:
    """Make the build folder ``tmp`` (afresh) and lock its ``BUILD_LOCK`` for the build: the
    open file, to close when the build ends. While it is open, any process that shares the
    file system (another PID namespace or host too) sees the build running (``build_state``)."""
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    # Locked under another name, then renamed (the lock goes with the file): the lock file is
    # never seen unlocked. Blocking: a checker holds it for an instant only.
    unlocked = tmp / f"{BUILD_LOCK}.new"
    lock = unlocked.open("wb")
    with contextlib.suppress(OSError):  # a file system without locks: the host and pid tell
        fcntl.flock(lock, fcntl.LOCK_EX)
    unlocked.rename(tmp / BUILD_LOCK)
    return lock


def build_state(folder: Path) -> str | None:
    """``running`` or ``killed`` for an unfinished build folder (by its lock; where it has none,
    by its host and pid: this host's), None where it cannot be told (another host's, without a
    lock) or ``folder`` is not a build."""
    owner = tmp_owner(folder)
    if owner is None:
        return None
    held = _lock_held(folder / BUILD_LOCK)
    if held is not None:
        return "running" if held else "killed"
    if owner[0] != socket.gethostname():
        return None
    return "killed" if process_is_gone(*owner) else "running"


def tmp_build_is_dead(folder: Path) -> bool:
    """True for an unfinished build whose builder is gone (it will never finish)."""
    return build_state(folder) == "killed"


def _lock_held(path: Path) -> bool | None:
    """Whether another process holds ``path``'s lock; None where there is no such file (a build
    from before locks, or one in its first instant) or the file system has no locks."""
    try:
        lock = path.open("rb")
    except OSError:
        return None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return None
        fcntl.flock(lock, fcntl.LOCK_UN)
    return False


def process_is_gone(host: str, pid: int) -> bool:
    """True for a process of this host that no longer exists; a process of another host cannot
    be checked from here (False)."""
    return host == socket.gethostname() and not _pid_alive(pid)


def remove_dead_builds(folder: Path, what: str) -> None:
    """Remove the unfinished builds in ``folder`` of this host's dead processes (killed builds);
    ``what`` names them in the log (an audio cache, a feature store)."""
    for tmp in folder.glob("*.tmp-*"):
        if tmp.is_dir() and tmp_build_is_dead(tmp):
            log.info("Removing unfinished %s of a killed build: %s", what, tmp)
            shutil.rmtree(tmp, ignore_errors=True)


def publish_build(tmp: Path, final: Path, what: str) -> bool:
    """Rename the complete build ``tmp`` to ``final``: the commit of an all-or-nothing build.
    When another process finished the same build first, its folder is kept and used (False)."""
    try:
        tmp.rename(final)
    except OSError:
        if not final.is_dir():
            raise
        log.info("Another process finished %s %s first; using it", what, final)
        return False
    (final / BUILD_LOCK).unlink(missing_ok=True)  # a finished folder has no builder
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def check_size(path: Path, expected: int, what: str) -> None:
    """A finished cache or store (``what``) damaged later (an interrupted copy, a full disk) is
    refused, not read: a CacheNotBuiltError where its data file ``path`` does not hold the
    ``expected`` bytes its meta.json gives."""
    size = path.stat().st_size if path.is_file() else 0
    if size != expected:
        raise CacheNotBuiltError(
            f"{what} {path.parent} is damaged: {path.name} holds {size} bytes where its "
            f"meta.json says {expected} (an interrupted copy or a full disk?); delete the "
            "folder and run again: it is rebuilt."
        )


def read_json(path: Path, what: str = "Audio cache"):
    """The JSON of ``path``, a file of a finished cache or store (``what``); missing or
    unreadable: a CacheNotBuiltError naming it and saying to delete its folder."""
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as err:
        raise CacheNotBuiltError(
            f"{what} file {path} is missing: the folder is incomplete. Delete {path.parent} "
            "and run again: it is rebuilt."
        ) from err
    except ValueError as err:  # not JSON, not UTF-8: cut short or overwritten
        raise CacheNotBuiltError(
            f"{what} file {path} is damaged ({err}; an interrupted copy or a full disk?). "
            f"Delete {path.parent} and run again: it is rebuilt."
        ) from None


def _write_json(path: Path, value: object) -> None:
    with path.open("w", encoding="utf-8") as f:
        json.dump(value, f)
