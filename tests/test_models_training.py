"""Freezing and learning: frozen parts get no gradient and never move; a tiny model overfits."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from models_tiny import SEGMENT_SECONDS, TINY, padded_batch

from ser.data.dataset import Batch
from ser.models import HFBackbone, LinearHead, MeanPooling
from ser.training.losses import class_weights
from ser.training.module import SERModule
from ser.training.optim import FusedAdamW


def tiny(name: str, config: dict | None = None, **kwargs) -> HFBackbone:
    """The tiny ``name`` (its config updated by ``config``), seeded: the same weights each call."""
    model_type, tiny_config = TINY[name]
    torch.manual_seed(0)
    return HFBackbone(
        model_type=model_type,
        config={**tiny_config, **(config or {})},
        segment_seconds=SEGMENT_SECONDS,
        **kwargs,
    )


def one_step(backbone: HFBackbone) -> dict[str, torch.Tensor]:
    """Snapshot the parameters, then take one AdamW step (with weight decay) on a dummy loss."""
    before = {name: p.detach().clone() for name, p in backbone.named_parameters()}
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.1)
    waves, lengths = padded_batch([6000, 3000])
    hidden, frame_lengths = backbone.train()(waves, lengths)
    MeanPooling(backbone.output_size)(hidden, frame_lengths).pow(2).sum().backward()
    optimizer.step()
    return before


def moved(backbone: HFBackbone, before: dict[str, torch.Tensor], prefix: str) -> list[bool]:
    return [
        not torch.equal(p, before[name])
        for name, p in backbone.named_parameters()
        if name.startswith(prefix)
    ]


@pytest.mark.parametrize(
    ("name", "encoder_prefix"),
    [
        ("wav2vec2-layer", "family.model.feature_extractor."),
        ("ast", "family.model.embeddings.patch_embeddings."),
        ("whisper", "family.model.conv"),
    ],
)
def test_feature_encoder_is_frozen_by_default(name, encoder_prefix):
    backbone = tiny(name)
    before = one_step(backbone)
    frozen = [p for n, p in backbone.named_parameters() if n.startswith(encoder_prefix)]
    assert frozen and all(not p.requires_grad and p.grad is None for p in frozen)
    assert not any(moved(backbone, before, encoder_prefix))
    assert all(moved(backbone, before, "family.model.layers.1.")) or all(
        moved(backbone, before, "family.model.encoder.layers.1.")
    )


@pytest.mark.parametrize("freeze", [{"freeze": "feature_encoder"}, {"freeze_layers": 1}])
def test_frozen_cnn_builds_no_backward_graph(freeze):
    # Frozen weights are not enough: HF's CNN would still make its input require grad and
    # backpropagate through the convolutions in training mode.
    model_type, config = TINY["wav2vec2-group"]
    backbone = HFBackbone(model_type=model_type, config=config, **freeze).train()
    outputs = []
    backbone.family.feature_encoder.register_forward_hook(lambda m, i, o: outputs.append(o))
    backbone(*padded_batch([3200, 2400]))
    assert outputs and not outputs[0].requires_grad


def test_freeze_layers_freezes_everything_up_to_layer_n():
    backbone = tiny("wav2vec2-layer", freeze="none", freeze_layers=1)
    before = one_step(backbone)
    assert not any(moved(backbone, before, "family.model.encoder.layers.0."))
    assert not any(moved(backbone, before, "family.model.feature_projection."))
    assert not any(moved(backbone, before, "family.model.encoder.pos_conv_embed."))
    assert all(moved(backbone, before, "family.model.encoder.layers.1."))
    assert all(moved(backbone, before, "family.model.encoder.layer_norm."))  # after the layers


def test_freeze_all_trains_only_the_layer_weights():
    backbone = tiny("hubert", freeze="all", layer_weighting=True)
    assert [n for n, p in backbone.named_parameters() if p.requires_grad] == ["layer_weights"]
    before = one_step(backbone)
    assert not any(moved(backbone, before, "family."))
    assert all(moved(backbone, before, "layer_weights"))
    frozen = tiny("hubert", freeze="all")
    hidden, _ = frozen(*padded_batch([3000]))
    assert not hidden.requires_grad  # no graph kept through a fully frozen encoder


def test_tiny_backbone_pooling_and_head_overfit_a_small_batch():
    torch.manual_seed(0)
    backbone = tiny("wav2vec2-layer", freeze="none")
    pooling = MeanPooling(backbone.output_size)
    head = LinearHead(pooling.output_size, 4)
    # 8 clips, 4 classes: each class is a tone of its own pitch, lengths vary and get padded
    time = torch.arange(3200) / 16000
    lengths = torch.tensor([3200, 2000, 2500, 1600, 3200, 1800, 2400, 2800])
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    pitch = torch.tensor([150.0, 300.0, 600.0, 1200.0])[labels]
    waves = 0.5 * torch.sin(2 * math.pi * pitch[:, None] * time) + 0.05 * torch.randn(8, 3200)
    waves = waves * (torch.arange(3200)[None] < lengths[:, None])
    modules = torch.nn.ModuleList([backbone, pooling, head]).train()
    optimizer = torch.optim.Adam(modules.parameters(), lr=3e-3)
    for _ in range(25):
        hidden, frame_lengths = backbone(waves, lengths)
        loss = torch.nn.functional.cross_entropy(head(pooling(hidden, frame_lengths)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    modules.eval()
    with torch.no_grad():
        hidden, frame_lengths = backbone(waves, lengths)
        logits = head(pooling(hidden, frame_lengths))
    assert loss.item() < 0.1
    assert torch.equal(logits.argmax(dim=1), labels)


def test_balanced_class_weights_weigh_each_class_alike_and_need_a_datamodule_to_count_them():
    counts = [60, 10, 30, 0]  # a class without training items weighs nothing
    weights = class_weights("balanced", ["anger", "fear", "neutral", "surprise"], lambda: counts)
    torch.testing.assert_close(weights, torch.tensor([100 / 240, 100 / 40, 100 / 120, 0.0]))
    totals = weights[:3] * torch.tensor(counts[:3])  # each seen class weighs alike in all
    torch.testing.assert_close(totals, torch.full((3,), 25.0))
    module = SERModule(tiny("wav2vec2-layer"), ["anger", "fear"], class_weights="balanced")
    trainer = L.Trainer(limit_train_batches=0, limit_val_batches=0, logger=False)
    with pytest.raises(ValueError, match=r"class_weights balanced: .*\(plain dataloaders\)"):
        trainer.fit(module, train_dataloaders=[], val_dataloaders=[])


def test_class_weights_weigh_the_training_loss_alone():
    """The weights come from the training split, which ``ser validate``/``test`` of a checkpoint
    never read: weighted, val/loss differed between a fit and a test of its checkpoint."""
    module = SERModule(tiny("wav2vec2-layer"), ["anger", "fear"], class_weights="balanced")
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.0]])
    batch = Batch(torch.zeros(3, 10), torch.full((3,), 10), torch.tensor([0, 1, 1]), list("abc"))
    stages = ("train", "val")
    plain = {stage: module._class_loss(logits, batch, None, 1.0, stage) for stage in stages}
    module.loss_weights.copy_(torch.tensor([0.25, 4.0]))  # as setup("fit") sets them
    weighted = {stage: module._class_loss(logits, batch, None, 1.0, stage) for stage in stages}
    assert not torch.allclose(weighted["train"], plain["train"])
    assert torch.equal(weighted["val"], plain["val"])
    assert torch.allclose(plain["val"], torch.nn.functional.cross_entropy(logits, batch.labels))


def test_default_optimizer_is_fused_adamw_over_backbone_and_head_groups():  # and no-decay twins
    module = SERModule(tiny("wav2vec2-layer"), ["anger", "neutral", "sadness"])
    module.schedule_steps = 10  # what the trainer would estimate; no trainer here
    optimizer = module.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, FusedAdamW) and optimizer.defaults["fused"]
    names = [group["name"] for group in optimizer.param_groups]
    assert names == ["backbone", "backbone.no_decay", "head", "head.no_decay"]

    # The fused kernel takes the same step as the per-parameter loop.
    reference = [p.detach().clone().requires_grad_() for p in module.head.parameters()]
    fused = FusedAdamW(module.head.parameters(), lr=1e-2, weight_decay=0.1)
    plain = torch.optim.AdamW(reference, lr=1e-2, weight_decay=0.1)
    for params in (list(module.head.parameters()), reference):
        for p in params:
            p.grad = torch.ones_like(p)
    fused.step()
    plain.step()
    for p, q in zip(module.head.parameters(), reference, strict=True):
        torch.testing.assert_close(p, q)


# A base checkpoint's noise in training: wav2vec2-base, HuBERT and WavLM ship dropout 0.1 and
# SpecAugment time masks 0.05, some LayerDrop (here stronger, so one batch surely meets them).
NOISY = {
    "wav2vec2-layer": {
        "hidden_dropout": 0.1, "attention_dropout": 0.1, "layerdrop": 0.5, "mask_time_prob": 0.5,
    },
    "whisper": {
        "dropout": 0.1, "attention_dropout": 0.1, "encoder_layerdrop": 0.5,
        "apply_spec_augment": True, "mask_time_prob": 0.5,
    },
}  # fmt: skip


@pytest.mark.parametrize("name", ["wav2vec2-layer", "whisper"])
def test_a_frozen_encoder_runs_in_eval_mode_inside_a_training_model(name):
    """``freeze: all``: the head trains on the features it is tested on (and a feature store
    holds), not on dropout/LayerDrop/SpecAugment-perturbed ones; a trained encoder keeps them."""
    batch = padded_batch([6000, 3000])
    frozen = tiny(name, NOISY[name], freeze="all", layer_weighting=True).train()
    assert frozen.training and frozen.layer_weights is not None and not frozen.family.training
    assert not any(module.training for module in frozen.family.modules())
    torch.manual_seed(1)
    in_training = frozen(*batch)[0]
    assert torch.equal(in_training, frozen.eval()(*batch)[0])

    trained = tiny(name, NOISY[name], freeze="feature_encoder", layer_weighting=True).train()
    assert trained.family.training
    torch.manual_seed(1)
    assert not torch.equal(trained(*batch)[0], trained.eval()(*batch)[0])


def test_a_probe_phase_puts_the_encoder_in_eval_mode_and_its_end_back():
    backbone = tiny("wav2vec2-layer").train()
    backbone.set_encoder_trainable(False)
    assert backbone.training and not backbone.family.training
    backbone.train()  # Lightning and users call it again: the frozen encoder stays in eval mode
    assert not backbone.family.training
    backbone.set_encoder_trainable(True)
    assert backbone.family.training and all(m.training for m in backbone.family.modules())
    backbone.eval().set_encoder_trainable(False)
    backbone.set_encoder_trainable(True)
    assert not backbone.family.training  # eval mode stays eval mode
