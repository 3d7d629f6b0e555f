"""Dimensional emotion metrics: CCC, Pearson r and MAE per dimension, and the mean CCC.

The concordance correlation coefficient (Lin 1989) is the field's score for arousal, valence and
dominance (MSP-Podcast, IEMOCAP, AVEC): ``2 cov(x, y) / (var x + var y + (mean x - mean y)^2)``.
It is a correlation that also pays for a shift or a scale error, so a model that ranks well but
predicts on the wrong scale scores low. Its moments are the population ones (divided by n), as
Lin defines it and as the AVEC and EmoBox scripts compute it (``np.var``, ``np.mean``), the same
in the loss, the logged metric, the scatter figure and ``ser compare``. ``concordance`` is the
differentiable batch form the loss uses; ``DimensionalMetrics`` accumulates over an epoch
(``Concordance``: sums in float64, summed over DDP ranks).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from torch import nn
from torchmetrics import Metric
from torchmetrics.regression import MeanAbsoluteError, PearsonCorrCoef


def concordance(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CCC (K,) of each column of ``preds`` (N, K) against ``targets`` (N, K), with population
    moments; 0 where both columns are constant (no concordance to measure)."""
    pred_mean, target_mean = preds.mean(dim=0), targets.mean(dim=0)  # (K,), (K,)
    covariance = ((preds - pred_mean) * (targets - target_mean)).mean(dim=0)  # (K,)
    spread = preds.var(dim=0, unbiased=False) + targets.var(dim=0, unbiased=False)  # (K,)
    return 2 * covariance / (spread + (pred_mean - target_mean) ** 2).clamp(min=1e-12)  # (K,)


class Concordance(Metric):
    """Lin's CCC of each of ``num_outputs`` columns over every item updated (population moments).

    Keeps the count and the sums of x, y, x^2, y^2 and xy (float64): an epoch's CCC is exact
    whatever the batches, and DDP sums the states of every rank.
    """

    full_state_update = False
    SUMS = ("count", "sum_x", "sum_y", "sum_xx", "sum_yy", "sum_xy")

    def __init__(self, num_outputs: int) -> None:
        super().__init__()
        for name in self.SUMS:
            zeros = torch.zeros(num_outputs, dtype=torch.float64)
            self.add_state(name, default=zeros, dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        """Add ``preds`` and ``targets`` (B, K)."""
        x, y = preds.double(), targets.double()
        self.count += x.shape[0]
        self.sum_x += x.sum(dim=0)
        self.sum_y += y.sum(dim=0)
        self.sum_xx += (x * x).sum(dim=0)
        self.sum_yy += (y * y).sum(dim=0)
        self.sum_xy += (x * y).sum(dim=0)

    def compute(self) -> torch.Tensor:
        """(K,) CCC; 0 where both columns are constant."""
        n = self.count.clamp(min=1)
        mean_x, mean_y = self.sum_x / n, self.sum_y / n
        var_x, var_y = self.sum_xx / n - mean_x**2, self.sum_yy / n - mean_y**2
        covariance = self.sum_xy / n - mean_x * mean_y
        spread = (var_x + var_y + (mean_x - mean_y) ** 2).clamp(min=1e-12)
        return (2 * covariance / spread).float()


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
                "CCC": Concordance(num_outputs=count),
                "pearson": PearsonCorrCoef(num_outputs=count),
                "MAE": MeanAbsoluteError(num_outputs=count),
            }
        )

    def update(self, preds: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch: ``preds`` and ``targets`` (B, K)."""
        preds, targets = preds.float(), targets.float()
        self.scores["CCC"].update(preds, targets)
        if len(self.dimensions) == 1:  # torchmetrics takes one output as (B,)
            preds, targets = preds[:, 0], targets[:, 0]  # (B,), (B,)
        self.scores["pearson"].update(preds, targets)
        self.scores["MAE"].update(preds, targets)

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
