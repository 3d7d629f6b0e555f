"""Hugging Face speech encoders: one file per family plus the ``HFBackbone`` wrapper."""

from ser.models.backbones.hf import HFBackbone

__all__ = ["HFBackbone"]
