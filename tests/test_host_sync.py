"""No host-device sync in a training step: what a GPU would wait for, counted on CPU.

``Tensor.item``/``tolist``/``cpu``/``numpy`` and ``bool``/``float``/``int`` of a tensor make the
host wait for the GPU's queue to drain (``torch.cuda.set_sync_debug_mode`` reports them on a
GPU). This test patches them on ``torch.Tensor`` and counts the calls made from one training
batch's start to the next one's (validation and epoch ends excluded), through ``ser fit``'s
Lightning loop: the CLI, configs/trainer/default.yaml (logger, checkpoints, LR monitor, the
progress bar), our datamodule and module. Logging steps (``log_every_n_steps``) may sync.
Calls inside torch's C++ (e.g. CUDA ``bincount``) are not seen here; the GPU check sees them.
"""

from __future__ import annotations

import traceback
from collections import defaultdict
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from models_tiny import TINY

from ser.commands.cli import build_cli
from ser.data.synthetic import write_corpus

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SYNCING = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")
LOG_EVERY = 4
# Syncs we cannot remove from our side, by "file:function" of the caller, and why.
# Of the wav2vec2 family only: AST and Whisper build their masks themselves (AST's was allowed
# here for every family until 2026-12-08, and AST synced every step).
INHERENT = {
    # transformers' wav2vec2-family encoder asks whether the attention mask is all True before
    # attention; the encoder builds its mask itself, so there is no public way to ask it not to
    # (every wav2vec2-family model gets a mask: no item may attend to its batch's padding).
    "masking_utils.py:_ignore_bidirectional_mask_sdpa",
}
WAV2VEC2_FAMILY = ("wav2vec2", "hubert", "wavlm", "data2vec")


class SyncCounter(Callback):
    """Records each syncing call with its training step, from a batch's start to the next."""

    def __init__(self, inherent: set[str]) -> None:
        self.inherent = inherent  # callers whose syncs are not counted
        self.calls: dict[int, list[str]] = defaultdict(list)
        self.steps: list[int] = []
        self._step: int | None = None  # the step being counted; None: not counting

    def record(self, name: str) -> None:
        if self._step is not None:
            caller = traceback.extract_stack(limit=3)[0]  # [caller, wrapper, record]
            where = f"{Path(caller.filename).name}:{caller.name}"
            if where not in self.inherent:
                self.calls[self._step].append(f"{name} in {where}:{caller.lineno}")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step = trainer.global_step + 1  # the optimizer step this batch makes (1-based)
        self.steps.append(self._step)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._step = None

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._step = None


def patch_syncing_calls(monkeypatch, counter: SyncCounter) -> None:
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, _name=name, _original=original, **kwargs):
            counter.record(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)


