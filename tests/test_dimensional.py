"""Dimensional emotion: CCC and its loss, numeric ratings in the corpora, the regression head
learning, and the dimensions given by test, predict, the Python API and ONNX."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from cli_process import REPO, TINY_RUN
from corpus_fixtures import link_copies, tiny_wav, write_msppodcast
from models_tiny import SEGMENT_SECONDS, TINY, padded_batch

from ser.commands.cli import build_cli
from ser.data.corpora import iemocap, manifest, msppodcast
from ser.data.dataset import Batch
from ser.data.synthetic.ratings import ratings
from ser.data.synthetic.voice import PROSODY
from ser.evaluation.dimensional import DimensionalMetrics, concordance
from ser.inference.recognizer import EmotionRecognizer
from ser.models import HFBackbone, LinearHead, MLPHead
from ser.models.network import EmotionModel
from ser.training.augment import Augmentation
from ser.training.losses import regression_loss
from ser.training.module import SERModule


def numpy_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's CCC with population moments, written out."""
    covariance = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * covariance / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def test_concordance_matches_numpy_and_pays_for_shift_and_scale() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(3.0, 1.0, 200)
    preds = np.stack(
        [truth, truth + 1.0, 0.5 * truth, 2 * truth.mean() - truth, rng.normal(3.0, 1.0, 200)], 1
    )
    targets = np.repeat(truth[:, None], preds.shape[1], axis=1)
    got = concordance(torch.tensor(preds), torch.tensor(targets)).numpy()
    expected = [numpy_ccc(preds[:, k], truth) for k in range(preds.shape[1])]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[0] == pytest.approx(1.0)  # identical
    assert got[1] < 0.7 and got[2] < 0.9  # a shift, a scale: correlation 1, concordance not
    assert got[3] == pytest.approx(-1.0)  # reversed about the mean
    assert abs(got[4]) < 0.2  # unrelated


def test_ccc_loss_is_one_minus_the_mean_ccc_and_mse_is_mse() -> None:
    rng = np.random.default_rng(1)
    preds, targets = rng.normal(size=(64, 3)), rng.normal(size=(64, 3))
    mean_ccc = np.mean([numpy_ccc(preds[:, k], targets[:, k]) for k in range(3)])
    tp, tt = torch.tensor(preds), torch.tensor(targets)
    assert float(regression_loss(tp, tt, "ccc")) == pytest.approx(1 - mean_ccc, rel=1e-5)
    assert float(regression_loss(tp, tt, "mse")) == pytest.approx(np.mean((preds - targets) ** 2))


@pytest.mark.parametrize("count", [1, 2])
def test_epoch_metrics_match_numpy_over_batches(count: int) -> None:
    rng = np.random.default_rng(2)
    names = ["arousal", "valence"][:count]
    targets = rng.normal(3.0, 1.0, (90, count))
    preds = 0.8 * targets + rng.normal(0.2, 0.5, (90, count))
    metrics = DimensionalMetrics(names, "val")
    for chunk in np.array_split(np.arange(90), 3):
        metrics.update(torch.tensor(preds[chunk]), torch.tensor(targets[chunk]))
    values = metrics.compute()
    cccs = [numpy_ccc(preds[:, k], targets[:, k]) for k in range(count)]
    for k, name in enumerate(names):
        # torchmetrics' CCC uses n-1 moments: a difference of order 1/n
        assert values[f"val/CCC/{name}"] == pytest.approx(cccs[k], abs=0.01)
        r = np.corrcoef(preds[:, k], targets[:, k])[0, 1]
        assert values[f"val/pearson/{name}"] == pytest.approx(r, abs=1e-4)
        mae = np.abs(preds[:, k] - targets[:, k]).mean()
        assert values[f"val/MAE/{name}"] == pytest.approx(mae, rel=1e-4)
    assert values["val/CCC"] == pytest.approx(np.mean(cccs), abs=0.01)


