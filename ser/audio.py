"""Decode, downmix, resample and validate audio: the only module that opens audio files.

Decoding uses soundfile (libsndfile); resampling uses torchaudio's windowed-sinc resampler.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

if TYPE_CHECKING:
    import torchaudio

TARGET_SAMPLE_RATE = 16_000
AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3")
# Rates accepted (Hz): a rate of 1 would make resampling allocate gigabytes, 0 divide by zero.
SAMPLE_RATES = (1_000, 384_000)
# The shortest audio read by default (``load``, the data's ``min_seconds``) and the shortest
# window a model scores: encoders need a few frames of input.
MIN_SECONDS = 0.1
# A recording with no sample larger than half a 16-bit step (0 once rounded to 16 bits) is silent.
SILENT_UP_TO = 0.5 / 32768
# How a Git LFS pointer file starts (a corpus cloned without its LFS files, as CREMA-D's can be).
GIT_LFS_POINTER = b"version https://git-lfs.github.com/spec/"


class AudioError(ValueError):
    """A file that cannot be used, with its path and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    """What the header says: duration in seconds, sample rate, channel count."""

    duration: float
    sample_rate: int
    channels: int


def probe(path: str | Path) -> AudioInfo:
    """Read only the header of ``path``; raise ``AudioError`` if unreadable or zero-length."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise AudioError(path, f"dangling symlink (to {path.readlink()})")
    if path.is_dir():
        raise AudioError(
            path, "a folder, not an audio file (ser.audio.expand_paths lists the audio in it)"
        )
    if not path.is_file():
        raise AudioError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:  # libsndfile reports an unreadable file only as "System error."
        with path.open("rb"):
            pass
    except OSError as err:
        raise AudioError(path, f"cannot open: {(err.strerror or str(err)).lower()}") from err
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as err:
        if is_git_lfs_pointer(path):
            raise AudioError(
                path,
                "a Git LFS pointer, not audio (the corpus was cloned or downloaded without its "
                "LFS files: `git lfs pull` in its repository fetches them)",
            ) from err
        raise AudioError(path, f"unreadable audio ({err})") from err
    if info.frames <= 0:
        raise AudioError(path, "zero-length audio (no samples)")
    duration = info.frames / info.samplerate
    shortfall = wav_data_shortfall(path)
    if shortfall is not None:  # libsndfile reads what is there and says nothing
        declared, present = shortfall
        raise AudioError(
            path,
            f"truncated: its header declares {duration * declared / present:.3f} s, the file "
            f"holds {duration:.3f} s (an incomplete copy or download?)",
        )
    return AudioInfo(duration, info.samplerate, info.channels)


# Data-chunk sizes streaming writers put in a WAV header before they know the length.
_UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF)


def wav_data_shortfall(path: Path) -> tuple[int, int] | None:
    """``(declared, present)`` bytes of a RIFF/WAVE file's data chunk when the file holds fewer
    than its header declares (a copy cut short); None for a whole file, another format, or a
    header written before the length was known."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        position = 12
        while position + 8 <= size:
            f.seek(position)
            name, length = struct.unpack("<4sI", f.read(8))
            if name == b"data":
                present = size - position - 8
                if length in _UNKNOWN_WAV_SIZES or length <= present or present <= 0:
                    return None
                return length, present
            position += 8 + length + (length & 1)  # chunks are padded to even sizes
    return None


def is_git_lfs_pointer(path: Path) -> bool:
    """Whether ``path`` is the small text file Git LFS leaves in place of a large file."""
    with path.open("rb") as f:
        return f.read(len(GIT_LFS_POINTER)) == GIT_LFS_POINTER


def load(
    path: str | Path,
    target_sample_rate: int = TARGET_SAMPLE_RATE,
    min_seconds: float = MIN_SECONDS,
) -> np.ndarray:
    """Decode ``path`` to a mono float32 array at ``target_sample_rate``.

    Raises ``AudioError`` for unreadable, empty, zero-length, too short (< ``min_seconds``) and
    non-finite (NaN/inf) audio.
    """
    probe(path)
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(path, f"unreadable audio ({err})") from err
    check_wave(path, data, sample_rate, min_seconds)
    wave = data.mean(axis=1)  # (T,) downmix
    return resample(wave, sample_rate, target_sample_rate)


