"""The loss of the dimensional task: 1 - CCC averaged over dimensions, or the mean squared error.

The CCC loss is computed over each batch (the usual practice for CCC training): a batch of one
item has no variance, so its loss is 1 and it gives no gradient; batches of a few items give a
noisy estimate. MSE is the per-item alternative; it does not reward matching the spread of the
ratings, which the CCC does.
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
