"""The interface every backbone family implements for ``HFBackbone``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.feature_extraction_utils import FeatureExtractionMixin


class BackboneFamily(nn.Module):
    """One Hugging Face encoder plus the front end its checkpoints expect (waveform -> frames).

    Subclasses wrap ``self.model`` (the HF model whose weights are loaded and saved) and own
    everything family-specific: input normalisation, features, masks and frame arithmetic.
    """

    model: PreTrainedModel

    @property
    def hidden_size(self) -> int:
        """Width ``H`` of every hidden state."""
        raise NotImplementedError

    @property
    def layers(self) -> nn.ModuleList:
        """The transformer layers, bottom first."""
        raise NotImplementedError

    @property
    def feature_encoder(self) -> nn.Module:
        """What ``freeze="feature_encoder"`` freezes (CNN / patch embedding / input convs)."""
        raise NotImplementedError

    @property
    def window_samples(self) -> int | None:
        """The longest input encoded in one pass (longer items are cut into windows of it in
        Python, which an exported graph cannot do); None: any length in one pass."""
        return None

    def post_layer_modules(self) -> list[nn.Module]:
        """Modules run after the last layer (final norms), left trainable by ``freeze_layers``."""
        return []

    def input_settings(self) -> dict:
        """Settings that change the encoder's outputs beyond the HF config and the feature-extractor
        config (e.g. Whisper's ``pad_to_window``); a feature cache keys on them."""
        return {}

    def preprocessor_settings(self) -> dict[str, float | int | bool]:
        """The ``preprocessor_config.json`` keys this front end reads, with the values it uses:
        with the HF config, all it takes to rebuild the family without its source (a checkpoint
        holds them: ``ser.models.checkpoint.ENCODER_CONFIG``)."""
        raise NotImplementedError

    def feature_extractor(self) -> FeatureExtractionMixin:
        """An HF feature extractor with this front end's settings, saved next to the weights."""
        raise NotImplementedError

    def forward(
        self, waves: torch.Tensor, lengths: torch.Tensor, all_hidden_states: bool
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Encode a padded batch, each item as it would be encoded alone (its states never depend on
        the other items, their lengths or the batch size: ``tests/test_models_backbones.py``).

        Args:
            waves: ``(B, T)`` float waveforms at 16 kHz, zero-padded on the right.
            lengths: ``(B,)`` valid samples per item.
            all_hidden_states: return every hidden state (embeddings + each layer), else the last.

        Returns:
            hidden states, each ``(B, T', H)``, and ``frame_lengths (B,)`` valid frames per item.
        """
        raise NotImplementedError

    def save_pretrained(self, directory: str | Path) -> None:
        """Write weights, config and feature-extractor config; ``source=directory`` reloads them."""
        self.model.save_pretrained(directory)
        self.feature_extractor().save_pretrained(directory)
