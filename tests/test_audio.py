import errno
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ser import audio


def test_load_downmixes_and_resamples_to_16k(tmp_path):
    t = np.arange(44_100) / 44_100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "stereo.wav", np.stack([left, left], axis=1), 44_100)
    wave = audio.load(tmp_path / "stereo.wav")
    assert wave.dtype == np.float32 and wave.shape == (16_000,)
    spectrum = np.abs(np.fft.rfft(wave))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 s at 16 kHz: bin = Hz


def test_probe_reads_the_header_only(tmp_path):
    audio.write(tmp_path / "a.flac", np.zeros(22_050, dtype=np.float32), 22_050)
    info = audio.probe(tmp_path / "a.flac")
    assert (info.duration, info.sample_rate, info.channels) == (1.0, 22_050, 1)


GIT_LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:3b5d5c3712955042212316173ccf37be800a5e5f9a3d7b5b1b2c3d4e5f607182\nsize 91436\n"
)


def cut_short(path):
    """3 s of 16-bit WAV cut after 1 s, as an interrupted copy leaves it (libsndfile reads the
    second it holds and says nothing)."""
    sf.write(path, 0.1 * np.sin(np.arange(48_000) * 0.05), 16_000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[: 44 + 2 * 16_000])


def antiphase(path):
    tone = 0.1 * np.sin(np.arange(16_000) * 0.05)
    sf.write(path, np.stack([tone, -tone], axis=1), 16_000)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"RIFF0000WAVEjunk"), "unreadable"),
        # What a clone of CREMA-D's repository without `git lfs` holds for every file.
        (lambda p: p.write_text(GIT_LFS_POINTER), "a Git LFS pointer, not audio .*`git lfs pull`"),
        (lambda p: sf.write(p, np.zeros(0), 16_000), "zero-length"),
        (lambda p: sf.write(p, np.zeros(160), 16_000), "too short"),
        (lambda p: sf.write(p, np.full(16_000, np.nan), 16_000, subtype="FLOAT"), "NaN"),
        (cut_short, r"truncated: its header declares 3\.000 s, the file holds 1\.000 s"),
        # Just under the shortest: not "0.100 s < min_seconds=0.1 s".
        (lambda p: sf.write(p, np.ones(4409), 44_100), r"too short: 0\.0999773 s < min_seconds"),
        # Two channels in antiphase mix down to nothing: silence, not a label.
        (antiphase, "silent: every sample is 0 at 16 bits"),
    ],
)
def test_bad_files_name_the_path_and_reason(tmp_path, make, reason):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(audio.AudioError, match=reason) as err:
        audio.load(path)
    assert err.value.path == str(path)


def test_one_file_under_several_spellings_is_listed_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    audio.write(tmp_path / "d" / "a.wav", np.zeros(1600, dtype=np.float32), 16_000)
    (tmp_path / "link.wav").symlink_to(tmp_path / "d" / "a.wav")
    given = ["d/a.wav", str(tmp_path / "d" / "a.wav"), "./d/../d/a.wav", "link.wav", "d"]
    assert audio.expand_paths(given) == [Path("d/a.wav")]
    assert audio.expand_paths("d/a.wav") == [Path("d/a.wav")]  # one path alone


def test_a_file_without_read_permission_says_so(tmp_path, monkeypatch):
    path = tmp_path / "locked.wav"
    audio.write(path, np.zeros(16_000, dtype=np.float32), 16_000)
    opened = Path.open

    def denied(self, *args, **kwargs):  # what chmod 000 gives a user who is not root
        if self == path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return opened(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(audio.AudioError, match=r"locked\.wav: cannot open: permission denied"):
        audio.load(path)
