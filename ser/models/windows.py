"""Where a model looks in a long recording: overlapping windows, or speech regions in windows.

Spans are ``(start, stop)`` sample indices, stop exclusive. Shared by ``python -m ser predict``,
``EmotionRecognizer`` and the validation and test steps of ``SERModule``, so every path scores
the same windows.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass


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


@dataclass(frozen=True)
class TimelinePlan:
    """Where a timeline looks in speech regions: the ``windows`` to score, and the ``steps`` their
    edges divide the regions into, with the ``[first, stop)`` indices of the windows covering
    each step (``covering``) and its region's index (``region``)."""

    windows: list[tuple[int, int]]
    steps: list[tuple[int, int]]
    covering: list[tuple[int, int]]
    region: list[int]


def plan_timeline(regions: list[tuple[int, int]], window: int, hop: int) -> TimelinePlan:
    """Windows over each speech region and the steps between their edges. A region no longer than
    ``window`` is one window. A longer one gets windows of exactly ``window`` samples (the length
    the model is scored at everywhere else), the fewest whose equal spacing is at most ``hop``,
    the first at the region's start and the last at its end. A step's scores are the mean of the
    windows holding it, so a timeline can change at any window edge (every hop or less), not
    only where a window ends."""
    if not 0 < hop <= window:
        raise ValueError(f"need 0 < hop <= window, got hop {hop} and window {window}")
    plan = TimelinePlan([], [], [], [])
    for index, (start, stop) in enumerate(regions):
        length = stop - start
        if length <= 0:  # nothing to score
            continue
        if length <= window:
            starts, size = [start], length
        else:
            count = math.ceil((length - window) / hop) + 1  # >= 2: one at each end
            starts = [start + round(k * (length - window) / (count - 1)) for k in range(count)]
            size = window
        ends = [first + size for first in starts]
        offset = len(plan.windows)
        plan.windows.extend(zip(starts, ends, strict=True))
        for a, b in itertools.pairwise(sorted({*starts, *ends})):
            # The windows holding [a, b): those ending at or after b and starting at or before a.
            low, high = bisect.bisect_left(ends, b), bisect.bisect_right(starts, a)
            plan.steps.append((a, b))
            plan.covering.append((offset + low, offset + high))
            plan.region.append(index)
    return plan
