"""End to end through the real CLI, each command in its own process, on a synthetic corpus."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ser import audio
from ser.labels import SHEMO_CLASSES
from ser.module import SERModule

REPO = Path(__file__).parents[1]
TINY_RUN = [
    "--trainer.max_epochs", "2",
    "--trainer.limit_train_batches", "3",
    "--trainer.log_every_n_steps", "1",
    "--data.batch_size", "4",
    "--data.num_workers", "0",
]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory, shemo_corpus, ser_cli):
    """A fit (+ test of the best checkpoint) of the demo model on a small synthetic ShEMO."""
    work = tmp_path_factory.mktemp("cli")
    corpus = shemo_corpus
    long_file = work / "long.wav"  # 12 s: several overlapping 5 s windows in predict
    audio.write(long_file, 0.1 * np.random.default_rng(0).standard_normal(12 * 44_100), 44_100)
    ser_cli(
        "fit", "-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml"),
        "--data.root", str(corpus), "--data.cache_dir", str(work / "cache"),
        "--trainer.logger.init_args.save_dir", str(work / "logs"),
        *TINY_RUN, "--test_after_fit", "true", cwd=work,
    )  # fmt: skip
    (run_dir,) = (work / "logs" / "demo").iterdir()
    return {"work": work, "corpus": corpus, "run_dir": run_dir, "long": long_file}


def test_fit_leaves_the_lab_notebook(run):
    run_dir = run["run_dir"]
    for name in ("config.yaml", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name
    parts = {}
    for part in ("train", "val", "test"):
        with open(run_dir / "splits" / f"{part}.csv", newline="") as f:
            parts[part] = {row["utt_id"] for row in csv.DictReader(f)}
    assert sum(map(len, parts.values())) == 48
    assert not parts["train"] & parts["test"]
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss_step", "val/loss", "val/UA", "val/WA", "val/F1"} <= scalars
    assert "val/recall/anger" in scalars
    assert len(events.Scalars("val/UA")) == 2  # one per epoch, sanity check not counted
    assert "val/confusion_matrix" in events.Tags()["images"]


def test_test_after_fit_writes_metrics_predictions_and_figure(run):
    run_dir = run["run_dir"]
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    expected = {"test/WA", "test/UA", "test/F1", "test/loss"}
    expected |= {f"test/recall/{name}" for name in SHEMO_CLASSES}
    assert set(metrics) == expected
    assert all(0.0 <= metrics[k] <= 1.0 for k in expected - {"test/loss"})
    with open(run_dir / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(run_dir / "splits" / "test.csv", newline="") as f:
        test_ids = {row["utt_id"] for row in csv.DictReader(f)}
    assert list(rows[0]) == ["utt_id", "label", "pred", *(f"prob_{c}" for c in SHEMO_CLASSES)]
    assert {row["utt_id"] for row in rows} == test_ids
    correct = sum(row["label"] == row["pred"] for row in rows)
    assert metrics["test/WA"] == pytest.approx(correct / len(rows))
    assert (run_dir / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_saved_config_reruns(run, ser_cli):
    result = ser_cli(
        "fit", "-c", str(run["run_dir"] / "config.yaml"), "--print_config", cwd=run["work"]
    )
    printed = yaml.safe_load(result.stdout)
    saved = yaml.safe_load((run["run_dir"] / "config.yaml").read_text())
    assert printed["data"] == saved["data"] and printed["model"] == saved["model"]
    assert printed["data"]["class_path"] == "ser.data.ShEMODataModule"
    assert printed["data"]["init_args"]["root"] == str(run["corpus"])
    assert printed["data"]["init_args"]["batch_size"] == 4 and printed["trainer"]["max_epochs"] == 2


def test_predict_from_checkpoint_alone_matches_a_fresh_reload(run, ser_cli):
    work, corpus = run["work"], run["corpus"]
    ckpt = run["run_dir"] / "checkpoints" / "best.ckpt"
    one_male = sorted((corpus / "male").glob("*.wav"))[0]
    out = work / "preds.csv"
    paths = f"[{corpus / 'female'}, {one_male}, {run['long']}]"
    ser_cli(
        "predict", "--ckpt_path", str(ckpt), "--data.paths", paths, "--output", str(out), cwd=work
    )
    assert not (work / "config.yaml").exists()  # predict has no run directory to save it in
    with open(out, newline="") as f:
        rows = {row["path"]: row for row in csv.DictReader(f)}
    assert len(rows) == len(list((corpus / "female").glob("*.wav"))) + 2
    assert list(next(iter(rows.values()))) == [
        "path",
        "pred",
        *(f"prob_{c}" for c in SHEMO_CLASSES),
    ]

    # The same checkpoint loaded here (another process) gives the same probabilities; the long
    # file's are the mean over its windows.
    model = SERModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False).eval()
    for path in (one_male, run["long"]):
        wave = torch.from_numpy(audio.load(path))
        windows = [wave[s : s + 80_000] for s in range(0, max(1, len(wave) - 80_000) + 1, 40_000)]
        if len(wave) > 80_000 and (len(wave) - 80_000) % 40_000:
            windows.append(wave[-80_000:])  # the last window ends at the end of the file
        with torch.no_grad():
            probs = torch.cat(
                [model(w[None], torch.tensor([len(w)])).softmax(-1) for w in windows]
            ).mean(0)
        written = [float(rows[str(path)][f"prob_{c}"]) for c in SHEMO_CLASSES]
        assert written == pytest.approx(probs.tolist(), abs=1e-4), path
        assert sum(written) == pytest.approx(1.0, abs=1e-4)


def test_checkpoint_from_another_label_set_is_refused(run, ser_cli):
    ckpt = run["run_dir"] / "checkpoints" / "best.ckpt"
    result = ser_cli(
        "test", "--ckpt_path", str(ckpt), "-c", str(REPO / "configs/data/shemo.yaml"),
        "--data.root", str(run["corpus"]), "--data.cache_dir", str(run["work"] / "cache"),
        "--data.classes", "[anger, neutral]", "--trainer.logger", "false",
        cwd=run["work"], check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "trained on classes" in result.stderr


def test_predict_names_a_corrupt_file(run, tmp_path, ser_cli):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    ckpt = run["run_dir"] / "checkpoints" / "best.ckpt"
    result = ser_cli("predict", "--ckpt_path", str(ckpt), "--data.paths", f"[{bad}]",
                 "--output", str(tmp_path / "p.csv"), cwd=tmp_path, check=False)  # fmt: skip
    assert result.returncode != 0
    assert "broken.wav" in result.stderr and "unreadable" in result.stderr
    assert not (tmp_path / "p.csv").exists()
