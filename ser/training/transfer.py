"""Start a model from an earlier run's checkpoint (``SERModule(init_from=...)``).

The encoder and pooling are copied as they are; each head's output rows are mapped by name: the
class head's by emotion through the shared vocabulary (``ser.labels``), so an IEMOCAP checkpoint
starts a ShEMO run with its anger/happiness/neutral/sadness rows while fear and surprise keep this
model's fresh initialisation, and the dimension head's by dimension (arousal, valence ...), in
whatever order either model lists them. Any other head weights (an MLP's hidden layer) are copied
when their shapes match. A head one side lacks (a dimensional checkpoint has no class head) is not
copied, and the log says so.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

# Copied whole: a checkpoint whose encoder or pooling differs is refused.
BODY = ("backbone", "pooling")
# Each head's attribute (its state-dict prefix) and what its outputs are, in the log.
HEADS = {"head": "class head", "dimension_head": "dimension head"}


def copy_weights(
    model: nn.Module,
    outputs: dict[str, list[str]],
    state: dict[str, torch.Tensor],
    source_outputs: dict[str, list[str]],
    where: str,
) -> None:
    """Copy ``state`` into ``model`` and log what was copied and what kept its initialisation.

    Args:
        model: has ``backbone`` and ``pooling`` children and the heads of ``HEADS`` it names in
            ``outputs``; each head's last ``nn.Linear`` is its output layer.
        outputs: the output names of each of the model's heads (``{"head": classes,
            "dimension_head": dimensions}``; a head the model lacks left out).
        state: the checkpoint's weights.
        source_outputs: the checkpoint's output names of each head, as ``outputs``.
        where: the start of the log line and of errors (``init_from <path>``).

    Raises ValueError naming the tensors that do not fit when the backbone, pooling or a head that
    both sides have differs in build.
    """
    own = model.state_dict()
    merged, problems, copied = dict(own), _body_problems(own, state), {}
    for head, names in outputs.items():
        if _parts(state, head):
            copied[head], head_problems = _copy_head(
                model, head, names, state, source_outputs[head], merged
            )
            problems += head_problems
    if problems:
        raise ValueError(
            f"{where}: the checkpoint's network does not fit this model ({len(problems)} "
            f"tensors: {'; '.join(problems[:6])}{' ...' if len(problems) > 6 else ''}); build "
            "the model with the checkpoint's backbone, pooling and heads (`model:` in its run's "
            "config.yaml)"
        )
    merged.update({key: state[key] for part in BODY for key in _parts(own, part)})
    model.load_state_dict(merged)
    log.info("%s: %s", where, _report(outputs, copied, state))


def _parts(state: dict[str, torch.Tensor], part: str) -> list[str]:
    """The keys of ``state`` under ``part`` (``head.linear.weight`` ... for "head")."""
    return [key for key in state if key.split(".", 1)[0] == part]


def _body_problems(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    """The encoder and pooling tensors that are missing, extra or of another shape in ``state``."""
    problems = []
    for key in [key for part in BODY for key in _parts(own, part)]:
        if key not in state:
            problems.append(f"{key} missing")
        elif state[key].shape != own[key].shape:
            problems.append(f"{key} {tuple(state[key].shape)} != {tuple(own[key].shape)}")
    extra = [key for part in BODY for key in _parts(state, part) if key not in own]
    return problems + [f"{key} unexpected" for key in extra]


def _copy_head(
    model: nn.Module,
    head: str,
    names: list[str],
    state: dict[str, torch.Tensor],
    source: list[str],
    merged: dict[str, torch.Tensor],
) -> tuple[list[str], list[str]]:
    """Put ``head``'s weights from ``state`` into ``merged``, its output rows mapped by name
    (``source``: the checkpoint's names of its rows). Returns the names whose rows were copied
    and the tensors that do not fit."""
    own = {key: merged[key] for key in _parts(merged, head)}
    rows = _output_layer_keys(getattr(model, head), head, len(names))
    shared = [name for name in names if name in source]
    problems = [f"{key} unexpected" for key in _parts(state, head) if key not in own]
    for key, value in own.items():
        if key not in state:
            problems.append(f"{key} missing")
        elif key in rows:
            if state[key].shape[1:] != value.shape[1:] or len(state[key]) != len(source):
                problems.append(f"{key} {tuple(state[key].shape)} != {tuple(value.shape)}")
                continue
            merged[key] = value.clone()
            for name in shared:  # row of output `name` here <- its row there
                merged[key][names.index(name)] = state[key][source.index(name)]
        elif state[key].shape != value.shape:
            problems.append(f"{key} {tuple(state[key].shape)} != {tuple(value.shape)}")
        else:
            merged[key] = state[key]
    return shared, problems


def _output_layer_keys(module: nn.Module, head: str, num_outputs: int) -> set[str]:
    """State-dict keys (``<head>.<...>.weight``/``bias``) of the head's output layer."""
    linears = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1][1].out_features != num_outputs:
        raise ValueError(
            f"init_from: the {HEADS[head]}'s last layer must be an nn.Linear with {num_outputs} "
            "outputs"
        )
    name, layer = linears[-1]
    return {f"{head}.{name}.{p}" for p, _ in layer.named_parameters()}


def _report(
    outputs: dict[str, list[str]], copied: dict[str, list[str]], state: dict[str, torch.Tensor]
) -> str:
    """What was copied, head by head, in words."""
    parts = ["backbone and pooling copied"]
    for head, kind in HEADS.items():
        if head not in outputs:
            if _parts(state, head):
                parts.append(f"the checkpoint's {kind} is not copied (this model has none)")
            continue
        names = outputs[head]
        if head not in copied:
            other = "a dimensional model" if head == "head" else "a categorical model"
            parts.append(
                f"{kind}: the checkpoint has none ({other}), {names} keep their initialisation"
            )
            continue
        kept = [name for name in names if name not in copied[head]]
        parts.append(f"{kind}: {copied[head]} copied, {kept} keep their initialisation")
    return "; ".join(parts)
