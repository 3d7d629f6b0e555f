"""An output never destroys an input, replaces a file only when asked, and is checked first."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from cli_process import ser

from ser import audio
from ser.commands import outputs, predict
from ser.commands.outputs import check_output
from ser.commands.predict import check_probabilities
from ser.inference.recognizer import EmotionRecognizer, Prediction, Segment


def test_an_input_under_another_spelling_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.ckpt").write_bytes(b"weights")
    (tmp_path / "link.ckpt").symlink_to(tmp_path / "m.ckpt")
    for output in ("m.ckpt", "./m.ckpt", str(tmp_path / "m.ckpt"), "link.ckpt"):
        with pytest.raises(ValueError, match=r"is the input m\.ckpt"):
            check_output(output, ["m.ckpt"], overwrite=True)


def test_an_existing_output_is_replaced_only_when_asked(tmp_path):
    (tmp_path / "p.csv").write_text("old")
    with pytest.raises(ValueError, match="exists; pass --overwrite true"):
        check_output(tmp_path / "p.csv", [], overwrite=False)
    assert check_output(tmp_path / "p.csv", [], overwrite=True) == tmp_path / "p.csv"
    assert check_output(tmp_path / "new" / "p.csv", [], overwrite=False).name == "p.csv"
    with pytest.raises(ValueError, match="is a folder"):
        check_output(tmp_path, [], overwrite=True)
    os.mkfifo(tmp_path / "pipe")  # a device or pipe: the staged rename would replace it
    with pytest.raises(ValueError, match="not a regular file"):
        check_output(tmp_path / "pipe", [], overwrite=True)


def test_a_folder_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=f"{tmp_path / 'file'} is a file, not a folder"):
        check_output(tmp_path / "file" / "p.csv", [], overwrite=False)

    def denied(**_):  # root may write anywhere: what a user without the right gets
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(outputs.tempfile, "TemporaryFile", denied)
    with pytest.raises(OSError, match=f"cannot write in {tmp_path} \\(Permission denied\\)"):
        check_output(tmp_path / "sub" / "p.csv", [], overwrite=False)


def test_export_and_predict_refuse_to_write_over_their_inputs(tmp_path):
    ckpt, clip = tmp_path / "m.ckpt", tmp_path / "clip.wav"
    ckpt.write_bytes(b"not loaded: the output is checked first")
    audio.write(clip, np.zeros(16_000, dtype=np.float32), 16_000)
    before = clip.read_bytes()
    runs = [
        ("export", "--ckpt_path", "m.ckpt", "--output", str(ckpt)),
        ("predict", "--ckpt_path", "m.ckpt", "--data.paths", "clip.wav", "--output", str(clip)),
        ("predict", "--ckpt_path", str(ckpt), "--data.paths", "[clip.wav]", "--output", "m.ckpt"),
    ]
    for args in runs:
        result = ser(*args, "--overwrite", "true", cwd=tmp_path, check=False)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr and "is the input" in result.stderr
    assert ckpt.read_bytes() == b"not loaded: the output is checked first"
    assert clip.read_bytes() == before


def test_export_refuses_an_existing_output_without_overwrite(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"an earlier export")
    result = ser("export", "--ckpt_path", "m.ckpt", cwd=tmp_path, check=False)
    assert result.returncode == 1 and "model.onnx exists; pass --overwrite true" in result.stderr
    assert (tmp_path / "model.onnx").read_bytes() == b"an earlier export"


@pytest.mark.parametrize(
    "option", ["--data.batch_size=-1", "--data.batch_size=0", "--data.hop_seconds=-1"]
)
def test_predict_refuses_sizes_that_would_score_nothing(tmp_path, option):
    result = ser("predict", "--ckpt_path", "m.ckpt", "--data.paths", "a.wav", option,
                 cwd=tmp_path, check=False)  # fmt: skip
    assert result.returncode == 2 and option.split("=")[0] in result.stderr
    assert not (tmp_path / "predictions.csv").exists()


def test_a_row_whose_probabilities_do_not_sum_to_one_is_never_written():
    scored = Prediction("a.wav", "anger", [0.25, 0.75], segments=[Segment(0, 1, "anger", [1, 0])])
    check_probabilities([scored], "m.ckpt")
    unscored = Prediction("b.wav", "anger", [0.0, 0.0])  # what batch_size -1 used to give
    with pytest.raises(ValueError, match=r"m\.ckpt: probabilities for b\.wav sum to 0\.0000"):
        check_probabilities([scored, unscored], "m.ckpt")
    scored.segments[0].probs = [float("nan"), 1.0]
    with pytest.raises(ValueError, match=r"a\.wav sum to nan"):
        check_probabilities([scored], "m.ckpt")


def staged_predict(tmp_path, monkeypatch, during_scoring) -> tuple[list[Path], Path]:
    """``ser predict`` of three clips (one per chunk) into ``out/p.csv``, with a model that says
    1/2 to everything and calls ``during_scoring(call)`` each time it scores a chunk."""
    clips = [tmp_path / "in" / f"clip{i}.wav" for i in range(3)]
    for clip in clips:
        clip.parent.mkdir(exist_ok=True)
        audio.write(clip, 0.1 * np.ones(8_000, dtype=np.float32), 16_000)
    calls = []

    def scorer(waves: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        calls.append(len(waves))
        during_scoring(len(calls))
        return np.full((len(waves), 2), 0.5, dtype=np.float32)  # (B, C)

    recognizer = EmotionRecognizer(scorer, ["anger", "neutral"], 1.0, vad="energy")
    recognizer.chunk_items = 1  # one file per chunk: rows can be seen between chunks
    monkeypatch.setattr(EmotionRecognizer, "load", lambda path, **options: recognizer)
    output = tmp_path / "out" / "p.csv"
    predict.main(["--ckpt_path", "m.ckpt", "--data.paths", str(tmp_path / "in"),
                  "--output", str(output)])  # fmt: skip
    return clips, output


def test_predict_writes_rows_as_they_are_scored(tmp_path, monkeypatch):
    lines_seen = []

    def look(call: int) -> None:
        lines_seen.append([len(p.read_text().splitlines()) for p in output_dir.glob("*.tmp")])

    output_dir = tmp_path / "out"
    clips, output = staged_predict(tmp_path, monkeypatch, look)
    assert lines_seen == [[1], [2], [3]]  # the header, then one more row per scored file
    rows = output.read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == [str(clip) for clip in clips]
    assert not list(output_dir.glob("*.tmp"))


def test_an_error_while_predicting_leaves_no_reading_thread_behind(tmp_path, monkeypatch):
    """The threads reading files ahead stop with the command, not when its frames are freed: a
    thread left inside libsndfile made a later fork (the synthetic corpus writer) wait forever
    in CI."""

    def fail(predictions, source) -> None:  # the command's side, after a chunk was scored
        raise OSError("the disk went away")

    monkeypatch.setattr(predict, "check_probabilities", fail)
    with pytest.raises(OSError, match="went away") as failure:
        staged_predict(tmp_path, monkeypatch, lambda call: None)
    # The error is kept (as a notebook keeps the last one), and with it the command's frames.
    assert failure.value.__traceback__ is not None
    assert not [t.name for t in threading.enumerate() if t.name.startswith("ser-decode")]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_while_predicting_names_the_output_and_leaves_no_tmp(tmp_path, monkeypatch):
    def fill_the_disk(call: int) -> None:
        if call == 2:  # the CSV's file now writes to /dev/full: every write is ENOSPC
            (staged,) = (tmp_path / "out").glob("*.tmp")
            fd = next(int(fd) for fd in os.listdir("/proc/self/fd")
                      if os.path.realpath(f"/proc/self/fd/{fd}") == str(staged))  # fmt: skip
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, fd)
            os.close(full)

    with pytest.raises(OSError) as failure:  # the console's one error line
        staged_predict(tmp_path, monkeypatch, fill_the_disk)
    message = str(failure.value)
    assert f"--output {tmp_path / 'out' / 'p.csv'}: cannot write it" in message
    assert "No space left on device" in message
    assert list((tmp_path / "out").iterdir()) == []  # no CSV, no *.tmp
