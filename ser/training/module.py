"""SERModule: the training system that wires backbone, pooling and head to loss and metrics."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal, NamedTuple

import lightning as L
import numpy as np
import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torchmetrics import MeanMetric

from ser.audio import TARGET_SAMPLE_RATE
from ser.data.datamodule import SERDataModule
from ser.data.dataset import Batch
from ser.data.loader import LoaderSettings
from ser.evaluation.calibration import (
    ReliabilityBins,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_figure,
)
from ser.evaluation.dimensional import DimensionalMetrics, scatter_figure
from ser.evaluation.metrics import EmotionMetrics, confusion_figure
from ser.evaluation.protocol import (
    HEARD,
    check_held_out,
    heard_in_part,
    merge_heard,
    warn_if_validated_on_heard,
)
from ser.evaluation.results import PredictionRow, gather_rows, write_test_results
from ser.features import AugmentedView, FeatureStore, open_feature_store, read_views
from ser.models import HFBackbone, LinearHead, MeanPooling
from ser.models.checkpoint import (
    ENCODER_CONFIG,
    TRIM_SILENCE,
    read_checkpoint,
    restore_frozen_encoder,
    strip_frozen_encoder,
    weights_fingerprint,
)
from ser.models.distributed import seed_training_batch, sum_ranks
from ser.models.network import (
    LENGTH_BIN_SECONDS,
    LENGTH_BINS,
    TRAINED_LENGTHS,
    NonFiniteOutputError,
    model_windows,
    trained_trim_silence,
)
from ser.models.windows import window_and_hop, window_spans
from ser.training.augment import Augmentation, plain_values
from ser.training.losses import (
    ClassWeights,
    RegressionLoss,
    class_weights,
    hard_label_loss,
    regression_loss,
    vote_share_loss,
)
from ser.training.optim import FusedAdamW, log_param_groups, lr_schedule, param_groups
from ser.training.transfer import copy_weights

log = logging.getLogger(__name__)

# The checkpoint key of the learning-rate schedule the saved optimizer followed: its length and
# warmup in optimizer steps, so a resumed fit can say when it follows another one.
LR_SCHEDULE = "lr_schedule"

# Injected parts: never hyper-parameters themselves (a second copy of the backbone in memory, and
# checkpoints that need pickle); the CLI stores their configs instead (``ser.commands.cli``).
PARTS = ("backbone", "pooling", "head", "dimension_head", "optimizer")
STAGES = ("train", "val", "test")


class StepOutputs(NamedTuple):
    """One batch's loss, logits (B, C) and dimension values (B, K) (None: the task has no such
    head), and outside training the calibrated probabilities (B, C) predict would give."""

    loss: torch.Tensor
    logits: torch.Tensor | None
    values: torch.Tensor | None
    probs: torch.Tensor | None


class SERModule(L.LightningModule):
    """Fine-tunes a speech encoder for emotion classification, dimensional emotion, or both.

    Args:
        backbone: the speech encoder (waves -> frame features).
        class_names: the emotion of each output index; linked from the datamodule.
        pooling: builds the pooling from the backbone's output size.
        head: builds the classifier from the pooling's output size and the class count.
        optimizer: the optimizer class; it gets the parameter groups of
            ``ser.training.optim.param_groups`` (checkpoint weights / new weights, no weight decay
            on 1-D tensors). Default: AdamW with the fused kernel (``FusedAdamW``).
        backbone_lr: peak learning rate of the checkpoint's weights (of its top layer with LLRD).
        head_lr: peak learning rate of the new weights: layer weights, pooling and head.
        head_weight_decay: weight decay of the new weights (their tensors of 2 or more
            dimensions); None: the optimizer's, as the encoder's. A linear head on a few hundred
            clips separates them and wants strong decay (the probe recipe: 1.0).
        layer_lr_decay: layer-wise learning-rate decay: encoder layer ``l`` of ``L`` learns at
            ``backbone_lr * layer_lr_decay ** (L - l)``, the front end as layer 0 (1.0: off).
        warmup_fraction: share of the training steps spent warming up linearly from 0.
        schedule: decay after warmup: linear or cosine to 0, or constant.
        class_weights: "none", "balanced" (inverse training frequency) or one weight per class.
        label_smoothing: cross-entropy label smoothing.
        init_from: a checkpoint of an earlier run to start from (fit only, not when resuming):
            backbone and pooling copied, the class head's rows mapped by class name and the
            dimension head's by dimension name; new classes and dimensions, and a head the
            checkpoint lacks, keep their initialisation (``ser.training.transfer``).
        feature_store: a probe of a frozen encoder (``freeze: all``) that runs the encoder once:
            fit/validate/test compute each utterance's hidden states (whole utterance up to
            ``eval_max_seconds``, eval mode) into a float16 store in the audio cache's folder,
            then train on it without audio and evaluate on it (``ser.features``), except an
            utterance longer than the model's window: the encoder scores that one in windows,
            as predict does. "frames" stores the frames (any pooling), "statistics" each
            state's mean and std (tiny; mean pooling, or statistics pooling without layer
            weighting), "none" runs the encoder every step.
            The checkpoint is an ordinary one: ``predict`` runs the encoder on new audio.
        augmentation: training-time augmentation of the waveforms (speed perturbation, rooms,
            noise, a channel's low-pass, mixup; ``ser.training.augment.Augmentation``); None:
            off. With a feature store (no mixup: it mixes two utterances' audio), the store is
            built for ``feature_store_views`` augmented copies of each utterance too.
        feature_store_views: with a feature store and augmentation, the augmented copies of each
            utterance stored (copy k of an utterance drawn once, from a random state seeded by k
            and its id, and encoded once: a store of its own, the same for every run, seed, fold
            and batch size of the same cache, encoder and augmentation); each training step
            reads, per utterance, the recording or one of its copies, drawn uniformly. Building
            them costs this many more encoder passes over the cache.
        dimensions: the names of the regression outputs (arousal, valence ...); linked from the
            datamodule's ``dimensions``.
        task: "categorical" (classes), "dimensional" (one regression output per dimension, no
            class head) or "multitask" (both heads on one encoder, losses added).
        dimension_head: builds the regression head from the pooling's output size and the
            number of dimensions (``docs/dimensional.md``).
        dimension_loss: "ccc" (1 - CCC averaged over dimensions) or "mse".
        dimension_weight: factor on the dimensional loss in "multitask".
    """

    def __init__(
        self,
        backbone: HFBackbone,
        class_names: list[str],
        pooling: Callable[[int], nn.Module] = MeanPooling,
        head: Callable[[int, int], nn.Module] = LinearHead,
        optimizer: OptimizerCallable = FusedAdamW,
        backbone_lr: float = 3e-5,
        head_lr: float = 1e-3,
        head_weight_decay: float | None = None,
        layer_lr_decay: float = 1.0,
        warmup_fraction: float = 0.1,
        schedule: Literal["linear", "cosine", "constant"] = "linear",
        class_weights: ClassWeights = "none",
        label_smoothing: float = 0.0,
        init_from: str | None = None,
        feature_store: Literal["none", "statistics", "frames"] = "none",
        augmentation: Augmentation | None = None,
        feature_store_views: int = 4,
        dimensions: list[str] | None = None,
        task: Literal["categorical", "dimensional", "multitask"] = "categorical",
        dimension_head: Callable[[int, int], nn.Module] = LinearHead,
        dimension_loss: RegressionLoss = "ccc",
        dimension_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0.0 < layer_lr_decay <= 1.0:
            raise ValueError(f"layer_lr_decay={layer_lr_decay}; expected a factor in (0, 1]")
        # Plain values only: the CLI adds the parts' configs (class_path/init_args) after building
        # the model, so a checkpoint alone rebuilds it (``predict --ckpt_path``).
        self.save_hyperparameters(ignore=[*PARTS, "augmentation"])
        if isinstance(augmentation, dict):  # as a checkpoint stores it
            augmentation = Augmentation(**augmentation)
        self.augmentation = augmentation
        self.hparams["augmentation"] = augmentation and plain_values(augmentation)
        self.class_names = list(class_names)
        self.backbone = backbone
        self.pooling = pooling(backbone.output_size)
        self.dimensions = list(dimensions or [])
        self._check_task(task)
        width = self.pooling.output_size
        self.head = head(width, len(self.class_names)) if task != "dimensional" else None
        self.dimension_head = None
        if task != "categorical":
            self.dimension_head = dimension_head(width, len(self.dimensions))
            # Keys other than "train": a ModuleDict key may not shadow nn.Module.train.
            self.dimension_metrics = nn.ModuleDict(
                {f"{stage}_scores": DimensionalMetrics(self.dimensions, stage) for stage in STAGES}
            )
        self._val_values: list[tuple[torch.Tensor, torch.Tensor]] = []  # for the scatter plot
        self.optimizer_factory = optimizer
        self._check_feature_store(feature_store)
        if augmentation is not None and feature_store != "none" and augmentation.mixup_alpha > 0:
            raise ValueError(
                "augmentation.mixup_alpha: mixup mixes two utterances' audio, and a feature store "
                "holds each utterance's encoding alone: use --model.feature_store none for mixup"
            )
        if feature_store_views < 1:
            raise ValueError(f"feature_store_views={feature_store_views}; expected 1 or more")
        self.features: FeatureStore | None = None  # opened in setup when feature_store is on
        # Training reads each utterance from one of these: [features, its augmented copies...].
        self.feature_views: list[FeatureStore] = []
        self._features_for: L.LightningDataModule | None = None  # the datamodule it serves
        # Filled in setup() for "balanced"; not persistent: it is training data, not model state.
        self.register_buffer("loss_weights", torch.ones(len(self.class_names)), persistent=False)
        # Curriculum state, set by ser.training.callbacks.Curriculum (which restores it on
        # resume): the classes this stage trains on, and the optimizer steps its LR schedule
        # spans (None: fit).
        self.register_buffer(
            "active_classes", torch.ones(len(self.class_names), dtype=torch.bool), persistent=False
        )
        self.register_buffer(
            "active_indices", torch.arange(len(self.class_names)), persistent=False
        )
        self._all_active = True
        self.schedule_steps: int | None = None
        self._schedule: dict[str, int] | None = None  # the running one, saved in checkpoints
        self._resumed_schedule: dict[str, int] | None = None  # a resumed checkpoint's, and step
        self.train_metrics = EmotionMetrics(self.class_names, "train")
        self.val_metrics = EmotionMetrics(self.class_names, "val")
        self.test_metrics = EmotionMetrics(self.class_names, "test")
        # Epoch loss of val/test as a metric: its DDP sync sums losses and item counts exactly.
        # Lightning's own sync_dist mean floors the mean item count when ranks hold uneven
        # counts (Lightning issue #21859), which inflates the loss.
        self.eval_losses = nn.ModuleDict({"val": MeanMetric(), "test": MeanMetric()})
        # Probabilities are softmax(logits / temperature): fitted on the validation set by
        # ser.training.callbacks.TemperatureScaling, saved in checkpoints; 1 = uncalibrated.
        self.register_buffer("temperature", torch.ones(()))
        # Training inputs counted by length (after cropping and augmentation; a feature-store
        # probe's: the audio its stored rows came from), saved in every checkpoint: predict
        # scores long recordings in windows of the length 90 % of them fit in
        # (ser.models.network.model_windows); counted on the device, no host sync.
        self.register_buffer(TRAINED_LENGTHS, torch.zeros(LENGTH_BINS, dtype=torch.int64))
        self.test_reliability = nn.ModuleDict(
            {"uncalibrated": ReliabilityBins(), "calibrated": ReliabilityBins()}
        )
        self.test_nll = nn.ModuleDict({"uncalibrated": MeanMetric(), "calibrated": MeanMetric()})
        self._test_rows: list[PredictionRow] = []
        # Window and hop (samples) validation and test score long utterances in: set at the
        # start of each evaluation epoch (``scoring_window``).
        self._eval_window: tuple[int, int] | None = None
        self._frozen_fingerprint: str | None = None  # of a frozen pretrained encoder, when saved
        self._trained_trim_silence: bool | None = None  # a loaded checkpoint's, until checked
        self._loaded_at: dict[str, int] = {}  # the epoch and step of the checkpoint loaded last
        # What the model heard in training (ser.evaluation.protocol.HEARD): set by a fit, read
        # from a loaded checkpoint (None: one from before ser recorded it), saved in each one.
        self._heard: list[dict] | None = None
        self._heard_in_test: dict | None = None  # of the test part, by the running test

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) for waves (B, T) whose valid lengths are ``lengths`` (B,)."""
        return self.head(self.encode(waves, lengths))  # (B, C)

    def encode(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Pooled vectors (B, D) for waves (B, T) whose valid lengths are ``lengths`` (B,)."""
        hidden, frame_lengths = self.backbone(waves, lengths)  # (B, T', H), (B,)
        return self.pooling(hidden, frame_lengths)  # (B, D)

    def stage_metrics(self, stage: str) -> EmotionMetrics:
        return {"train": self.train_metrics, "val": self.val_metrics, "test": self.test_metrics}[
            stage
        ]

    def _check_task(self, task: str) -> None:
        if task not in ("categorical", "dimensional", "multitask"):
            raise ValueError(f"task={task!r}; expected categorical, dimensional or multitask")
        if task != "categorical" and not self.dimensions:
            raise ValueError(
                f"--model.task {task} regresses the data's dimensions, and the data declares "
                "none: set --data.dimensions (e.g. [arousal,valence]; docs/dimensional.md)"
            )

    def _check_feature_store(self, kind: str) -> None:
        if kind not in ("none", "statistics", "frames"):
            raise ValueError(f"feature_store={kind!r}; expected none, statistics or frames")
        if kind != "none" and self.backbone.freeze != "all":
            raise ValueError(
                f"feature_store: the store holds a frozen encoder's outputs; set "
                f"--model.backbone.init_args.freeze all (got freeze={self.backbone.freeze!r})"
            )
        pooling = type(self.pooling).__name__
        if kind == "statistics" and not hasattr(self.pooling, "from_statistics"):
            raise ValueError(
                f"feature_store statistics holds each state's mean and std, not frames, and "
                f"{pooling} pools frames: use --model.feature_store frames (or MeanPooling, "
                "StatisticsPooling)"
            )
        if (
            kind == "statistics"
            and len(self.backbone.layers) > 1
            and not self.pooling.commutes_with_layer_mix
        ):
            raise ValueError(
                f"feature_store statistics with layer weighting serves mean pooling only: the "
                f"{pooling} of a weighted sum of layers is not the weighted sum of the layers' "
                "statistics; use --model.feature_store frames, or layer_weighting false"
            )

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.loss_weights.copy_(self._resolve_class_weights())
        data = self.trainer.datamodule
        if self.hparams.feature_store == "none":
            if isinstance(data, SERDataModule):
                data.read_audio = True  # a store probe may have used this datamodule before
        # Opened again for another datamodule (a test on another corpus after fit): its own store.
        elif self._features_for is not data:
            self.features = open_feature_store(
                self.backbone, self.hparams.feature_store, self.trainer
            )
            self.feature_views = [self.features]
            self._features_for = data
            data.read_audio = False
        if stage == "fit" and self.augmentation is not None and len(self.feature_views) == 1:
            kind, settings = self.hparams.feature_store, plain_values(self.augmentation)
            for number in range(1, self.hparams.feature_store_views + 1):
                view = AugmentedView(self.augmentation, settings, number)
                self.feature_views.append(
                    open_feature_store(self.backbone, kind, self.trainer, view)
                )

    def stored_logits(self, utt_ids: list[str]) -> torch.Tensor:
        """Logits (B, C) of ``utt_ids`` from the feature store (the encoder does not run)."""
        return self.head(self.stored_pooled(utt_ids))  # (B, C)

    def stored_pooled(self, utt_ids: list[str]) -> torch.Tensor:
        """Pooled vectors (B, D) of ``utt_ids`` from the feature store."""
        return self.pooled_rows(*self.features.read(utt_ids))  # (B, D)

    def pooled_rows(self, rows: np.ndarray, counts: np.ndarray) -> torch.Tensor:
        """Pooled vectors (B, D) of stored rows (B, T, L', H) float16 with ``counts`` (B,)."""
        states = torch.from_numpy(rows).to(self.device).unbind(dim=2)  # L' x (B, T, H) float16
        # Mixed in float32 a state at a time, never a float32 stack of all of them, which would
        # nearly double the memory above the float16 batch (figure: docs/performance.md).
        mix = partial(self.backbone.mix, dtype=torch.float32)
        if self.features.kind == "statistics":  # T = 2: mean, std
            mean = mix([state[:, 0] for state in states])  # (B, H)
            std = mix([state[:, 1] for state in states])  # (B, H)
            pooled = self.pooling.from_statistics(mean, std)  # (B, D)
        else:
            lengths = torch.from_numpy(counts).to(self.device)  # (B,)
            pooled = self.pooling(mix(states), lengths)  # (B, D)
        return pooled

    def on_fit_start(self) -> None:
        self._warn_if_files_read_otherwise()  # a resumed fit
        # What the model heard before this fit: a resumed checkpoint's, or init_from's below.
        before, whose = self._heard or [], f"--ckpt_path {self.trainer.ckpt_path}"
        # Here, not in __init__: a checkpoint of this run rebuilds the model without the file, and
        # a resumed fit (--ckpt_path) already has its own weights.
        if self.hparams.init_from and self.trainer.ckpt_path is None:
            where = f"init_from {self.hparams.init_from}"
            state, classes, dimensions, heard = read_checkpoint(
                self.hparams.init_from, self._encoder_state()
            )
            before, whose = heard or [], f"--model.{where}"
            source = {"head": classes, "dimension_head": dimensions}
            copy_weights(self, self._head_outputs(), state, source, where)
        data = self.trainer.datamodule
        if hasattr(data, "heard"):
            self._check_held_out(before, whose)  # before training, not after it
            self._heard = merge_heard(before, data.heard())

    def _head_outputs(self) -> dict[str, list[str]]:
        """The output names of each head this model has, by attribute (``copy_weights``)."""
        outputs = {"head": self.class_names, "dimension_head": self.dimensions}
        return {head: names for head, names in outputs.items() if getattr(self, head) is not None}

    def _check_held_out(self, heard: list[dict] | None, whose: str) -> dict | None:
        """How much of the test part the model of ``heard`` trained or validated on
        (``heard_in_part``); a ValueError where the test would then not be held out. None where
        it is not known (a checkpoint from before ser recorded it, a datamodule without parts)."""
        data = getattr(self.trainer.datamodule, "tested", None)
        if heard is None or data is None:
            return None
        found = heard_in_part(heard, type(data).__name__, data.parts["test"])
        check_held_out(
            found, type(data.splitter).__name__, data.splitter.speaker_independent, whose
        )
        return found

    def _check_validated_held_out(self) -> None:
        """Warn where ``validate`` scores a checkpoint on val utterances (or, with a
        speaker-independent split, speakers) it trained on (``warn_if_validated_on_heard``)."""
        data = getattr(self.trainer.datamodule, "tested", None)
        if self._heard is None or data is None:
            return
        found = heard_in_part(self._heard, type(data).__name__, data.parts["val"], ["train"])
        warn_if_validated_on_heard(
            found,
            type(data.splitter).__name__,
            data.splitter.speaker_independent,
            self._scored_model(),
        )

    def _scored_model(self) -> str:
        """The model a validate or test scores, for its messages."""
        path = self.trainer.ckpt_path
        return "this fit's model" if path is None else f"--ckpt_path {path}"

    def use_classes(self, class_names: Sequence[str] | None) -> None:
        """Train and validate on ``class_names`` only (a curriculum stage); None: all classes.

        The other classes' logits are left out of the loss and the predictions, so their head
        rows get no gradient: they keep their initialisation (up to the optimizer's decoupled
        weight decay) until a stage trains them. Class-balanced weights are recomputed.
        """
        names = self.class_names if class_names is None else list(class_names)
        unknown = [name for name in names if name not in self.class_names]
        if unknown:
            raise ValueError(f"classes {unknown} are not among the model's {self.class_names}")
        mask = torch.tensor([name in names for name in self.class_names])
        self.active_classes.copy_(mask)
        self._all_active = bool(mask.all())
        # The loss selects the active columns by index, on the device: no sync a step.
        self.active_indices = mask.nonzero().squeeze(1).to(self.active_classes.device)
        if self._trainer is not None and self.trainer.datamodule is not None:
            self.loss_weights.copy_(self._resolve_class_weights())

    def _resolve_class_weights(self) -> torch.Tensor:
        data = self.trainer.datamodule
        if self.hparams.class_weights == "balanced" and not hasattr(data, "class_counts"):
            raise ValueError(
                "class_weights balanced: the training classes are counted by ser's datamodules, "
                "and this fit has none (plain dataloaders); give one weight per class or none"
            )

        def train_counts() -> list[int]:  # read for "balanced" only: a test may have no data
            return data.class_counts("train")

        return class_weights(self.hparams.class_weights, self.class_names, train_counts)

    def model_step(self, batch: Batch, stage: str) -> StepOutputs:
        """Loss, logits, dimension values and (outside training) calibrated probabilities of one
        batch; updates the stage's metrics.

        Validation and test score an utterance as predict does: one longer than the scoring window
        (``scoring_window``) in windows of it, their outputs averaged (``_window_scores``).
        """
        partner, share, probs = None, 1.0, None
        window = self._long_utterance_window(batch, stage)
        if window is not None:
            logits, values, probs = self._window_scores(batch, *window)
        else:
            pooled, partner, share = self._pooled(batch, stage)  # (B, D)
            logits = None if self.head is None else self.head(pooled)  # (B, C)
            values = None if self.dimension_head is None else self.dimension_head(pooled).float()
        loss = torch.zeros((), device=batch.waves.device)
        if logits is not None:
            loss = self._class_loss(logits, batch, partner, share, stage)
            logits = self._mask_inactive(logits)  # (B, C)
            if stage != "train" and probs is None:
                probs = (logits.detach().float() / self.temperature).softmax(dim=-1)  # (B, C)
            # Outside training the label predict gives: the most probable class of the calibrated
            # probabilities (of windows averaged, the temperature can change it).
            scores = logits if probs is None else probs  # (B, C)
            self.stage_metrics(stage).update(scores.detach(), batch.labels)
        if values is not None:
            targets = batch.targets  # (B, K)
            if partner is not None:  # mixed audio: its ratings are mixed alike
                targets = share * targets + (1.0 - share) * targets[partner]  # (B, K)
            dimension_loss = regression_loss(values, targets, self.hparams.dimension_loss)
            loss = loss + self.hparams.dimension_weight * dimension_loss
            self.dimension_metrics[f"{stage}_scores"].update(values.detach(), batch.targets)
            if stage == "val":
                self._val_values.append((values.detach(), batch.targets))
        if stage == "train":
            # Not on the progress bar: it would read the loss back every refresh, a host-device
            # sync per step; the logger reads it on logging steps only (log_every_n_steps).
            self.log("train/loss", loss, on_epoch=True, batch_size=len(batch.labels))
        else:
            self.eval_losses[stage].update(loss.detach(), weight=len(batch.labels))
            self.log(f"{stage}/loss", self.eval_losses[stage], on_epoch=True, prog_bar=True)
        return StepOutputs(loss, logits, values, probs)

    def scoring_window(self) -> tuple[int, int]:
        """Window and hop (samples) long utterances are scored in: predict's, the length 90 % of
        the training inputs so far fit in, never above the segment, half-window hop
        (``ser.models.network.model_windows``); before any training, the segment."""
        seconds = model_windows(self.trained_lengths, self.backbone.segment_seconds).item
        return window_and_hop(seconds, None, TARGET_SAMPLE_RATE)

    def _long_utterance_window(self, batch: Batch, stage: str) -> tuple[int, int] | None:
        """The scoring window and hop where an evaluation batch holds an utterance longer than
        the window (read from its padded shape: no host-device sync), else None. A feature store
        holds whole utterances, so a store probe's batch that holds one runs the encoder on its
        windows."""
        if stage == "train":
            return None
        # Outside a trainer's evaluation loop (which sets it each epoch): from the counts now.
        window = self._eval_window or self.scoring_window()
        return window if batch.waves.shape[1] > window[0] else None

    def _window_scores(
        self, batch: Batch, window: int, hop: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Logits (B, C), dimension values (B, K) and calibrated probabilities (B, C) of an
        evaluation batch, each utterance longer than ``window`` samples scored in windows every
        ``hop`` (``window_spans``, as predict cuts them): its windows' probabilities and values
        averaged; its logits the log of the mean uncalibrated probabilities (softmax gives them
        back: the loss and the temperature fit see them), its label the most probable class of
        the mean calibrated ones: what predict reports.

        Windows run through the encoder ``B`` at a time: no more audio per pass than the batch.
        Reads the lengths back to plan the windows: one host-device sync per evaluation batch
        that holds a long utterance (training steps never do).
        """
        size = len(batch.utt_ids)
        spans = [
            (item, start, stop)
            for item, length in enumerate(batch.lengths.tolist())
            for start, stop in window_spans(length, window, hop)
        ]
        items, starts, stops = torch.tensor(spans, device=batch.waves.device).unbind(dim=1)
        lengths = stops - starts  # (N,)
        offsets = torch.arange(max(b - a for _, a, b in spans), device=batch.waves.device)
        index = (starts[:, None] + offsets).clamp(max=batch.waves.shape[1] - 1)  # (N, W)
        waves = batch.waves[items[:, None], index] * (offsets < lengths[:, None])  # (N, W)
        pooled = torch.cat(
            [
                self.encode(chunk, chunk_lengths)
                for chunk, chunk_lengths in zip(waves.split(size), lengths.split(size), strict=True)
            ]
        )  # (N, D)
        counts = torch.bincount(items, minlength=size).unsqueeze(1)  # (B, 1)

        def mean(rows: torch.Tensor) -> torch.Tensor:  # (N, X) -> (B, X) per utterance
            return rows.new_zeros(size, rows.shape[1]).index_add_(0, items, rows) / counts

        logits = values = probs = None
        if self.head is not None:
            window_logits = self._mask_inactive(self.head(pooled).float())  # (N, C)
            uncalibrated = mean(window_logits.softmax(dim=-1))  # (B, C)
            logits = uncalibrated.clamp_min(torch.finfo(uncalibrated.dtype).tiny).log()
            probs = mean((window_logits / self.temperature).softmax(dim=-1))  # (B, C)
        if self.dimension_head is not None:
            values = mean(self.dimension_head(pooled).float())  # (B, K)
        return logits, values, probs

    def _mask_inactive(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (N, C) with -inf for the classes a curriculum stage does not use (never
        predicted); unchanged outside one."""
        if self._all_active:
            return logits
        return logits.masked_fill(~self.active_classes, float("-inf"))

    def _pooled(self, batch: Batch, stage: str) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """Pooled vectors (B, D) of the batch, augmented in training; with mixup each row's
        partner (B,) and its own share (else None, 1.0)."""
        if self.features is not None:
            if stage != "train":
                return self.stored_pooled(batch.utt_ids), None, 1.0  # (B, D)
            views = [0] * len(batch.utt_ids)  # the recording, or (augmentation) a copy of it
            if len(self.feature_views) > 1:
                views = [random.randrange(len(self.feature_views)) for _ in batch.utt_ids]
            rows, counts, samples = read_views(self.feature_views, batch.utt_ids, views)
            # What it heard: the audio the stored rows came from.
            self._count_lengths(torch.from_numpy(samples).to(self.device))
            return self.pooled_rows(rows, counts), None, 1.0  # (B, D)
        waves, lengths, partner, share = batch.waves, batch.lengths, None, 1.0
        if stage == "train" and self.augmentation is not None:
            waves, lengths = self.augmentation(waves, lengths)  # (B, T'), (B,)
            # A slowed crop (speed < 1) can outgrow an encoder's one-pass window (AST's is its
            # segment): cut back to it, from the shape (no sync), as the crop was meant to fit.
            # Else it was encoded as two windows, planned on the host, every such step.
            window = getattr(self.backbone.family, "window_samples", None)
            if window is not None and waves.shape[1] > window:
                waves, lengths = waves[:, :window], lengths.clamp(max=window)  # (B, W), (B,)
            if self.augmentation.mixup_alpha > 0:
                waves, lengths, partner, share = self.augmentation.mixup(waves, lengths)
        if stage == "train":
            self._count_lengths(lengths)
        return self.encode(waves, lengths), partner, share  # (B, D)

    def _count_lengths(self, lengths: torch.Tensor) -> None:
        """Add training inputs of ``lengths`` (B,) samples to ``trained_lengths``: bin k holds
        lengths in (k, k + 1] x LENGTH_BIN_SECONDS, the last bin everything longer. Under DDP
        every rank's inputs are counted on every rank (``ser.models.distributed``)."""
        per_bin = round(LENGTH_BIN_SECONDS * TARGET_SAMPLE_RATE)
        bins = (torch.div(lengths + per_bin - 1, per_bin, rounding_mode="floor") - 1).clamp(
            0, LENGTH_BINS - 1
        )  # (B,)
        counts = torch.zeros_like(self.trained_lengths).index_add_(0, bins, torch.ones_like(bins))
        self.trained_lengths += sum_ranks(counts)

    def _class_loss(
        self,
        logits: torch.Tensor,
        batch: Batch,
        partner: torch.Tensor | None,
        share: float,
        stage: str,
    ) -> torch.Tensor:
        """Cross-entropy of logits (B, C) against the labels, or against the vote shares where
        the batch carries them (``--data.soft_labels``, training batches); with mixup, each
        partner's label or shares count with the partner's share of the audio. Class weights
        weigh training only: val/test loss is the same in a fit and in ``ser validate``/``test``
        of its checkpoint (the weights come from the training split, which those never read)."""
        settings = {
            "weight": self.loss_weights if stage == "train" else torch.ones_like(self.loss_weights),
            "label_smoothing": self.hparams.label_smoothing,
            "active": None if self._all_active else self.active_indices,
        }
        if batch.label_shares.numel() == 0:  # a shape, no host-device sync
            loss = hard_label_loss(logits, batch.labels, **settings)
            if partner is not None:
                partner_loss = hard_label_loss(logits, batch.labels[partner], **settings)
                loss = share * loss + (1.0 - share) * partner_loss
            return loss
        shares = batch.label_shares  # (B, C)
        if partner is not None:
            shares = share * shares + (1.0 - share) * shares[partner]  # (B, C)
        return vote_share_loss(logits, shares, **settings)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self.model_step(batch, "train").loss

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self.model_step(batch, "val").logits  # for TemperatureScaling

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        # In float32, whatever the run's precision: predict, the Python API and ONNX score so,
        # and the test measures what they give (under bf16 autocast probabilities differed by
        # up to 6e-3; a feature-store probe's stored states keep the precision they were built in).
        with torch.autocast(self.device.type, enabled=False):
            _, logits, values, probs = self.model_step(batch, "test")
        outputs = [] if logits is None else [logits[:, self.active_classes]]
        outputs += [] if values is None else [values]
        # Else NaN metrics and a CSV of NaN with exit code 0; inactive classes are -inf by design.
        if not all(torch.isfinite(output).all() for output in outputs):
            raise NonFiniteOutputError(
                f"--ckpt_path {self.trainer.ckpt_path}: the model gives non-finite outputs "
                f"(NaN/inf) for {batch.utt_ids[:3]}: the checkpoint is damaged (torch does not "
                "verify its checksums) or its training diverged; use another checkpoint"
            )
        none = torch.zeros(len(batch.utt_ids), 0)  # (B, 0): the task has no such head
        if logits is None:
            probs = none
        else:
            uncalibrated = logits.float().softmax(dim=-1)  # (B, C)
            for name, scored in (("uncalibrated", uncalibrated), ("calibrated", probs)):
                self.test_reliability[name].update(scored, batch.labels)
                self.test_nll[name].update(negative_log_likelihood(scored, batch.labels))
            probs = probs.cpu()
        values = none if values is None else values.cpu()  # (B, K)
        targets = none if self.dimension_head is None else batch.targets.cpu()  # (B, K)
        found = zip(batch.utt_ids, batch.labels.tolist(), probs, values, targets, strict=True)
        for utt_id, label, p, v, t in found:
            row = PredictionRow(utt_id, self.class_names[label], p.tolist(), v.tolist(), t.tolist())
            self._test_rows.append(row)

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")

    def on_train_start(self) -> None:
        # Sanity-check batches must not leak into the first epoch's validation figures.
        self._reset_metrics("val")

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        seed_training_batch(self.current_epoch, batch_idx, self.global_rank)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._reset_metrics("val")
            return
        if self.head is not None:
            self._log_confusion_figure("val")
        if self.dimension_head is not None:
            self._log_scatter_figure("val")
        self._log_epoch_metrics("val")

    def _reset_metrics(self, stage: str) -> None:
        self.stage_metrics(stage).reset()
        if self.dimension_head is not None:
            self.dimension_metrics[f"{stage}_scores"].reset()
        if stage == "val":
            self._val_values = []

    def on_validation_epoch_start(self) -> None:
        if self.trainer.state.fn == TrainerFn.VALIDATING:  # ser validate, not a fit's epoch
            self._check_validated_held_out()
        self._start_scoring()

    def on_test_epoch_start(self) -> None:
        self._test_rows = []
        self._heard_in_test = self._check_held_out(self._heard, self._scored_model())
        self._start_scoring()

    def _start_scoring(self) -> None:
        self._warn_if_files_read_otherwise()
        # Rank 0's count, the one its checkpoint keeps: every rank scores the windows predict will.
        self._eval_window = self.trainer.strategy.broadcast(self.scoring_window(), src=0)

    def on_test_epoch_end(self) -> None:
        values = self._log_epoch_metrics("test", keep=True)
        confusion = None if self.head is None else self.test_metrics.confusion_matrix().cpu()
        classes = [] if self.head is None else self.class_names  # the probability columns
        rows = gather_rows(self._test_rows)
        values["test/loss"] = float(self.trainer.callback_metrics["test/loss"])
        if self.head is not None:
            values |= self._calibration_results()
        # No logger: log_dir would be the working directory; fast_dev_run's logger has none.
        log_dir = self.trainer.log_dir if self.trainer.loggers else None  # a broadcast under DDP
        if log_dir is None:
            log.info("no logger (--trainer.logger false or fast_dev_run): test files not written")
        elif self.trainer.is_global_zero:
            written = write_test_results(
                log_dir, values, rows, classes, confusion, self.dimensions, self._tested_model()
            )
            # Into the console table beside UA/WA/F1 (rank 0 alone computed them).
            intervals = {k: v for k, v in written.items() if "_ci95_" in k}
            self.log_dict(intervals, rank_zero_only=True)
        self._reset_metrics("test")

    def _tested_model(self) -> dict[str, object]:
        """Which model the test scored: the checkpoint file and the epoch and step it was saved
        at (none: the model in memory, after the optimizer steps it took)."""
        path = self.trainer.ckpt_path
        heard = {"heard_in_training": self._heard_in_test}
        if path is None:
            return {"checkpoint": None, "global_step": self.global_step, **heard}
        return {"checkpoint": str(path), **self._loaded_at, **heard}

    def _calibration_results(self) -> dict[str, float]:
        """Log and return test/ECE and test/NLL (at the temperature) and their _uncalibrated
        (T = 1) twins; draw the reliability diagram of both into TensorBoard."""
        bins = {name: metric.compute() for name, metric in self.test_reliability.items()}
        nll = {name: float(metric.compute()) for name, metric in self.test_nll.items()}
        for metric in [*self.test_reliability.values(), *self.test_nll.values()]:
            metric.reset()
        values = {
            "test/ECE": expected_calibration_error(bins["calibrated"]),
            "test/ECE_uncalibrated": expected_calibration_error(bins["uncalibrated"]),
            "test/NLL": nll["calibrated"],
            "test/NLL_uncalibrated": nll["uncalibrated"],
        }
        self.log_dict(values, sync_dist=False)  # bins and means are already summed over ranks
        temperature = float(self.temperature)
        log.info(
            "test ECE %.4f, NLL %.4f at temperature %.3f (uncalibrated: %.4f, %.4f)",
            values["test/ECE"],
            values["test/NLL"],
            temperature,
            values["test/ECE_uncalibrated"],
            values["test/NLL_uncalibrated"],
        )
        if isinstance(self.logger, TensorBoardLogger) and self.trainer.is_global_zero:
            curves = {
                "uncalibrated": bins["uncalibrated"],
                f"T = {temperature:.2f}": bins["calibrated"],
            }
            figure = reliability_figure(curves, "test reliability diagram")
            self.logger.experiment.add_figure("test/reliability_diagram", figure, self.global_step)
        return values

    def _log_epoch_metrics(self, stage: str, keep: bool = False) -> dict[str, float]:
        values = {} if self.head is None else self.stage_metrics(stage).compute()
        if self.dimension_head is not None:
            values.update(self.dimension_metrics[f"{stage}_scores"].compute())
        self.log_dict(values, sync_dist=False)  # torchmetrics already synchronised the states
        if not keep:
            self._reset_metrics(stage)
        return values

    def _log_scatter_figure(self, stage: str) -> None:
        """Predicted against true values of this rank's share of ``stage`` (a picture, not a
        metric: under DDP the other ranks' items are left out)."""
        if not isinstance(self.logger, TensorBoardLogger) or not self.trainer.is_global_zero:
            return
        preds = torch.cat([p for p, _ in self._val_values])  # (N, K)
        targets = torch.cat([t for _, t in self._val_values])  # (N, K)
        title = f"{stage} predicted vs true (epoch {self.current_epoch})"
        figure = scatter_figure(preds, targets, self.dimensions, title)
        self.logger.experiment.add_figure(f"{stage}/scatter", figure, self.global_step)

    def _log_confusion_figure(self, stage: str) -> None:
        if not isinstance(self.logger, TensorBoardLogger):
            return
        matrix = self.stage_metrics(stage).confusion_matrix()  # on every rank: a DDP all-gather
        if not self.trainer.is_global_zero:
            return
        title = f"{stage} confusion (epoch {self.current_epoch})"
        figure = confusion_figure(matrix, self.class_names, title)
        self.logger.experiment.add_figure(f"{stage}/confusion_matrix", figure, self.global_step)

    def configure_optimizers(self):
        groups = param_groups(
            self.backbone.encoder_parameters(),
            [
                m
                for m in (self.backbone, self.pooling, self.head, self.dimension_head)
                if m is not None
            ],
            self.hparams.backbone_lr,
            self.hparams.head_lr,
            self.hparams.layer_lr_decay,
            train_encoder=not self.backbone.encoder_frozen,
            head_weight_decay=self.hparams.head_weight_decay,
        )
        optimizer = self.optimizer_factory(groups)
        log_param_groups(optimizer)  # at fit start, and again when a callback rebuilds them
        total = max(1, int(self.schedule_steps or self.trainer.estimated_stepping_batches))
        warmup = int(self.hparams.warmup_fraction * total)
        factor = lr_schedule(self.hparams.schedule, warmup, total)
        self._say_if_schedule_changed(total, warmup)
        self._schedule = {"steps": total, "warmup_steps": warmup}
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def _say_if_schedule_changed(self, total: int, warmup: int) -> None:
        """A fit resumed with other trainer settings (more epochs, another batch size) rebuilds
        the schedule for its own length and continues it from the checkpoint's step: say how
        the learning rate moves there (once; a callback's later rebuild is a new phase)."""
        resumed, self._resumed_schedule = self._resumed_schedule, None
        if resumed is None or (resumed["steps"], resumed["warmup_steps"]) == (total, warmup):
            return
        step = resumed["step"]
        before = lr_schedule(self.hparams.schedule, resumed["warmup_steps"], resumed["steps"])
        now = lr_schedule(self.hparams.schedule, warmup, total)
        if self.trainer.is_global_zero:
            log.warning(
                "the learning-rate schedule spans %d optimizer steps (%d of warmup) here, %d (%d) "
                "in the checkpoint: at its step %d the learning rate goes from %.2f to %.2f of "
                "its peak; resume with the run's own trainer and batch settings (max_epochs, "
                "max_steps, batch size, accumulate_grad_batches, devices, num_nodes) to "
                "continue its schedule",
                total, warmup, resumed["steps"], resumed["warmup_steps"], step,
                before(step), now(step),
            )  # fmt: skip

    def _encoder_state(self) -> dict[str, torch.Tensor]:
        return self.backbone.family.model.state_dict()

    def _loader_settings(self) -> LoaderSettings | None:
        """How the trainer's datamodule reads its corpus (None: a datamodule without them)."""
        loader = getattr(self.trainer.datamodule, "loader", None)
        return loader if isinstance(loader, LoaderSettings) else None

    def _warn_if_files_read_otherwise(self) -> None:
        """Once per loaded checkpoint: a test, validation or resumed fit that reads the corpus
        files otherwise than the checkpoint's training did (``trim_silence``) says so: its scores
        are not what predict, which reads them as trained, gives."""
        trained, self._trained_trim_silence = self._trained_trim_silence, None
        loader = self._loader_settings()
        if trained is None or loader is None or loader.trim_silence == trained:
            return
        if not self.trainer.is_global_zero:
            return
        reading = {True: "from its first speech to its last", False: "whole"}
        log.warning(
            "--ckpt_path %s: its training read each file %s, this run reads each file %s "
            "(data.loader.trim_silence %s), so its scores are not predict's; pass "
            "--data.loader.trim_silence %s to read the files as it learned",
            self.trainer.ckpt_path,
            reading[trained],
            reading[loader.trim_silence],
            str(loader.trim_silence).lower(),
            str(trained).lower(),
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # How training read each file, predict's default (ser.models.checkpoint.TRIM_SILENCE).
        loader = self._loader_settings()
        if loader is not None:
            checkpoint[TRIM_SILENCE] = loader.trim_silence
        if self._heard is not None:
            checkpoint[HEARD] = self._heard
        if self._schedule is not None and "lr_schedulers" in checkpoint:  # resume state only
            checkpoint[LR_SCHEDULE] = dict(self._schedule)
        # With the encoder's weights, its config rebuilds it where its source is not.
        checkpoint[ENCODER_CONFIG] = self.backbone.encoder_config()
        # A frozen pretrained encoder is its source's weights: a probe's checkpoint keeps what it
        # trained and the encoder's source and hash (ser.models.checkpoint), not ~100s of MB.
        if self.backbone.freeze != "all" or self.backbone.source is None:
            return
        if self._frozen_fingerprint is None:  # frozen: hashed once per run
            self._frozen_fingerprint = weights_fingerprint(self._encoder_state())
        strip_frozen_encoder(checkpoint, self.backbone.source, self._frozen_fingerprint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        restore_frozen_encoder(checkpoint, self._encoder_state(), "--ckpt_path")
        # Checkpoints from before temperature scaling: uncalibrated, T = 1.
        checkpoint["state_dict"].setdefault("temperature", torch.ones(()))
        # ... and before lengths were counted: none counted (predict uses the segment).
        checkpoint["state_dict"].setdefault(
            TRAINED_LENGTHS, torch.zeros(LENGTH_BINS, dtype=torch.int64)
        )
        self._trained_trim_silence = trained_trim_silence(checkpoint)  # checked at the run's start
        self._loaded_at = {k: checkpoint[k] for k in ("epoch", "global_step") if k in checkpoint}
        self._heard = checkpoint.get(HEARD)
        scheduler = (checkpoint.get("lr_schedulers") or [{}])[0]
        if LR_SCHEDULE in checkpoint and "last_epoch" in scheduler:  # a fit resuming it
            self._resumed_schedule = {**checkpoint[LR_SCHEDULE], "step": scheduler["last_epoch"]}
        saved = checkpoint.get("hyper_parameters", {}).get("class_names")
        if saved is not None and list(saved) != self.class_names:
            raise ValueError(
                f"the checkpoint was trained on classes {list(saved)}, but this run uses "
                f"{self.class_names}; use a data config with the checkpoint's label set "
                "(or start a new fit from it with a new head)"
            )
        saved = checkpoint.get("hyper_parameters", {}).get("dimensions")
        if saved is not None and list(saved) != self.dimensions:
            raise ValueError(
                f"the checkpoint was trained on dimensions {list(saved)} (in this order), but "
                f"this run uses {self.dimensions}; give --data.dimensions {list(saved)}"
            )
