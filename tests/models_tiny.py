"""Tiny random-init configs of every supported backbone family, shared by tests/test_models_*.py."""

from __future__ import annotations

import torch

_W2V = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16, 16, 16],
    "conv_stride": [5, 4, 4],
    "conv_kernel": [10, 4, 4],
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "mask_time_prob": 0.0,
    "layerdrop": 0.0,  # deterministic layer use in train-mode tests
}
_TRANSFORMER = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}

# name -> (model_type, config overrides); each builds in well under a second.
TINY: dict[str, tuple[str, dict]] = {
    "wav2vec2-layer": (
        "wav2vec2",
        {**_W2V, "feat_extract_norm": "layer", "do_stable_layer_norm": True},
    ),
    "wav2vec2-group": ("wav2vec2", {**_W2V, "feat_extract_norm": "group"}),
    "hubert": ("hubert", {**_W2V, "feat_extract_norm": "layer"}),
    "wavlm": (
        "wavlm",
        {
            **_W2V,
            "feat_extract_norm": "layer",
            "do_stable_layer_norm": True,
            "num_buckets": 16,
            "max_bucket_distance": 50,
        },
    ),
    "data2vec-audio": (
        "data2vec-audio",
        {**_W2V, "num_conv_pos_embeddings": 3, "conv_pos_kernel_size": 5},
    ),
    "ast": (
        "audio-spectrogram-transformer",
        {
            **_TRANSFORMER,
            "num_mel_bins": 32,
            "patch_size": 8,
            "frequency_stride": 8,
            "time_stride": 8,
        },
    ),
    "whisper": (
        "whisper",
        {
            "d_model": 32,
            "encoder_layers": 2,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "decoder_layers": 1,
            "decoder_attention_heads": 2,
            "decoder_ffn_dim": 64,
            "num_mel_bins": 16,
            "max_source_positions": 50,
            "max_target_positions": 8,
            "vocab_size": 16,
            "pad_token_id": 0,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "decoder_start_token_id": 1,
        },
    ),
}
# AST frames per window follow segment_seconds: 0.5 s -> 48 frames -> 6 time patches.
SEGMENT_SECONDS = 0.5


def padded_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random speech-scale waveforms ``(B, max(lengths))`` zero-padded, and their lengths."""
    generator = torch.Generator().manual_seed(seed)
    waves = torch.zeros(len(lengths), max(lengths))
    for row, length in enumerate(lengths):
        waves[row, :length] = 0.1 * torch.randn(length, generator=generator)
    return waves, torch.tensor(lengths)
