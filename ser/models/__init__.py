"""Models: plain ``nn.Module``s, tensors in and tensors out (backbone -> pooling -> head).

Each class loads on first use (``from ser.models import HFBackbone``, or a config's
``ser.models.HFBackbone``): what scoring needs (``network``, ``windows``, ``checkpoint``) imports
no transformers, so ``from ser import EmotionRecognizer`` stays light until a checkpoint is built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ser.models.backbones import HFBackbone
    from ser.models.heads import LinearHead, MLPHead
    from ser.models.pooling import AttentiveStatisticsPooling, MeanPooling, StatisticsPooling

HOMES = {
    "AttentiveStatisticsPooling": "ser.models.pooling",
    "HFBackbone": "ser.models.backbones",
    "LinearHead": "ser.models.heads",
    "MLPHead": "ser.models.heads",
    "MeanPooling": "ser.models.pooling",
    "StatisticsPooling": "ser.models.pooling",
}
__all__ = [
    "AttentiveStatisticsPooling",
    "HFBackbone",
    "LinearHead",
    "MLPHead",
    "MeanPooling",
    "StatisticsPooling",
]


def __getattr__(name: str):
    if name in HOMES:
        return getattr(importlib.import_module(HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *HOMES])
