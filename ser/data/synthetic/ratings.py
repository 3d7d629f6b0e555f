"""Continuous arousal and valence of a synthetic utterance, from the prosody it was spoken with.

The ground truth of the dimensional task on the synthetic corpora: each rating is a fixed mix of
standardized prosody features of the utterance's own drawn prosody (``voice.vary``), so it varies
within an emotion as the voice does and a model can only predict it by listening. Arousal follows
the pitch range, stress (energy) contrast, speaking rate, pitch level and spectral flatness; valence
the voice quality: a raised second formant (a smile) up, breathiness and jitter down. Both are on
a 1-5 scale (IEMOCAP's), centred at 3.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ser.data.synthetic.voice import PROSODY, Prosody

# (feature of a prosody, sign): the standardized features whose mean is the rating.
AROUSAL: tuple[tuple[Callable[[Prosody], float], float], ...] = (
    (lambda p: math.log(p.f0_range), 1.0),
    (lambda p: math.log(p.stress_db), 1.0),
    (lambda p: p.rate, 1.0),
    (lambda p: p.f0_scale, 1.0),
    (lambda p: p.tilt, 1.0),  # flatter (less negative) is brighter, more pressed
)
VALENCE: tuple[tuple[Callable[[Prosody], float], float], ...] = (
    (lambda p: p.f2_scale, 1.0),
    (lambda p: p.breath, -1.0),
    (lambda p: p.jitter, -1.0),
)
DIMENSIONS = ("arousal", "valence")


def _reference(features: tuple) -> list[tuple[float, float]]:
    """Mean and std of each feature over the emotions' table prosodies (their common scale)."""
    values = np.array([[f(p) for f, _ in features] for p in PROSODY.values()])  # (E, F)
    return list(zip(values.mean(axis=0), values.std(axis=0), strict=True))


_SCALES = {"arousal": _reference(AROUSAL), "valence": _reference(VALENCE)}
_FEATURES = {"arousal": AROUSAL, "valence": VALENCE}


def ratings(p: Prosody) -> dict[str, float]:
    """``{"arousal": a, "valence": v}``, each in [1, 5], of an utterance spoken with ``p``."""
    result = {}
    for name in DIMENSIONS:
        scores = [
            sign * (feature(p) - mean) / std
            for (feature, sign), (mean, std) in zip(_FEATURES[name], _SCALES[name], strict=True)
        ]
        result[name] = float(np.clip(3.0 + float(np.mean(scores)), 1.0, 5.0))
    return result
