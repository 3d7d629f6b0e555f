"""``EmotionModel`` (backbone -> pooling -> head), and the one way to build it from a checkpoint.

A checkpoint is data: the parts its ``hyper_parameters`` name (``class_path`` / ``init_args``, as
LightningCLI saved them) are checked against the classes each part may be *before* anything is
imported or built, so a downloaded checkpoint cannot run code of its own choosing.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ser.models.checkpoint import (
    ENCODER_CONFIG,
    FROZEN_ENCODER,
    TRIM_SILENCE,
    check_finite_weights,
    load_checkpoint,
    restore_frozen_encoder,
)

# The classes each part of a checkpoint may name (module path as the CLI writes it, or the short
# ``ser.models`` name). Anything else is refused.
HEADS = tuple(
    f"{module}.{name}"
    for name in ("LinearHead", "MLPHead")
    for module in ("ser.models", "ser.models.heads")
)
ALLOWED_PARTS: dict[str, tuple[str, ...]] = {
    "backbone": ("ser.models.HFBackbone", "ser.models.backbones.hf.HFBackbone"),
    "pooling": tuple(
        f"{module}.{name}"
        for name in ("MeanPooling", "StatisticsPooling", "AttentiveStatisticsPooling")
        for module in ("ser.models", "ser.models.pooling")
    ),
    "head": HEADS,
    "dimension_head": HEADS,
    "optimizer": (
        "ser.training.optim.FusedAdamW",
        *(f"torch.optim.{name}" for name in ("AdamW", "Adam", "SGD", "RAdam", "NAdam")),
    ),
}
DEFAULT_PARTS = {
    "pooling": {"class_path": "ser.models.MeanPooling"},
    "head": {"class_path": "ser.models.LinearHead"},
    "dimension_head": {"class_path": "ser.models.LinearHead"},
}
# Checkpoints written before ser's layout moved name the optimizer at its old home, and give
# Whisper's option as a flat backbone argument.
MOVED_CLASSES = {"ser.optim.FusedAdamW": "ser.training.optim.FusedAdamW"}
MOVED_ARGUMENTS = {("backbone", "whisper_pad_to_window"): ("whisper", "pad_to_window")}
# Arguments added later, with the value checkpoints saved before them were trained with (their
# parts hold every argument of their day, so a missing one predates it): a new default must not
# change an old model's outputs.
ADDED_ARGUMENTS = {("backbone", "input_level_db"): None}
# Backbone arguments that are settings of the machine a run trained on, not of the model, with
# the values a checkpoint is rebuilt with to be used (the same outputs, on any machine): an
# attention kernel another machine may lack (flash-attn), and compiling, which predict would pay
# at every start and an ONNX export cannot trace.
MACHINE_ARGUMENTS = {"attn_implementation": None, "compile": False}
# The lengths a model trained on, counted by ``SERModule`` in a state-dict buffer of this name:
# one bin per LENGTH_BIN_SECONDS, the last one holding everything longer.
TRAINED_LENGTHS = "trained_lengths"
LENGTH_BIN_SECONDS = 0.1
LENGTH_BINS = 300
# The shares of a model's training inputs no longer than its windows (``model_windows``).
ITEM_WINDOW_QUANTILE = 0.9
TIMELINE_WINDOW_QUANTILE = 0.5


class NonFiniteOutputError(ValueError):
    """The model gave NaN/inf: a damaged checkpoint or a diverged training run (a user error:
    its message says what to do, so the console shows it as one line)."""


class CheckpointPartError(ValueError):
    """A checkpoint names a class its part may not be."""


class EmotionModel(nn.Module):
    """Backbone -> pooling -> head -> softmax(logits / T): a trained run's network, no training.

    ``temperature`` (a buffer, 1 until loaded) is the run's calibration temperature
    (``ser.training.callbacks.TemperatureScaling``); the ONNX export carries it in the graph.

    A dimensional model has a regression head instead of (or, multi-task, beside) the class
    head: its outputs follow the class probabilities as one column per dimension.

    Args:
        backbone: waves (B, T) and lengths (B,) -> frame features (B, T', H) and frame lengths.
        pooling: frame features and lengths -> one vector (B, D) per utterance.
        head: pooled vectors -> class logits (B, C); None for a dimensional model.
        dimension_head: pooled vectors -> dimension values (B, K); None for a categorical one.
        dimensions: the name of each of the K dimensions.
    """

    def __init__(
        self,
        backbone: nn.Module,
        pooling: nn.Module,
        head: nn.Module | None,
        dimension_head: nn.Module | None = None,
        dimensions: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.backbone, self.pooling, self.head = backbone, pooling, head
        self.register_buffer("temperature", torch.ones(()))
        self.dimension_head = dimension_head
        self.dimensions = list(dimensions)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Probabilities (B, C), then dimension values (B, K): (B, C + K), of waves (B, T) at
        16 kHz with ``lengths`` (B,) valid samples."""
        hidden, frame_lengths = self.backbone(waves, lengths)  # (B, T', H), (B,)
        pooled = self.pooling(hidden, frame_lengths)  # (B, D)
        outputs = []
        if self.head is not None:
            logits = self.head(pooled).float()  # (B, C)
            outputs.append((logits / self.temperature).softmax(dim=-1))
        if self.dimension_head is not None:
            outputs.append(self.dimension_head(pooled).float())  # (B, K)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)  # (B, C + K)


def checked_parts(hparams: dict, source: str) -> dict[str, dict]:
    """The checkpoint's part configs, each naming a class its part may be; else one clear error.

    Checks strings only: nothing is imported before every part has passed.
    """
    parts = {}
    for part, allowed in ALLOWED_PARTS.items():
        spec = hparams.get(part) or DEFAULT_PARTS.get(part)
        if spec is None:
            continue
        class_path = spec.get("class_path") if isinstance(spec, dict) else None
        class_path = MOVED_CLASSES.get(class_path, class_path)
        init_args = spec.get("init_args") if isinstance(spec, dict) else None
        if class_path not in allowed or not isinstance(init_args or {}, dict):
            raise CheckpointPartError(
                f"{source}: hyper_parameters.{part} names {class_path!r}, which a checkpoint's "
                f"{part} may not be (allowed: {', '.join(allowed)}); refusing to load it"
            )
        parts[part] = {"class_path": class_path, "init_args": current_arguments(part, init_args)}
    return parts


def current_arguments(part: str, init_args: dict | None) -> dict:
    """``init_args`` with arguments saved under an older name given their present place, and
    those added since given the value the checkpoint was trained with."""
    init_args = dict(init_args or {})
    for (owner, old), (group, name) in MOVED_ARGUMENTS.items():
        if owner == part and old in init_args:
            init_args[group] = {**(init_args.get(group) or {}), name: init_args.pop(old)}
    for (owner, name), value in ADDED_ARGUMENTS.items():
        if owner == part:
            init_args.setdefault(name, value)
    return init_args


def encoder_arguments(checkpoint: dict, where: str) -> dict[str, Any] | None:
    """``HFBackbone`` arguments that rebuild ``checkpoint``'s encoder without its source, or None.

    A checkpoint that holds its whole encoder (every fine-tune; not a frozen probe's) and the
    encoder's config (``ENCODER_CONFIG``) is rebuilt from that config with random weights, which
    its own then replace: its pretrained ``source`` (a folder on the machine that trained it, a
    hub id) is neither needed nor loaded. None: a probe's checkpoint, or one saved before the
    config was kept; its encoder is built from its source. Errors name ``where`` (the option
    and file).
    """
    from ser.models.backbones.hf import MODEL_TYPES

    saved = checkpoint.get(ENCODER_CONFIG)
    if saved is None or FROZEN_ENCODER in checkpoint:
        return None
    config = dict(saved["config"])
    model_type = config.pop("model_type", None)
    if model_type not in MODEL_TYPES:  # checked before anything is built, as the parts are
        raise CheckpointPartError(
            f"{where}: {ENCODER_CONFIG} names the model type {model_type!r}, which a checkpoint's "
            f"encoder may not be (allowed: {', '.join(MODEL_TYPES)}); refusing to load it"
        )
    return {
        "source": None,
        "model_type": model_type,
        "config": config,
        "preprocessor": dict(saved["preprocessor"]),
    }


def build_part(spec: dict, *args: Any) -> Any:
    """Instantiate a part config that ``checked_parts`` passed."""
    module_name, _, name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), name)
    return cls(*args, **spec["init_args"])


