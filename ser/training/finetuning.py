"""Linear probe, then fine-tuning (LP-FT): the head learns on the frozen encoder first.

Fine-tuning a pretrained encoder with a randomly initialised head sends the head's large, random
gradients into the encoder in the first steps and distorts the features a small corpus cannot
relearn (Kumar et al., "Fine-Tuning can Distort Pretrained Features", ICLR 2022). Training the head
(and layer weights, pooling) on the frozen encoder first, then fine-tuning everything from that
head, keeps what the probe already reaches and improves on it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from ser.training.callbacks import Curriculum, steps_within_max_steps

log = logging.getLogger(__name__)


class ProbeThenFinetune(Callback):
    """Trains the new weights on the frozen encoder for ``probe_epochs``, then fine-tunes.

    The callback decides *when*; the backbone decides *how*: during the probe its whole encoder
    is frozen (``HFBackbone.set_encoder_trainable(False)``: run without autograd and in eval mode,
    left out of the optimizer; safe under DDP), the layer weights, pooling and head train at
    ``head_lr``. At the
    first fine-tuning epoch the encoder trains as its ``freeze``/``freeze_layers`` say (a frozen
    CNN stays frozen) and the optimizer and LR schedule are rebuilt (``configure_optimizers``):
    the encoder's groups join, and a fresh warmup spans the remaining epochs, as a second run
    started from the probe. Each phase warms up and decays over its own steps.

    Not Lightning's ``BackboneFinetuning``/``BaseFinetuning``: they add the encoder as one more
    group to the running optimizer (one learning rate, no layer-wise decay or no-decay group, a
    group the LR schedule built at fit start does not know) and on resume re-apply the first
    epoch's groups. The phase is saved in checkpoints: a resumed run continues in it.

    Args:
        probe_epochs: epochs of the probe; the encoder trains from epoch ``probe_epochs`` on.
    """

    def __init__(self, probe_epochs: int = 2) -> None:
        if probe_epochs < 1:
            raise ValueError(f"ProbeThenFinetune: probe_epochs={probe_epochs}; expected >= 1")
        self.probe_epochs = probe_epochs
        self.finetuning = False
        self._trainer: L.Trainer | None = None  # a fit's (setup), which load_state_dict moves

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if pl_module.backbone.freeze == "all":
            raise ValueError(
                "ProbeThenFinetune: the backbone has freeze=all, so there is nothing to fine-tune "
                "after the probe; use freeze: feature_encoder (or none)"
            )
        if not trainer.max_epochs or trainer.max_epochs <= self.probe_epochs:
            raise ValueError(
                f"ProbeThenFinetune: probe_epochs={self.probe_epochs} leaves no epoch to "
                f"fine-tune with trainer.max_epochs={trainer.max_epochs}"
            )
        if any(isinstance(callback, Curriculum) for callback in trainer.callbacks):
            raise ValueError(
                "ProbeThenFinetune and Curriculum both restart the optimizer and schedule; use one"
            )
        self._enter(trainer, pl_module, finetuning=False)

    def state_dict(self) -> dict[str, Any]:
        return {"finetuning": self.finetuning}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Runs before a resumed fit builds its optimizer: it must have the checkpoint's groups.
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == TrainerFn.FITTING:
            if state_dict["finetuning"]:
                self._enter(trainer, trainer.lightning_module, finetuning=True)
        else:  # validate/test of a checkpoint (`ser test -c RUN/config.yaml`): no phase to enter
            self.finetuning = state_dict["finetuning"]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.finetuning and trainer.current_epoch >= self.probe_epochs:
            self._enter(trainer, pl_module, finetuning=True)
            trainer.strategy.setup_optimizers(trainer)  # configure_optimizers: new groups
            log.info(
                "ProbeThenFinetune: epoch %d: encoder unfrozen (freeze=%s, freeze_layers=%d); "
                "optimizer and schedule restart",
                trainer.current_epoch,
                pl_module.backbone.freeze,
                pl_module.backbone.freeze_layers,
            )

    def _enter(self, trainer: L.Trainer, pl_module: L.LightningModule, finetuning: bool) -> None:
        self._trainer = trainer
        self.finetuning = finetuning
        pl_module.backbone.set_encoder_trainable(finetuning)
        if math.isinf(trainer.estimated_stepping_batches):  # loads the train loader if not yet
            raise ValueError("ProbeThenFinetune: the training loader has no length to plan with")
        epoch_steps = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        epochs = [self.probe_epochs, trainer.max_epochs - self.probe_epochs]  # of each phase
        phases = [epoch_steps * count for count in epochs]
        probe, finetune = steps_within_max_steps(phases, trainer.max_steps)
        pl_module.schedule_steps = max(1, finetune if finetuning else probe)
