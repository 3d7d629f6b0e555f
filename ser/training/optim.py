"""Optimisation: parameter groups (pretrained / new, decay / no decay, per-layer rates), the fused
AdamW and the learning-rate schedule of ``SERModule``.

Groups follow what fine-tuning a pretrained encoder needs:

- checkpoint weights (the HF encoder) learn at ``backbone_lr``; everything the checkpoint does not
  hold (SUPERB layer weights, pooling, head) at ``head_lr``: new weights start from nothing and
  would barely move at the encoder's rate (layer weights at 3e-5 stay uniform over a run);
- biases, norm weights and layer weights (every tensor of fewer than 2 dimensions) get no weight
  decay, the convention of HF's Trainer, nanoGPT and timm: decaying a norm's gain or a softmax
  logit towards 0 is not a regulariser of the function's complexity;
- optionally the new weights' own weight decay (``head_weight_decay``): a head on a few hundred
  clips wants far more than the encoder's 0.01 (a frozen probe: 1.0, docs/real_speech.md);
- optional layer-wise learning-rate decay (LLRD): transformer layer ``l`` of ``L`` learns at
  ``backbone_lr * layer_lr_decay ** (L - l)``; the front end below layer 1 (CNN, embeddings) as
  layer 0, final norms as layer ``L``. Lower layers hold general acoustic features and move less.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

log = logging.getLogger(__name__)


class FusedAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` with ``fused=True``: one kernel updates every parameter (CPU, CUDA).

    The default loop runs a handful of ops per parameter tensor: for a model with hundreds of
    tensors such as wav2vec2-base the fused update is several times faster (figures:
    docs/performance.md). Same update rule, and gradient clipping works under mixed precision
    (see below).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            fused=True,
        )
        # A fused optimizer can unscale fp16 gradients itself, so Lightning refuses to clip
        # gradients under AMP with it. Saying it cannot makes the GradScaler unscale before
        # clipping and skip inf steps itself (bf16 has no scaler): clipping works in any precision.
        self._step_supports_amp_scaling = False


def param_groups(
    encoder: list[tuple[str, nn.Parameter, int]],
    modules: Iterable[nn.Module],
    backbone_lr: float,
    head_lr: float,
    layer_lr_decay: float = 1.0,
    train_encoder: bool = True,
    head_weight_decay: float | None = None,
) -> list[dict]:
    """Optimizer parameter groups of the trainable parameters, each with a ``name``.

    Args:
        encoder: ``(name, parameter, depth)`` of the checkpoint's parameters
            (``HFBackbone.encoder_parameters``); depth 0 is below the first layer.
        modules: every module of the model; their parameters not in ``encoder`` are new.
        backbone_lr: peak learning rate of the checkpoint's top layer.
        head_lr: peak learning rate of the new parameters.
        layer_lr_decay: factor per layer down the encoder (1.0: one rate for the whole encoder).
        train_encoder: False leaves the encoder out (a linear probe's phase).
        head_weight_decay: the weight decay of the new parameters of 2 or more dimensions;
            None: the optimizer's, as the encoder's.

    Returns:
        groups named ``backbone[.layer<l>]`` and ``head``, with a ``.no_decay`` twin holding the
        tensors of fewer than 2 dimensions at ``weight_decay`` 0 (the others take the
        optimizer's, the ``head`` group ``head_weight_decay`` when given). Frozen parameters and
        empty groups are left out.
    """
    groups: dict[tuple[int, bool], dict] = {}  # (rank: front end first, head last; no decay)

    def add(
        name: str, rank: int, param: nn.Parameter, lr: float, weight_decay: float | None = None
    ) -> None:
        if not param.requires_grad:
            return
        no_decay = param.ndim < 2
        key = f"{name}.no_decay" if no_decay else name
        group = groups.setdefault((rank, no_decay), {"params": [], "lr": lr, "name": key})
        if no_decay:
            group["weight_decay"] = 0.0
        elif weight_decay is not None:
            group["weight_decay"] = weight_decay
        group["params"].append(param)

    top = max((depth for _, _, depth in encoder), default=0)
    for _, param, depth in encoder if train_encoder else []:
        if layer_lr_decay == 1.0:
            add("backbone", 0, param, backbone_lr)
        else:
            lr = backbone_lr * layer_lr_decay ** (top - depth)
            add(f"backbone.layer{depth}", depth, param, lr)
    seen = {id(param) for _, param, _ in encoder}
    for module in modules:
        for param in module.parameters():
            if id(param) not in seen:
                seen.add(id(param))
                add("head", top + 1, param, head_lr, head_weight_decay)
    return [groups[key] for key in sorted(groups)]


def log_param_groups(optimizer: torch.optim.Optimizer) -> None:
    """One INFO line per group: name, tensors, parameters, peak learning rate, weight decay."""
    for group in optimizer.param_groups:
        log.info(
            "optimizer group %-24s %4d tensors %12s parameters  lr %.2e  weight decay %g",
            group.get("name", "?"),
            len(group["params"]),
            f"{sum(p.numel() for p in group['params']):,}",
            group["lr"],
            group.get("weight_decay", 0.0),
        )


def lr_schedule(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warmup from 0, then ``kind`` decay to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress

    return factor
