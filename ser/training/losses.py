"""The training losses: cross-entropy against labels or vote shares, and the dimensional loss.

Categorical: cross-entropy with per-class weights (``class_weights``) and label smoothing, against
hard labels or against annotators' vote shares (``--data.soft_labels``); during a curriculum stage
only that stage's classes (``active``) compete in the softmax.

Dimensional: 1 - CCC averaged over dimensions, or the mean squared error. The CCC loss is
computed over each batch (the usual practice for CCC training): a batch of one item has no
variance, so its loss is 1 and it gives no gradient; batches of a few items give a noisy
estimate. MSE is the per-item alternative; it does not reward matching the spread of the
ratings, which the CCC does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from ser.evaluation.dimensional import concordance

RegressionLoss = Literal["ccc", "mse"]
ClassWeights = Literal["none", "balanced"] | list[float]


def class_weights(
    setting: ClassWeights, class_names: Sequence[str], train_counts: Callable[[], list[int]]
) -> torch.Tensor:
    """One loss weight per class (C,): all 1, "balanced" (n / (C * n_c) from the training
    split's class counts, read only for it; a class without training items gets 0), or as given.
    """
    num_classes = len(class_names)
    if setting == "none":
        return torch.ones(num_classes)
    if setting == "balanced":
        counts = torch.tensor(train_counts(), dtype=torch.float)
        # n / (C * n_c): a class seen half as often weighs twice as much; unseen classes get 0.
        return torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)), 0.0)
    if len(setting) != num_classes:
        raise ValueError(
            f"class_weights has {len(setting)} values but there are {num_classes} classes "
            f"{list(class_names)}"
        )
    return torch.tensor(setting, dtype=torch.float)


def hard_label_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    label_smoothing: float,
    active: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted cross-entropy of logits (B, C) against class indices (B,); ``active`` (C',)
    ascending class indices: only these classes compete (None: all)."""
    if active is not None:
        # Column selection, not -inf logits: label smoothing would spread mass onto -inf logits.
        # Indices, not a boolean mask: a mask's selection waits for the GPU (nonzero) each step.
        order = torch.arange(len(active), device=active.device)
        column = torch.zeros(logits.shape[1], dtype=torch.long, device=active.device)
        column = column.index_copy(0, active, order)  # (C,) class -> its active column
        logits, labels = logits.index_select(1, active), column[labels]  # (B, C'), (B,)
        weight = weight.index_select(0, active)  # (C',)
    return F.cross_entropy(logits.float(), labels, weight=weight, label_smoothing=label_smoothing)


def vote_share_loss(
    logits: torch.Tensor,
    shares: torch.Tensor,
    weight: torch.Tensor,
    label_smoothing: float,
    active: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft cross-entropy of logits (B, C) against vote shares (B, C), divided by the targets'
    total class weight as the hard loss divides by its labels' weights: a one-hot row gives
    exactly ``hard_label_loss``, class weights and label smoothing included."""
    if active is not None:  # the shares of the active classes (indices), renormalised
        logits, shares = logits.index_select(1, active), shares.index_select(1, active)
        weight = weight.index_select(0, active)
        shares = shares / shares.sum(dim=-1, keepdim=True).clamp(min=1e-12)  # (B, C')
    total = F.cross_entropy(
        logits.float(), shares, weight=weight, label_smoothing=label_smoothing, reduction="sum"
    )
    return total / (shares @ weight).sum()


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
