"""Calibration: a temperature fitted on held-out logits, expected calibration error, reliability.

A classifier trained with cross-entropy is often over-confident: among the items it gives 0.9,
fewer than 90 % are right. Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural
Networks") divides the logits by one scalar ``T`` fitted to minimise the negative log-likelihood
on the validation set: the argmax (so WA, UA, F1) is unchanged, the probabilities mean what they
say. The expected calibration error (ECE) measures it: the items are put into 15 equal-width
bins by their top-label confidence, ``(i/15, (i+1)/15]``, and ECE is the item-weighted mean of
``|accuracy - mean confidence|`` over the bins.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torchmetrics import Metric

ECE_BINS = 15
# The search range of the temperature, and the points of each of its nested grids.
TEMPERATURE_RANGE = (0.05, 20.0)
GRID_POINTS = 41
GRID_ROUNDS = 3


def fit_temperature(
    logits: torch.Tensor,
    labels: torch.Tensor,
    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda sums: sums,
) -> float:
    """The temperature that minimises the NLL of ``softmax(logits / T)``, within 0.05-20.

    A bounded search on nested geometric grids (41 points, each round between the neighbours of
    the last round's best, to 0.04 % of T): the NLL is convex in 1/T, so it has one minimum and
    the neighbours of the best grid point bracket it. Deterministic, and each round needs one
    sum over the data, so ranks holding parts of the validation set agree on T through
    ``reduce`` (a sum across ranks; the identity on one process).

    Args:
        logits: (N, C) validation logits (``-inf`` allowed for classes out of play).
        labels: (N,) class indices.
        reduce: sums a tensor across processes.

    Returns:
        T; 1.0 when there are no items on any process, or when every item is right
        (``every_item_right``): the NLL then falls without end as T shrinks, so no temperature
        fits, and the range's smallest would make every probability on new data about 1.
    """
    logits, labels = logits.detach().float(), labels.detach()
    count = reduce(torch.tensor(float(len(labels)), device=logits.device))
    if count == 0 or every_item_right(logits, labels, reduce):
        return 1.0
    low, high = (math.log(bound) for bound in TEMPERATURE_RANGE)
    for _ in range(GRID_ROUNDS):
        temperatures = torch.linspace(low, high, GRID_POINTS, dtype=torch.float64).exp().tolist()
        nll = torch.stack(
            [F.cross_entropy(logits / t, labels, reduction="sum") for t in temperatures]
        )  # (K,)
        best = int(reduce(nll).argmin())
        low = math.log(temperatures[max(best - 1, 0)])
        high = math.log(temperatures[min(best + 1, GRID_POINTS - 1)])
    return temperatures[best]


def every_item_right(
    logits: torch.Tensor,
    labels: torch.Tensor,
    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda sums: sums,
) -> bool:
    """Whether there are items and every item's top logit is its label's, on all processes
    (``reduce`` as in ``fit_temperature``)."""
    wrong = (logits.argmax(dim=1) != labels).sum()
    sums = reduce(torch.stack([wrong, torch.tensor(len(labels), device=logits.device)]).float())
    return bool(sums[1] > 0 and sums[0] == 0)


class ReliabilityBins(Metric):
    """Top-label confidence and accuracy in ``ECE_BINS`` equal-width bins, summed over batches.

    The states are sums per bin, so a DDP sync is exact and memory does not grow with the data.
    ``compute()`` gives ``{"count", "confidence", "accuracy"}``: (bins,) tensors, the latter two
    means per bin (0 where a bin is empty).
    """

    full_state_update = False

    def __init__(self, bins: int = ECE_BINS) -> None:
        super().__init__()
        self.bins = bins
        for name in ("count", "confidence_sum", "correct_sum"):
            self.add_state(
                name, default=torch.zeros(bins, dtype=torch.float64), dist_reduce_fx="sum"
            )

    def update(self, probs: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: ``probs`` (B, C) rows that sum to 1, ``labels`` (B,)."""
        confidence, predicted = probs.detach().double().max(dim=-1)  # (B,), (B,)
        # Bin i holds (i/M, (i+1)/M]: ceil(c * M) - 1; a confidence of 0 cannot occur (c >= 1/C).
        index = (confidence * self.bins).ceil().long().clamp(1, self.bins) - 1  # (B,)
        self.count.index_add_(0, index, torch.ones_like(confidence))
        self.confidence_sum.index_add_(0, index, confidence)
        self.correct_sum.index_add_(0, index, (predicted == labels).double())

    def compute(self) -> dict[str, torch.Tensor]:
        filled = self.count.clamp(min=1)
        return {
            "count": self.count,
            "confidence": self.confidence_sum / filled,
            "accuracy": self.correct_sum / filled,
        }


def negative_log_likelihood(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) ``-log p(label)`` of ``probs`` (B, C), a zero probability at the float's tiniest:
    the proper scoring rule temperature scaling minimises, which a few dozen items measure where
    an ECE cannot."""
    chosen = probs.float().gather(1, labels[:, None]).squeeze(1)  # (B,)
    return -chosen.clamp_min(torch.finfo(torch.float32).tiny).log()


def expected_calibration_error(bins: dict[str, torch.Tensor]) -> float:
    """ECE of ``ReliabilityBins.compute()``: sum over bins of ``n_b / N * |acc_b - conf_b|``."""
    total = float(bins["count"].sum())
    if total == 0:
        return float("nan")
    gaps = (bins["accuracy"] - bins["confidence"]).abs()  # (bins,)
    return float((bins["count"] * gaps).sum() / total)


def reliability_figure(curves: dict[str, dict[str, torch.Tensor]], title: str) -> Figure:
    """A reliability diagram: accuracy against confidence per bin, one line per model.

    Args:
        curves: a name ("uncalibrated", "T = 1.42") -> ``ReliabilityBins.compute()``.
        title: the figure's title.
    """
    fig = Figure(figsize=(5.0, 5.0))  # a bare Figure: no pyplot, no GUI backend
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    for name, bins in curves.items():
        filled = bins["count"] > 0
        ece = expected_calibration_error(bins)
        ax.plot(
            bins["confidence"][filled].cpu().numpy(),
            bins["accuracy"][filled].cpu().numpy(),
            marker="o",
            label=f"{name} (ECE {ece:.3f})",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top label)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig
