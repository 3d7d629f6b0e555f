"""Dimensional emotion metrics: CCC, Pearson r and MAE per dimension, and the mean CCC.

The concordance correlation coefficient (Lin 1989) is the field's score for arousal, valence and
dominance (MSP-Podcast, IEMOCAP, AVEC): ``2 cov(x, y) / (var x + var y + (mean x - mean y)^2)``.
It is a correlation that also pays for a shift or a scale error, so a model that ranks well but
predicts on the wrong scale scores low. ``concordance`` is the differentiable batch form the loss
uses; ``DimensionalMetrics`` accumulates over an epoch (torchmetrics, DDP-synchronised).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from torch import nn
from torchmetrics.regression import ConcordanceCorrCoef, MeanAbsoluteError, PearsonCorrCoef


def concordance(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CCC (K,) of each column of ``preds`` (N, K) against ``targets`` (N, K), with population
    moments; 0 where both columns are constant (no concordance to measure)."""
    pred_mean, target_mean = preds.mean(dim=0), targets.mean(dim=0)  # (K,), (K,)
    covariance = ((preds - pred_mean) * (targets - target_mean)).mean(dim=0)  # (K,)
    spread = preds.var(dim=0, unbiased=False) + targets.var(dim=0, unbiased=False)  # (K,)
    return 2 * covariance / (spread + (pred_mean - target_mean) ** 2).clamp(min=1e-12)  # (K,)


class DimensionalMetrics(nn.Module):
    """CCC, Pearson r and MAE of each dimension over one stage's epoch.

    Args:
        dimensions: the name of each output column (``arousal``, ``valence`` ...).
        prefix: the stage, used in the logged names (``val/CCC``, ``val/CCC/arousal``).
    """

    def __init__(self, dimensions: Sequence[str], prefix: str) -> None:
        super().__init__()
        self.dimensions = list(dimensions)
        self.prefix = prefix
        count = len(self.dimensions)
        self.scores = nn.ModuleDict(
            {
                "CCC": ConcordanceCorrCoef(num_outputs=count),
                "pearson": PearsonCorrCoef(num_outputs=count),
                "MAE": MeanAbsoluteError(num_outputs=count),
            }
        )

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch: ``preds`` and ``targets`` (B, K)."""
        if len(self.dimensions) == 1:  # torchmetrics takes one output as (B,)
            preds, targets = preds[:, 0], targets[:, 0]  # (B,), (B,)
        for metric in self.scores.values():
            metric.update(preds.float(), targets.float())

    def compute(self) -> dict[str, float]:
        """``{prefix/CCC (mean), prefix/<metric>/<dimension>}`` as floats."""
        values = {}
        for name, metric in self.scores.items():
            per_dimension = metric.compute().reshape(-1).tolist()  # (K,)
            for dimension, value in zip(self.dimensions, per_dimension, strict=True):
                values[f"{self.prefix}/{name}/{dimension}"] = value
            if name == "CCC":  # the checkpoint-selection score
                values[f"{self.prefix}/CCC"] = sum(per_dimension) / len(per_dimension)
        return values

    def reset(self) -> None:
        for metric in self.scores.values():
            metric.reset()


def scatter_figure(
    preds: torch.Tensor, targets: torch.Tensor, dimensions: Sequence[str], title: str
) -> Figure:
    """One panel per dimension: predicted (y) against true (x) values (N, K), with y = x."""
    preds, targets = preds.detach().cpu().float(), targets.detach().cpu().float()
    fig = Figure(figsize=(3.2 * len(dimensions), 3.4))
    axes = fig.subplots(1, len(dimensions), squeeze=False)[0]
    for k, (ax, name) in enumerate(zip(axes, dimensions, strict=True)):
        ax.scatter(targets[:, k].numpy(), preds[:, k].numpy(), s=6, alpha=0.5)
        low = float(min(targets[:, k].min(), preds[:, k].min()))
        high = float(max(targets[:, k].max(), preds[:, k].max()))
        ax.plot([low, high], [low, high], color="grey", linewidth=0.8)
        ccc = float(concordance(preds[:, k : k + 1], targets[:, k : k + 1])[0])
        ax.set_title(f"{name} (CCC {ccc:.3f})")
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
