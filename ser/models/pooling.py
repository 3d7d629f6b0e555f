"""Masked pooling of frame sequences ``(B, T, H)`` into one vector per utterance ``(B, D)``.

Frames past ``lengths[b]`` never influence the result, whatever values they hold. Poolings that
are functions of each utterance's frame mean and standard deviation (``masked_mean_std``) also
have ``from_statistics``, so a feature store of per-layer statistics can stand in for the frames
(``ser.features``).
"""

from __future__ import annotations

import torch
from torch import nn

from ser.models.backbones.frames import lengths_to_mask


def masked_mean_std(hidden: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Mean and standard deviation ``(B, H)`` each over the valid frames of ``hidden (B, T, H)``.

    The deviation is the population one, floored at 1e-3 (variance 1e-6) to keep its gradient
    finite.
    """
    mask = lengths_to_mask(lengths, hidden.shape[1]).unsqueeze(-1)  # (B, T, 1)
    hidden = hidden.masked_fill(~mask, 0.0)  # padding may hold anything, even inf/nan
    count = lengths.clamp(min=1).unsqueeze(-1).to(hidden.dtype)  # (B, 1)
    mean = hidden.sum(dim=1) / count  # (B, H)
    deviations = (hidden - mean.unsqueeze(1)).masked_fill(~mask, 0.0)  # (B, T, H)
    variance = (deviations**2).sum(dim=1) / count  # (B, H)
    return mean, torch.sqrt(variance.clamp(min=1e-6))  # (B, H), (B, H)


class MeanPooling(nn.Module):
    """Mean over the valid frames.

    Linear in the frames, so it commutes with the backbone's layer weighting: per-layer means
    mixed equal the mean of the mixed layers.

    Args:
        input_size: frame size ``H`` (the backbone's ``output_size``).
    """

    commutes_with_layer_mix = True

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.output_size = input_size

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``hidden (B, T, H)``, ``lengths (B,)`` valid frames -> ``(B, H)``."""
        mask = lengths_to_mask(lengths, hidden.shape[1]).unsqueeze(-1)  # (B, T, 1)
        total = hidden.masked_fill(~mask, 0.0).sum(dim=1)  # (B, H)
        return total / lengths.clamp(min=1).unsqueeze(-1).to(hidden.dtype)  # (B, H)

    def from_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """The pooled vector ``(B, H)`` from ``masked_mean_std``'s mean and deviation."""
        return mean


class StatisticsPooling(nn.Module):
    """Mean and standard deviation over the valid frames, concatenated (x-vector statistics).

    Not linear: the deviation of a layer-weighted sum is not the weighted sum of the layers'
    deviations, so a statistics feature store serves it only without layer weighting.

    Args:
        input_size: frame size ``H`` (the backbone's ``output_size``).
    """

    commutes_with_layer_mix = False

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.output_size = 2 * input_size

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``hidden (B, T, H)``, ``lengths (B,)`` valid frames -> ``(B, 2H)``."""
        return self.from_statistics(*masked_mean_std(hidden, lengths))  # (B, 2H)

    def from_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """The pooled vector ``(B, 2H)`` from ``masked_mean_std``'s mean and deviation."""
        return torch.cat([mean, std], dim=-1)  # (B, 2H)


class AttentiveStatisticsPooling(nn.Module):
    """Attentive statistics pooling (Okabe et al., 2018): attention-weighted mean and std.

    A small MLP scores each frame; the softmax over valid frames weights the mean and standard
    deviation, which are concatenated.

    Args:
        input_size: frame size ``H`` (the backbone's ``output_size``).
        attention_size: hidden width of the frame-scoring MLP.
    """

    def __init__(self, input_size: int, attention_size: int = 128) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.Linear(input_size, attention_size), nn.Tanh(), nn.Linear(attention_size, 1)
        )
        self.output_size = 2 * input_size

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``hidden (B, T, H)``, ``lengths (B,)`` valid frames -> ``(B, 2H)``."""
        mask = lengths_to_mask(lengths.clamp(min=1), hidden.shape[1]).unsqueeze(-1)  # (B, T, 1)
        hidden = hidden.masked_fill(~mask, 0.0)  # padding may hold anything, even inf/nan
        scores = self.attention(hidden).masked_fill(~mask, float("-inf"))  # (B, T, 1)
        weights = torch.softmax(scores, dim=1)  # (B, T, 1)
        mean = (weights * hidden).sum(dim=1)  # (B, H)
        variance = (weights * (hidden - mean.unsqueeze(1)) ** 2).sum(dim=1)  # (B, H)
        std = torch.sqrt(variance.clamp(min=1e-6))  # (B, H)
        return torch.cat([mean, std], dim=-1)  # (B, 2H)
