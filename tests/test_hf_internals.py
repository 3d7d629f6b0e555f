"""The transformers internals behind ser/models/backbones/hf_internals.py are where we use them.

When one moves, the failure names it, the release it was checked against and the file to update.
"""

import inspect

import pytest
import transformers
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from ser.models.backbones import hf_internals

MOVED = (
    "transformers {installed} changed {what} (ser was checked against {checked}): "
    "update ser/models/backbones/hf_internals.py and the code that uses it"
)


def moved(what: str) -> str:
    return MOVED.format(
        installed=transformers.__version__, what=what, checked=hf_internals.CHECKED_WITH
    )


def test_span_mask_sampler_takes_the_arguments_we_pass():
    params = inspect.signature(hf_internals.compute_mask_indices).parameters
    expected = {"shape", "mask_prob", "mask_length", "attention_mask", "min_masks"}
    assert expected <= set(params), moved("_compute_mask_indices' arguments")


def test_span_mask_sampler_masks_only_valid_frames():
    import numpy as np
    import torch

    valid = torch.tensor([[1] * 40 + [0] * 60, [1] * 100])
    mask = hf_internals.compute_mask_indices(
        (2, 100), mask_prob=0.5, mask_length=5, attention_mask=valid, min_masks=2
    )
    assert isinstance(mask, np.ndarray) and mask.shape == (2, 100), moved("its return value")
    assert mask[0, 40:].sum() == 0 and mask[0].sum() > 0, moved("masking of padded frames")


@pytest.mark.parametrize(
    "attribute",
    [
        "patch_embeddings",
        "get_shape",
        "position_embeddings",
        "cls_token",
        "distillation_token",
        "dropout",
    ],
)
def test_ast_embeddings_keep_what_time_cropping_uses(attribute):
    from transformers import ASTConfig

    embeddings = hf_internals.ASTEmbeddings(ASTConfig(hidden_size=32, num_hidden_layers=1))
    assert hasattr(embeddings, attribute), moved(f"ASTEmbeddings.{attribute}")


@pytest.mark.parametrize(
    "attribute",
    ["conv1", "conv2", "embed_positions", "layers", "layer_norm", "dropout", "layerdrop"],
)
def test_whisper_encoder_keeps_the_modules_our_forward_runs(attribute):
    from transformers import WhisperConfig

    config = WhisperConfig(
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16,
        max_source_positions=50,
    )  # fmt: skip
    assert hasattr(WhisperEncoder(config), attribute), moved(f"WhisperEncoder.{attribute}")
