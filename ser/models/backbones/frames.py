"""Padding bookkeeping shared by the backbone families: masks, per-utterance normalisation, windows.

A batch is ``waves (B, T)`` zero-padded on the right with ``lengths (B,)`` valid samples. Every
family turns it into ``hidden (B, T', H)`` plus ``frame_lengths (B,)``; the helpers here keep the
padded part of the batch from leaking into the valid part.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

Length = TypeVar("Length", torch.Tensor, int)  # lengths per item (a tensor) or one width (an int)


def conv_output_lengths(lengths: Length, convs: Sequence[nn.Conv1d]) -> Length:
    """Output frames of a stack of 1-D convolutions for ``lengths`` input samples or frames.

    Each layer gives ``(L + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1``, the
    arithmetic of ``nn.Conv1d`` read from the modules themselves (so no model's private helper).
    A tensor gives a tensor on its device, an int (a padded width) an int: no device round trip.
    """
    for conv in convs:
        reach = conv.dilation[0] * (conv.kernel_size[0] - 1) + 1
        lengths = (lengths + 2 * conv.padding[0] - reach) // conv.stride[0] + 1
    return lengths


def dft_matrix(frame_size: int, fft_size: int) -> np.ndarray:
    """Real arithmetic for ``rfft(frame, n=fft_size)`` of frames of ``frame_size`` samples
    (zero-padded): ``(2 * (fft_size // 2 + 1), frame_size)`` in float64, the real parts' rows
    then the imaginary parts' with the sign flipped (their squares sum to the power spectrum).
    ONNX has no complex type nor rfft, so exported front ends take their spectra this way."""
    cycles = np.arange(fft_size // 2 + 1)[:, None] * np.arange(frame_size)[None, :]
    angles = 2 * np.pi * (cycles % fft_size) / fft_size  # reduced first: exact for long frames
    return np.concatenate([np.cos(angles), np.sin(angles)])


def framed_power(waves: torch.Tensor, frame_map: np.ndarray, hop: int) -> torch.Tensor:
    """Power spectra ``(B, F, n)`` of ``waves (B, T)``: ``frame_map`` (``dft_matrix`` times any
    linear per-frame steps, ``(2F, frame_size)``) applied to a frame every ``hop`` samples (whole
    frames only) as one strided convolution, then real² + imaginary²."""
    kernel = torch.from_numpy(frame_map).to(waves)[:, None]  # (2F, 1, frame_size)
    spectrum = F.conv1d(waves[:, None], kernel, stride=hop)  # (B, 2F, n)
    real, imag = spectrum.chunk(2, dim=1)  # (B, F, n) each
    return real**2 + imag**2


def lengths_to_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """Boolean mask ``(B, max_length)``, True on the first ``lengths[b]`` positions of row ``b``."""
    positions = torch.arange(max_length, device=lengths.device)  # (T,)
    return positions[None, :] < lengths[:, None]  # (B, T)


def normalize_valid(waves: torch.Tensor, mask: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Zero mean, unit variance per utterance over its valid samples only; padding stays zero.

    Matches ``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm`` (population variance, ``eps``
    inside the square root), which the extractor applies to each un-padded utterance.
    """
    weights = mask.to(waves.dtype)  # (B, T)
    count = weights.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, 1)
    mean = (waves * weights).sum(dim=1, keepdim=True) / count  # (B, 1)
    var = (((waves - mean) * weights) ** 2).sum(dim=1, keepdim=True) / count  # (B, 1)
    return (waves - mean) / torch.sqrt(var + eps) * weights  # (B, T)


def scale_to_level(
    waves: torch.Tensor, lengths: torch.Tensor, level_db: float, max_gain_db: float
) -> torch.Tensor:
    """Each utterance's DC offset removed and its RMS over its valid samples scaled to
    ``level_db`` dBFS, raised by at most ``max_gain_db`` (near-silence is not lifted to speech
    level); padding stays zero.

    One gain per utterance: the waveform's shape, its pauses and its loudness contour are kept;
    only the recording level (microphone distance, gain, the corpus's mastering) is removed.
    """
    weights = lengths_to_mask(lengths, waves.shape[1]).to(waves.dtype)  # (B, T)
    count = weights.sum(dim=1, keepdim=True).clamp(min=1.0)  # (B, 1)
    centred = (waves - (waves * weights).sum(dim=1, keepdim=True) / count) * weights  # (B, T)
    rms = centred.pow(2).sum(dim=1, keepdim=True).div(count).sqrt()  # (B, 1)
    target = 10.0 ** (level_db / 20.0)
    floor = target * 10.0 ** (-max_gain_db / 20.0)
    return centred * (target / rms.clamp(min=floor))  # (B, T)


def split_windows(length: int, window: int) -> list[tuple[int, int]]:
    """Cut ``[0, length)`` into consecutive ``(start, stop)`` windows of at most ``window``."""
    if length <= 0:
        raise ValueError(f"cannot window an empty sequence (length {length})")
    return [(start, min(start + window, length)) for start in range(0, length, window)]


def gather_valid(
    rows: torch.Tensor, valid: Sequence[int], owners: Sequence[int], batch_size: int
) -> torch.Tensor:
    """Concatenate the valid prefix of every row into its owner item, then zero-pad the batch.

    Args:
        rows: ``(N, S, H)`` outputs of ``N`` windows.
        valid: number of valid leading positions of each row.
        owners: index of the batch item each row belongs to, rows of one item in time order.
        batch_size: number of items ``B``.

    Returns:
        ``(B, T', H)`` with item ``b`` = its rows' valid parts, one after the other.
    """
    pieces: list[list[torch.Tensor]] = [[] for _ in range(batch_size)]
    for row, (count, owner) in enumerate(zip(valid, owners, strict=True)):
        pieces[owner].append(rows[row, :count])  # (count, H)
    items = [torch.cat(parts, dim=0) for parts in pieces]  # B x (T'_b, H)
    return pad_sequence(items, batch_first=True)  # (B, T', H)
