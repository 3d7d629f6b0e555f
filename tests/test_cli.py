"""End to end through the real CLI, each command in its own process, on a synthetic corpus."""

from __future__ import annotations

import csv
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml
from cli_process import REPO, TINY_RUN, ser
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ser import EmotionRecognizer, audio
from ser.evaluation.calibration import ReliabilityBins, expected_calibration_error
from ser.labels import SHEMO_CLASSES
from ser.training.module import SERModule


@pytest.fixture
def run(demo_run):
    return demo_run


def demo_data(run: dict, tmp_path: Path, *more: str) -> list[str]:
    """The demo run's corpus and cache, ``more`` data options, and logs under ``tmp_path``."""
    data = ["-c", str(REPO / "configs/data/shemo.yaml"), "--data.root", str(run["corpus"]),
            "--data.loader.cache_dir", str(run["work"] / "cache"), *more]  # fmt: skip
    return [*data, "--trainer.default_root_dir", str(tmp_path / "logs")]


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
    with open(run_dir / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    expected = {"test/WA", "test/UA", "test/F1", "test/loss"}
    expected |= {f"test/recall/{row['label']}" for row in rows}  # the classes the test holds
    expected |= {f"test/{m}_ci95_{end}" for m in ("WA", "UA", "F1") for end in ("lo", "hi")}
    expected |= {"test/ECE", "test/ECE_uncalibrated", "test/NLL", "test/NLL_uncalibrated"}
    assert set(metrics) == expected
    unbounded = {"test/loss", "test/NLL", "test/NLL_uncalibrated"}
    assert all(0.0 <= metrics[k] <= 1.0 for k in expected - unbounded)
    with open(run_dir / "splits" / "test.csv", newline="") as f:
        test_rows = list(csv.DictReader(f))
    test_ids = {row["utt_id"] for row in test_rows}
    assert list(rows[0]) == ["utt_id", "label", "pred", *(f"prob_{c}" for c in SHEMO_CLASSES)]
    assert {row["utt_id"] for row in rows} == test_ids
    correct = sum(row["label"] == row["pred"] for row in rows)
    assert metrics["test/WA"] == pytest.approx(correct / len(rows))
    assert (run_dir / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The card says which model was scored: best.ckpt, at the epoch and step it was saved.
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    tested = json.loads((run_dir / "protocol.json").read_text())["tested"]
    assert tested == {
        "checkpoint": str(run_dir / "checkpoints" / "best.ckpt"),
        "epoch": best["epoch"],
        "global_step": best["global_step"],
        # None of its own split's test part (the checkpoint lists what it heard); the speakers
        # of this speaker-dependent split (Stratified), yes.
        "heard_in_training": {
            "utterances": 0,
            "of": len(rows),
            "speakers": sorted({row["speaker"] for row in test_rows}),
            "examples": [],
        },
    }


def test_console_table_shows_the_intervals_beside_the_scores(run):
    table = run["stdout"]
    for metric in ("WA", "UA", "F1"):
        assert f"test/{metric}_ci95_lo" in table and f"test/{metric}_ci95_hi" in table
    assert "test/ECE" in table


def test_test_uses_the_temperature_fitted_for_the_best_checkpoint(run):
    run_dir = run["run_dir"]
    temperature = float(torch.load(run["ckpt"], weights_only=True)["state_dict"]["temperature"])
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0}).Reload()
    fitted = [event.value for event in events.Scalars("val/temperature")]
    assert len(fitted) == 2 and temperature != 1.0
    assert any(temperature == pytest.approx(value) for value in fitted)
    assert "test/reliability_diagram" in events.Tags()["images"]
    # predictions.csv holds the calibrated probabilities: its ECE is test/ECE.
    with open(run_dir / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    probs = torch.tensor([[float(row[f"prob_{c}"]) for c in SHEMO_CLASSES] for row in rows])
    labels = torch.tensor([SHEMO_CLASSES.index(row["label"]) for row in rows])
    bins = ReliabilityBins()
    bins.update(probs, labels)
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    assert expected_calibration_error(bins.compute()) == pytest.approx(
        metrics["test/ECE"], abs=1e-4
    )
    # And its mean -log p(label) is test/NLL; T = 1 gives test/NLL_uncalibrated.
    nll = -probs[torch.arange(len(labels)), labels].log().mean()
    assert float(nll) == pytest.approx(metrics["test/NLL"], abs=1e-3)
    uncalibrated = (temperature * probs.log()).softmax(dim=-1)  # logits up to a constant
    nll = -uncalibrated[torch.arange(len(labels)), labels].log().mean()
    assert float(nll) == pytest.approx(metrics["test/NLL_uncalibrated"], abs=1e-3)


def test_test_scores_each_utterance_as_predict_does(run, ser_cli):
    """The test metrics measure what predict gives: predictions.csv (the test of best.ckpt after
    fit) holds, for every test file, predict's probabilities of it, long files scored in
    predict's windows (the length 90 % of the training inputs fit in) rather than whole, and
    each from its first speech to its last (the data's and predict's ``trim_silence``)."""
    work, run_dir = run["work"], run["run_dir"]
    with open(run_dir / "splits" / "test.csv", newline="") as f:
        tested = {row["path"]: row["utt_id"] for row in csv.DictReader(f)}
    window = EmotionRecognizer.from_checkpoint(run["ckpt"]).window
    assert any(len(audio.load(path)) > window for path in tested)  # some are scored in windows
    out = work / "test_files.csv"
    paths = "[" + ", ".join(tested) + "]"
    ser_cli(
        "predict", "--ckpt_path", str(run["ckpt"]), "--data.paths", paths, "--output", str(out),
        cwd=work,
    )  # fmt: skip
    columns = [f"prob_{c}" for c in SHEMO_CLASSES]
    with open(out, newline="") as f:
        predicted = {
            tested[row["path"]]: [float(row[c]) for c in columns] for row in csv.DictReader(f)
        }
    with open(run_dir / "predictions.csv", newline="") as f:
        rows = {row["utt_id"]: [float(row[c]) for c in columns] for row in csv.DictReader(f)}
    assert set(rows) == set(predicted)
    for utt_id, probs in rows.items():
        # Predict read the files, the test their 16-bit copies in the audio cache, each scaled
        # to its own peak: the rounding moves no probability by 1e-5 (at one scale for all, up
        # to 1e-4 on this random encoder, 0.13 on a file at -57 dBFS).
        assert probs == pytest.approx(predicted[utt_id], abs=1e-5), utt_id


def test_test_takes_the_config_a_fit_saved(run, ser_cli, tmp_path):
    """``ser test -c RUN/config.yaml --ckpt_path RUN/checkpoints/best.ckpt`` (fit's own options
    in the file) gives the scores of the test after fit; without ``--ckpt_path``, where Lightning
    would score an untrained head, one line says what is missing."""
    config = ["-c", str(run["run_dir"] / "config.yaml")]
    logs = ["--trainer.logger.init_args.save_dir", str(tmp_path / "logs")]
    assert "test_after_fit: true" in (run["run_dir"] / "config.yaml").read_text()
    ser_cli("test", *config, "--ckpt_path", str(run["ckpt"]), *logs, cwd=tmp_path)
    (run_dir,) = (tmp_path / "logs" / "demo").iterdir()
    retested = json.loads((run_dir / "test_metrics.json").read_text())
    assert retested == pytest.approx(json.loads((run["run_dir"] / "test_metrics.json").read_text()))
    refused = ser_cli("test", *config, *logs, cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "ser test needs --ckpt_path" in refused.stderr
    assert len(list((tmp_path / "logs" / "demo").iterdir())) == 1  # no directory claimed


def test_a_trained_model_tests_on_a_corpus_of_test_rows_only(run, ser_cli, tmp_path):
    """Another corpus, every row a test row (``AllTest``): ``ser test`` scores them all; a fit
    on it ends in one line saying why."""
    split = ["--data.split.class_path", "ser.data.splits.AllTest"]
    data = demo_data(run, tmp_path, *split)
    tested = ser_cli("test", "--ckpt_path", str(run["ckpt"]), *data, cwd=tmp_path)
    (run_dir,) = (tmp_path / "logs" / "lightning_logs").iterdir()
    # No seed given: 0 (ser's default), without Lightning's warning that it found none.
    assert "Seed set to 0" in tested.stderr and "No seed found" not in tested.stderr
    with open(run_dir / "predictions.csv", newline="") as f:
        tested = {row["utt_id"] for row in csv.DictReader(f)}
    assert len(tested) == len(list(run["corpus"].rglob("*.wav")))  # all 48, training ones too
    assert "test/UA" in json.loads((run_dir / "test_metrics.json").read_text())
    # ... and says so: the card counts the 48 - 6 it trained or validated on, and their speakers.
    heard = json.loads((run_dir / "protocol.json").read_text())["tested"]["heard_in_training"]
    assert (heard["utterances"], heard["of"], len(heard["speakers"])) == (42, 48, 4)
    fit = ser_cli("fit", "-c", str(REPO / "configs/demo.yaml"), *data, *TINY_RUN,
                  "--trainer.logger", "false", cwd=tmp_path, check=False)  # fmt: skip
    assert fit.returncode != 0
    assert "the train part of the split (AllTest) is empty" in fit.stderr
    assert "Traceback" not in fit.stderr


def test_a_checkpoint_is_not_tested_or_fine_tuned_on_a_split_whose_test_part_it_heard(
    run, ser_cli, tmp_path
):
    """Another seed draws another split of the same corpus: its test part holds utterances the
    checkpoint trained or validated on. ``test`` of it, and a fit that starts from it
    (``init_from``), stop in one line before scoring or training."""
    data = demo_data(run, tmp_path, "--data.loader.seed", "1")
    tested = ser_cli("test", "--ckpt_path", str(run["ckpt"]), *data, cwd=tmp_path, check=False)
    assert tested.returncode == 1 and "Traceback" not in tested.stderr
    (error,) = [line for line in tested.stderr.splitlines() if "not be held out" in line]
    assert f"--ckpt_path {run['ckpt']} trained or validated on " in error
    assert not list((tmp_path / "logs").rglob("test_metrics.json"))
    fit = ser_cli("fit", "-c", str(REPO / "configs/demo.yaml"), *data, *TINY_RUN,
                  "--model.init_from", str(run["ckpt"]), cwd=tmp_path, check=False)  # fmt: skip
    assert fit.returncode == 1 and "Traceback" not in fit.stderr
    assert f"--model.init_from {run['ckpt']} trained or validated on " in fit.stderr
    assert not list((tmp_path / "logs").rglob("*.ckpt"))  # refused before training


def test_validating_a_checkpoint_on_a_split_whose_val_part_it_trained_on_says_so(
    run, ser_cli, tmp_path
):
    """``validate`` of a checkpoint on another seed's split scored utterances it trained on and
    said nothing. It now warns in one line (it selects nothing and writes no result, so it is not
    refused: validating on data the model heard stays possible, knowingly), and says nothing on
    the split the checkpoint trained with, whose val part it validated on, not trained on."""
    data = demo_data(run, tmp_path)
    other = ser_cli("validate", "--ckpt_path", str(run["ckpt"]), *data,
                    "--data.loader.seed", "1", cwd=tmp_path)  # fmt: skip
    (line,) = [line for line in other.stderr.splitlines() if "not of held-out data" in line]
    assert f"--ckpt_path {run['ckpt']} trained on " in line
    assert " validation utterances (e.g. " in line and "of this Stratified split" in line
    assert "val/UA" in other.stdout
    own = ser_cli("validate", "--ckpt_path", str(run["ckpt"]), *data, cwd=tmp_path)
    assert "held-out" not in own.stderr and "val/UA" in own.stdout


def test_testing_a_checkpoint_on_files_read_otherwise_than_it_trained_says_so(
    run, ser_cli, tmp_path
):
    """The demo checkpoint trained on each file from its first speech to its last (the data's
    default, recorded in it); ``ser test`` of it on whole files scores what predict, as trained,
    does not: one warning names the option and the value it trained with. Read as it trained, no
    warning."""
    data = demo_data(run, tmp_path)
    whole = ser_cli("test", "--ckpt_path", str(run["ckpt"]), *data,
                    "--data.loader.trim_silence", "false", cwd=tmp_path)  # fmt: skip
    (line,) = [line for line in whole.stderr.splitlines() if "trim_silence" in line]
    assert f"--ckpt_path {run['ckpt']}: its training read each file from its first speech" in line
    assert "this run reads each file whole" in line
    assert "--data.loader.trim_silence true" in line
    as_trained = ser_cli("test", "--ckpt_path", str(run["ckpt"]), *data, cwd=tmp_path)
    assert "trim_silence" not in as_trained.stderr


def test_test_after_fit_without_a_checkpoint_ends_in_one_line(run, tmp_path):
    result = ser(
        "fit", "-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml"),
        "--data.root", str(run["corpus"]), "--data.loader.cache_dir", str(run["work"] / "cache"),
        "--data.loader.num_workers", "0", "--trainer.logger", "false",
        "--trainer.max_epochs", "0", "--test_after_fit", "true", cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: --test_after_fit true: fit saved no best checkpoint to test" in result.stderr


def test_a_fit_without_a_data_config_ends_in_one_line_and_leaves_no_run_directory(tmp_path):
    result = ser("fit", "-c", str(REPO / "configs/demo.yaml"), cwd=tmp_path, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr  # was SERModule's TypeError
    assert "error: ser fit needs a corpus: a data config, e.g. -c configs/data/" in result.stderr
    assert not (tmp_path / "lightning_logs").exists()


def test_saved_config_reruns(run, ser_cli):
    result = ser_cli(
        "fit", "-c", str(run["run_dir"] / "config.yaml"), "--print_config", cwd=run["work"]
    )
    printed = yaml.safe_load(result.stdout)
    saved = yaml.safe_load((run["run_dir"] / "config.yaml").read_text())
    assert printed["data"] == saved["data"] and printed["model"] == saved["model"]
    assert printed["data"]["class_path"] == "ser.data.ShEMODataModule"
    assert printed["data"]["init_args"]["root"] == str(run["corpus"])
    loader = printed["data"]["init_args"]["loader"]
    assert loader["batch_size"] == 4 and printed["trainer"]["max_epochs"] == 2


def test_predict_from_checkpoint_alone_matches_a_fresh_reload(run, ser_cli):
    work, corpus = run["work"], run["corpus"]
    ckpt = run["run_dir"] / "checkpoints" / "best.ckpt"
    one_male = sorted((corpus / "male").glob("*.wav"))[0]
    out = work / "preds.csv"
    paths = f"[{corpus / 'female'}, {one_male}, {run['long']}]"
    ser_cli(
        "predict", "--ckpt_path", str(ckpt), "--data.paths", paths, "--output", str(out),
        "--trim_silence", "false", cwd=work,
    )  # fmt: skip
    assert not (work / "config.yaml").exists()  # predict has no run directory to save it in
    with open(out, newline="") as f:
        rows = {row["path"]: row for row in csv.DictReader(f)}
    assert len(rows) == len(list((corpus / "female").glob("*.wav"))) + 2
    assert list(next(iter(rows.values()))) == [
        "path",
        "pred",
        *(f"prob_{c}" for c in SHEMO_CLASSES),
    ]

    # The same checkpoint loaded here (another process) gives the same probabilities, calibrated
    # by its temperature; the long file's are the mean over its windows: of the length 90 % of
    # the model's training inputs fit in (the synthetic clips: under the 5 s segment), every half
    # (each file whole: --trim_silence false).
    model = SERModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False).eval()
    size = EmotionRecognizer.from_checkpoint(ckpt).window
    assert size < 80_000
    for path in (one_male, run["long"]):
        wave = torch.from_numpy(audio.load(path))
        starts = range(0, max(1, len(wave) - size) + 1, size // 2)
        windows = [wave[s : s + size] for s in starts]
        if len(wave) > size and (len(wave) - size) % (size // 2):
            windows.append(wave[-size:])  # the last window ends at the end of the file
        with torch.no_grad():
            probs = torch.cat(
                [
                    (model(w[None], torch.tensor([len(w)])) / model.temperature).softmax(-1)
                    for w in windows
                ]
            ).mean(0)
        written = [float(rows[str(path)][f"prob_{c}"]) for c in SHEMO_CLASSES]
        assert written == pytest.approx(probs.tolist(), abs=1e-4), path
        assert sum(written) == pytest.approx(1.0, abs=1e-4)


def test_checkpoint_from_another_label_set_is_refused(run, ser_cli):
    ckpt = run["run_dir"] / "checkpoints" / "best.ckpt"
    result = ser_cli(
        "test", "--ckpt_path", str(ckpt), "-c", str(REPO / "configs/data/shemo.yaml"),
        "--data.root", str(run["corpus"]), "--data.loader.cache_dir", str(run["work"] / "cache"),
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


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ("path,emotion\na.wav,anger\n", "missing column(s) ['label']"),
        ("path,label,split\na.wav,anger,training\n", "split 'training' is not one of"),
        ("path,label,utt_id\na.wav,anger,u1\na.wav,calm,u2\n", "a.wav is listed twice"),
    ],
    ids=["missing-column", "unknown-split", "duplicate-path"],
)
def test_a_bad_manifest_ends_in_its_own_message(rows, problem, tmp_path):
    """Not jsonargparse's 80-100 lines of union errors with the message somewhere inside."""
    tiny = tmp_path / "a.wav"
    audio.write(tiny, np.zeros(1600, dtype=np.float32), 16_000)
    manifest = tmp_path / "bad.csv"
    manifest.write_text(rows)
    configs = [
        "-c",
        str(REPO / "configs/demo.yaml"),
        "-c",
        str(REPO / "configs/data/manifest.yaml"),
    ]
    result = ser(
        "fit", *configs, "--data.path", str(manifest), "--trainer.logger", "false",
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Union subtypes" not in result.stderr and "Given value" not in result.stderr
    lines = result.stderr.strip().splitlines()
    (line,) = [line for line in lines if problem in line]
    assert str(manifest) in line
    assert line in lines[-2:]  # last (or before a one-line hint), not in the middle of a wall


def test_help_lists_every_subcommand(tmp_path):
    listing = ser("--help", cwd=tmp_path).stdout
    for command in ("fit", "validate", "test", "predict", "export", "synth"):
        assert f"  {command} " in listing, command


def test_predict_help_shows_what_predict_needs_and_no_model_options(tmp_path):
    text = ser("predict", "--help", cwd=tmp_path).stdout
    for option in ("--ckpt_path", "--data.paths", "--output", "--data.window_seconds",
                   "--data.timeline_window_seconds", "--data.hop_seconds", "--timeline",
                   "--on_bad_file"):  # fmt: skip
        assert option in text, option
    assert "--model" not in text and "--trainer" not in text


def bad_files(folder: Path, good: Path) -> dict[str, str]:
    """Four bad files next to good ones: name -> the reason predict must give."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "unreadable.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    audio.write(folder / "short.wav", np.zeros(400, dtype=np.float32), 16_000)  # 0.025 s
    nan = np.full(16_000, np.nan, dtype=np.float32)
    soundfile.write(folder / "nan.wav", nan, 16_000, subtype="FLOAT")  # PCM cannot hold NaN
    (folder / "dangling.wav").symlink_to(folder / "gone.wav")
    (folder / "good.wav").symlink_to(good)
    return {
        "unreadable.wav": "unreadable",
        "short.wav": "too short",
        "nan.wav": "NaN",
        "dangling.wav": "dangling symlink",
    }


def test_predict_skips_bad_files_and_writes_the_others(run, tmp_path):
    one_male = sorted((run["corpus"] / "male").glob("*.wav"))[0]
    reasons = bad_files(tmp_path / "in", one_male)
    out, paths = tmp_path / "p.csv", f"[{tmp_path / 'in'}, {run['long']}]"
    result = ser("predict", "--ckpt_path", str(run["ckpt"]), "--data.paths", paths,
                 "--output", str(out), cwd=tmp_path)  # fmt: skip
    with open(out, newline="") as f:
        rows = {Path(row["path"]).name for row in csv.DictReader(f)}
    assert rows == {"good.wav", "long.wav"}
    for name, reason in reasons.items():
        (line,) = [x for x in result.stderr.splitlines() if f"skipped {tmp_path}/in/{name}" in x]
        assert reason in line, line
    assert "scored 2 files, skipped 4 (listed above)" in result.stderr
    assert str(out) in result.stderr


def test_predict_on_bad_file_fail_stops_at_the_bad_file(run, tmp_path):
    bad_files(tmp_path / "in", sorted((run["corpus"] / "male").glob("*.wav"))[0])
    result = ser("predict", "--ckpt_path", str(run["ckpt"]), "--data.paths", f"[{tmp_path / 'in'}]",
                 "--on_bad_file", "fail", "--output", str(tmp_path / "p.csv"),
                 cwd=tmp_path, check=False)  # fmt: skip
    assert result.returncode == 1
    *_, error, hint = result.stderr.splitlines()
    assert "Traceback" not in result.stderr  # one line says what is wrong
    assert error.startswith("error: ") and "dangling.wav: dangling symlink" in error
    assert hint == "(run with --debug or SER_DEBUG=1 for the traceback)"
    assert not (tmp_path / "p.csv").exists()
    debug = ser("--debug", "predict", "--ckpt_path", str(run["ckpt"]), "--data.paths",
                f"[{tmp_path / 'in'}]", "--on_bad_file", "fail", "--output",
                str(tmp_path / "p.csv"), cwd=tmp_path, check=False)  # fmt: skip
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_predict_and_test_refuse_a_damaged_checkpoint(run, damaged_checkpoint, tmp_path):
    one_male = sorted((run["corpus"] / "male").glob("*.wav"))[0]
    result = ser("predict", "--ckpt_path", str(damaged_checkpoint), "--data.paths",
                 f"[{one_male}]", "--output", str(tmp_path / "p.csv"),
                 cwd=tmp_path, check=False)  # fmt: skip
    assert result.returncode == 1
    assert f"--ckpt_path {damaged_checkpoint}: the weight" in result.stderr
    assert not (tmp_path / "p.csv").exists()
    result = ser(
        "test", "--ckpt_path", str(damaged_checkpoint), "-c", str(REPO / "configs/data/shemo.yaml"),
        "--data.root", str(run["corpus"]), "--data.loader.cache_dir", str(run["work"] / "cache"),
        "--trainer.logger", "false", "--data.loader.num_workers", "0", cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr  # the one line, not 20 frames before it
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert re.search(rf"--ckpt_path {damaged_checkpoint}: the weights? backbone\.\S+ hold", line)
    assert not list(tmp_path.rglob("*.csv")) and not list(tmp_path.rglob("test_metrics.json"))
    result = ser("export", "--ckpt_path", str(damaged_checkpoint), "--output",
                 str(tmp_path / "m.onnx"), cwd=tmp_path, check=False)  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "ONNX" not in result.stderr  # the weights are to blame, not the graph
    assert re.search(r"the weights? backbone\.\S+ hold(s)? NaN/inf", result.stderr)
    assert not (tmp_path / "m.onnx").exists()


def test_predict_scores_a_recording_from_its_first_speech_to_its_last(run, tmp_path):
    """A corpus clip with 2 s of silence before and after is scored as the clip
    (``--trim_silence``, the default); ``--trim_silence false`` scores the silence too."""
    clip = audio.load(sorted((run["corpus"] / "female").glob("*.wav"))[0])
    silence = np.zeros(32_000, dtype=np.float32)
    audio.write(tmp_path / "clip.wav", clip, 16_000)
    audio.write(tmp_path / "recording.wav", np.concatenate([silence, clip, silence]), 16_000)
    paths = f"[{tmp_path / 'clip.wav'}, {tmp_path / 'recording.wav'}]"
    probabilities = {}
    for trim in ("true", "false"):
        out = tmp_path / f"trim_{trim}.csv"
        ser("predict", "--ckpt_path", str(run["ckpt"]), "--data.paths", paths, "--vad", "energy",
            "--trim_silence", trim, "--output", str(out), cwd=tmp_path)  # fmt: skip
        with open(out, newline="") as f:
            rows = [[float(v) for k, v in row.items() if k.startswith("prob_")]
                    for row in csv.DictReader(f)]  # fmt: skip
        probabilities[trim] = np.array(rows)  # (2 files, C): clip, recording
    trimmed, whole = (np.abs(p[0] - p[1]).max() for p in probabilities.values())
    assert whole > 1e-4 and trimmed < whole / 10  # the demo model's probabilities are near 1/C


def test_predict_timeline_writes_file_and_segment_rows(run, tmp_path):
    clip = audio.load(sorted((run["corpus"] / "female").glob("*.wav"))[0])
    silence = np.zeros(16_000, dtype=np.float32)
    audio.write(tmp_path / "talk.wav", np.concatenate([silence, clip, silence, clip]), 16_000)
    out = tmp_path / "timeline.csv"
    ser("predict", "--ckpt_path", str(run["ckpt"]), "--data.paths", f"[{tmp_path / 'talk.wav'}]",
        "--timeline", "true", "--vad", "energy", "--output", str(out), cwd=tmp_path)  # fmt: skip
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:5] == ["path", "kind", "start", "end", "pred"]
    assert [row["kind"] for row in rows][:1] == ["file"] and len(rows) >= 3
    segments = [(float(r["start"]), float(r["end"])) for r in rows if r["kind"] == "segment"]
    # The two clips, each after 1 s of silence: segments in order, none in the silences.
    seconds, found = len(clip) / 16_000, 0
    for start, end in [(1.0, 1.0 + seconds), (2.0 + seconds, 2.0 + 2 * seconds)]:
        inside = [s for s in segments if start - 0.3 <= s[0] and s[1] <= end + 0.3]
        assert inside[0][0] == pytest.approx(start, abs=0.3)
        assert inside[-1][1] == pytest.approx(end, abs=0.3)
        found += len(inside)
    assert found == len(segments)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(segments))


def test_predict_passes_both_windows_to_the_recognizer(demo_run, tmp_path, monkeypatch):
    """``--data.window_seconds`` and ``--data.timeline_window_seconds`` reach
    ``EmotionRecognizer`` as given."""
    from ser.commands import predict

    loaded = {}

    def load(path, **options):
        loaded.update(options)
        raise ValueError("stop after loading")

    monkeypatch.setattr(predict.EmotionRecognizer, "load", load)
    with pytest.raises(ValueError, match="stop after loading"):
        predict.main(["--ckpt_path", str(demo_run["ckpt"]), "--data.paths",
                      f"[{demo_run['long']}]", "--output", str(tmp_path / "p.csv"),
                      "--data.window_seconds", "4",
                      "--data.timeline_window_seconds", "1.5"])  # fmt: skip
    assert (loaded["window_seconds"], loaded["timeline_window_seconds"]) == (4.0, 1.5)


def test_export_writes_a_verified_onnx_that_predict_runs(run, tmp_path):
    onnx_file = tmp_path / "model.onnx"
    result = ser("export", "--ckpt_path", str(run["ckpt"]), "--output", str(onnx_file),
                 cwd=tmp_path)  # fmt: skip
    assert "max abs difference" in result.stderr
    assert "Warning" not in result.stderr  # the exporter's cautions are what the check settles
    # The windows the checkpoint's training lengths give travel in the ONNX metadata.
    from_checkpoint = EmotionRecognizer.from_checkpoint(run["ckpt"])
    from_onnx = EmotionRecognizer.from_onnx(onnx_file)
    assert from_onnx.window == from_checkpoint.window < 5 * 16_000
    assert from_onnx.timeline_window == from_checkpoint.timeline_window
    assert from_onnx.trim_silence and from_checkpoint.trim_silence  # trained on speech spans
    one_male = sorted((run["corpus"] / "male").glob("*.wav"))[0]
    for model, out in ((run["ckpt"], "torch.csv"), (onnx_file, "onnx.csv")):
        ser("predict", "--ckpt_path", str(model), "--data.paths", f"[{one_male}, {run['long']}]",
            "--output", str(tmp_path / out), cwd=tmp_path)  # fmt: skip
    with open(tmp_path / "torch.csv") as a, open(tmp_path / "onnx.csv") as b:
        for x, y in zip(csv.DictReader(a), csv.DictReader(b), strict=True):
            assert x["pred"] == y["pred"]
            for c in SHEMO_CLASSES:
                assert float(x[f"prob_{c}"]) == pytest.approx(float(y[f"prob_{c}"]), abs=1e-4)


def test_a_smoke_test_run_goes_through_every_loop_and_leaves_no_run_directory(
    run, ser_cli, tmp_path
):
    """``--trainer.fast_dev_run true``: one batch of each loop, no logs or checkpoints (Lightning),
    so no run directory is claimed, and the test after fit scores the weights in memory."""
    result = ser_cli(
        "fit", "-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml"),
        "--data.root", str(run["corpus"]), "--data.loader.cache_dir", str(run["work"] / "cache"),
        "--data.loader.num_workers", "0", "--trainer.fast_dev_run", "true",
        "--test_after_fit", "true", cwd=tmp_path,
    )  # fmt: skip
    assert "test/UA" in result.stdout and "Traceback" not in result.stderr
    assert "no checkpoint saved: testing the final weights in memory" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no lightning_logs/, no config.yaml


def test_a_fit_without_a_logger_keeps_its_checkpoints_in_a_run_directory_of_its_own(
    run, ser_cli, tmp_path
):
    """``--trainer.logger false``: the config's learning-rate monitor (which needs a logger) is
    left out, and the checkpoints go to a claimed ``lightning_logs/version_N``, not the working
    directory every such run would share. ``--trainer.enable_checkpointing false`` leaves the
    config's checkpoints out: the test after fit then needs ``--test_checkpoint last``, and scores
    the final weights in memory."""
    data = ["-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml"),
            "--data.root", str(run["corpus"]),
            "--data.loader.cache_dir", str(run["work"] / "cache"),
            *TINY_RUN, "--trainer.logger", "false", "--test_after_fit", "true"]  # fmt: skip
    fitted = ser_cli("fit", *data, cwd=tmp_path)
    assert "the config's LearningRateMonitor (1) left out" in fitted.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["lightning_logs"]
    run_dir = tmp_path / "lightning_logs" / "version_0"
    assert {p.name for p in run_dir.iterdir()} == {"config.yaml", "checkpoints"}
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    no_checkpoints = [*data, "--trainer.enable_checkpointing", "false"]
    refused = ser_cli("fit", *no_checkpoints, cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert (
        "keeps no best checkpoint for --test_after_fit true to test: add --test_checkpoint last"
        in refused.stderr
    )
    barebones = ser_cli("fit", *data, "--trainer.barebones", "true", cwd=tmp_path, check=False)
    assert barebones.returncode == 1 and "Traceback" not in barebones.stderr
    assert "error: --trainer.barebones true: Lightning's raw-speed mode" in barebones.stderr
    tested = ser_cli("fit", *no_checkpoints, "--test_checkpoint", "last", cwd=tmp_path)
    assert "no checkpoint saved: testing the final weights in memory" in tested.stderr
    assert "test/UA" in tested.stdout
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]
