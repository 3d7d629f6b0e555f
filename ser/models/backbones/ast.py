"""Audio Spectrogram Transformer: Kaldi fbank made inside the model, on the batch's device.

- Features: 128-bin Kaldi fbank (25 ms Hanning window, 10 ms hop, dither 0, no energy), computed
  for the whole padded batch in one call (frames past an item's end masked, so each item's frames
  are its own), normalised ``(x - mean) / (2 * std)`` with the checkpoint's mean/std (AudioSet
  defaults), as ``ASTFeatureExtractor`` does.
- Windows: ``window_frames`` (frames per window) follows ``segment_seconds`` (498 frames for 5 s).
- Position embeddings: the checkpoint's table (``config.max_length`` frames: 1024 for AudioSet)
  is kept as it is. Each patch gets the embedding of its (frequency, time) cell
  (``TimeCroppedEmbeddings``): a window of N frames gets the first N frames' columns, exactly
  what the checkpoint gives the window padded to ``max_length`` (the HF recipe's input) with the
  padding masked out. Only a window longer than the table stretches it
  (``resize_position_embeddings``, linear along time).
- Batch length: a batch runs at its longest window's whole time patches, not at a fixed length
  (a 3 s batch costs 3/5 of a 5 s one; 498 frames instead of the recipe's 1024 for 5 s).
- Padding: frames past an item's end are filled with the extractor's padding value and patch
  tokens that reach past the last valid frame are masked out of attention, so a padded item gives
  the same tokens as the item alone.
- Long items (eval): cut into consecutive windows of ``window_frames``, each encoded on its own;
  the output of an item is its windows' ``[cls, dist, patch tokens...]`` one after the other.
- Output order: patch tokens are re-ordered time-major (all frequency patches of time step 0, then
  of time step 1, ...), so an item's valid tokens are a prefix and ``frame_lengths`` counts them
  (cls and distillation tokens included).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.compliance import kaldi
from transformers import ASTFeatureExtractor, ASTModel
from transformers.masking_utils import create_bidirectional_mask

from ser.audio import TARGET_SAMPLE_RATE
from ser.models.backbones.base import BackboneFamily
from ser.models.backbones.frames import (
    dft_matrix,
    framed_power,
    gather_valid,
    lengths_to_mask,
    split_windows,
)
from ser.models.backbones.hf_internals import ASTEmbeddings

AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
WINDOW_SAMPLES = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms
NUM_SPECIAL_TOKENS = 2  # cls + distillation


def num_fbank_frames(num_samples: int) -> int:
    """Frames Kaldi fbank gives for ``num_samples`` (snip_edges: whole windows only)."""
    return 1 + (num_samples - WINDOW_SAMPLES) // HOP_SAMPLES if num_samples >= WINDOW_SAMPLES else 0


def fbank_frames(lengths: torch.Tensor) -> torch.Tensor:
    """Frames ``(B,)`` of items of ``lengths (B,)`` samples; a short item is padded to one frame."""
    return 1 + (lengths.clamp(min=WINDOW_SAMPLES) - WINDOW_SAMPLES) // HOP_SAMPLES


def resize_position_embeddings(
    position_embeddings: torch.Tensor, freq_patches: int, time_patches: int
) -> torch.Tensor:
    """Resize AST position embeddings to a new number of time patches.

    Args:
        position_embeddings: ``(1, 2 + F * T_old, H)``: cls, distillation, then the patch grid
            frequency-major (as ``ASTPatchEmbeddings`` flattens it).
        freq_patches: ``F``, unchanged.
        time_patches: ``T_new``.

    Returns:
        ``(1, 2 + F * T_new, H)``; cls/dist kept as they are, the grid linearly interpolated along
        time. Equal sizes return an exact copy.
    """
    special = position_embeddings[:, :NUM_SPECIAL_TOKENS]  # (1, 2, H)
    grid = position_embeddings[:, NUM_SPECIAL_TOKENS:]  # (1, F * T_old, H)
    if grid.shape[1] % freq_patches:
        raise ValueError(f"{grid.shape[1]} patch positions do not form {freq_patches} rows")
    old_time = grid.shape[1] // freq_patches
    if old_time == time_patches:
        return position_embeddings.clone()
    hidden = grid.shape[-1]
    grid = grid.reshape(1, freq_patches, old_time, hidden).permute(0, 3, 1, 2)  # (1, H, F, T_old)
    grid = F.interpolate(grid, size=(freq_patches, time_patches), mode="bilinear")  # (1, H, F, T)
    grid = grid.permute(0, 2, 3, 1).reshape(1, freq_patches * time_patches, hidden)  # (1, F*T, H)
    return torch.cat([special, grid], dim=1)  # (1, 2 + F*T, H)


class TimeCroppedEmbeddings(ASTEmbeddings):
    """``ASTEmbeddings`` that take inputs of fewer time patches than ``config.max_length`` holds.

    Patch ``(f, t)`` gets row ``f``, column ``t`` of the position grid, so an input of the first
    ``T'`` time patches gets the embeddings it would get padded to ``max_length``. Same parameters
    and state-dict keys as ``ASTEmbeddings``: checkpoints load and save unchanged.
    """

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embeddings(input_values)  # (N, F * T', H), frequency-major
        freq_patches, time_patches = self.get_shape(self.config)
        used = patches.shape[1] // freq_patches  # T' <= T
        grid = self.position_embeddings[:, NUM_SPECIAL_TOKENS:]  # (1, F * T, H)
        grid = grid.reshape(1, freq_patches, time_patches, -1)[:, :, :used]  # (1, F, T', H)
        positions = torch.cat(
            [self.position_embeddings[:, :NUM_SPECIAL_TOKENS], grid.flatten(1, 2)], dim=1
        )  # (1, 2 + F * T', H)
        rows = patches.shape[0]
        cls = self.cls_token.expand(rows, -1, -1)  # (N, 1, H)
        dist = self.distillation_token.expand(rows, -1, -1)  # (N, 1, H)
        embeddings = torch.cat([cls, dist, patches], dim=1) + positions  # (N, 2 + F * T', H)
        return self.dropout(embeddings)


@dataclass(frozen=True)
class WindowPlan:
    """How a batch is cut into windows and how long the model input is.

    Attributes:
        owners: the batch item of each window; an item's windows are consecutive, in time order.
        spans: ``(start, stop)`` fbank frames of each window within its item.
        patches: valid time patches of each window (patches lying wholly inside it, at least 1).
        input_frames: frames per window of the model input: the longest window's patches, whole.
    """

    owners: list[int]
    spans: list[tuple[int, int]]
    patches: list[int]
    input_frames: int

    @property
    def time_patches(self) -> int:
        """Time patches of the model input (``T'``): the longest window's."""
        return max(self.patches)

    @property
    def frames(self) -> list[int]:
        """Valid fbank frames of each window."""
        return [stop - start for start, stop in self.spans]


class ASTFamily(BackboneFamily):
    """Fbank front end, position-embedding resizing and token masks for ``ASTModel``.

    Args:
        model: an ``ASTModel`` (random init or loaded).
        preprocessor: the checkpoint's ``preprocessor_config.json`` as a dict (empty if none).
        window_frames: fbank frames per window; a window longer than the checkpoint's
            ``max_length`` stretches its position embeddings to fit.
    """

    def __init__(self, model: ASTModel, preprocessor: dict, window_frames: int) -> None:
        super().__init__()
        self.model = model
        config = model.config
        if not isinstance(config.patch_size, int):
            raise ValueError(f"AST patch_size must be an int, got {config.patch_size!r}")
        self.mean = float(preprocessor.get("mean", AUDIOSET_MEAN))
        self.std = float(preprocessor.get("std", AUDIOSET_STD))
        self.freq_patches = (config.num_mel_bins - config.patch_size) // config.frequency_stride + 1
        if window_frames < config.patch_size:
            raise ValueError(f"AST needs at least {config.patch_size} frames, got {window_frames}")
        self.window_frames = window_frames
        self.time_patches = (window_frames - config.patch_size) // config.time_stride + 1
        state = model.embeddings.state_dict()
        table_patches = (config.max_length - config.patch_size) // config.time_stride + 1
        if self.time_patches > table_patches:
            state["position_embeddings"] = resize_position_embeddings(
                state["position_embeddings"], self.freq_patches, self.time_patches
            )
            config.max_length = window_frames
        model.embeddings = TimeCroppedEmbeddings(config)
        model.embeddings.load_state_dict(state, assign=True)  # keeps dtype and device

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.layers

    @property
    def feature_encoder(self) -> nn.Module:
        return self.model.embeddings.patch_embeddings

    @property
    def window_samples(self) -> int:
        # the most samples that make at most window_frames frames: segment_seconds and a bit
        return (self.window_frames - 1) * HOP_SAMPLES + WINDOW_SAMPLES + HOP_SAMPLES - 1

    def post_layer_modules(self) -> list[nn.Module]:
        return [self.model.layernorm]

    def input_settings(self) -> dict:
        return {"window_frames": self.window_frames}  # follows segment_seconds

    def preprocessor_settings(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std}

    def feature_extractor(self) -> ASTFeatureExtractor:
        config = self.model.config
        return ASTFeatureExtractor(
            num_mel_bins=config.num_mel_bins,
            max_length=config.max_length,
            **self.preprocessor_settings(),
        )

    def fbank(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Normalised fbank ``(B, n, M)`` of a zero-padded batch ``(B, T)``, in one Kaldi call.

        Kaldi fbank works frame by frame (snip_edges: whole windows only), so the rows are laid
        end to end, each padded to whole hops: item ``b``'s frame ``j`` is then frame
        ``b * W / hop + j`` of the long wave, and equals the frame of the item alone. Frames past
        an item's last whole window (they reach into padding) get the extractor's padding value.
        float32, autocast off.
        """
        rows, samples = waves.shape
        samples = max(samples, WINDOW_SAMPLES)  # a short item: zero-padded to one window
        width = -(-samples // HOP_SAMPLES) * HOP_SAMPLES  # whole hops per row
        flat = F.pad(waves.float(), (0, width - waves.shape[1])).flatten()  # (B * W,)
        flat = F.pad(flat, (0, WINDOW_SAMPLES - HOP_SAMPLES))  # the last row's frames complete
        with torch.autocast(waves.device.type, enabled=False):
            if torch.onnx.is_in_onnx_export():  # ONNX has no rfft: the same fbank as a convolution
                spec = self.fbank_by_convolution(flat)  # (B * W / hop, M)
            else:
                spec = self.kaldi_fbank(flat)  # (B * W / hop, M)
        frames = num_fbank_frames(samples)
        spec = spec.reshape(rows, width // HOP_SAMPLES, -1)[:, :frames]  # (B, n, M)
        spec = (spec - self.mean) / (2 * self.std)  # (B, n, M)
        valid = lengths_to_mask(fbank_frames(lengths), frames)  # (B, n)
        return spec.masked_fill(~valid[..., None], self.pad_value)  # (B, n, M)

    def kaldi_fbank(self, wave: torch.Tensor) -> torch.Tensor:
        """Kaldi fbank ``(m, M)`` of a float32 ``wave (S,)`` as ``ASTFeatureExtractor`` makes it
        (snip edges: whole windows only)."""
        return kaldi.fbank(
            wave[None],
            sample_frequency=TARGET_SAMPLE_RATE,
            frame_length=25.0,
            frame_shift=10.0,
            window_type="hanning",
            htk_compat=True,
            use_energy=False,
            dither=0.0,
            num_mel_bins=self.model.config.num_mel_bins,
        )

    def fbank_by_convolution(self, wave: torch.Tensor) -> torch.Tensor:
        """``kaldi_fbank(wave)`` in real arithmetic: ``(m, M)``.

        Per frame of 400 samples Kaldi removes the mean, pre-emphasises (0.97, the first sample
        against itself), applies a symmetric Hann window and takes the power of a 512-point DFT
        (the frame zero-padded): all linear in the frame, so one ``(2 * 257, 400)`` matrix made
        in float64 does it as a strided convolution, which ONNX export needs (it has no rfft).
        Then the same mel banks and ``log(max(., eps))``. Training and predict keep Kaldi's.
        """
        size, fft_size = WINDOW_SAMPLES, 512
        centre = np.eye(size) - 1.0 / size  # removes the frame's mean
        emphasis = np.eye(size) - 0.97 * np.eye(size, k=-1)  # x[j] - 0.97 x[j - 1]
        emphasis[0, 0] -= 0.97  # x[0] - 0.97 x[0]: Kaldi replicates the first sample
        hann = np.hanning(size)  # symmetric, as torch.hann_window(periodic=False)
        frame_map = dft_matrix(size, fft_size) @ np.diag(hann) @ emphasis @ centre  # (514, 400)
        power = framed_power(wave[None], frame_map, HOP_SAMPLES)[0]  # (257, m)
        banks, _ = kaldi.get_mel_banks(  # kaldi.fbank's defaults: 20 Hz to Nyquist, no VTLN
            num_bins=self.model.config.num_mel_bins,
            window_length_padded=fft_size,
            sample_freq=TARGET_SAMPLE_RATE,
            low_freq=20.0,
            high_freq=0.0,
            vtln_low=100.0,
            vtln_high=-500.0,
            vtln_warp_factor=1.0,
        )  # (M, 256)
        banks = F.pad(banks.to(wave), (0, 1))  # (M, 257)
        mel = power.T @ banks.T  # (m, M)
        return mel.clamp(min=torch.finfo(torch.float32).eps).log()

    def _valid_patches(self, num_frames: int) -> int:
        """Time patches lying wholly inside ``num_frames`` (at least one)."""
        config = self.model.config
        full = (num_frames - config.patch_size) // config.time_stride + 1
        return max(1, min(full, self.time_patches))

    def window_plan(self, lengths: list[int]) -> WindowPlan:
        """The windows of items of ``lengths`` samples and the batch's input frames."""
        config = self.model.config
        owners, spans, patches = [], [], []
        for item, length in enumerate(lengths):
            frames = num_fbank_frames(max(length, WINDOW_SAMPLES))  # a short item: one frame
            for span in split_windows(frames, self.window_frames):
                owners.append(item)
                spans.append(span)
                patches.append(self._valid_patches(span[1] - span[0]))
        input_frames = config.patch_size + (max(patches) - 1) * config.time_stride  # T' patches
        return WindowPlan(owners, spans, patches, input_frames)

    @property
    def pad_value(self) -> float:
        """The normalised value of the extractor's padding (it pads the raw fbank with zeros)."""
        return -self.mean / (2 * self.std)

    def forward(
        self, waves: torch.Tensor, lengths: torch.Tensor, all_hidden_states: bool
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        specs = self.fbank(waves, lengths)  # (B, n, M)
        if specs.shape[1] > self.window_frames:
            return self._forward_windows(specs, lengths, all_hidden_states)
        # Every item fits one window (training crops always do): the batch is the model input,
        # and all sizes come from shapes or device tensors, so nothing waits for the device.
        time_patches = self._valid_patches(specs.shape[1])  # T'
        config = self.model.config
        input_frames = config.patch_size + (time_patches - 1) * config.time_stride
        inputs = F.pad(
            specs[:, :input_frames],
            (0, 0, 0, max(0, input_frames - specs.shape[1])),
            value=self.pad_value,
        )  # (B, L', M)
        full = (fbank_frames(lengths) - config.patch_size) // config.time_stride + 1  # (B,)
        valid_patches = full.clamp(min=1, max=time_patches)  # (B,)
        states = self._encode(inputs, valid_patches, time_patches, all_hidden_states)
        frame_lengths = NUM_SPECIAL_TOKENS + valid_patches * self.freq_patches  # (B,)
        valid = lengths_to_mask(frame_lengths, states[0].shape[1])[..., None]  # (B, 2 + T'F, 1)
        return [state * valid.to(state.dtype) for state in states], frame_lengths

    def _forward_windows(
        self, specs: torch.Tensor, lengths: torch.Tensor, all_hidden_states: bool
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Items longer than a window (evaluation of whole utterances), each window on its own.

        The windows of a batch are ragged (2 of one item, 5 of another): planning them needs the
        lengths on the host, one sync per batch, which training never pays (crops fit a window).
        """
        plan = self.window_plan(lengths.tolist())
        inputs = specs.new_full(
            (len(plan.spans), plan.input_frames, specs.shape[2]), self.pad_value
        )
        for row, (owner, (start, stop)) in enumerate(zip(plan.owners, plan.spans, strict=True)):
            window = specs[owner, start : min(stop, start + plan.input_frames)]  # (n_w, M)
            inputs[row, : window.shape[0]] = window  # inputs: (N, L', M)
        valid_time = torch.tensor(plan.patches, device=specs.device)  # (N,)
        states = self._encode(inputs, valid_time, plan.time_patches, all_hidden_states)
        valid = [NUM_SPECIAL_TOKENS + count * self.freq_patches for count in plan.patches]
        hidden = [gather_valid(state, valid, plan.owners, specs.shape[0]) for state in states]
        frame_lengths = torch.zeros(len(lengths), dtype=torch.long, device=lengths.device)  # (B,)
        frame_lengths.index_add_(
            0,
            torch.tensor(plan.owners, device=lengths.device),
            torch.tensor(valid, device=lengths.device),
        )
        return hidden, frame_lengths

    def _encode(
        self,
        inputs: torch.Tensor,
        valid_patches: torch.Tensor,
        time_patches: int,
        all_hidden_states: bool,
    ) -> list[torch.Tensor]:
        """Time-major hidden states ``(N, 2 + T'F, H)`` of ``inputs (N, L', M)``; patches at or
        past ``valid_patches (N,)`` are masked out of attention. The mask is always passed:
        checking whether it could be left out would wait for the device."""
        time_index = torch.arange(time_patches, device=inputs.device)  # (T',)
        patch_mask = (time_index[None, :] < valid_patches[:, None]).repeat(1, self.freq_patches)
        special = patch_mask.new_ones(inputs.shape[0], NUM_SPECIAL_TOKENS)  # (N, 2)
        mask = torch.cat([special, patch_mask], dim=1)  # (N, 2 + F*T')
        # ASTModel's forward, its mask built here: ASTModel's own asks whether it is all True,
        # waiting for the device every step.
        hidden = self.model.embeddings(inputs)  # (N, 2 + F*T', H)
        attention = create_bidirectional_mask(
            config=self.model.config,
            inputs_embeds=hidden,
            attention_mask=mask,
            allow_is_bidirectional_skip=False,
        )
        states = [hidden]
        for layer in self.model.layers:
            hidden = layer(hidden, attention)
            states.append(hidden)
        # The layers' outputs as ASTModel's hidden_states gives them; else its last_hidden_state.
        states = states if all_hidden_states else [self.model.layernorm(hidden)]
        return [self._time_major(state) for state in states]

    def _time_major(self, state: torch.Tensor) -> torch.Tensor:
        """Reorder patch tokens from frequency-major to time-major; cls/dist stay first."""
        rows, tokens, hidden = state.shape
        time_patches = (tokens - NUM_SPECIAL_TOKENS) // self.freq_patches  # T' of this batch
        grid = state[:, NUM_SPECIAL_TOKENS:].reshape(rows, self.freq_patches, time_patches, hidden)
        grid = grid.transpose(1, 2).reshape(rows, -1, hidden)  # (N, T'*F, H)
        return torch.cat([state[:, :NUM_SPECIAL_TOKENS], grid], dim=1)  # (N, 2 + T'*F, H)
