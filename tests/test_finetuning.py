"""Linear probe, then fine-tuning, from the CLI: frozen encoder first, then it trains; resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from ser.commands.cli import build_cli
from ser.data.synthetic import write_corpus
from ser.training.finetuning import ProbeThenFinetune

CONFIGS = Path(__file__).parents[1] / "configs"
CNN = "backbone.family.model.feature_extractor."


class Phases(Callback):
    """Per epoch: the optimizer's groups, what got a gradient, the weights at its start and end."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.epochs.append(
                {
                    "groups": [g["name"] for g in trainer.optimizers[0].param_groups],
                    "frozen": pl_module.backbone.encoder_frozen,
                    "encoder_mode": pl_module.backbone.family.training,
                    "head_mode": pl_module.head.training,
                    "start": _weights(pl_module),
                }
            )

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if "grads" not in self.epochs[-1]:
            grads = {n for n, p in pl_module.named_parameters() if p.grad is not None}
            self.epochs[-1]["grads"] = grads

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs[-1]["end"] = _weights(pl_module)


def _weights(module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _moved(epoch: dict, prefix: str) -> bool:
    return any(
        not torch.equal(value, epoch["end"][name])
        for name, value in epoch["start"].items()
        if name.startswith(prefix)
    )


def fit_cli(tmp_path: Path, epochs: int, *options: str):
    """The CLI of a probe_then_finetune.yaml fit on ``tmp_path``'s corpus, not run."""
    return build_cli(
        [
            "-c", str(CONFIGS / "demo.yaml"), "-c", str(CONFIGS / "data/shemo.yaml"),
            "-c", str(CONFIGS / "experiments/probe_then_finetune.yaml"),
            "--data.root", str(tmp_path / "ShEMO"),
            "--data.loader.cache_dir", str(tmp_path / "cache"),
            "--data.loader.batch_size", "4", "--data.loader.num_workers", "0",
            "--model.backbone.init_args.freeze", "feature_encoder",
            "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
            "--trainer.max_epochs", str(epochs), "--trainer.limit_train_batches", "2",
            "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0",
            "--trainer.enable_progress_bar", "false", *options,
        ],
        run=False,
    )  # fmt: skip


def fit(tmp_path: Path, epochs: int, callback: Callback, ckpt_path: Path | None = None):
    cli = fit_cli(tmp_path, epochs)
    cli.trainer.callbacks.append(callback)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
    return cli


def test_probe_then_finetune_freezes_the_encoder_first_then_trains_it(tmp_path):
    write_corpus("shemo", tmp_path / "ShEMO", num_speakers=4, utterances_per_speaker=8, seed=2)
    phases = Phases()
    cli = fit(tmp_path, 5, phases)
    probe, *_, finetune = phases.epochs

    # Epochs 0-3 (probe_epochs: 4): only the new weights (the layer mix, the head) are in the
    # optimizer, get gradients and learn, the head standardized at head_lr 1e-2.
    new = {"backbone.layer_weights", "head.linear.weight", "head.linear.bias"}
    for epoch in phases.epochs[:4]:
        assert epoch["frozen"] and epoch["groups"] == ["head", "head.no_decay"]
        # The frozen encoder in eval mode, through Lightning's validation and back.
        assert epoch["head_mode"] and not epoch["encoder_mode"]
        assert epoch["grads"] == new
        assert not _moved(epoch, "backbone.family.") and _moved(epoch, "head.")
    assert cli.model.head.standardize.count > 0  # the probe recipe's head, statistics gathered
    assert cli.model.backbone.normalize_states and cli.model.hparams.head_lr == 1e-2
    # Epoch 4: the encoder joins with layer-wise rates; its `freeze` still keeps the CNN frozen.
    assert not finetune["frozen"] and finetune["encoder_mode"]
    assert finetune["groups"][0] == "backbone.layer0" and "backbone.layer2" in finetune["groups"]
    encoder = [n for n in probe["start"] if n.startswith("backbone.family.")]
    trainable = {n for n in encoder if not n.startswith(CNN) and "masked_spec_embed" not in n}
    assert trainable <= finetune["grads"]
    assert not any(name.startswith(CNN) for name in finetune["grads"])
    assert _moved(finetune, "backbone.family.model.encoder.layers.")
    assert not _moved(finetune, CNN)
    lrs = {g["name"]: g["initial_lr"] for g in cli.trainer.optimizers[0].param_groups}
    assert lrs["backbone.layer1"] == pytest.approx(0.8 * lrs["backbone.layer2"])

    # Resumed from the last checkpoint (written while fine-tuning), it goes on fine-tuning.
    last = next((tmp_path / "logs").rglob("last.ckpt"))
    resumed = Phases()
    fit(tmp_path, 6, resumed, ckpt_path=last)
    (epoch,) = resumed.epochs
    assert epoch["groups"] == finetune["groups"] and _moved(epoch, "backbone.family.model.encoder")

    # Tested and validated by a new trainer with the fit's configuration (`ser test -c
    # RUN/config.yaml --ckpt_path last.ckpt`): the checkpoint's phase is read, nothing to enter.
    tester = fit_cli(tmp_path, 6)
    for stage, run in (("val", tester.trainer.validate), ("test", tester.trainer.test)):
        (scores,) = run(tester.model, datamodule=tester.datamodule, ckpt_path=last)
        assert 0.0 <= scores[f"{stage}/UA"] <= 1.0


def test_probe_then_finetune_checks_its_plan(tmp_path):
    with pytest.raises(ValueError, match="probe_epochs=0"):
        ProbeThenFinetune(probe_epochs=0)
    write_corpus("shemo", tmp_path / "ShEMO", num_speakers=4, utterances_per_speaker=8, seed=2)
    with pytest.raises(ValueError, match="leaves no epoch to fine-tune"):
        fit(tmp_path, 4, Callback())


class ScheduleLengths(Callback):
    """Per epoch: the optimizer steps its phase's LR schedule spans."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self.steps.append(pl_module.schedule_steps)


def test_each_phase_schedule_spans_the_steps_max_steps_leaves_it(tmp_path):
    """2 steps an epoch, probe_epochs 4, max_epochs 20, max_steps 10: the probe runs 8 steps,
    fine-tuning the 2 left. (The phase length was max_steps / max_epochs a step an epoch: a probe
    schedule of 4 steps that reached 0 halfway, a fine-tuning one of 16 cut at 2.)"""
    write_corpus("shemo", tmp_path / "ShEMO", num_speakers=4, utterances_per_speaker=8, seed=2)
    cli = fit_cli(tmp_path, 20, "--trainer.max_steps", "10")
    lengths = ScheduleLengths()
    cli.trainer.callbacks.append(lengths)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 10
    assert lengths.steps == [8, 8, 8, 8, 2]