def load_model(ckpt_path: str | Path) -> tuple[EmotionModel, list[str], ScoringDefaults]:
    """The network (eval mode), class names (none for a dimensional model; its dimensions are
    ``model.dimensions``) and scoring defaults of a ``ser fit`` checkpoint."""
    where = f"--ckpt_path {ckpt_path}"
    checkpoint = load_checkpoint(ckpt_path, "--ckpt_path")
    hparams = checkpoint.get("hyper_parameters") or {}
    if not {"backbone", "class_names"} <= set(hparams) or "state_dict" not in checkpoint:
        raise ValueError(
            f"{where}: no SERModule in the checkpoint (expected state_dict and hyper_parameters "
            "with backbone and class_names, as saved by `python -m ser fit`)"
        )
    parts = checked_parts(hparams, where)
    task = hparams.get("task", "categorical")
    classes = [str(name) for name in hparams["class_names"]] if task != "dimensional" else []
    dimensions = [str(name) for name in hparams.get("dimensions") or []]
    parts["backbone"]["init_args"].update(encoder_arguments(checkpoint, where) or {})
    parts["backbone"]["init_args"].update(MACHINE_ARGUMENTS)
    backbone = build_part(parts["backbone"])
    pooling = build_part(parts["pooling"], backbone.output_size)
    head = build_part(parts["head"], pooling.output_size, len(classes)) if classes else None
    dimension_head = None
    if task != "categorical":
        dimension_head = build_part(parts["dimension_head"], pooling.output_size, len(dimensions))
    model = EmotionModel(backbone, pooling, head, dimension_head, dimensions)
    restore_frozen_encoder(checkpoint, backbone.family.model.state_dict(), where)
    prefixes = ("backbone.", "pooling.", "head.", "dimension_head.", "temperature")
    state = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefixes)}
    state.setdefault("temperature", torch.ones(()))  # saved before calibration: T = 1
    check_finite_weights(state, where)
    model.load_state_dict(state)
    segment = training_segment_seconds(parts["backbone"])
    windows = model_windows(checkpoint["state_dict"].get(TRAINED_LENGTHS), segment)
    return model.eval(), classes, replace(windows, trim_silence=trained_trim_silence(checkpoint))