def test_a_linear_head_learns_concordant_values_with_the_ccc_loss() -> None:
    # Two ratings that are linear in pooled vectors, on a 1-5 scale: the loss must drive the head
    # to them (a head or loss that is wrong, e.g. a sign error or a missing mean term, does not).
    generator = torch.Generator().manual_seed(0)
    pooled = torch.randn(256, 16, generator=generator)  # (N, D)
    targets = 3.0 + pooled[:, :2] @ torch.tensor([[0.8, 0.0], [0.0, -0.5]])  # (N, 2)
    head = LinearHead(16, 2)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    for step in range(200):
        batch = torch.arange(step * 32, step * 32 + 32) % 256
        loss = regression_loss(head(pooled[batch]), targets[batch], "ccc")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        ccc = concordance(head(pooled), targets)  # (2,)
    assert (ccc > 0.95).all(), ccc


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # no Trainer here
def test_multitask_adds_the_weighted_dimensional_loss_and_outputs_both() -> None:
    model_type, config = TINY["wav2vec2-layer"]
    torch.manual_seed(0)
    backbone = HFBackbone(model_type=model_type, config=config, segment_seconds=SEGMENT_SECONDS)
    module = SERModule(
        backbone, ["anger", "sadness"], dimensions=["arousal", "valence"], task="multitask",
        dimension_weight=0.5,
    )  # fmt: skip
    waves, lengths = padded_batch([4000, 3000, 2500, 3500])
    labels, targets = torch.tensor([0, 1, 0, 1]), torch.tensor([[4.0, 2], [1.5, 2], [4, 3], [2, 1]])
    batch = Batch(waves, lengths, labels, ["a", "b", "c", "d"], targets)
    module.eval()
    with torch.no_grad():
        loss, logits, values, _ = module.model_step(batch, "val")
        pooled = module.encode(waves, lengths)
        expected = torch.nn.functional.cross_entropy(module.head(pooled), labels)
        expected += 0.5 * regression_loss(module.dimension_head(pooled), targets, "ccc")
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert logits.shape == (4, 2) and values.shape == (4, 2)
    network = EmotionModel(backbone, module.pooling, module.head, module.dimension_head,
                           module.dimensions).eval()  # fmt: skip
    with torch.no_grad():
        scores = network(waves, lengths)  # (B, C + K)
    torch.testing.assert_close(scores[:, :2], logits.softmax(dim=-1))
    torch.testing.assert_close(scores[:, 2:], values)


def head_module(task: str, classes: list[str], dimensions: list[str], seed: int) -> SERModule:
    """A tiny model of ``task`` whose weights are drawn from ``seed``."""
    model_type, config = TINY["wav2vec2-layer"]
    torch.manual_seed(seed)
    backbone = HFBackbone(model_type=model_type, config=config, segment_seconds=SEGMENT_SECONDS)
    return SERModule(backbone, classes, dimensions=dimensions, task=task)


def started_from(source: SERModule, path: Path, model: SERModule, caplog) -> str:
    """Saves ``source`` as a fit's checkpoint at ``path``, starts ``model`` from it
    (``init_from``, applied at the start of a fit) and returns the line init_from logged."""
    torch.save({"state_dict": source.state_dict(),
                "hyper_parameters": {"class_names": source.class_names,
                                     "dimensions": source.dimensions}}, path)  # fmt: skip
    model.hparams.init_from = str(path)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=0, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_model_summary=False)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ser.training"):
        trainer.fit(model, train_dataloaders=[], val_dataloaders=[])
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("init_from")]
    return line


def test_init_from_copies_both_heads_of_a_multitask_checkpoint(tmp_path, caplog) -> None:
    """The dimension head was left at its initialisation, unsaid: rows are now mapped by
    dimension name as class rows are by class name."""
    source = head_module("multitask", ["anger", "sadness"], ["arousal", "valence"], seed=1)
    fresh = head_module("multitask", ["anger", "fear"], ["valence", "arousal", "dominance"], 2)
    model = head_module("multitask", ["anger", "fear"], ["valence", "arousal", "dominance"], 2)
    line = started_from(source, tmp_path / "multitask.ckpt", model, caplog)
    for key, value in model.state_dict().items():
        if key.startswith(("backbone.", "pooling.")):
            assert torch.equal(value, source.state_dict()[key]), key
    assert torch.equal(model.head.linear.weight[0], source.head.linear.weight[0])  # anger
    assert torch.equal(model.head.linear.weight[1], fresh.head.linear.weight[1])  # fear
    mine, theirs = model.dimension_head.linear, source.dimension_head.linear
    for row, index in ((0, 1), (1, 0)):  # valence, arousal: rows of the checkpoint's order
        assert torch.equal(mine.weight[row], theirs.weight[index])
        assert torch.equal(mine.bias[row], theirs.bias[index])
    assert torch.equal(mine.weight[2], fresh.dimension_head.linear.weight[2])  # dominance
    assert "class head: ['anger'] copied, ['fear'] keep their initialisation" in line
    assert "dimension head: ['valence', 'arousal'] copied, ['dominance'] keep" in line