def model_config(tmp_path: Path, name: str) -> Path:
    """A config of the tiny random-init ``name`` backbone (tests/models_tiny.py)."""
    model_type, overrides = TINY[name]
    config = {
        "model": {
            "backbone": {
                "class_path": "ser.models.HFBackbone",
                "init_args": {"model_type": model_type, "config": overrides, "freeze": "none"},
            }
        }
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sync") / "ShEMO"
    write_corpus("shemo", root, num_speakers=4, utterances_per_speaker=8, seed=3)
    return root


AUGMENTED = [  # 0.8 s crops: at 0.9x they stay inside the tiny Whisper's 1 s window
    "--data.loader.max_seconds", "0.8", "--model.augmentation.speeds", "[0.9, 1.0, 1.1]",
    "--model.augmentation.noise_snr_db", "[10, 30]", "--model.augmentation.mixup_alpha", "0.4",
    "--model.augmentation.noise_colours", "[white, pink]", "--model.augmentation.reverb_rt60",
    "[0.2, 0.8]", "--model.augmentation.lowpass_hz", "[3400, 8000]",
    "--model.augmentation.highpass_hz", "[50, 400]",
    "--model.augmentation.mu_law_probability", "0.5",
]  # fmt: skip


def recipe(tmp_path: Path, name: str, **callback_args) -> Path:
    """A copy of configs/experiments/``name`` with its callbacks' init_args changed as given
    (LP-FT's switch to fine-tuning inside the test's two epochs)."""
    config = yaml.safe_load((REPO_CONFIGS / "experiments" / name).read_text())
    for callback in config.get("trainer", {}).get("callbacks+", []):
        callback["init_args"].update(callback_args)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


LP_FT = ("probe_then_finetune.yaml", {"probe_epochs": 1})
# The feature-store probe's recipe names a hub encoder: the tiny model's config stands in.
STORE_PROBE = ("shemo_wav2vec2_probe.yaml", {})
NO_SOURCE = ["--model.backbone.init_args.source", "null"]


@pytest.mark.parametrize(
    "name, experiment, extra",
    [
        ("wav2vec2-layer", None, []),
        ("wav2vec2-group", None, []),
        ("ast", None, []),
        ("whisper", None, []),
        ("whisper", None, AUGMENTED),
        # The recipes as users run them: a standardized head on mixed, normalised layers, LLRD,
        # rooms and noise, and LP-FT's switch from the probe to fine-tuning after epoch 1 ...
        ("wav2vec2-group", LP_FT, []),
        ("whisper", LP_FT, ["--data.loader.max_seconds", "0.8"]),  # as AUGMENTED's crops
        # AST's window is its segment: a crop slowed to 0.9x outgrew it (two windows, planned
        # on the host) until 2026-12-08.
        ("ast", LP_FT, []),
        # ... and a probe trained from the feature store (batches of utterance ids, no audio).
        ("wav2vec2-layer", STORE_PROBE, NO_SOURCE),
    ],
    ids=[
        "wav2vec2-layer", "wav2vec2-group", "ast", "whisper", "whisper-augmented",
        "wav2vec2-group-lp-ft", "whisper-lp-ft", "ast-lp-ft", "store-probe",
    ],
)  # fmt: skip
def test_training_steps_make_no_host_sync_outside_logging_steps(
    tmp_path, monkeypatch, corpus, name, experiment, extra
):
    recipe_config = []
    if experiment is not None:
        recipe_name, callback_args = experiment
        recipe_config = ["-c", str(recipe(tmp_path, recipe_name, **callback_args))]
    cli = build_cli(
        [
            "-c", str(REPO_CONFIGS / "trainer/default.yaml"),
            "-c", str(REPO_CONFIGS / "data/shemo.yaml"), "-c", str(model_config(tmp_path, name)),
            *recipe_config,
            "--data.root", str(corpus), "--data.loader.cache_dir", str(tmp_path / "cache"),
            "--data.loader.batch_size", "2",  # loader workers as `ser fit`: reading is theirs
            "--data.loader.max_seconds", "1.0",
            "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
            "--trainer.accelerator", "cpu", "--trainer.max_epochs", "2",
            "--trainer.limit_train_batches", "6", "--trainer.limit_val_batches", "1",
            "--trainer.log_every_n_steps", str(LOG_EVERY), *extra,
        ],
        run=False,
    )  # fmt: skip
    counter = SyncCounter(INHERENT if name.startswith(WAV2VEC2_FAMILY) else set())
    cli.trainer.callbacks.append(counter)
    patch_syncing_calls(monkeypatch, counter)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    monkeypatch.undo()
    assert counter.steps == list(range(1, 13))  # two epochs of six steps were counted
    logging_steps = {step for step in counter.steps if step % LOG_EVERY == 0}
    assert counter.calls.keys() & logging_steps, "the logging steps' syncs were not seen"
    syncing = {s: calls for s, calls in counter.calls.items() if s not in logging_steps}
    assert not syncing, "\n".join(f"step {s}: {c}" for s, c in sorted(syncing.items()))
