"""Emotion metrics: WA, UA, macro-F1, recall per class and the confusion matrix.

WA (weighted accuracy) is plain accuracy; UA (unweighted accuracy) is the mean of the per-class
recalls, the balanced figure most SER papers compare (the paper's "previous methods" ~65 % is a UA).
UA is the mean recall over the classes the labels hold (scikit-learn's balanced accuracy): a class
absent from the labels is left out even when it is predicted (a leave-one-speaker-out fold whose
speaker has no disgust), and it has no ``recall/<class>`` there (not a recall of 0, which a mean
over folds would count). Macro-F1 leaves out classes absent from both labels and predictions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)


class EmotionMetrics(nn.Module):
    """All metrics of one stage (train, val or test), synchronised across DDP ranks.

    Args:
        class_names: the class of each logit index.
        prefix: the stage, used in the logged names (``val/UA``, ``val/recall/anger``).
    """

    def __init__(self, class_names: Sequence[str], prefix: str) -> None:
        super().__init__()
        self.class_names = list(class_names)
        self.prefix = prefix
        num_classes = len(self.class_names)
        # Labels are indices made by our LabelSet: torchmetrics' argument checks (torch.unique,
        # a host-device sync per metric and batch) would only cost time.
        checks = {"validate_args": False}
        self.scores = MetricCollection(
            {
                "WA": MulticlassAccuracy(num_classes, average="micro", **checks),
                "F1": MulticlassF1Score(num_classes, average="macro", **checks),
            }
        )
        self.confusion = MulticlassConfusionMatrix(num_classes, **checks)

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: ``logits`` (B, C), ``labels`` (B,)."""
        preds = logits.argmax(dim=-1)  # (B,)
        self.scores.update(preds, labels)
        self.confusion.update(preds, labels)

    def compute(self) -> dict[str, float]:
        """``{prefix/WA, prefix/UA, prefix/F1, prefix/recall/<class>}`` as floats."""
        values = {f"{self.prefix}/{k}": float(v) for k, v in self.scores.compute().items()}
        matrix = self.confusion.compute()  # (C, C), rows true
        support = matrix.sum(dim=1)  # (C,)
        present = support > 0
        recall = matrix.diagonal() / support.clamp(min=1)  # (C,)
        values[f"{self.prefix}/UA"] = float(recall[present].mean()) if present.any() else 0.0
        # A class without labels here has no recall (not 0): left out, as UA leaves it out.
        for name, class_recall, labelled in zip(
            self.class_names, recall.tolist(), present.tolist(), strict=True
        ):
            if labelled:
                values[f"{self.prefix}/recall/{name}"] = class_recall
        return values

    def confusion_matrix(self) -> torch.Tensor:
        """(C, C) counts: row = true class, column = predicted class."""
        return self.confusion.compute()

    def reset(self) -> None:
        self.scores.reset()
        self.confusion.reset()


def confusion_figure(matrix: torch.Tensor, class_names: Sequence[str], title: str) -> Figure:
    """A confusion-matrix figure: rows true, columns predicted, cells count and row share."""
    counts = matrix.detach().cpu().float()
    shares = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)  # (C, C) recall per row
    size = 1.2 + 0.75 * len(class_names)
    # A bare Figure (no pyplot): no GUI backend, no global figure registry to leak into.
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.subplots()
    image = ax.imshow(shares.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            colour = "white" if shares[i, j] > 0.5 else "black"
            text = f"{int(counts[i, j])}\n{shares[i, j]:.0%}"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig
