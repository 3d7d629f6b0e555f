"""Calibration: the temperature fit, ECE, and the stored temperature in predict, API and ONNX."""

from __future__ import annotations

import csv
import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from models_tiny import SEGMENT_SECONDS, TINY
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics.functional.classification import multiclass_calibration_error

from ser import audio
from ser.commands import predict
from ser.data.dataset import Batch
from ser.evaluation.calibration import (
    ReliabilityBins,
    every_item_right,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)
from ser.inference.export import export_onnx
from ser.inference.recognizer import EmotionRecognizer
from ser.models import HFBackbone, LinearHead, MeanPooling
from ser.models.network import EmotionModel, load_model
from ser.training.callbacks import TemperatureScaling
from ser.training.module import SERModule

CLASSES = ["anger", "neutral", "sadness"]


def overconfident_logits(true_temperature: float, n: int = 20_000, seed: int = 0):
    """Logits (n, 5) and labels drawn from softmax(logits / true_temperature): a model whose
    calibrating temperature is ``true_temperature``."""
    generator = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(n, 5, generator=generator)  # (n, 5)
    probs = (logits / true_temperature).softmax(dim=-1)  # (n, 5)
    labels = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (n,)
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.5, 2.5])  # under- and over-confident
def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_at(true_temperature):
    logits, labels = overconfident_logits(true_temperature)
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.05)


def test_fit_temperature_finds_the_nll_minimum_and_sums_through_reduce():
    logits, labels = overconfident_logits(2.0, n=2000)
    found = fit_temperature(logits, labels)

    def nll(t: float) -> float:
        return float(nn.functional.cross_entropy(logits / t, labels))

    assert nll(found) <= min(nll(found * 0.99), nll(found * 1.01))
    # Two ranks holding the same share: the sums double, the minimum stays.
    assert fit_temperature(logits, labels, reduce=lambda sums: 2 * sums) == found
    assert fit_temperature(logits[:0], labels[:0]) == 1.0  # nothing to fit on
    # A curriculum stage masks the classes it does not use with -inf: they take no part.
    masked = torch.cat([logits, torch.full((len(logits), 1), float("-inf"))], dim=1)  # (N, 6)
    assert fit_temperature(masked, labels) == found


def test_negative_log_likelihood_is_minus_log_the_labels_probability():
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7], [1.0, 0.0, 0.0]])
    nll = negative_log_likelihood(probs, torch.tensor([0, 2, 1]))
    assert nll[:2].tolist() == pytest.approx([math.log(2), -math.log(0.7)])
    assert math.isfinite(nll[2]) and nll[2] > 80  # a zero probability: large, not inf


def test_ece_equals_a_hand_computation():
    probs = torch.tensor(
        [
            [0.95, 0.03, 0.02],  # bin (14/15, 1]: right
            [0.95, 0.03, 0.02],  # same bin: wrong -> accuracy 0.5, confidence 0.95
            [0.20, 0.70, 0.10],  # bin (10/15, 11/15]: right -> |1 - 0.7|
            [0.50, 0.30, 0.20],  # bin (7/15, 8/15]: wrong -> |0 - 0.5|
        ]
    )
    labels = torch.tensor([0, 1, 1, 2])
    bins = ReliabilityBins()
    bins.update(probs, labels)
    found = bins.compute()
    assert found["count"].nonzero().flatten().tolist() == [7, 10, 14]
    hand = (2 * abs(0.5 - 0.95) + abs(1 - 0.7) + abs(0 - 0.5)) / 4
    assert expected_calibration_error(found) == pytest.approx(hand, abs=1e-6)


def test_ece_in_batches_equals_torchmetrics_on_the_whole_set():
    generator = torch.Generator().manual_seed(1)
    probs = (2 * torch.randn(500, 4, generator=generator)).softmax(dim=-1)  # (500, 4)
    labels = torch.randint(0, 4, (500,), generator=generator)
    bins = ReliabilityBins()
    for part in range(0, 500, 64):
        bins.update(probs[part : part + 64], labels[part : part + 64])
    expected = multiclass_calibration_error(probs, labels, num_classes=4, n_bins=15, norm="l1")
    assert expected_calibration_error(bins.compute()) == pytest.approx(float(expected), abs=1e-6)


class FixedLogits(L.LightningModule):
    """Validation logits fixed by the data, so the fitted temperature is known in advance."""

    def __init__(self) -> None:
        super().__init__()
        self.class_names = [str(c) for c in range(5)]
        self.scale = nn.Parameter(torch.ones(()))
        self.register_buffer("temperature", torch.ones(()))

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return (self.scale - 1.0).pow(2)  # zero gradient: the logits stay as drawn

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self.scale * batch.waves  # (B, 5): the "waves" carry the logits

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def fit_on_fixed_logits(logits: torch.Tensor, labels: torch.Tensor, root) -> FixedLogits:
    """One epoch of ``FixedLogits`` with ``TemperatureScaling``; checkpoints under ``root``."""
    batches = [
        Batch(
            logits[i : i + 1000],
            torch.full((len(logits[i : i + 1000]),), 5),
            labels[i : i + 1000],
            [],
        )
        for i in range(0, len(logits), 1000)
    ]
    loader = DataLoader(batches, batch_size=None)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        callbacks=[TemperatureScaling()],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    model = FixedLogits()
    trainer.fit(model, loader, loader)
    assert trainer.callback_metrics["val/temperature"] == pytest.approx(float(model.temperature))
    return model


def test_callback_fits_on_validation_and_the_checkpoint_keeps_the_temperature(tmp_path):
    model = fit_on_fixed_logits(*overconfident_logits(2.5, n=8000), tmp_path)
    assert float(model.temperature) == pytest.approx(2.5, rel=0.05)
    (saved,) = (tmp_path / "checkpoints").glob("*.ckpt")
    state = torch.load(saved, weights_only=True)["state_dict"]
    assert float(state["temperature"]) == float(model.temperature)


def test_a_validation_set_with_no_errors_keeps_the_models_confidence_and_warns(tmp_path):
    """All right: the NLL falls as T shrinks, so the fit would sharpen to the range's end (0.05,
    what it did before: every probability on new data about 1). T stays 1 instead."""
    logits = 3.0 * torch.eye(5).repeat(20, 1)  # (100, 5): every item right
    labels = torch.arange(5).repeat(20)
    nll = [F.cross_entropy(logits / t, labels).item() for t in (1.0, 0.5, 0.05)]
    assert nll == sorted(nll, reverse=True)  # smaller T, smaller NLL: no minimum inside
    with pytest.warns(UserWarning, match="every validation utterance is right.*T stays 1"):
        model = fit_on_fixed_logits(logits, labels, tmp_path)
    assert float(model.temperature) == 1.0
    # One error among them gives the NLL a minimum again, and T is fitted.
    labels[0] = 1
    assert fit_temperature(logits, labels) < 1.0


def test_every_item_right_needs_items_and_sums_over_processes():
    logits, labels = torch.eye(3), torch.arange(3)
    assert every_item_right(logits, labels)
    assert not every_item_right(logits, torch.tensor([0, 1, 0]))
    assert not every_item_right(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    # Another process holding one wrong item (its sums added by `reduce`) makes it false here.
    assert not every_item_right(logits, labels, lambda sums: sums + torch.tensor([1.0, 1.0]))


def tiny_network(temperature: float) -> EmotionModel:
    torch.manual_seed(0)
    model_type, config = TINY["wav2vec2-layer"]
    backbone = HFBackbone(model_type=model_type, config=config, segment_seconds=SEGMENT_SECONDS)
    pooling = MeanPooling(backbone.output_size)
    model = EmotionModel(backbone, pooling, LinearHead(pooling.output_size, len(CLASSES)))
    # A larger head spreads the logits, so a temperature visibly changes the probabilities.
    with torch.no_grad():
        model.head.linear.weight.mul_(20.0)
    model.temperature.fill_(temperature)
    return model.eval()


def save_checkpoint(path, temperature: float | None):
    """A checkpoint as ``ser fit`` writes it; ``None``: from before temperature scaling."""
    model_type, config = TINY["wav2vec2-layer"]
    state = tiny_network(temperature or 1.0).state_dict()
    if temperature is None:
        del state["temperature"]
    hparams = {
        "class_names": CLASSES,
        "backbone": {
            "class_path": "ser.models.HFBackbone",
            "init_args": {
                "model_type": model_type,
                "config": config,
                "segment_seconds": SEGMENT_SECONDS,
            },
        },
    }
    torch.save({"state_dict": state, "hyper_parameters": hparams}, path)
    return path


@pytest.fixture(scope="module")
def short_items(tmp_path_factory):
    """Three files shorter than one window: each is scored once, no window averaging."""
    folder = tmp_path_factory.mktemp("items")
    rng = np.random.default_rng(2)
    for i, n in enumerate((3000, 5000, 7000)):
        audio.write(folder / f"item{i}.wav", 0.1 * rng.standard_normal(n), 16_000)
    return sorted(folder.glob("*.wav"))


def test_a_checkpoint_without_a_temperature_loads_uncalibrated(tmp_path):
    model, _, _ = load_model(save_checkpoint(tmp_path / "old.ckpt", None))
    assert float(model.temperature) == 1.0
    checkpoint = torch.load(tmp_path / "old.ckpt", weights_only=True)
    module = SERModule(model.backbone, CLASSES)
    module.on_load_checkpoint(checkpoint)  # as Lightning calls it before load_state_dict
    module.load_state_dict(checkpoint["state_dict"])  # strict: every key present
    assert float(module.temperature) == 1.0


def test_predict_api_and_onnx_apply_the_stored_temperature(tmp_path, short_items):
    plain = EmotionRecognizer.from_checkpoint(save_checkpoint(tmp_path / "t1.ckpt", None))
    calibrated_ckpt = save_checkpoint(tmp_path / "t3.ckpt", 3.0)
    api = EmotionRecognizer.from_checkpoint(calibrated_ckpt)
    before = np.array([p.probs for p in plain.predict(short_items)])  # (3, C)
    after = np.array([p.probs for p in api.predict(short_items)])  # (3, C)
    # softmax(z / 3) = softmax(log softmax(z) / 3): the same logits, softened.
    expected = torch.from_numpy(np.log(before) / 3.0).softmax(dim=-1).numpy()
    assert np.allclose(after, expected, atol=1e-5)
    assert (after.max(axis=1) < before.max(axis=1)).all()
    assert [p.label for p in api.predict(short_items)] == [
        p.label for p in plain.predict(short_items)
    ]

    model, classes, windows = load_model(calibrated_ckpt)
    onnx_file = tmp_path / "t3.onnx"
    export_onnx(model, classes, windows.item, onnx_file)
    from_onnx = np.array(
        [p.probs for p in EmotionRecognizer.from_onnx(onnx_file).predict(short_items)]
    )
    assert np.abs(from_onnx - after).max() <= 1e-6

    predict.main(["--ckpt_path", str(calibrated_ckpt), "--data.paths", str(short_items[0].parent),
                  "--output", str(tmp_path / "out.csv")])  # fmt: skip
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    from_cli = np.array([[float(row[f"prob_{c}"]) for c in CLASSES] for row in rows])
    assert np.abs(from_cli - after).max() <= 1e-6  # the CSV's 6 decimals
