"""Shared fixtures: the ``python -m ser`` runner, a small synthetic ShEMO, a demo run."""

from __future__ import annotations

import csv
import os
import random
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_process import REPO, TINY_RUN, ser

from ser import audio
from ser.data.cache import AudioCache
from ser.data.synthetic import write_corpus
from ser.inference.recognizer import EmotionRecognizer


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker (and the ``python -m ser`` processes it starts) computes on
    its share of the cores: workers that each spread torch over every core wait on each other's
    threads (a test of small ops, the VAD's, ran 10x slower)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = str(max(1, (os.cpu_count() or 1) // int(workers)))
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = threads
        torch.set_num_threads(int(threads))


@pytest.fixture(autouse=True)
def same_random_state_for_every_test() -> None:
    """Each test starts from one random state (Python's, numpy's, torch's), not from whatever the
    tests before it in its process left: ``make test`` deals tests to several processes
    (pytest-xdist), in an order that changes with their number."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def ser_cli():
    """The runner of ``python -m ser`` subcommands (``ser_cli("fit", ..., cwd=...)``)."""
    return ser


@pytest.fixture(scope="session")
def assert_predicts_as_tested():
    """The check that a run's test scored each utterance as ``predict`` does:
    ``assert_predicts_as_tested(run_dir, cache_root)``."""

    def check(run_dir: Path, cache_root: Path) -> tuple[EmotionRecognizer, list[np.ndarray]]:
        """The run's best checkpoint (``EmotionRecognizer``) gives each tested utterance the
        probabilities of its ``predictions.csv``. The utterances are read from the audio cache
        under ``cache_root``, the audio the test read (the int16 rounding of the files alone
        moves a random encoder's probabilities by up to 0.03), whole: both the test (the data's
        ``trim_silence``) and predict read each from its first speech to its last. Returns the
        recognizer and the (whole) waveforms."""
        with open(run_dir / "predictions.csv", newline="") as f:
            tested = {row["utt_id"]: row for row in csv.DictReader(f)}
        recognizer = EmotionRecognizer.from_checkpoint(run_dir / "checkpoints" / "best.ckpt")
        (cache_folder,) = cache_root.iterdir()
        cache = AudioCache(cache_folder)
        waves = [cache.read(utt_id) for utt_id in tested]
        predictions = recognizer.predict([(wave, 16_000) for wave in waves])
        for utt_id, prediction in zip(tested, predictions, strict=True):
            expected = [float(tested[utt_id][f"prob_{name}"]) for name in recognizer.classes]
            np.testing.assert_allclose(prediction.probs, expected, atol=2e-3, err_msg=utt_id)
        return recognizer, waves

    return check


@pytest.fixture(scope="session")
def shemo_corpus(tmp_path_factory) -> Path:
    """48 files of a synthetic ShEMO (4 speakers x 12), shared by the end-to-end tests."""
    corpus = tmp_path_factory.mktemp("corpus") / "ShEMO"
    write_corpus("shemo", corpus, num_speakers=4, utterances_per_speaker=12, seed=1)
    return corpus


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, shemo_corpus):
    """A fit (+ test of the best checkpoint) of the demo model on the shared synthetic ShEMO."""
    work = tmp_path_factory.mktemp("cli")
    corpus = shemo_corpus
    long_file = work / "long.wav"  # 12 s: several overlapping 5 s windows in predict
    audio.write(long_file, 0.1 * np.random.default_rng(0).standard_normal(12 * 44_100), 44_100)
    fit = ser(
        "fit", "-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml"),
        "--data.root", str(corpus), "--data.loader.cache_dir", str(work / "cache"),
        "--trainer.logger.init_args.save_dir", str(work / "logs"),
        *TINY_RUN, "--test_after_fit", "true", cwd=work,
    )  # fmt: skip
    (run_dir,) = (work / "logs" / "demo").iterdir()
    return {
        "work": work,
        "corpus": corpus,
        "run_dir": run_dir,
        "ckpt": run_dir / "checkpoints" / "best.ckpt",
        "long": long_file,
        "stdout": fit.stdout,  # the test's console table
    }


@pytest.fixture(scope="session")
def damaged_checkpoint(demo_run, tmp_path_factory) -> Path:
    """``best.ckpt`` with the bytes of its largest tensor overwritten by 0xFF (float32 NaN).

    torch stores tensors uncompressed in the zip and does not check CRCs on load, so the file
    loads as a checkpoint whose weights are NaN: what disk or transfer damage looks like.
    """
    path = tmp_path_factory.mktemp("damaged") / "damaged.ckpt"
    shutil.copy(demo_run["ckpt"], path)
    with zipfile.ZipFile(path) as archive:
        entry = max(
            (e for e in archive.infolist() if "/data/" in e.filename), key=lambda e: e.file_size
        )
    with path.open("r+b") as f:
        f.seek(entry.header_offset + 26)  # local header: name and extra-field lengths
        name_length, extra_length = np.frombuffer(f.read(4), dtype="<u2")
        f.seek(entry.header_offset + 30 + int(name_length) + int(extra_length))
        f.write(b"\xff" * entry.file_size)
    return path
