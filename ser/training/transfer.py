"""Start a model from an earlier run's checkpoint (``SERModule(init_from=...)``).

The encoder and pooling are copied as they are; the classifier's output rows are mapped by emotion
name through the shared vocabulary (``ser.labels``), so an IEMOCAP checkpoint starts a ShEMO run
with its anger/happiness/neutral/sadness rows, while fear and surprise keep this model's fresh
initialisation. Any other head weights (an MLP's hidden layer) are copied when their shapes match.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


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
