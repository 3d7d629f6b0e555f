"""``HFBackbone``: a Hugging Face speech encoder, by hub id / folder or random-init config."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import (
    ASTModel,
    AutoConfig,
    AutoModel,
    Data2VecAudioModel,
    HubertModel,
    PreTrainedModel,
    Wav2Vec2Model,
    WavLMModel,
    WhisperModel,
)
from transformers.utils import cached_file

from ser.audio import TARGET_SAMPLE_RATE
from ser.models.backbones.ast import ASTFamily, num_fbank_frames
from ser.models.backbones.base import BackboneFamily
from ser.models.backbones.frames import lengths_to_mask, scale_to_level
from ser.models.backbones.wav2vec2 import Wav2Vec2Family
from ser.models.backbones.whisper import WhisperFamily, WhisperOptions

log = logging.getLogger(__name__)

# A config override's value: typed so the command line's "0.1" reaches transformers as 0.1 (int,
# then float, then bool are tried before str; lists and nested dicts as in config.json).
ConfigValue = int | float | bool | str | list | dict | None
MODEL_TYPES = (
    "wav2vec2", "hubert", "wavlm", "data2vec-audio", "audio-spectrogram-transformer", "whisper",
)  # fmt: skip
SUPPORTED = ", ".join(MODEL_TYPES)
WAVEFORM_MODELS = (Wav2Vec2Model, HubertModel, WavLMModel, Data2VecAudioModel)
Freeze = Literal["none", "feature_encoder", "all"]
# SDPA kernels the encoders may use: all but cuDNN's. cuDNN attention builds an execution plan for
# every new sequence length, and our length-grouped batches change length every step, so it re-plans
# nearly every step (figures: docs/performance.md, benchmarks/gpu_shapes.py). Flash and
# memory-efficient kernels do not re-plan.
ATTENTION_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
# The level every input is scaled to (``input_level_db``): RMS in dBFS, about that of speech
# recorded for a corpus (EmoDB's clips: median -18 dBFS, 90 % within -23 .. -14); the most gain
# it may add, so a window of near-silence (below -50 dBFS) stays quiet.
DEFAULT_INPUT_LEVEL_DB = -20.0
MAX_LEVEL_GAIN_DB = 30.0


def read_preprocessor_config(source: str) -> dict:
    """The ``preprocessor_config.json`` of a local folder or hub id, or ``{}`` when it has none."""
    local = Path(locate_source(source))
    if local.is_dir():
        path = local / "preprocessor_config.json"
        return json.loads(path.read_text()) if path.is_file() else {}
    resolved = cached_file(
        source, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False
    )
    return json.loads(Path(resolved).read_text()) if resolved else {}


def load_model(
    source: str | None, model_type: str | None, config: dict, attn_implementation: str | None
) -> PreTrainedModel:
    """Load ``source`` (hub id or folder) or build ``model_type`` with random weights."""
    if (source is None) == (model_type is None):
        raise ValueError(
            "HFBackbone: give exactly one of `source` (hub id or local folder saved with "
            f"save_pretrained) or `model_type` (random init; one of {SUPPORTED})"
        )
    # AST's position table: a pretrained source's is its own (the window follows
    # segment_seconds); a model built from a config, a trained checkpoint's, keeps the table it
    # trained with. Other families have no such key.
    if "max_length" in config and source is not None:
        raise ValueError(
            "HFBackbone: AST's frames per window follow segment_seconds; max_length (its position "
            "table) is the checkpoint's"
        )
    if source is not None:
        location = locate_source(source)
        try:
            hf_config = AutoConfig.from_pretrained(location, **config)
            model = AutoModel.from_pretrained(
                location, config=hf_config, attn_implementation=attn_implementation
            )
        except OSError as err:  # hub unreachable, no such repo, no weights in the folder
            reason = str(err).splitlines()[0]
            if Path(location).is_dir():
                raise OSError(f"HFBackbone source {source!r}: {reason}") from err
            raise OSError(
                f"HFBackbone source {source!r} is no local folder and could not be loaded from "
                f"the hub: {reason} A hub id needs the hub or a filled cache (HF_HOME); on a "
                "machine without network, download the model where there is one (`hf download "
                "ID --local-dir DIR`) and give DIR"
            ) from err
        # from_pretrained returns eval mode (for inference), and Lightning keeps each submodule's
        # mode through fit: left so, dropout, LayerDrop and SpecAugment would be off in training.
        # HF's own Trainer calls model.train(); a fresh random-init model is in train mode too.
        return model.train()
    try:
        hf_config = AutoConfig.for_model(model_type, **config)
    except ValueError as err:
        raise ValueError(
            f"HFBackbone: unknown model_type {model_type!r}; use one of {SUPPORTED}"
        ) from err
    return AutoModel.from_config(hf_config, attn_implementation=attn_implementation)


def locate_source(source: str) -> str:
    """Where to load ``source`` from: a hub id as it is, a local folder with ``~`` expanded.

    A hub id is ``name`` or ``namespace/name``; an existing path, an absolute one, one starting
    with ``.`` or ``~`` or one with more than one ``/`` names a folder, which must hold a model,
    so a mistyped folder is refused by name instead of reaching the hub as a malformed id.
    """
    local = Path(source).expanduser()
    is_path = local.exists() or local.is_absolute() or source.startswith((".", "~"))
    if not (is_path or source.count("/") > 1):
        return source
    if not local.is_dir():
        problem = "no such folder"
    elif not (local / "config.json").is_file():
        problem = "the folder has no config.json"
    else:
        return str(local)
    raise FileNotFoundError(
        f"HFBackbone source {source!r}: {problem}; expected a folder written by save_pretrained "
        "(config.json + weights) or a hub id such as facebook/wav2vec2-base"
    )


def build_family(
    model: PreTrainedModel,
    preprocessor: dict,
    segment_seconds: float,
    whisper: WhisperOptions = WhisperOptions(),
) -> BackboneFamily:
    """Wrap ``model`` with the front end of its family (``whisper``: Whisper's options)."""
    if whisper != WhisperOptions() and not isinstance(model, WhisperModel):
        raise ValueError(
            f"HFBackbone: whisper options ({whisper}) are for Whisper models only, but this is "
            f"{type(model).__name__}; remove them"
        )
    if isinstance(model, WAVEFORM_MODELS):
        return Wav2Vec2Family(model, preprocessor)
    if isinstance(model, ASTModel):
        return ASTFamily(
            model, preprocessor, num_fbank_frames(round(segment_seconds * TARGET_SAMPLE_RATE))
        )
    if isinstance(model, WhisperModel):
        encoder = model.get_encoder()  # the decoder is dropped
        return WhisperFamily(encoder, preprocessor, whisper.pad_to_window)
    raise ValueError(f"HFBackbone: {type(model).__name__} is not supported; use one of {SUPPORTED}")


class HFBackbone(nn.Module):
    """A Hugging Face speech encoder: padded waveforms in, padded frame sequences out.

    A loaded checkpoint starts in train mode like a random-init model (``from_pretrained`` returns
    eval mode), so ``train()``/``eval()`` (which Lightning toggles) switch the encoder's dropout,
    LayerDrop and SpecAugment, frozen CNN or lower layers included, except when the whole encoder
    is frozen (``freeze: all``, or the probe phase of ``set_encoder_trainable``): a frozen
    encoder is a fixed feature extractor and always runs in eval mode (``train``). Frozen weights
    stay as loaded: these encoders have no BatchNorm (the CNN's group/layer norms keep no running
    statistics).

    Args:
        source: hub id or local folder (``from_pretrained``); exclusive with ``model_type``.
        model_type: HF model type for a random-init model (wav2vec2, hubert, wavlm, data2vec-audio,
            audio-spectrogram-transformer, whisper); exclusive with ``source``.
        config: config overrides (random init: the tiny config; with ``source``: e.g. dropout);
            typed, so ``--model.backbone.init_args.config.hidden_dropout 0.1`` is a float.
        preprocessor: feature-extractor settings (``preprocessor_config.json`` keys, e.g.
            ``do_normalize``) over the source's; random init: all there are (else each family's
            defaults). A checkpoint rebuilds its encoder from its saved config and these.
        freeze: "feature_encoder" freezes the CNN / patch embedding / input convs, "all" the
            whole encoder, "none" nothing.
        freeze_layers: also freeze everything below and including the first N transformer layers.
        layer_weighting: learn softmax weights over all hidden states (SUPERB), or those of
            ``layers``, instead of using the last.
        layers: the hidden states to use, by index: 0 is the input of the first transformer layer
            (CNN / patch / conv output), ``l`` the output of layer ``l``, the last one as the
            model outputs it (after its final norm, if any). None: all of them with
            ``layer_weighting``, else the last. One index without ``layer_weighting`` probes
            that layer (EmoBox's per-layer probes); several need ``layer_weighting``, which then
            mixes only them. A feature store keeps only these states.
        normalize_states: layer-normalise each hidden state's frames over the hidden size (no
            learned scale) before they are mixed or pooled, as s3prl's weighted-sum featurizer
            does: layers whose activations are larger no longer dominate the weighted sum.
        input_level_db: each input (a training crop, an evaluation or predict window) scaled to
            this RMS level in dBFS over its valid samples, its DC offset removed, before the front
            end; raised by at most MAX_LEVEL_GAIN_DB; None: as recorded. A model then hears every
            recording at one level: a clip played 20 dB quieter cost a fine-tuned Whisper-tiny.en
            0.07 UA without it (docs/real_speech.md#recording-level). wav2vec2 checkpoints with
            ``do_normalize`` standardize their input anyway (HuBERT and WavLM base do not).
        segment_seconds: training segment length; sets AST's frames per window (498 for 5 s) and
            caps the window evaluation and predict score long utterances in.
        attn_implementation: "eager", "sdpa", "flash_attention_2"... (None: transformers' default).
        compile: ``torch.compile`` each transformer layer (regional compilation: one layer's graph,
            reused by every layer, with dynamic shapes because batch lengths vary). Weights and
            checkpoint keys are unchanged. The first batches pay the compilation, so it pays off
            on GPUs over long runs, not on CPU.
        whisper: options of the Whisper front end (``WhisperOptions``: ``pad_to_window``).
    """

    def __init__(
        self,
        source: str | None = None,
        model_type: str | None = None,
        config: dict[str, ConfigValue] | None = None,
        preprocessor: dict[str, ConfigValue] | None = None,
        freeze: Literal["none", "feature_encoder", "all"] = "feature_encoder",
        freeze_layers: int = 0,
        layer_weighting: bool = False,
        layers: list[int] | None = None,
        normalize_states: bool = False,
        input_level_db: float | None = DEFAULT_INPUT_LEVEL_DB,
        segment_seconds: float = 5.0,
        attn_implementation: str | None = None,
        compile: bool = False,
        whisper: WhisperOptions = WhisperOptions(),
    ) -> None:
        super().__init__()
        if freeze not in ("none", "feature_encoder", "all"):
            raise ValueError(
                f"HFBackbone: freeze={freeze!r}; expected none, feature_encoder or all"
            )
        model = load_model(source, model_type, dict(config or {}), attn_implementation)
        self.source = source
        self.segment_seconds = segment_seconds
        preprocessor = {
            **(read_preprocessor_config(source) if source is not None else {}),
            **(preprocessor or {}),
        }
        if isinstance(whisper, dict):  # a checkpoint's hyper-parameters hold the group as a dict
            whisper = WhisperOptions(**whisper)
        self.family = build_family(model, preprocessor, segment_seconds, whisper)
        num_layers = len(self.family.layers)
        if not 0 <= freeze_layers <= num_layers:
            raise ValueError(
                f"HFBackbone: freeze_layers={freeze_layers} but the model has {num_layers} layers"
            )
        self.layers = self._check_layers(layers, num_layers, layer_weighting)
        self.normalize_states = normalize_states
        self.input_level_db = input_level_db
        self.layer_weights = (
            nn.Parameter(torch.zeros(len(self.layers))) if layer_weighting else None
        )
        self.freeze, self.freeze_layers = freeze, freeze_layers
        self.encoder_frozen = False  # a linear probe's phase (set_encoder_trainable)
        self._freeze(freeze, freeze_layers)
        self.train(self.training)  # a frozen encoder runs in eval mode
        if compile:
            for layer in self.family.layers:
                layer.compile(dynamic=True)
        log.info(
            "HFBackbone %s: %d layers, hidden %d, freeze=%s%s, freeze_layers=%d, compile=%s",
            source or model_type,
            num_layers,
            self.output_size,
            freeze,
            "" if self.encoder_trains else " (the frozen encoder runs in eval mode)",
            freeze_layers,
            compile,
        )

    @staticmethod
    def _check_layers(
        layers: list[int] | None, num_layers: int, layer_weighting: bool
    ) -> list[int]:
        """The hidden-state indices ``hidden_states`` returns, from the ``layers`` argument."""
        if layers is None:
            return list(range(num_layers + 1)) if layer_weighting else [num_layers]
        if not layers or sorted(set(layers)) != list(layers):
            raise ValueError(f"HFBackbone: layers={layers}; expected increasing, distinct indices")
        if not 0 <= layers[0] <= layers[-1] <= num_layers:
            raise ValueError(
                f"HFBackbone: layers={layers}, but the hidden states of this {num_layers}-layer "
                f"model are 0 (the first layer's input) to {num_layers} (the last layer's output)"
            )
        if len(layers) > 1 and not layer_weighting:
            raise ValueError(
                f"HFBackbone: layers={layers} are several states; set layer_weighting true to mix "
                "them, or give one layer"
            )
        return list(layers)

    @property
    def output_size(self) -> int:
        """Hidden size ``H`` of the frames this backbone returns."""
        return self.family.hidden_size

    def encoder_parameters(self) -> list[tuple[str, nn.Parameter, int]]:
        """``(name, parameter, depth)`` of every checkpoint parameter (the HF model's).

        Depth 0 is everything below the first transformer layer (CNN, patch embedding,
        projections, positions), ``l`` is layer ``l`` (1-based), ``L`` also holds the final
        norms after the last layer. The layer weights are not checkpoint parameters.
        """
        num_layers = len(self.family.layers)
        depth = {}
        for index, layer in enumerate(self.family.layers):
            depth.update({id(p): index + 1 for p in layer.parameters()})
        for module in self.family.post_layer_modules():
            depth.update({id(p): num_layers for p in module.parameters()})
        return [
            (f"family.model.{name}", param, depth.get(id(param), 0))
            for name, param in self.family.model.named_parameters()
        ]

    @property
    def encoder_trains(self) -> bool:
        """Whether any encoder weight trains now (not ``freeze: all``, not a probe's phase)."""
        return not self.encoder_frozen and any(
            p.requires_grad for p in self.family.model.parameters()
        )

    def train(self, mode: bool = True) -> HFBackbone:
        """Train or eval mode, as ``nn.Module.train``; a frozen encoder stays in eval mode.

        In train mode a frozen encoder's dropout, LayerDrop and SpecAugment (dropout 0.1 and
        time masks 0.05 in the wav2vec2, HuBERT and WavLM base checkpoints) would only add noise
        to the features the head learns from: features unlike the ones it is tested on (eval mode),
        the ones a feature store holds (extracted in eval mode) and the ones s3prl's SUPERB
        probes train on (their frozen upstream runs in eval mode). The layer weights, pooling and
        head follow ``mode``.
        """
        super().train(mode)
        if mode and not self.encoder_trains:
            self.family.eval()
        return self

    def set_encoder_trainable(self, trainable: bool) -> None:
        """Freeze the whole encoder for a linear probe (False), or end the probe (True).

        A probe runs the encoder without autograd and in eval mode (``train``): no gradient
        reaches it, and the optimizer leaves it out (``SERModule.configure_optimizers``).
        ``requires_grad`` keeps following ``freeze``/``freeze_layers``: DDP registers the
        parameters that require grad once, when it wraps the model, so flipping it later would
        leave the unfrozen encoder's gradients unsynchronised across ranks. The layer weights
        train in both phases.
        """
        self.encoder_frozen = not trainable
        self.train(self.training)  # the encoder's mode follows

    def _freeze(self, freeze: Freeze, freeze_layers: int) -> None:
        model = self.family.model
        if freeze == "all":
            model.requires_grad_(False)
        elif freeze == "feature_encoder":
            self.family.feature_encoder.requires_grad_(False)
        if freeze_layers:
            keep = {
                id(p) for layer in self.family.layers[freeze_layers:] for p in layer.parameters()
            }
            for module in self.family.post_layer_modules():
                keep.update(id(p) for p in module.parameters())
            for param in model.parameters():
                if id(param) not in keep:
                    param.requires_grad_(False)
        frozen_convs = not any(p.requires_grad for p in self.family.feature_encoder.parameters())
        if frozen_convs and hasattr(model, "freeze_feature_encoder"):
            # HF's CNN feature encoders check their own flag, not requires_grad: unset, they make
            # the input require grad and run backward through the frozen convolutions (a third
            # of a wav2vec2-base training step). The public switch sets it.
            model.freeze_feature_encoder()

    def hidden_states(
        self, waves: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The hidden states ``mix`` combines: those of ``layers`` (default: all of them with layer
        weighting, else the last).

        Args:
            waves: ``(B, T)`` float waveforms at 16 kHz, zero-padded on the right.
            lengths: ``(B,)`` int64 valid samples per item.

        Returns:
            states, each ``(B, T', H)``, and ``frame_lengths (B,)``.
        """
        all_states = self.layers != [len(self.family.layers)]  # else the family's last state
        grad = torch.is_grad_enabled() and self.encoder_trains
        if self.input_level_db is not None:
            waves = scale_to_level(waves, lengths, self.input_level_db, MAX_LEVEL_GAIN_DB)
        with torch.set_grad_enabled(grad), sdpa_kernel(ATTENTION_BACKENDS):
            states, frame_lengths = self.family(waves, lengths, all_states)
        if all_states:
            states = [states[i] for i in self.layers]
        if self.normalize_states:
            size = (self.family.hidden_size,)  # a constant: the ONNX export traces it
            states = [F.layer_norm(state, size) for state in states]  # (B, T', H)
        return states, frame_lengths

    def output_settings(self) -> dict:
        """What shapes ``hidden_states`` beyond the model's weights and config: the states kept,
        their normalisation, the input level and the family's input settings (a feature store
        keys on them)."""
        return {
            "layers": self.layers,
            "normalize_states": self.normalize_states,
            "input_level_db": self.input_level_db,
            "input": self.family.input_settings(),
        }

    def mix(self, states: Sequence[torch.Tensor], dtype: torch.dtype | None = None) -> torch.Tensor:
        """One tensor from ``hidden_states``' states (each ``(B, ..., H)``): their
        softmax-weighted sum with layer weighting, else the last one. Linear, so it commutes with
        mean pooling: a feature store mixes per-layer pooled vectors ``(B, H)`` the same way.

        Computed in ``dtype`` (default: the states'), one state at a time: no stacked copy of
        all states (float16 frames from a store are mixed in float32 without one).
        """
        dtype = dtype or states[-1].dtype
        if self.layer_weights is None:
            return states[-1].to(dtype)
        if len(states) != len(self.layer_weights):
            raise RuntimeError(f"expected {len(self.layer_weights)} states, got {len(states)}")
        weights = torch.softmax(self.layer_weights, dim=0).to(dtype)  # (L',)
        mixed = weights[0] * states[0].to(dtype)  # (B, ..., H)
        for weight, state in zip(weights[1:], states[1:], strict=True):
            mixed = mixed + weight * state.to(dtype)  # (B, ..., H)
        return mixed

    def forward(
        self, waves: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a zero-padded batch.

        Args:
            waves: ``(B, T)`` float waveforms at 16 kHz, zero-padded on the right.
            lengths: ``(B,)`` int64 valid samples per item.

        Returns:
            ``hidden (B, T', H)`` (zeros past each item's frames) and ``frame_lengths (B,)``.
        """
        states, frame_lengths = self.hidden_states(waves, lengths)
        hidden = self.mix(states)  # (B, T', H)
        valid = lengths_to_mask(frame_lengths, hidden.shape[1])  # (B, T')
        return hidden * valid[..., None].to(hidden.dtype), frame_lengths  # (B, T', H)

    def save_pretrained(self, directory: str | Path) -> None:
        """Save the HF model and its feature-extractor config; reload with ``source=directory``."""
        self.family.save_pretrained(str(directory))

    def encoder_config(self) -> dict[str, dict]:
        """The encoder's whole HF config and its front end's preprocessor settings, as plain
        data: with the weights, all that rebuilds it without its source (``model_type``,
        ``config`` and ``preprocessor``; ``ser.models.network.encoder_arguments``)."""
        return {
            "config": json.loads(self.family.model.config.to_json_string(use_diff=False)),
            "preprocessor": self.family.preprocessor_settings(),
        }