def samples(name: str | Path, wave: object) -> np.ndarray:
    """The float32 samples of an array or tensor; integer PCM (what ``scipy.io.wavfile.read``
    or ``soundfile.read(dtype="int16")`` return) scaled by its type's full scale, as a file's
    would be: int16 / 32768, unsigned 8-bit about 128 (as WAV stores it).

    Raises ``AudioError`` naming ``name`` for samples that are not real numbers.
    """
    if hasattr(wave, "detach"):  # a torch tensor, maybe in an autograd graph or on a GPU
        wave = wave.detach().cpu()
        wave = (wave.float() if wave.is_floating_point() else wave).numpy()
    wave = np.asarray(wave)
    if wave.dtype.kind == "f":
        return wave.astype(np.float32, copy=False)
    if wave.dtype.kind in "iu":
        full = np.iinfo(wave.dtype)
        half = (int(full.max) - int(full.min) + 1) / 2  # 32768 for int16, 128 for uint8
        zero = (int(full.max) + int(full.min) + 1) / 2  # 0 for signed types, 128 for uint8
        return ((wave.astype(np.float64) - zero) / half).astype(np.float32)
    raise AudioError(name, f"expected real samples (float or integer PCM), got dtype {wave.dtype}")


def check_wave(name: str | Path, wave: np.ndarray, sample_rate: int, min_seconds: float) -> None:
    """Raise ``AudioError`` naming ``name`` if ``sample_rate`` is not a whole number of Hz in
    ``SAMPLE_RATES``, or ``wave`` (time first) is empty, non-finite, shorter than
    ``min_seconds`` or, mixed down to mono, digital silence (every sample 0 at 16 bits)."""
    whole = isinstance(sample_rate, int | np.integer) and not isinstance(sample_rate, bool)
    if not whole or not SAMPLE_RATES[0] <= sample_rate <= SAMPLE_RATES[1]:
        raise AudioError(
            name, f"sample rate {sample_rate!r}: expected a whole number of Hz from "
            f"{SAMPLE_RATES[0]} to {SAMPLE_RATES[1]}"
        )  # fmt: skip
    if wave.shape[0] == 0:
        raise AudioError(name, "zero-length audio (no samples)")
    if not np.isfinite(wave).all():
        raise AudioError(name, "audio contains NaN or infinite samples")
    seconds = wave.shape[0] / sample_rate
    if seconds < min_seconds:
        raise AudioError(name, f"too short: {seconds:.6g} s < min_seconds={min_seconds} s")
    mono = wave.mean(axis=1) if wave.ndim == 2 else wave  # channels in antiphase cancel out
    if not (np.abs(mono) > SILENT_UP_TO).any():  # a recorder left running with no input
        raise AudioError(name, "silent: every sample is 0 at 16 bits")


def resample(wave: np.ndarray, orig_sample_rate: int, target_sample_rate: int) -> np.ndarray:
    """Resample a mono float32 array; a no-op when the rates already agree."""
    if orig_sample_rate == target_sample_rate:
        return np.ascontiguousarray(wave, dtype=np.float32)
    import torch  # here, not at the top: `python -m ser synth` only writes files

    resampler = _resampler(orig_sample_rate, target_sample_rate)
    with torch.no_grad():
        out = resampler(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)))
    return out.numpy()


@functools.lru_cache(maxsize=16)
def _resampler(orig: int, target: int) -> torchaudio.transforms.Resample:
    import torchaudio

    # The transform builds its sinc kernel once; building it per file would double the cost.
    return torchaudio.transforms.Resample(orig, target)


def write(path: str | Path, wave: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write a mono float array as an audio file (format from the suffix: .wav, .flac)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wave, -1.0, 1.0), sample_rate, subtype=subtype)


def expand_paths(paths: str | Path | list[str | Path]) -> list[Path]:
    """Files as given and the audio files inside folders (recursive), each file once.

    Raises ``FileNotFoundError`` for a path that is neither a file, a folder nor a symlink, and
    for a folder without audio; files that cannot be read are left for ``load`` to report.
    """
    files: list[Path] = []
    if isinstance(paths, str | Path):
        paths = [paths]
    for entry in map(Path, paths):
        if entry.is_dir():
            found = list_audio_files(entry)
            if not found:
                raise FileNotFoundError(f"{entry}: folder holds no audio files (.wav, .flac, ...)")
            files.extend(found)
        elif entry.is_file() or entry.is_symlink():  # a dangling link is a bad file, not a typo
            files.append(entry)
        else:
            raise FileNotFoundError(f"{entry}: no such file or folder")
    # One file under two spellings (a.wav, ./a.wav, /abs/a.wav, a link) is one item, named as
    # first given; realpath, not Path.resolve: it does not raise on a symlink loop.
    first_spelling: dict[str, Path] = {}
    for file in files:
        first_spelling.setdefault(os.path.realpath(file), file)
    return list(first_spelling.values())


def list_audio_files(folder: str | Path) -> list[Path]:
    """Audio files under ``folder`` (recursive), sorted for a stable order."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
