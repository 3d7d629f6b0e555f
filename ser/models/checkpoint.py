"""Reading checkpoint files saved by ``python -m ser fit``: tensors only, memory-mapped.

A checkpoint is data: these functions read it, never run what it names (``ser.models.network``
checks the parts it names before building them).

A probe of a frozen pretrained encoder saves only what it trained (layer weights, pooling, head):
its ``frozen_encoder`` record names the encoder's source and the SHA-256 of its weights, and
loading rebuilds the encoder from that source, checks the hash and puts the weights back, so every
reader sees a whole state dict. Every other checkpoint holds its encoder's weights and config
(``ENCODER_CONFIG``), and is rebuilt from them alone, wherever its source is.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ser.evaluation.protocol import HEARD

# State-dict keys of the pretrained encoder inside a backbone (``HFBackbone.family.model``).
ENCODER_PREFIX = "backbone.family.model."
# The checkpoint key of the encoder's HF config and preprocessor settings
# (``HFBackbone.encoder_config``): a checkpoint that holds the encoder's weights is rebuilt from
# them, never from its pretrained source (``ser.models.network.encoder_arguments``).
ENCODER_CONFIG = "encoder_config"
# The checkpoint key of a probe's frozen encoder: its source, weights hash and tensor count.
FROZEN_ENCODER = "frozen_encoder"
# The checkpoint key that says whether training read each file from its first speech to its last
# (``data.loader.trim_silence``); absent (saved before it was recorded, or by a datamodule
# without loader settings): whole files, as that model's test scored them.
TRIM_SILENCE = "trim_silence"
# What a trained model is used with (predict, test, validate, the Python API, init_from): the
# weights, the configuration and ser's records. Every other key of a ``ser fit`` checkpoint is
# state a fit resumes from (optimizer and schedule states, loops, callbacks, the precision
# plugin's scaler), about twice the weights under AdamW.
MODEL_KEYS = (
    "state_dict",
    "hyper_parameters",
    "hparams_name",
    "pytorch-lightning_version",
    "epoch",
    "global_step",
    ENCODER_CONFIG,
    FROZEN_ENCODER,
    TRIM_SILENCE,
    HEARD,
)
# Present in every checkpoint a fit can resume from (Lightning's ``optimizer_states``).
RESUME_KEY = "optimizer_states"


def load_checkpoint(path: str | Path, option: str) -> dict:
    """A checkpoint file loaded on the CPU (tensors only); errors name ``option`` and the file.

    Memory-mapped: tensors are read when used, so reading a checkpoint's configuration (or
    checking it before Lightning loads it) costs no pass over hundreds of MB of weights.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{option} {path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # a truncated or foreign file: say which; --debug shows torch's why
        raise ValueError(
            f"{option} {path}: not a readable checkpoint (truncated, damaged, or not a file "
            f"saved by `python -m ser fit`; torch.load raised {type(err).__name__})"
        ) from err


def check_finite_weights(state: dict[str, torch.Tensor], where: str) -> None:
    """ValueError naming the weights of ``state`` that hold NaN/inf, before they are used.

    torch does not verify a checkpoint's checksums, so disk or transfer damage loads as NaN
    weights; a diverged training run saves them too. Either way, no output of the model (or
    ONNX graph made from it) can be right: say so, naming the tensors, not what fails later.
    """
    bad = [
        key for key, tensor in state.items()
        if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]  # fmt: skip
    if bad:
        names = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ValueError(
            f"{where}: the weight{'s' if len(bad) > 1 else ''} {names} "
            f"hold{'' if len(bad) > 1 else 's'} NaN/inf: the checkpoint is damaged (torch does "
            "not verify its checksums) or its training diverged; use another checkpoint"
        )


def read_checkpoint(
    path: str | Path, encoder_state: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str], list[str], list[dict] | None]:
    """The weights, class names, dimension names (empty for a model without a dimension head)
    and what its model heard (``HEARD``; None in a checkpoint from before ser recorded it) of a
    checkpoint saved by ``python -m ser fit``.

    Args:
        path: the checkpoint file.
        encoder_state: the reader's own pretrained encoder weights, put back into a probe's
            checkpoint when they are the ones it was trained on (``restore_frozen_encoder``).
    """
    checkpoint = load_checkpoint(path, "init_from")
    restore_frozen_encoder(checkpoint, encoder_state, f"init_from {path}")
    state = checkpoint.get("state_dict")
    hyper_parameters = checkpoint.get("hyper_parameters") or {}
    classes = hyper_parameters.get("class_names")
    if state is None or classes is None:
        raise ValueError(
            f"init_from {path}: expected a checkpoint saved by `python -m ser fit` (with "
            "state_dict and hyper_parameters.class_names)"
        )
    dimensions = hyper_parameters.get("dimensions") or []
    return state, list(classes), list(dimensions), checkpoint.get(HEARD)


def model_only(checkpoint: dict, dtype: torch.dtype | None = None) -> dict:
    """``checkpoint`` without the state a fit resumes from (``MODEL_KEYS`` kept), its
    floating-point weights cast to ``dtype`` (None: as saved; integer buffers stay as they are).

    What ``ser export --output model.ckpt`` writes: it predicts, tests and starts a new fit
    (``init_from``) as the full checkpoint does; it cannot resume one.
    """
    kept = {key: value for key, value in checkpoint.items() if key in MODEL_KEYS}
    if dtype is not None:
        kept["state_dict"] = {
            key: tensor.to(dtype) if tensor.is_floating_point() else tensor
            for key, tensor in checkpoint["state_dict"].items()
        }
    return kept


def weights_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict: every key, dtype, shape and byte, in key order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}|{tensor.dtype}|{tuple(state[key].shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def strip_frozen_encoder(checkpoint: dict, source: str, fingerprint: str) -> None:
    """Leave a frozen pretrained encoder's weights out of ``checkpoint`` (saved in place).

    Args:
        checkpoint: the dict Lightning is about to save.
        source: where the encoder loads from (hub id or folder), as the backbone was given it.
        fingerprint: ``weights_fingerprint`` of the encoder's state dict.
    """
    state = checkpoint["state_dict"]
    encoder_keys = [key for key in state if key.startswith(ENCODER_PREFIX)]
    for key in encoder_keys:
        del state[key]
    checkpoint[FROZEN_ENCODER] = {
        "source": source,
        "sha256": fingerprint,
        "tensors": len(encoder_keys),
    }


def restore_frozen_encoder(
    checkpoint: dict, encoder_state: dict[str, torch.Tensor], where: str
) -> None:
    """Put a stripped probe's encoder weights back from ``encoder_state``, after checking them.

    Does nothing for a checkpoint that holds its encoder. Raises ValueError naming the source
    when ``encoder_state`` is not the encoder the probe was trained on.
    """
    record = checkpoint.get(FROZEN_ENCODER)
    if record is None:
        return
    own = weights_fingerprint(encoder_state)
    if own != record["sha256"] or len(encoder_state) != record["tensors"]:
        raise ValueError(
            f"{where}: this probe was trained on the frozen encoder {record['source']} (weights "
            f"sha256 {record['sha256'][:12]}...), but the encoder built for it holds other "
            f"weights ({own[:12]}...): make {record['source']} the encoder it was trained on "
            "(a probe checkpoint stores the encoder's source and hash, not its weights)"
        )
    checkpoint["state_dict"].update({ENCODER_PREFIX + k: v for k, v in encoder_state.items()})