def trained_trim_silence(checkpoint: dict) -> bool:
    """Whether the checkpoint's training read each file from its first speech to its last
    (``TRIM_SILENCE``); a checkpoint without the record trained on whole files."""
    return bool(checkpoint.get(TRIM_SILENCE, False))


def training_segment_seconds(backbone: dict) -> float:
    """The training segment (crop) length of a checkpoint's backbone part (``init_args``)."""
    return float(backbone["init_args"].get("segment_seconds", 5.0))


@dataclass(frozen=True)
class ScoringDefaults:
    """How predict scores a model's input by default, from its training: the windows (seconds)
    it scores audio longer than them in, ``item`` for an item's label (predict, and the test
    metrics), ``timeline`` for the steps of a timeline; and ``trim_silence``, each item from its
    first speech to its last, as training read the corpus (``data.loader.trim_silence``)."""

    item: float
    timeline: float
    trim_silence: bool = False

    def chosen(
        self,
        window_seconds: float | None = None,
        timeline_window_seconds: float | None = None,
        trim_silence: bool | None = None,
    ) -> dict[str, Any]:
        """``EmotionRecognizer``'s keyword arguments: the values given, these where None."""
        return {
            "window_seconds": self.item if window_seconds is None else window_seconds,
            "timeline_window_seconds": self.timeline
            if timeline_window_seconds is None
            else timeline_window_seconds,
            "trim_silence": self.trim_silence if trim_silence is None else trim_silence,
        }


def model_windows(trained_lengths: torch.Tensor | None, segment_seconds: float) -> ScoringDefaults:
    """A model's windows from the lengths of its training inputs (``trained_lengths``: counts per
    bin of LENGTH_BIN_SECONDS), never above its training segment: an item's window is the
    length 90 % of them fit in, a timeline's their median.

    A model trained on short clips has never heard a whole segment, and scores one worse: EmoDB
    models (2 s clips, 5 s segments) scored recordings of several clips at UA 0.82 in 5 s windows,
    0.93 in 2 s ones. A model trained on clips of many lengths has heard long ones too: windows
    of the median cut utterances it had heard whole (EmoDB clips joined 1-4 at a time, median
    2 s, 22 % over 5 s: test UA 0.865 with the median's 2.3 s windows, 0.906 with 5 s ones), while
    a timeline needs short windows to place a change of emotion (on the same models, the share of
    time labelled right: 0.786 in 2.3 s windows, 0.737 in 5 s ones; docs/using_a_model.md). A
    high quantile, not the longest input: a few long outliers do not set it. Checkpoints saved
    before the count: the segment.
    """
    return ScoringDefaults(
        item=trained_length_quantile(trained_lengths, segment_seconds, ITEM_WINDOW_QUANTILE),
        timeline=trained_length_quantile(
            trained_lengths, segment_seconds, TIMELINE_WINDOW_QUANTILE
        ),
    )


def trained_length_quantile(
    trained_lengths: torch.Tensor | None, segment_seconds: float, quantile: float
) -> float:
    """The length (seconds, a bin's upper end) that ``quantile`` of the training inputs are no
    longer than, at most ``segment_seconds``; nothing counted: the segment."""
    if trained_lengths is None or not int(trained_lengths.sum()):
        return segment_seconds
    cumulative = trained_lengths.double().cumsum(0)  # (LENGTH_BINS,)
    found = int(torch.searchsorted(cumulative, cumulative[-1] * quantile))
    return min(segment_seconds, round((found + 1) * LENGTH_BIN_SECONDS, 6))
