"""Whisper encoder on the clip's own length by default, or on the whole 30 s window (EmoBox's way).

- Features: log-mel as ``WhisperFeatureExtractor`` makes it (n_fft 400, hop 160, Slaney mel,
  ``log10(max(., 1e-10))``, floor at max - 8, ``(x + 4) / 4``), computed on the device for the whole
  padded batch at once, each item floored at its own peak over its valid frames and followed by
  zeros as the extractor's 30 s padding would be; ``length // 160`` frames per item.
- Length: transformers' ``WhisperEncoder.forward`` rejects anything but exactly
  ``2 * max_source_positions`` mel frames (30 s). We therefore run its modules ourselves (conv1,
  conv2, positions, layers, final norm) with the position table cut to the clip's frame count and a
  key-padding mask built by ``create_bidirectional_mask`` for the configured attention kernel.
- Padding: mel frames and conv1 outputs past an item's end are zeroed, which is what the convs'
  own zero padding gives the item alone, so padded and lone items match.
- ``pad_to_window``: as EmoBox and the extractor's ``padding="max_length"`` do, each window's
  waveform is zero-padded to the whole window before the log-mel (so the padded frames hold the
  clamped floor, not zeros) and the encoder runs on the whole window with no mask, as
  ``WhisperEncoder.forward``; only the clip's own frames are kept, so frame counts are the same.
  The clip's states then depend on the padding they attend to, and every item costs a window.
- SpecAugment: with ``config.apply_spec_augment`` (off in Whisper's checkpoints), mel frames
  and mel bins are zeroed in training as ``WhisperModel`` does (``mask_time_prob``,
  ``mask_feature_prob``), time masks within each item's valid frames (the clip's, in both modes).
- Items longer than the position table (30 s for real checkpoints) are cut into 30 s windows,
  each encoded on its own (as Whisper itself chunks long audio), their frames concatenated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel
from transformers.audio_utils import mel_filter_bank
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from ser.audio import TARGET_SAMPLE_RATE
from ser.models.backbones.base import BackboneFamily
from ser.models.backbones.frames import (
    conv_output_lengths,
    dft_matrix,
    framed_power,
    gather_valid,
    lengths_to_mask,
    split_windows,
)
from ser.models.backbones.hf_internals import compute_mask_indices


@dataclass(frozen=True)
class WhisperOptions:
    """How Whisper's encoder sees a clip (``--model.backbone.init_args.whisper.*``).

    Attributes:
        pad_to_window: zero-pad each clip to the encoder's whole 30 s window and encode it
            unmasked, keeping the clip's frames (EmoBox, HF's feature extractor). Off by default:
            on real ShEMO (logistic-regression probe) the clip's own length gave UA 0.800
            against 0.754 padded (7 classes), and padding costs several times the compute.
    """

    pad_to_window: bool = False


class WhisperFamily(BackboneFamily):
    """Log-mel front end and a length-flexible forward pass for ``WhisperEncoder``.

    Args:
        encoder: the encoder of a ``WhisperModel`` (the decoder is not kept).
        preprocessor: the checkpoint's ``preprocessor_config.json`` as a dict (empty if none).
        pad_to_window: zero-pad each window's waveform to the whole window and encode it unmasked
            (EmoBox, ``WhisperEncoder.forward``), keeping the clip's frames; else the clip's length.
    """

    def __init__(
        self, encoder: WhisperEncoder, preprocessor: dict, pad_to_window: bool = False
    ) -> None:
        super().__init__()
        self.model = encoder
        self.pad_to_window = pad_to_window
        config: WhisperConfig = encoder.config
        self.n_fft = int(preprocessor.get("n_fft", 400))
        self.hop_length = int(preprocessor.get("hop_length", 160))
        strides = encoder.conv1.stride[0] * encoder.conv2.stride[0]
        self.window_frames = config.max_source_positions * strides  # mel frames per window
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        # The extractor's own filters (WhisperFeatureExtractor builds them with this call).
        filters = mel_filter_bank(
            num_frequency_bins=self.n_fft // 2 + 1,
            num_mel_filters=config.num_mel_bins,
            min_frequency=0.0,
            max_frequency=8000.0,
            sampling_rate=TARGET_SAMPLE_RATE,
            norm="slaney",
            mel_scale="slaney",
        )  # (n_freqs, n_mels)
        filters = torch.from_numpy(filters).float()
        self.register_buffer("mel_filters", filters, persistent=False)

    @property
    def hidden_size(self) -> int:
        return self.model.config.d_model

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.layers

    @property
    def convs(self) -> list[nn.Conv1d]:
        """The two input convolutions, whose arithmetic gives each clip's frame count."""
        return [self.model.conv1, self.model.conv2]

    @property
    def feature_encoder(self) -> nn.Module:
        return nn.ModuleList(self.convs)

    @property
    def window_samples(self) -> int:
        return self.window_frames * self.hop_length  # 30 s for real checkpoints

    def post_layer_modules(self) -> list[nn.Module]:
        return [self.model.layer_norm]

    def input_settings(self) -> dict:
        return {"pad_to_window": self.pad_to_window}

    def preprocessor_settings(self) -> dict[str, int]:
        return {"n_fft": self.n_fft, "hop_length": self.hop_length}

    def feature_extractor(self) -> WhisperFeatureExtractor:
        return WhisperFeatureExtractor(
            feature_size=self.model.config.num_mel_bins, **self.preprocessor_settings()
        )

    def save_pretrained(self, directory: str) -> None:
        # A loadable Whisper checkpoint is a whole WhisperModel: the (unused) decoder is re-made.
        full = WhisperModel(self.model.config)
        full.encoder.load_state_dict(self.model.state_dict())
        full.save_pretrained(directory)
        self.feature_extractor().save_pretrained(directory)

    def log_mel(
        self, waves: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mels ``(B, n_mels, n)`` of a zero-padded batch ``(B, T)`` and each item's own mel
        frames ``(B,)`` (``length // hop``), in one set of kernels for the batch; float32.

        Each item is normalised by its own peak over its own frames and zeroed past them, as the
        extractor does to the item alone (frames read at most ``n_fft / 2`` samples past an
        item's end, which are zeros in the batch as in the extractor's padding). With
        ``pad_to_window`` every row is padded to the whole window and all its frames count.
        """
        mel_lengths = (lengths // self.hop_length).clamp(min=1)  # (B,)
        if self.pad_to_window:  # the extractor's padding="max_length": zeros to 30 s
            waves = F.pad(waves, (0, self.window_samples - waves.shape[1]))  # (B, window_samples)
        frames = max(1, waves.shape[1] // self.hop_length)
        own = torch.full_like(mel_lengths, frames) if self.pad_to_window else mel_lengths  # (B,)
        valid = lengths_to_mask(own, frames)[:, None, :]  # (B, 1, n)
        with torch.autocast(waves.device.type, enabled=False):
            padded = F.pad(waves.float(), (0, self.n_fft // 2))  # the extractor's padding: zeros
            if torch.onnx.is_in_onnx_export():  # ONNX has no complex type (torch.stft's)
                power = self.dft_power(padded)[..., :frames]  # (B, n_freqs, n)
            else:  # the extractor's own call, bit for bit
                window = self.window.float()  # buffers may be bf16
                stft = torch.stft(
                    padded, self.n_fft, self.hop_length, window=window, return_complex=True
                )  # (B, n_freqs, frames + 1)
                power = stft[..., :frames].abs() ** 2  # (B, n_freqs, n)
            mel = self.mel_filters.float().T @ power  # (B, n_mels, n); buffers may be bf16
            log_spec = mel.clamp(min=1e-10).log10()  # (B, n_mels, n)
            peak = log_spec.masked_fill(~valid, float("-inf")).amax(dim=(1, 2), keepdim=True)
            log_spec = torch.maximum(log_spec, peak - 8.0)  # (B, n_mels, n)
        return (log_spec + 4.0) / 4.0 * valid, mel_lengths  # (B, n_mels, n), (B,)

    def dft_power(self, waves: torch.Tensor) -> torch.Tensor:
        """``torch.stft(waves, n_fft, hop, window).abs() ** 2`` of float32 ``waves (B, T)``,
        ``(B, n_fft // 2 + 1, T // hop + 1)``, as a strided convolution with the windowed DFT
        basis: real arithmetic, which ONNX export needs. Equal to the FFT's up to float32
        rounding (3e-5 in log-mel units on real speech); training and predict use the FFT.
        """
        half = self.n_fft // 2
        frame_map = dft_matrix(self.n_fft, self.n_fft) * self.window.cpu().double().numpy()
        centred = F.pad(waves[:, None], (half, half), mode="reflect")[:, 0]  # (B, T + n_fft)
        return framed_power(centred, frame_map, self.hop_length)  # (B, F, n)

    def forward(
        self, waves: torch.Tensor, lengths: torch.Tensor, all_hidden_states: bool
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        long_items = waves.shape[1] > self.window_samples
        if long_items:
            inputs, mel_lengths, owners = self._window_mels(waves, lengths)  # (N, n_mels, n), (N,)
        else:  # one window per item (training crops): no sizes read back from the device
            inputs, mel_lengths = self.log_mel(waves, lengths)  # (B, n_mels, n), (B,)
        if self.training and getattr(self.model.config, "apply_spec_augment", False):
            inputs = self._spec_augment(inputs, mel_lengths)  # (N, n_mels, n)
        # Padded to the window, every frame is an input, as in WhisperEncoder.forward: no mask.
        states = self._encode(
            inputs, None if self.pad_to_window else mel_lengths, all_hidden_states
        )
        frame_counts = conv_output_lengths(mel_lengths, self.convs)  # (N,) the clip's
        if not long_items:  # the clip's frames (pad_to_window ran the whole window)
            width = conv_output_lengths(max(1, waves.shape[1] // self.hop_length), self.convs)
            valid = lengths_to_mask(frame_counts, width)[..., None]  # (B, n', 1)
            return [state[:, :width] * valid.to(state.dtype) for state in states], frame_counts
        valid = frame_counts.tolist()
        hidden = [gather_valid(state, valid, owners, waves.shape[0]) for state in states]
        frame_lengths = torch.zeros(len(lengths), dtype=torch.long, device=lengths.device)  # (B,)
        frame_lengths.index_add_(0, torch.tensor(owners, device=lengths.device), frame_counts)
        return hidden, frame_lengths

    def _window_mels(
        self, waves: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Items longer than a window (evaluation of whole utterances): the log-mels of every
        30 s piece ``(N, n_mels, n)``, the clip's own mel frames of each ``(N,)`` and the item
        each belongs to. The pieces are ragged (2 of one item, 1 of another): planning them needs
        the lengths on the host, one sync per batch, which training never pays."""
        pieces, piece_lengths, owners = [], [], []
        for item, length in enumerate(lengths.tolist()):
            for start, stop in split_windows(length, self.window_samples):
                pieces.append(waves[item, start:stop])  # (n_samples,)
                piece_lengths.append(stop - start)
                owners.append(item)
        batch = pad_sequence(pieces, batch_first=True)  # (N, window_samples or less)
        inputs, mel_lengths = self.log_mel(batch, torch.tensor(piece_lengths, device=waves.device))
        return inputs, mel_lengths, owners

    def _spec_augment(self, mels: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
        """``WhisperModel._mask_input_features`` on ``(N, n_mels, n)``, time masks in valid frames.

        WhisperModel masks in its own forward, which we do not run (the decoder is dropped); HF's
        mask sampler is the one wav2vec2 uses (no public name).
        """
        config = self.model.config
        rows, num_mels, frames = mels.shape
        if config.mask_time_prob > 0:
            valid = lengths_to_mask(mel_lengths, frames)  # (N, n)
            time_mask = compute_mask_indices(
                (rows, frames),
                mask_prob=config.mask_time_prob,
                mask_length=config.mask_time_length,
                attention_mask=valid.long(),
                min_masks=config.mask_time_min_masks,
            )  # (N, n) numpy bool
            time_mask = torch.from_numpy(time_mask).to(mels.device)
            mels = mels.masked_fill(time_mask[:, None, :], 0.0)  # (N, n_mels, n)
        if config.mask_feature_prob > 0:
            bin_mask = compute_mask_indices(
                (rows, num_mels),
                mask_prob=config.mask_feature_prob,
                mask_length=config.mask_feature_length,
                min_masks=config.mask_feature_min_masks,
            )  # (N, n_mels) numpy bool
            mels = mels.masked_fill(torch.from_numpy(bin_mask).to(mels.device)[..., None], 0.0)
        return mels

    def _encode(
        self, mels: torch.Tensor, mel_lengths: torch.Tensor | None, all_hidden_states: bool
    ) -> list[torch.Tensor]:
        """``WhisperEncoder.forward`` without its fixed 30 s input length, with a padding mask.

        ``mel_lengths`` None: every frame of ``mels`` is valid and nothing is masked, exactly as
        ``WhisperEncoder.forward`` (which also needs the whole window: ``pad_to_window``).
        """
        encoder = self.model
        mels = mels.to(encoder.conv1.weight.dtype)
        hidden = F.gelu(encoder.conv1(mels))  # (N, D, n)
        if mel_lengths is not None:
            hidden = hidden * lengths_to_mask(mel_lengths, mels.shape[-1])[:, None, :]  # (N, D, n)
        hidden = F.gelu(encoder.conv2(hidden)).transpose(1, 2)  # (N, n', D)
        positions = encoder.embed_positions.weight[: hidden.shape[1]]  # (n', D)
        hidden = F.dropout(hidden + positions, p=encoder.dropout, training=self.training)
        mask = None
        if mel_lengths is not None:
            frame_counts = conv_output_lengths(mel_lengths, self.convs)  # (N,)
            mask = create_bidirectional_mask(
                config=encoder.config,
                inputs_embeds=hidden,
                attention_mask=lengths_to_mask(frame_counts, hidden.shape[1]),
                # Else transformers checks whether the mask is all True, waiting for the device.
                allow_is_bidirectional_skip=False,
            )
        states = [hidden]
        for layer in encoder.layers:
            if self.training and encoder.layerdrop > 0.0 and torch.rand([]) < encoder.layerdrop:
                states.append(hidden)  # LayerDrop skips the layer, as in WhisperEncoder
                continue
            hidden = layer(hidden, mask)  # (N, n', D)
            states.append(hidden)
        states[-1] = encoder.layer_norm(hidden)  # (N, n', D)
        return states if all_hidden_states else states[-1:]
