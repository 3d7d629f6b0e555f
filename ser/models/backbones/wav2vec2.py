"""wav2vec 2.0, HuBERT, WavLM and data2vec-audio: raw-waveform encoders with a CNN front end.

Masks and normalisation follow each checkpoint's feature extractor:
- ``do_normalize``: zero mean / unit variance per utterance over its valid samples only (padding
  stays exactly zero), as ``Wav2Vec2FeatureExtractor`` does on un-padded audio.
- attention mask: passed only where the checkpoint expects one. The checkpoint's
  ``preprocessor_config.json`` (``return_attention_mask``) decides when there is one; otherwise the
  family default: models with ``feat_extract_norm == "layer"`` (wav2vec2-large-lv60, WavLM-large,
  data2vec-audio, which always uses layer norm) get a mask; group-norm models such as wav2vec2-base
  were trained on zero-padded batches without one, so they only see zeroed padding. Their outputs
  therefore depend a little on the padding (GroupNorm statistics span the whole row).
- frame lengths: the arithmetic of the model's own convolutions (``conv_output_lengths``).

LayerDrop: in training, each layer is skipped with probability ``config.layerdrop``. transformers 5
records hidden states only for the layers that ran, so the states no longer line up with layers;
we record them ourselves (the input of the stack and each layer's output) and give a skipped layer
its input as output, which is what skipping computes: always ``num_layers + 1`` states.

data2vec-audio stacks several positional convolutions; HF zeroes padded frames only before the
first one, so padding leaks into valid frames. We zero padded frames before every one of them,
which makes a padded item give the same frames as the item alone.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from transformers import PreTrainedModel, Wav2Vec2FeatureExtractor

from ser.models.backbones.base import BackboneFamily
from ser.models.backbones.frames import conv_output_lengths, lengths_to_mask, normalize_valid


class Wav2Vec2Family(BackboneFamily):
    """Front end and padding rules for the wav2vec2 family.

    Args:
        model: a ``Wav2Vec2Model``, ``HubertModel``, ``WavLMModel`` or ``Data2VecAudioModel``.
        preprocessor: the checkpoint's ``preprocessor_config.json`` as a dict (empty if none).
    """

    def __init__(self, model: PreTrainedModel, preprocessor: dict) -> None:
        super().__init__()
        self.model = model
        config = model.config
        if getattr(config, "add_adapter", False):
            raise ValueError(
                f"{type(model).__name__}: checkpoints with add_adapter=True are not supported "
                "(the adapter changes the frame rate); use the encoder without it"
            )
        norm = getattr(config, "feat_extract_norm", "layer")
        self.do_normalize = bool(preprocessor.get("do_normalize", True))
        self.use_attention_mask = bool(preprocessor.get("return_attention_mask", norm == "layer"))
        self.group_norm = norm == "group"
        self._frame_mask: torch.Tensor | None = None
        self._recorded: dict[int, torch.Tensor] | None = None  # depth -> state, while encoding
        # The encoder's dropout gives the input of the layer stack (depth 0) in every family.
        model.encoder.dropout.register_forward_hook(partial(self._record, 0))
        for depth, layer in enumerate(model.encoder.layers, start=1):
            layer.register_forward_hook(partial(self._record, depth))
        pos_layers = getattr(model.encoder.pos_conv_embed, "layers", None)
        if pos_layers is not None and self.use_attention_mask:
            for layer in pos_layers:
                layer.register_forward_pre_hook(self._zero_padded_frames)

    @property
    def hears_padding(self) -> bool:
        # The CNN's group norm spans the whole padded row, before any mask; without a mask the
        # layers attend to the padded frames.
        return self.group_norm or not self.use_attention_mask

    def _zero_padded_frames(self, module: nn.Module, args: tuple) -> tuple | None:
        if self._frame_mask is None:
            return None
        hidden = args[0]  # (B, H, T')
        return (hidden * self._frame_mask[:, None, : hidden.shape[-1]].to(hidden.dtype),)

    def _record(self, depth: int, module: nn.Module, args: tuple, output) -> None:
        if self._recorded is not None:
            self._recorded[depth] = output[0] if isinstance(output, tuple) else output  # (B, T', H)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.encoder.layers

    @property
    def feature_encoder(self) -> nn.Module:
        return self.model.feature_extractor

    def post_layer_modules(self) -> list[nn.Module]:
        if getattr(self.model.config, "do_stable_layer_norm", False):
            return [self.model.encoder.layer_norm]  # pre-norm encoders normalise at the top
        return []

    def preprocessor_settings(self) -> dict[str, bool]:
        return {"do_normalize": self.do_normalize, "return_attention_mask": self.use_attention_mask}

    def feature_extractor(self) -> Wav2Vec2FeatureExtractor:
        return Wav2Vec2FeatureExtractor(**self.preprocessor_settings())

    def forward(
        self, waves: torch.Tensor, lengths: torch.Tensor, all_hidden_states: bool
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        mask = lengths_to_mask(lengths, waves.shape[1])  # (B, T)
        waves = normalize_valid(waves, mask) if self.do_normalize else waves * mask  # (B, T)
        convs = [layer.conv for layer in self.model.feature_extractor.conv_layers]
        frame_lengths = conv_output_lengths(lengths, convs).long()  # (B,)
        num_frames = conv_output_lengths(waves.shape[1], convs)  # an int: the padded width
        if self.use_attention_mask:
            self._frame_mask = lengths_to_mask(frame_lengths, num_frames)  # (B, T')
        self._recorded = {} if all_hidden_states else None
        try:
            out = self.model(waves, attention_mask=mask.long() if self.use_attention_mask else None)
            last = out.last_hidden_state  # (B, T', H)
            hidden = self._states(last) if all_hidden_states else [last]
        finally:
            self._frame_mask = self._recorded = None
        return hidden, frame_lengths.clamp(max=hidden[-1].shape[1])

    def _states(self, last: torch.Tensor) -> list[torch.Tensor]:
        """Embeddings + one state per layer; a layer LayerDrop skipped passes its input on."""
        states = [self._recorded[0]]  # (B, T', H) each
        for depth in range(1, len(self.layers) + 1):
            states.append(self._recorded.get(depth, states[-1]))
        states[-1] = last  # after the final norm of pre-norm models, as HF's hidden_states
        return states
