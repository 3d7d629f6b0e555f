"""Callbacks: the curriculum (when to move from corpus to corpus), temperature scaling."""

from __future__ import annotations

import logging
import math
import time
from functools import partial
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn

from ser.data.curriculum import CurriculumDataModule
from ser.evaluation.calibration import TEMPERATURE_RANGE, every_item_right, fit_temperature

log = logging.getLogger(__name__)


class Curriculum(Callback):
    """Moves a ``CurriculumDataModule`` from stage to stage at its set epochs (IEMOCAP -> ShEMO).

    The callback decides *when*; the datamodule serves the stage's loaders and ``SERModule``
    decides *how* a stage trains (``use_classes``, ``configure_optimizers``). At the first epoch
    of a stage:

    - the train and val loaders switch corpus: the datamodule serves each epoch its stage's;
    - the model trains on the stage's classes; one head over the final classes carries over by
      emotion name, rows of classes no stage has used yet keep their initialisation;
    - optimizer and LR schedule restart: warmup and decay over the stage's steps (with
      ``reset_optimizer=False`` both run on, one schedule spanning all stages);
    - the first final-stage epoch, as it starts, demotes every monitored checkpoint/early-
      stopping score of the earlier stages to the worst value, so "best" is judged on the final
      stage's validation set only (with the usual ``ModelCheckpoint(monitor="val/UA")``;
      ``best.ckpt`` is replaced by the first final-stage epoch). Not at the switch: the switch
      runs at the end of the earlier stage's last epoch, before the checkpoint callbacks (which
      Lightning runs last) save that epoch, which would then be "best" against demoted scores;
      and a run resumed from that epoch's checkpoint demotes as it starts the final stage too.

    The stage is logged as ``curriculum/stage`` every epoch and is saved in checkpoints: a run
    resumed with ``--ckpt_path`` restores the stage's classes and schedule length before
    Lightning rebuilds the optimizer and loads its state (and switches at once if the checkpoint
    was written at the end of a stage's last epoch); the loaders follow the epoch alone.

    The training loader's length changes with the stage, and Lightning reads a loader's length
    only when it requests the loader; so the callback sets the Trainer's
    ``reload_dataloaders_every_n_epochs`` to 1 (from its default 0; any other value is an error).
    Each request returns the same loaders (built once per stage), so a reload costs nothing, and
    a reload every epoch has no reload epoch to get wrong after a resume (issue #21492).

    Args:
        reset_optimizer: restart optimizer state and LR schedule at every stage.
    """

    def __init__(self, reset_optimizer: bool = True) -> None:
        self.reset_optimizer = reset_optimizer
        self.stage = 0
        self.names: list[str] | None = None
        self.switch_seconds: list[float] = []  # wall time of each switch, for reports
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        if not isinstance(datamodule, CurriculumDataModule):
            raise TypeError(
                "the Curriculum callback needs data: ser.data.CurriculumDataModule, got "
                f"{type(datamodule).__name__}"
            )
        if trainer.max_epochs != sum(datamodule.epochs):
            raise ValueError(
                f"trainer.max_epochs={trainer.max_epochs} but the curriculum stages "
                f"{datamodule.names} add up to {sum(datamodule.epochs)} epochs "
                f"(epochs: {datamodule.epochs}); set --trainer.max_epochs {sum(datamodule.epochs)}"
            )
        if trainer.reload_dataloaders_every_n_epochs not in (0, 1):
            raise ValueError(
                "the Curriculum callback needs the loaders requested every epoch (their length "
                "changes with the stage), got trainer.reload_dataloaders_every_n_epochs="
                f"{trainer.reload_dataloaders_every_n_epochs}; leave it out (or set it to 1)"
            )
        trainer.reload_dataloaders_every_n_epochs = 1
        self.names = list(datamodule.names)
        self._trainer = trainer
        self._enter(0)  # a resumed run's load_state_dict follows, before the optimizer is built

    def state_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "names": self.names}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.names is not None and state_dict["names"] != self.names:
            raise ValueError(
                f"the checkpoint's curriculum has stages {state_dict['names']}, this run "
                f"{self.names}; resume with the data config the checkpoint was trained with"
            )
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == TrainerFn.FITTING:
            self._enter(state_dict["stage"])
        else:  # validate/test from a checkpoint: nothing to move
            self.stage = state_dict["stage"]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A checkpoint written at the end of a stage's last epoch resumes in the next stage.
        target = trainer.datamodule.stage_at(trainer.current_epoch)
        if target != self.stage:
            self._switch(trainer, target)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log("curriculum/stage", float(self.stage), on_step=False, on_epoch=True)
        if trainer.current_epoch == sum(trainer.datamodule.epochs[:-1]):  # the final stage's first
            _demote_earlier_scores(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        target = trainer.datamodule.stage_at(trainer.current_epoch + 1)
        if target != self.stage and not trainer.should_stop:
            self._switch(trainer, target)

    def _enter(self, index: int) -> None:
        """Point datamodule and module at stage ``index`` (class counts, classes, schedule)."""
        trainer = self._trainer
        datamodule, module = trainer.datamodule, trainer.lightning_module
        self.stage = index
        datamodule.set_stage(index)
        module.schedule_steps = self._schedule_steps(trainer, datamodule, index)
        module.use_classes(datamodule.stage_class_names(index))

    def _switch(self, trainer: L.Trainer, index: int) -> None:
        started = time.perf_counter()
        self._enter(index)
        if self.reset_optimizer:
            trainer.strategy.setup_optimizers(trainer)  # configure_optimizers: fresh state
        self.switch_seconds.append(time.perf_counter() - started)
        for logger in trainer.loggers:
            logger.log_metrics(
                {"curriculum/switch_seconds": self.switch_seconds[-1]}, step=trainer.global_step
            )
        log.info(
            "curriculum: stage %d (%s) from epoch %d%s; switch took %.3f s",
            index,
            self.names[index],
            sum(trainer.datamodule.epochs[:index]),
            ", optimizer and schedule reset" if self.reset_optimizer else "",
            self.switch_seconds[-1],
        )

    def _schedule_steps(self, trainer: L.Trainer, datamodule: CurriculumDataModule, index: int):
        """Optimizer steps of stage ``index`` (or of all stages, when the schedule is kept).

        ``trainer.max_steps`` (when set) ends the run early: a stage it cuts short gets a
        schedule of the steps it will run, and the stages after it none.
        """
        steps = [
            datamodule.epochs[k] * _epoch_steps(trainer, datamodule.num_train_batches(k))
            for k in range(len(datamodule.stages))
        ]
        steps = steps_within_max_steps(steps, trainer.max_steps)
        return max(1, steps[index] if self.reset_optimizer else sum(steps))


def steps_within_max_steps(phases: list[int], max_steps: int) -> list[int]:
    """The optimizer steps each of the run's ``phases`` (in order) takes when ``max_steps``
    (-1: no limit) may end the run inside one: the phases after it take none."""
    if max_steps < 0:
        return list(phases)
    left, capped = max_steps, []
    for steps in phases:
        capped.append(min(steps, left))
        left -= capped[-1]
    return capped


def _epoch_steps(trainer: L.Trainer, num_batches: int) -> int:
    """Optimizer steps of an epoch of ``num_batches`` batches, as Lightning counts them."""
    limit = trainer.limit_train_batches
    batches = min(num_batches, limit) if isinstance(limit, int) else int(num_batches * limit)
    return math.ceil(batches / trainer.accumulate_grad_batches)


def _demote_earlier_scores(trainer: L.Trainer) -> None:
    """Earlier stages' monitored scores become the worst possible: they can never be "best"."""
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor is None or not callback.best_k_models:
            continue
        worst = torch.tensor(float("-inf") if callback.mode == "max" else float("inf"))
        # Paths stay tracked so the first final-stage save replaces them (same file name).
        callback.best_k_models = dict.fromkeys(callback.best_k_models, worst)
        callback.kth_value = callback.best_model_score = worst
    for callback in trainer.early_stopping_callbacks:
        callback.best_score = torch.tensor(torch.inf if callback.mode == "min" else -torch.inf)
        callback.wait_count = 0


class TemperatureScaling(Callback):
    """Fits the model's temperature on the validation set at every validation of a fit.

    The logits of each validation pass are kept (N x C numbers, no extra forward pass) and at the
    end of the pass ``T`` is fitted to them (``ser.evaluation.calibration.fit_temperature``) and
    written into ``SERModule.temperature``, a buffer of the state dict: every checkpoint saved
    after that validation (``best.ckpt``, ``last.ckpt``) carries the temperature fitted to its
    own weights, and test, predict, the Python API and ONNX divide the logits by it. Dividing by
    a positive scalar never changes the argmax: WA, UA, F1 and the checkpoint choice are those of
    an uncalibrated run. Logged as ``val/temperature``. Under DDP each rank keeps its share and
    the fit sums over ranks, so all ranks agree on T. Validate/test runs leave T as loaded.

    A validation set the model gets all right leaves T at 1 (no temperature fits it: the smaller
    T, the better it seems, and the smallest would make every probability on new data about 1)
    and is warned about, once per fit, as is a temperature at the end of the search range.
    """

    def __init__(self) -> None:
        self.logits: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.warned = False
        self.without_class_head = False

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.logits, self.labels = [], []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: torch.Tensor,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._fitting(trainer):
            return
        if outputs is None:  # a model without a class head (dimensional): nothing to calibrate
            self.without_class_head = True
        else:
            self.logits.append(outputs.detach().float())  # (B, C) validation_step's logits
            self.labels.append(batch.labels)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._fitting(trainer) or self.without_class_head:
            return
        num_classes = len(pl_module.class_names)
        logits = torch.cat(self.logits) if self.logits else torch.zeros(0, num_classes)
        labels = torch.cat(self.labels) if self.labels else torch.zeros(0, dtype=torch.long)
        self.logits, self.labels = [], []
        device = pl_module.temperature.device
        reduce = partial(trainer.strategy.reduce, reduce_op="sum")
        logits, labels = logits.to(device), labels.to(device)
        temperature = fit_temperature(logits, labels, reduce)
        pl_module.temperature.fill_(temperature)
        pl_module.log("val/temperature", temperature, on_epoch=True)
        low, high = TEMPERATURE_RANGE
        if every_item_right(logits, labels, reduce):
            problem = "every validation utterance is right, so no temperature fits; T stays 1"
        elif not low * 1.001 < temperature < high * 0.999:
            problem = f"the validation set puts T at the end of its range {low}-{high}"
        else:
            return
        if not self.warned:
            self.warned = True
            rank_zero_warn(
                f"TemperatureScaling: {problem} ({temperature:.3g}): too few or too easy "
                "validation utterances to calibrate on; the test ECE says how far to trust the "
                "probabilities"
            )

    @staticmethod
    def _fitting(trainer: L.Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking
