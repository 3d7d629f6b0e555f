"""The transformers internals ser relies on, each with no public equivalent, in one place.

- ``compute_mask_indices``: HF's SpecAugment span sampler (wav2vec2's, reused by Whisper's own
  ``_mask_input_features``); our Whisper forward runs the encoder's modules, not
  ``WhisperModel.forward``, so it samples the masks itself.
- ``ASTEmbeddings``: ``TimeCroppedEmbeddings`` (ast.py) subclasses it to accept fewer time patches
  than ``config.max_length``, relying on its attributes ``patch_embeddings``, ``get_shape``,
  ``position_embeddings``, ``cls_token``, ``distillation_token`` and ``dropout``.
- ``WhisperEncoder`` modules: our length-flexible forward (whisper.py) runs ``conv1``, ``conv2``,
  ``embed_positions``, ``layers``, ``layer_norm``, ``dropout`` and ``layerdrop`` itself.

``tests/test_hf_internals.py`` checks each against the installed transformers and names
``CHECKED_WITH`` when one moves: update the adapter, then the version.
"""

from transformers.models.audio_spectrogram_transformer.modeling_audio_spectrogram_transformer import (  # noqa: E501
    ASTEmbeddings,
)
from transformers.models.wav2vec2.modeling_wav2vec2 import (
    _compute_mask_indices as compute_mask_indices,
)

CHECKED_WITH = "5.25.0"  # the transformers release these were last checked against

__all__ = ["CHECKED_WITH", "ASTEmbeddings", "compute_mask_indices"]
