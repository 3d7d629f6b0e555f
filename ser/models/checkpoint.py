"""Reading checkpoint files saved by ``python -m ser fit``: tensors only, memory-mapped.

A checkpoint is data: these functions read it, never run what it names (``ser.models.network``
checks the parts it names before building them).
"""

from __future__ import annotations

from pathlib import Path

import torch


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
