"""Models: plain ``nn.Module``s, tensors in and tensors out (backbone -> pooling -> head)."""

from ser.models.backbones import HFBackbone
from ser.models.heads import LinearHead, MLPHead
from ser.models.pooling import AttentiveStatisticsPooling, MeanPooling, StatisticsPooling

__all__ = [
    "AttentiveStatisticsPooling",
    "HFBackbone",
    "LinearHead",
    "MLPHead",
    "MeanPooling",
    "StatisticsPooling",
]
