"""Classification heads: one pooled vector per utterance ``(B, D)`` -> logits ``(B, C)``."""

from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Module):
    """Dropout then one linear layer.

    Args:
        input_size: pooled vector size ``D`` (the pooling's ``output_size``).
        num_classes: number of classes ``C``.
        dropout: dropout probability on the pooled vector.
    """

    def __init__(self, input_size: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(input_size, num_classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` -> logits ``(B, C)``."""
        return self.linear(self.dropout(pooled))  # (B, C)


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