def test_init_from_copies_what_a_model_of_another_task_shares(tmp_path, caplog) -> None:
    """A dimensional checkpoint into a multitask model was refused with the advice to build the
    checkpoint's head, and a dimensional model refused every checkpoint."""
    dimensional = head_module("dimensional", ["anger"], ["arousal"], seed=1)
    fresh = head_module("multitask", ["anger", "fear"], ["arousal"], seed=2)
    model = head_module("multitask", ["anger", "fear"], ["arousal"], seed=2)
    line = started_from(dimensional, tmp_path / "dimensional.ckpt", model, caplog)
    assert torch.equal(model.dimension_head.linear.weight, dimensional.dimension_head.linear.weight)
    assert torch.equal(model.head.linear.weight, fresh.head.linear.weight)
    assert "class head: the checkpoint has none (a dimensional model)" in line
    assert "['anger', 'fear'] keep their initialisation" in line

    caplog.clear()
    multitask = head_module("multitask", ["anger"], ["arousal"], seed=3)
    model = head_module("dimensional", ["anger"], ["arousal"], seed=2)
    line = started_from(multitask, tmp_path / "multitask.ckpt", model, caplog)
    assert torch.equal(model.dimension_head.linear.weight, multitask.dimension_head.linear.weight)
    assert "the checkpoint's class head is not copied (this model has none)" in line


def test_init_from_refuses_a_head_of_another_build(tmp_path) -> None:
    source = head_module("dimensional", ["anger"], ["arousal"], seed=1)
    path = tmp_path / "dimensional.ckpt"
    torch.save({"state_dict": source.state_dict(),
                "hyper_parameters": {"class_names": ["anger"], "dimensions": ["arousal"]}},
               path)  # fmt: skip
    model_type, config = TINY["wav2vec2-layer"]
    backbone = HFBackbone(model_type=model_type, config=config, segment_seconds=SEGMENT_SECONDS)
    model = SERModule(backbone, ["anger"], dimensions=["arousal"], task="dimensional",
                      dimension_head=MLPHead, init_from=str(path))  # fmt: skip
    with pytest.raises(ValueError, match=r"does not fit this model.*dimension_head\.net"):
        L.Trainer(max_epochs=1, limit_train_batches=0, logger=False).fit(model, [], [])


def test_mixup_mixes_the_ratings_as_it_mixes_the_audio(monkeypatch) -> None:
    model_type, config = TINY["wav2vec2-group"]
    backbone = HFBackbone(model_type=model_type, config=config, freeze="none")
    augmentation = Augmentation(mixup_alpha=1.0)
    module = SERModule(backbone, ["a", "b"], augmentation=augmentation, dimensions=["arousal"],
                       task="dimensional", dimension_loss="mse")  # fmt: skip
    values = torch.tensor([[1.0], [2.0], [4.0]])
    monkeypatch.setattr(module, "encode", lambda waves, lengths: torch.zeros(3, 1))
    monkeypatch.setattr(module.dimension_head, "forward", lambda pooled: values)
    partner, share = torch.tensor([1, 2, 0]), 0.7
    monkeypatch.setattr(
        Augmentation, "mixup", lambda self, waves, lengths: (waves, lengths, partner, share)
    )
    targets = torch.tensor([[1.0], [3.0], [5.0]])
    batch = Batch(torch.randn(3, 800), torch.full((3,), 800), torch.tensor([0, 1, 0]),
                  ["x", "y", "z"], targets)  # fmt: skip
    loss = module.model_step(batch, "train").loss
    mixed = share * targets + (1 - share) * targets[partner]
    assert float(loss) == pytest.approx(float(((values - mixed) ** 2).mean()))


def test_manifest_columns_become_dimensions_with_clear_errors(tmp_path: Path) -> None:
    link_copies(tiny_wav(tmp_path / "src.wav"), [tmp_path / "a.wav", tmp_path / "b.wav"])
    good = tmp_path / "m.csv"
    good.write_text("path,label,arousal,valence\na.wav,anger,4.5,2\nb.wav,sad,1.5,2.25\n")
    rows = manifest.scan(good, ["arousal", "valence"])
    assert [r.dimensions for r in rows] == [
        {"arousal": 4.5, "valence": 2.0},
        {"arousal": 1.5, "valence": 2.25},
    ]
    assert manifest.scan(good)[0].dimensions == {}  # undeclared columns are ignored
    with pytest.raises(ValueError, match=r"m\.csv:2: no column 'dominance'"):
        manifest.scan(good, ["dominance"])
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label,arousal\na.wav,anger,high\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2: arousal is 'high'; expected a number"):
        manifest.scan(bad, ["arousal"])


def test_iemocap_label_lines_give_valence_arousal_dominance(tmp_path: Path) -> None:
    path = tmp_path / "Ses01F_impro01.txt"
    path.write_text(
        "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 3.0000, 3.5000]\n"
        "A-E3:\tval 3; act 2; dom  2;\t()\n\n"
        "[9.0 - 10.5]\tSes01F_impro01_M000\tang\t[1.5, 4.5, 4.0]\n"
    )
    labels = iemocap.read_labels(path)
    assert labels["Ses01F_impro01_F000"].ratings == {
        "valence": 2.5,
        "arousal": 3.0,
        "dominance": 3.5,
    }
    assert labels["Ses01F_impro01_M000"].ratings["arousal"] == 4.5


def test_msppodcast_gives_classes_ratings_and_the_official_partition(tmp_path: Path) -> None:
    rows = msppodcast.scan(write_msppodcast(tmp_path / "MSP"))
    assert len(rows) == 6  # Test2 is not the chosen test set
    first = rows[0]
    assert (first.utt_id, first.label, first.speaker, first.split) == (
        "MSP-PODCAST_0001_0001", "anger", "msp127", "train",
    )  # fmt: skip
    assert first.dimensions == {"arousal": 5.5, "valence": 2.0, "dominance": 5.0}
    assert {r.split for r in rows} == {"train", "val", "test"}
    assert [r.speaker for r in rows if r.utt_id == "MSP-PODCAST_0002_0001"] == ["unknown"]
    assert "no_agreement" in {r.label for r in rows}  # kept for the dimensional task
    other = msppodcast.scan(tmp_path / "MSP", test_set="Test2")
    assert [r.utt_id for r in other if r.split == "test"] == ["MSP-PODCAST_0006_0001"]


def test_msppodcast_reads_the_label_table_of_older_releases(tmp_path: Path) -> None:
    """Releases 1.6-1.9 spell the table ``labels_concensus.csv`` in ``label/`` or ``labels/``,
    and name the development set ``Validation``."""
    root = write_msppodcast(tmp_path / "MSP")
    table = root / "Labels" / "labels_consensus.csv"
    (root / "labels").mkdir()
    old = root / "labels" / "labels_concensus.csv"
    old.write_text(table.read_text().replace(",Development", ",Validation"))
    table.unlink()
    (root / "Labels").rmdir()
    rows = msppodcast.scan(root)
    assert [r.utt_id for r in rows if r.split == "val"] == ["MSP-PODCAST_0004_0001"]
    assert len(rows) == 6


def test_msppodcast_errors_name_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"Labels/labels_consensus\.csv not found"):
        msppodcast.scan(tmp_path)
    root = write_msppodcast(tmp_path / "MSP")
    with pytest.raises(ValueError, match=r"test_set 'Test3': no row .* Test1, Test2.*hidden"):
        msppodcast.scan(root, test_set="Test3")  # its labels are not public
    (root / "Audios").rename(root / "Audio")
    with pytest.raises(FileNotFoundError, match=r"MSP/Audios is no folder"):
        msppodcast.scan(root)
    (root / "Audio").rename(root / "Audios")
    table = root / "Labels" / "labels_consensus.csv"
    table.write_text(table.read_text().replace(",A,5.5,", ",Q,5.5,"))
    with pytest.raises(ValueError, match=r"labels_consensus\.csv:2: EmoClass 'Q'"):
        msppodcast.scan(root)


def test_synthetic_ratings_follow_the_prosody_of_each_emotion() -> None:
    by_emotion = {name: ratings(PROSODY[name]) for name in ("anger", "sadness", "happiness")}
    assert by_emotion["anger"]["arousal"] > 3.5 > 1.5 > by_emotion["sadness"]["arousal"]
    assert by_emotion["happiness"]["valence"] > 3.5 > by_emotion["sadness"]["valence"]


