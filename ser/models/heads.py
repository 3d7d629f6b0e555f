"""Classification heads: one pooled vector per utterance ``(B, D)`` -> logits ``(B, C)``."""

from __future__ import annotations

import torch
from torch import nn


def standardizer(input_size: int, standardize: bool) -> nn.Module:
    """Per-dimension standardisation of the pooled vectors with training statistics, or nothing.

    A frozen encoder's states vary across utterances by far less than their common offset, so a
    linear probe on them barely learns (issue 10: UA 0.43 where a standardized logistic
    regression reaches 0.80). This is MAE's linear-probe recipe: a batch norm without scale or
    shift. ``momentum=None`` keeps the running statistics a cumulative mean over all training
    batches, which for frozen features is the training set's own mean and variance; evaluation
    and ``predict`` use them (they are buffers, saved in the checkpoint).
    """
    if not standardize:
        return nn.Identity()
    return nn.BatchNorm1d(input_size, affine=False, momentum=None)


class LinearHead(nn.Module):
    """Optional standardisation, dropout, then one linear layer.

    Args:
        input_size: pooled vector size ``D`` (the pooling's ``output_size``).
        num_classes: number of classes ``C``.
        dropout: dropout probability on the pooled vector.
        standardize: standardize each pooled dimension with training statistics (probes of a
            frozen encoder; see ``standardizer``).
    """

    def __init__(
        self, input_size: int, num_classes: int, dropout: float = 0.0, standardize: bool = False
    ) -> None:
        super().__init__()
        self.standardize = standardizer(input_size, standardize)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(input_size, num_classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` -> logits ``(B, C)``."""
        return self.linear(self.dropout(self.standardize(pooled)))  # (B, C)


class MLPHead(nn.Module):
    """Dropout, linear, ReLU, dropout, linear.

    Args:
        input_size: pooled vector size ``D`` (the pooling's ``output_size``).
        num_classes: number of classes ``C``.
        hidden_size: width of the hidden layer.
        dropout: dropout probability before each linear layer.
    """

    def __init__(
        self, input_size: int, num_classes: int, hidden_size: int = 256, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(input_size, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, num_classes),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` -> logits ``(B, C)``."""
        return self.net(pooled)  # (B, C)
