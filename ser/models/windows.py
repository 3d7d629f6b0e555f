"""Where a model looks in a long recording: overlapping windows, or speech regions cut to windows.

Spans are ``(start, stop)`` sample indices, stop exclusive. Shared by ``python -m ser predict``,
``EmotionRecognizer`` and the validation and test steps of ``SERModule``, so every path scores
the same windows.
"""

from __future__ import annotations

import itertools
import math


def window_and_hop(
    window_seconds: float, hop_seconds: float | None, sample_rate: int
) -> tuple[int, int]:
    """The window and hop in samples; the hop defaults to half a window."""
    hop_seconds = window_seconds / 2 if hop_seconds is None else hop_seconds
    return round(window_seconds * sample_rate), round(hop_seconds * sample_rate)


def window_spans(length: int, window: int, hop: int) -> list[tuple[int, int]]:
    """Windows of ``window`` samples every ``hop`` over ``[0, length)``; the last one ends at
    ``length`` so no tail is lost; a sequence shorter than a window is one span."""
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be positive, got {window}, {hop}")
    if length <= window:
        return [(0, length)]
    spans = [(start, start + window) for start in range(0, length - window + 1, hop)]
    if spans[-1][1] < length:
        spans.append((length - window, length))
    return spans


def cut_regions(regions: list[tuple[int, int]], window: int) -> list[tuple[int, int]]:
    """Each region longer than ``window`` cut into the fewest equal consecutive pieces that fit
    (a 12 s region and 5 s windows: three 4 s pieces, not 5 + 5 + 2 with a scrap at the end)."""
    pieces = []
    for start, stop in regions:
        count = math.ceil((stop - start) / window)
        bounds = [start + round(k * (stop - start) / count) for k in range(count + 1)]
        pieces.extend(itertools.pairwise(bounds))
    return pieces
