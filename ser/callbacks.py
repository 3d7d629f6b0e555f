"""Callbacks: the predictions CSV writer."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from ser.results import PredictionRow, gather_rows, write_predictions_csv

log = logging.getLogger(__name__)


class PredictionWriter(BasePredictionWriter):
    """Writes ``path, pred, prob_<class>...`` for every predicted file.

    A file scored in several windows gets the mean of its windows' probabilities.

    Args:
        output: the CSV file to write.
    """

    def __init__(self, output: str | Path) -> None:
        super().__init__(write_interval="epoch")
        self.output = Path(output)

    def write_on_epoch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        predictions: list,
        batch_indices: list,
    ) -> None:
        windows: dict[str, list[torch.Tensor]] = defaultdict(list)
        for batch in _flatten(predictions):
            for utt_id, probs in zip(batch["utt_ids"], batch["probs"], strict=True):
                windows[utt_id].append(probs)
        rows = [
            PredictionRow(path, "", torch.stack(probs).mean(dim=0).tolist())
            for path, probs in windows.items()
        ]
        rows = gather_rows(rows)
        if trainer.is_global_zero:
            write_predictions_csv(self.output, rows, pl_module.class_names, id_column="path")
            log.info("wrote predictions for %d files to %s", len(rows), self.output)


def _flatten(predictions: list) -> list[dict]:
    # One predict dataloader gives a list of batch outputs; several give a list of lists.
    if predictions and isinstance(predictions[0], list):
        return [batch for loader in predictions for batch in loader]
    return predictions
