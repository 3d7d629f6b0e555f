"""Start a model from an earlier run's checkpoint (``SERModule(init_from=...)``).

The encoder and pooling are copied as they are; the classifier's output rows are mapped by emotion
name through the shared vocabulary (``ser.labels``), so an IEMOCAP checkpoint starts a ShEMO run
with its anger/happiness/neutral/sadness rows, while fear and surprise keep this model's fresh
initialisation. Any other head weights (an MLP's hidden layer) are copied when their shapes match.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


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


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The weights and class names of a checkpoint saved by ``python -m ser fit``."""
    checkpoint = load_checkpoint(path, "init_from")
    state = checkpoint.get("state_dict")
    classes = (checkpoint.get("hyper_parameters") or {}).get("class_names")
    if state is None or classes is None:
        raise ValueError(
            f"init_from {path}: expected a checkpoint saved by `python -m ser fit` (with "
            "state_dict and hyper_parameters.class_names)"
        )
    return state, list(classes)


def copy_weights(
    model: nn.Module, class_names: list[str], state: dict[str, torch.Tensor], source: list[str]
) -> list[str]:
    """Copy ``state`` (trained on classes ``source``) into ``model`` (classes ``class_names``).

    ``model`` has ``backbone``, ``pooling`` and ``head`` children; the head's last ``nn.Linear``
    is the class layer. Returns the classes whose rows were copied. Raises ValueError naming the
    tensors that do not fit when the backbone, pooling or head architecture differs.
    """
    own = model.state_dict()
    rows = _class_layer_names(model.head, len(class_names))
    shared = [name for name in class_names if name in source]
    merged = dict(own)
    problems = []
    for key, value in own.items():
        if key.split(".", 1)[0] not in ("backbone", "pooling", "head"):
            continue
        if key not in state:
            problems.append(f"{key} missing")
        elif key in rows:
            if state[key].shape[1:] != value.shape[1:] or len(state[key]) != len(source):
                problems.append(f"{key} {tuple(state[key].shape)} != {tuple(value.shape)}")
                continue
            merged[key] = value.clone()
            for name in shared:  # row of class `name` here <- its row there
                merged[key][class_names.index(name)] = state[key][source.index(name)]
        elif state[key].shape != value.shape:
            problems.append(f"{key} {tuple(state[key].shape)} != {tuple(value.shape)}")
    unexpected = [
        k for k in state if k.split(".", 1)[0] in ("backbone", "pooling", "head") and k not in own
    ]
    problems += [f"{key} unexpected" for key in unexpected]
    if problems:
        raise ValueError(
            f"init_from: the checkpoint's network does not fit this model ({len(problems)} "
            f"tensors: {'; '.join(problems[:6])}{' ...' if len(problems) > 6 else ''}); build "
            "the model with the checkpoint's backbone, pooling and head (`model:` in its run's "
            "config.yaml)"
        )
    for key in own:
        if key.split(".", 1)[0] in ("backbone", "pooling", "head") and key not in rows:
            merged[key] = state[key]
    model.load_state_dict(merged)
    return shared


def _class_layer_names(head: nn.Module, num_classes: int) -> set[str]:
    """State-dict keys (``head.<...>.weight``/``bias``) of the head's output layer."""
    linears = [(name, m) for name, m in head.named_modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1][1].out_features != num_classes:
        raise ValueError(
            f"init_from: the head's last layer must be an nn.Linear with {num_classes} outputs"
        )
    name, layer = linears[-1]
    return {f"head.{name}.{p}" for p, _ in layer.named_parameters()}
