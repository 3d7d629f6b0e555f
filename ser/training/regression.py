"""The loss of the dimensional task: 1 - CCC averaged over dimensions, or the mean squared error.

CCC is a batch statistic, so a batch of one has no concordance: its CCC loss is 1 and gives no
gradient (the datamodule's batches are many items; ``drop_last`` is not needed for the sizes we
train with). MSE is the per-item alternative, which ignores the scale the CCC rewards.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ser.evaluation.dimensional import concordance

RegressionLoss = Literal["ccc", "mse"]


def regression_loss(
    preds: torch.Tensor, targets: torch.Tensor, kind: RegressionLoss
) -> torch.Tensor:
    """The scalar loss of ``preds`` against ``targets`` (B, K), in float32."""
    preds, targets = preds.float(), targets.float()
    if kind == "ccc":
        return 1.0 - concordance(preds, targets).mean()
    if kind == "mse":
        return F.mse_loss(preds, targets)
    raise ValueError(f"regression loss {kind!r}; expected 'ccc' or 'mse'")