def test_the_synthetic_manifest_lists_every_file_with_its_ratings(shemo_corpus: Path) -> None:
    rows = manifest.scan(shemo_corpus / "manifest.csv", ["arousal", "valence"])
    assert len(rows) == 48 and all(Path(r.path).is_file() for r in rows)
    arousal = {r.label: [] for r in rows}
    for row in rows:
        arousal[row.label].append(row.dimensions["arousal"])
        assert 1.0 <= row.dimensions["valence"] <= 5.0
    assert np.mean(arousal["anger"]) > np.mean(arousal["neutral"]) > np.mean(arousal["sadness"])
    assert len({r.dimensions["arousal"] for r in rows if r.label == "anger"}) > 1  # continuous


def test_a_dimensional_task_without_dimensions_says_which_setting(
    tmp_path, ser_cli, shemo_corpus
) -> None:
    result = ser_cli(
        "fit", "-c", str(REPO / "configs/demo.yaml"),
        "-c", str(REPO / "configs/trainer/select_on_ccc.yaml"),
        "-c", str(REPO / "configs/data/shemo.yaml"),
        "--data.root", str(shemo_corpus), "--model.task", "dimensional",
        "--trainer.logger", "false", cwd=tmp_path, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "set --data.dimensions" in result.stderr
    assert "Traceback" not in result.stderr


def test_selecting_on_a_metric_the_task_never_logs_is_refused_before_the_run(
    tmp_path, shemo_corpus
) -> None:
    """The demo's checkpoint callback selects on val/UA, which a dimensional model never logs:
    Lightning said so only after each cv fold's first epoch; now one line, before any run."""
    args = [
        "-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/demo_dimensional.yaml"),
        "--data.path", str(shemo_corpus / "manifest.csv"),
        "--trainer.default_root_dir", str(tmp_path),
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"monitors val/UA, .* configs/trainer/select_on_ccc"):
        build_cli(args, run=False)
    assert list(tmp_path.iterdir()) == []  # no run directory claimed
    with pytest.raises(ValueError, match=r"monitors val/CCC, which a --model.task categorical"):
        build_cli(["-c", str(REPO / "configs/demo.yaml"),
                   "-c", str(REPO / "configs/trainer/select_on_ccc.yaml"),
                   "-c", str(REPO / "configs/data/shemo.yaml"), "--data.root", str(shemo_corpus),
                   "--trainer.default_root_dir", str(tmp_path)], run=False)  # fmt: skip


@pytest.fixture(scope="module")
def dimensional_run(tmp_path_factory, shemo_corpus, ser_cli) -> dict:
    """A tiny dimensional fit (+ test) on the shared synthetic corpus' manifest."""
    work = tmp_path_factory.mktemp("dimensional")
    ser_cli(
        "fit", "-c", str(REPO / "configs/demo.yaml"),
        "-c", str(REPO / "configs/trainer/select_on_ccc.yaml"),
        "-c", str(REPO / "configs/demo_dimensional.yaml"),
        "--data.path", str(shemo_corpus / "manifest.csv"),
        "--data.loader.cache_dir", str(work / "cache"),
        "--trainer.logger.init_args.save_dir", str(work / "logs"),
        *TINY_RUN, "--test_after_fit", "true", cwd=work,
    )  # fmt: skip
    (run_dir,) = (work / "logs" / "demo_dimensional").iterdir()
    return {"work": work, "run_dir": run_dir, "ckpt": run_dir / "checkpoints" / "best.ckpt"}


def test_a_dimensional_test_writes_ccc_per_dimension(dimensional_run) -> None:
    run_dir = dimensional_run["run_dir"]
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    for name in ("arousal", "valence"):
        assert {f"test/{m}/{name}" for m in ("CCC", "pearson", "MAE")} <= set(metrics)
    assert "test/CCC" in metrics and "test/UA" not in metrics
    with (run_dir / "predictions.csv").open() as f:
        header = next(csv.reader(f))
    assert header == ["utt_id", "label", "arousal", "pred_arousal", "valence", "pred_valence"]
    assert not (run_dir / "confusion_matrix.png").exists()


