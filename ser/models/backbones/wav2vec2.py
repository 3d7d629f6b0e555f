"""wav2vec 2.0, HuBERT, WavLM and data2vec-audio: raw-waveform encoders with a CNN front end.

Each item of a padded batch is encoded as it would be alone, so a prediction, a test metric or a
stored feature never depends on the other items batched with it (their lengths, the batch size,
length buckets):
- ``do_normalize``: zero mean / unit variance per utterance over its valid samples only (padding
  stays exactly zero), as ``Wav2Vec2FeatureExtractor`` does on un-padded audio.
- group-norm CNNs (wav2vec2-base, HuBERT-base, WavLM-base): the first convolution's group norm
  normalises each channel over time, and torch's ``GroupNorm`` would take its statistics over the
  whole padded row, padding included. ``ValidFramesGroupNorm`` takes each item's statistics over
  its own frames: the values the item gets alone, which is all these models saw in pre-training
  (fairseq cropped each batch to its shortest clip). HF's batched use (no attention mask, torch's
  group norm) gives a short clip beside long ones other states; Hugging Face documents that
  "these models also yield slightly different results depending on whether input_values is
  padded or not".
- attention mask: always passed, so no layer attends to padded frames (HF zeroes them before the
  positional convolution). The checkpoint's ``preprocessor_config.json`` ``return_attention_mask``
  (HF's batched practice: false for group-norm models, whose norm would hear the padding anyway)
  is kept only for the feature extractor saved with the weights.
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


class ValidFramesGroupNorm(nn.GroupNorm):
    """A CNN's ``GroupNorm`` over time with each item's statistics taken over its own frames.

    Replaces the model's norm and shares its parameters (the checkpoint's ``weight`` and ``bias``,
    saved under the same names). ``frame_lengths (B,)`` is set by ``Wav2Vec2Family.forward`` for
    the batch being encoded; when unset (the HF model called directly) it is torch's own norm.
    Statistics and output are float32, as autocast runs torch's group norm. Frames past an item's
    length come out as finite filler that no valid frame reads: each later convolution's valid
    outputs read only valid inputs, and the encoder masks the rest. Where no gradient flows
    through it, it overwrites the float32 frames it is given (its convolution's fresh output,
    which nothing else reads).
    """

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__(norm.num_groups, norm.num_channels, norm.eps, norm.affine)
        self.weight, self.bias = norm.weight, norm.bias
        self.frame_lengths: torch.Tensor | None = None

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if self.frame_lengths is None:
            return super().forward(frames)
        batch, channels, width = frames.shape  # (B, C, T)
        per_group = channels // self.num_groups
        x = frames.float()
        valid = lengths_to_mask(self.frame_lengths, width)[:, None, :]  # (B, 1, T)
        # Without autograd (a frozen CNN, inference) the conv output is overwritten in place:
        # as fast as torch's fused norm on CPU, where a copy of each pass doubled its time.
        in_place = not torch.is_grad_enabled() or not (
            x.requires_grad or (self.affine and self.weight.requires_grad)
        )
        x = x.mul_(valid) if in_place else x * valid  # padded frames count as zeros: dropped below
        grouped = x.view(batch, self.num_groups, per_group, width)  # (B, G, C/G, T)
        count = (self.frame_lengths * per_group).clamp(min=1).to(x.dtype)[:, None, None, None]
        mean = grouped.sum(dim=(2, 3), keepdim=True) / count  # (B, G, 1, 1)
        power = torch.linalg.vector_norm(grouped, dim=(2, 3), keepdim=True).square() / count
        scale = torch.rsqrt((power - mean.square()).clamp(min=0) + self.eps)  # (B, G, 1, 1)
        scale = scale.expand(-1, -1, per_group, -1).reshape(batch, channels, 1)  # (B, C, 1)
        mean = mean.expand(-1, -1, per_group, -1).reshape(batch, channels, 1)  # (B, C, 1)
        if self.affine:
            scale = scale * self.weight.float()[:, None]
        shift = (self.bias.float()[:, None] if self.affine else 0.0) - mean * scale  # (B, C, 1)
        if in_place:
            return x.mul_(scale).add_(shift)  # (B, C, T)
        return torch.addcmul(shift, x, scale)  # (B, C, T)


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
        # HF's batched practice, saved with the weights; ser masks the padding whatever it says.
        self.return_attention_mask = bool(
            preprocessor.get("return_attention_mask", norm == "layer")
        )
        first = model.feature_extractor.conv_layers[0]
        self._first_norm: ValidFramesGroupNorm | None = None
        if isinstance(getattr(first, "layer_norm", None), nn.GroupNorm):
            self._first_norm = first.layer_norm = ValidFramesGroupNorm(first.layer_norm)
        self._frame_mask: torch.Tensor | None = None
        self._recorded: dict[int, torch.Tensor] | None = None  # depth -> state, while encoding
        # The encoder's dropout gives the input of the layer stack (depth 0) in every family.
        model.encoder.dropout.register_forward_hook(partial(self._record, 0))
        for depth, layer in enumerate(model.encoder.layers, start=1):
            layer.register_forward_hook(partial(self._record, depth))
        for layer in getattr(model.encoder.pos_conv_embed, "layers", []):
            layer.register_forward_pre_hook(self._zero_padded_frames)

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
        return {
            "do_normalize": self.do_normalize,
            "return_attention_mask": self.return_attention_mask,
        }

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
        self._frame_mask = lengths_to_mask(frame_lengths, num_frames)  # (B, T')
        if self._first_norm is not None:
            self._first_norm.frame_lengths = conv_output_lengths(lengths, convs[:1])  # (B,)
        self._recorded = {} if all_hidden_states else None
        try:
            out = self.model(waves, attention_mask=mask.long())
            last = out.last_hidden_state  # (B, T', H)
            hidden = self._states(last) if all_hidden_states else [last]
        finally:
            self._frame_mask = self._recorded = None
            if self._first_norm is not None:
                self._first_norm.frame_lengths = None
        return hidden, frame_lengths.clamp(max=hidden[-1].shape[1])

    def _states(self, last: torch.Tensor) -> list[torch.Tensor]:
        """Embeddings + one state per layer; a layer LayerDrop skipped passes its input on."""
        states = [self._recorded[0]]  # (B, T', H) each
        for depth in range(1, len(self.layers) + 1):
            states.append(self._recorded.get(depth, states[-1]))
        states[-1] = last  # after the final norm of pre-norm models, as HF's hidden_states
        return states
