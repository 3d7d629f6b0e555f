"""Classification heads: one pooled vector per utterance ``(B, D)`` -> logits ``(B, C)``."""

from __future__ import annotations

import torch
from torch import nn

from ser.models.distributed import gather_ranks


class Standardize(nn.Module):
    """Per-dimension standardisation with the mean and variance of every training vector seen.

    A frozen encoder's states vary across utterances by far less than their common offset, so a
    linear probe on them barely learns (issue 10: UA 0.43 where a standardized logistic
    regression reaches 0.80). In training each batch is added to running totals (Chan's parallel
    update) and normalised with them, so train and eval see the same transform and a batch of
    one works (unlike a batch norm); for frozen features the totals are the training set's own
    statistics after one epoch. They are buffers: the checkpoint carries them to ``predict``.
    Under DDP each rank's batches are added on every rank, so the totals are the whole training
    set's, as in one process.

    Args:
        input_size: vector size ``D``.
        eps: added to the variance.
    """

    def __init__(self, input_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(input_size))
        self.register_buffer("sum_squares", torch.zeros(input_size))  # of deviations from mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` -> ``(B, D)`` standardized."""
        x32 = x.float()  # statistics in float32 under autocast
        if self.training:
            with torch.no_grad():
                self._add(x32)
        variance = self.sum_squares / self.count.clamp(min=1).float()  # (D,)
        return ((x32 - self.mean) * torch.rsqrt(variance + self.eps)).to(x.dtype)  # (B, D)

    def _add(self, x: torch.Tensor) -> None:
        batch_mean = x.mean(dim=0)  # (D,)
        batch_squares = ((x - batch_mean) ** 2).sum(dim=0)  # (D,)
        # Under DDP every rank's batch is merged, in rank order, so all ranks hold the same
        # totals of the whole training set (ser.models.distributed). The count stays a tensor on
        # the device: reading it back would make every training step wait for the GPU
        # (tests/test_host_sync.py).
        size = torch.full((1,), len(x), dtype=torch.float64, device=x.device)
        batch = torch.cat([size, batch_mean.double(), batch_squares.double()])  # (1 + 2D,)
        for part in gather_ranks(batch):
            n, (mean, squares) = part[0], part[1:].float().chunk(2)
            self._merge(n, mean, squares)

    def _merge(
        self, n: torch.Tensor, batch_mean: torch.Tensor, batch_squares: torch.Tensor
    ) -> None:
        """Chan's update with a batch of ``n`` vectors, their mean and summed squared deviations."""
        total = self.count  # a 0-d float64 tensor, as n
        delta = batch_mean - self.mean  # (D,)
        self.mean += delta * (n / (total + n)).float()
        self.sum_squares += batch_squares + delta**2 * (total * n / (total + n)).float()
        self.count += n


class LinearHead(nn.Module):
    """Optional standardisation, dropout, then one linear layer.

    Args:
        input_size: pooled vector size ``D`` (the pooling's ``output_size``).
        num_classes: number of classes ``C``.
        dropout: dropout probability on the pooled vector.
        standardize: standardize each pooled dimension with training statistics (probes of a
            frozen encoder; see ``Standardize``).
    """

    def __init__(
        self, input_size: int, num_classes: int, dropout: float = 0.0, standardize: bool = False
    ) -> None:
        super().__init__()
        self.standardize = Standardize(input_size) if standardize else nn.Identity()
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