def test_a_checkpoint_is_tested_on_its_dimensions_in_their_order(dimensional_run, ser_cli):
    """Swapped, the valence column held the arousal output and the run exited 0 (CCC 0.29
    where 0.71); one dimension was a size-mismatch traceback."""
    run_dir, work = dimensional_run["run_dir"], dimensional_run["work"]
    for dimensions in ("[valence, arousal]", "[arousal]"):
        result = ser_cli("test", "-c", str(run_dir / "config.yaml"),
                         "--ckpt_path", str(dimensional_run["ckpt"]),
                         "--data.dimensions", dimensions, cwd=work, check=False)  # fmt: skip
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "trained on dimensions ['arousal', 'valence'] (in this order)" in result.stderr


def test_select_on_ccc_keeps_the_class_probabilities_calibrated():
    """It replaces the trainer's callback list: a multitask model lost its temperature."""
    config = yaml.safe_load((REPO / "configs/trainer/select_on_ccc.yaml").read_text())
    paths = [callback["class_path"] for callback in config["trainer"]["callbacks"]]
    assert "ser.training.callbacks.TemperatureScaling" in paths


def test_a_rating_that_is_not_finite_stops_the_msppodcast_scan(tmp_path: Path) -> None:
    root = write_msppodcast(tmp_path / "MSP")
    labels = root / "Labels" / "labels_consensus.csv"
    lines = labels.read_text().splitlines()
    fields = lines[1].split(",")
    fields[4] = "nan"  # EmoDom
    labels.write_text("\n".join([lines[0], ",".join(fields), *lines[2:]]) + "\n")
    with pytest.raises(ValueError, match=r"labels_consensus\.csv:2: EmoDom is 'nan'; expected"):
        msppodcast.scan(root)


def test_predict_api_and_onnx_give_the_dimensions(dimensional_run, shemo_corpus, ser_cli) -> None:
    work, ckpt = dimensional_run["work"], dimensional_run["ckpt"]
    files = sorted((shemo_corpus / "female").glob("*.wav"))[:3]
    recognizer = EmotionRecognizer.from_checkpoint(ckpt)
    predictions = recognizer.predict(files)
    assert recognizer.classes == [] and recognizer.dimensions == ["arousal", "valence"]
    assert all(p.label is None and set(p.dimensions) == {"arousal", "valence"} for p in predictions)
    energy = EmotionRecognizer.from_checkpoint(ckpt, vad="energy")
    (timeline,) = energy.predict(files[:1], timeline=True)
    assert timeline.segments
    assert all(set(s.dimensions) == {"arousal", "valence"} for s in timeline.segments)
    output = work / "predictions.csv"
    ser_cli("predict", "--ckpt_path", str(ckpt), "--data.paths", str(files[0]),
            "--output", str(output), cwd=work)  # fmt: skip
    with output.open() as f:
        (row,) = list(csv.DictReader(f))
    assert set(row) == {"path", "arousal", "valence"}
    assert float(row["arousal"]) == pytest.approx(predictions[0].dimensions["arousal"], abs=1e-5)
    onnx_path = work / "model.onnx"
    exported = ser_cli("export", "--ckpt_path", str(ckpt), "--output", str(onnx_path), cwd=work)
    assert f"wrote {onnx_path} (dimensions ['arousal', 'valence'])" in exported.stderr
    from_onnx = EmotionRecognizer.from_onnx(onnx_path).predict(files)
    for a, b in zip(predictions, from_onnx, strict=True):
        assert b.dimensions == pytest.approx(a.dimensions, abs=1e-4)


def test_msppodcast_label_table_mistakes_name_their_line(tmp_path: Path) -> None:
    """A short row, an empty or repeated FileName, a test_set that is another partition: one
    message naming the table (and line), not a traceback or a silent wrong split."""
    root = write_msppodcast(tmp_path / "MSP")
    table = root / "Labels" / "labels_consensus.csv"
    lines = table.read_text().splitlines()
    for bad, message in [
        ("MSP-PODCAST_0009_0001.wav,A", r"labels_consensus.csv:9: 2 fields, the header has 8"),
        (",A,3,3,3,12,Male,Train", r"labels_consensus.csv:9: empty FileName"),
        (lines[1], r"utt_id 'MSP-PODCAST_0001_0001' appears twice"),
    ]:
        table.write_text("\n".join([*lines, bad]) + "\n")
        with pytest.raises(ValueError, match=message):
            msppodcast.scan(root)
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"test_set 'Development' is the official val partition"):
        msppodcast.scan(root, test_set="Development")
