"""A checkpoint loaded from a ``save_pretrained`` folder trains like a random-init model.

Train mode in training (dropout, LayerDrop, SpecAugment on), eval mode in validation; LayerDrop
and layer weighting together; parameter groups (new weights at ``head_lr``, no weight decay on
1-D tensors, layer-wise decay) and layer weights that really learn; a module built outside the
CLI keeps no modules as hyper-parameters.
"""

from __future__ import annotations

import logging

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from models_tiny import SEGMENT_SECONDS, TINY, padded_batch
from torch.utils.data import DataLoader

from ser.data.dataset import Batch
from ser.models import HFBackbone
from ser.training.module import SERModule

CLASSES = ["anger", "neutral"]
# SpecAugment on, where the family's config has it (AST has none; Whisper's is off by default).
SPEC_AUGMENT = {"mask_time_prob": 0.5, "mask_time_length": 2, "apply_spec_augment": True}
LAYERDROP = [name for name in TINY if name != "ast"]  # AST has no LayerDrop


def saved_checkpoint(name: str, folder) -> str:
    """A tiny model of family ``name`` written by ``save_pretrained`` (a stand-in for the hub)."""
    model_type, config = TINY[name]
    torch.manual_seed(0)
    backbone = HFBackbone(model_type=model_type, config=config, segment_seconds=SEGMENT_SECONDS)
    backbone.save_pretrained(folder)
    return str(folder)


def batches(count: int = 2) -> DataLoader:
    """``count`` batches of two padded random clips, one per class."""
    items = []
    for seed in range(count):
        waves, lengths = padded_batch([8000, 6000], seed=seed)
        items.append(Batch(waves, lengths, torch.tensor([0, 1]), [f"a{seed}", f"b{seed}"]))
    return DataLoader(items, batch_size=None)


def fit(module: SERModule, callbacks: list, epochs: int = 1, steps: int = 2) -> L.Trainer:
    trainer = L.Trainer(
        max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, callbacks=callbacks,
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=batches(steps), val_dataloaders=batches(1))
    return trainer


class Modes(Callback):
    """Every module's mode in each training and validation step; SpecAugment's use."""

    def __init__(self) -> None:
        self.train: list[bool] = []
        self.val: list[bool] = []
        self.spec_augment: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train.append(all(m.training for m in pl_module.modules()))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.val.append(not any(m.training for m in pl_module.modules()))

    def on_after_backward(self, trainer, pl_module):
        model = pl_module.backbone.family.model
        if hasattr(model, "masked_spec_embed"):  # wav2vec2 family: the mask vector got gradient
            grad = model.masked_spec_embed.grad
            self.spec_augment.append(grad is not None and bool(grad.abs().sum() > 0))


@pytest.mark.parametrize("name", sorted(TINY))
def test_pretrained_backbone_trains_in_train_mode(name, tmp_path, recwarn):
    folder = saved_checkpoint(name, tmp_path / "checkpoint")
    config = {} if name == "ast" else SPEC_AUGMENT
    backbone = HFBackbone(source=folder, config=config, segment_seconds=SEGMENT_SECONDS)
    whisper_inputs = []
    if name == "whisper":  # SpecAugment zeroes whole mel frames inside the clips
        backbone.family.model.conv1.register_forward_pre_hook(
            lambda m, args: whisper_inputs.append((m.training, args[0].detach().clone()))
        )
    modes = Modes()
    fit(SERModule(backbone, CLASSES), [modes])

    assert modes.train == [True, True] and modes.val == [True]
    assert not [w for w in recwarn if "eval mode" in str(w.message)]
    if name.startswith(("wav2vec2", "hubert", "wavlm", "data2vec")):
        assert modes.spec_augment == [True, True]
    if name == "whisper":  # zeroed frames among the first clip's 50 in training, none in eval
        zeroed = {True: [], False: []}
        for training, mel in whisper_inputs:
            # Validation scores each clip whole (the window: 0.5 s, what 90 % of the training
            # clips fit in): each row holds at least 6000 samples, 37 frames of clip.
            inside = mel[0, :, :50] if training else mel[:, :, :37]
            zeroed[training].append(int((inside == 0).all(dim=-2).sum()))
        assert len(zeroed[True]) == 2 and min(zeroed[True]) > 0
        assert zeroed[False] and not any(zeroed[False])


@pytest.mark.parametrize("name", LAYERDROP)
def test_layerdrop_with_layer_weighting_gives_a_state_per_layer(name):
    model_type, config = TINY[name]
    key = "encoder_layerdrop" if name == "whisper" else "layerdrop"
    torch.manual_seed(0)
    backbone = HFBackbone(
        model_type=model_type,
        config={**config, key: 0.7},
        layer_weighting=True,
        segment_seconds=SEGMENT_SECONDS,
    ).train()
    layers = backbone.family.layers
    ran: list[int] = []
    for depth, layer in enumerate(layers, start=1):
        layer.register_forward_hook(lambda m, i, o, depth=depth: ran.append(depth))
    waves, lengths = padded_batch([4000, 3000])
    skipped_any = False
    for _ in range(5):
        ran.clear()
        with torch.no_grad():
            states, _ = backbone.family(waves, lengths, True)
        assert len(states) == len(layers) + 1 == len(backbone.layer_weights)
        skipped_any |= len(ran) < len(layers)
        for depth in range(1, len(layers)):  # the last state is after the final norm
            if depth not in ran:  # skipped: its output is its input
                assert torch.equal(states[depth], states[depth - 1])
    assert skipped_any
    # Weighting whatever layers ran. With none run every state is the same and the weights get
    # no gradient (exactly 0 without a final norm), rightly: draw until a layer runs.
    for _ in range(20):
        ran.clear()
        hidden, _ = backbone(waves, lengths)  # (B, T', H)
        if ran:
            break
    assert ran
    hidden.sum().backward()
    assert backbone.layer_weights.grad is not None and backbone.layer_weights.grad.abs().sum() > 0


def test_parameter_groups_split_new_and_pretrained_weights_and_decay(caplog):
    model_type, config = TINY["wav2vec2-layer"]
    backbone = HFBackbone(model_type=model_type, config=config, layer_weighting=True)
    module = SERModule(backbone, CLASSES, backbone_lr=1e-5, head_lr=1e-3, layer_lr_decay=0.5)
    module.schedule_steps = 10  # what the trainer would estimate; no trainer here
    with caplog.at_level(logging.INFO, logger="ser.training.optim"):
        optimizer = module.configure_optimizers()["optimizer"]
    groups = {group["name"]: group for group in optimizer.param_groups}
    names = {id(p): n for n, p in module.named_parameters()}
    members = {g: {names[id(p)] for p in group["params"]} for g, group in groups.items()}

    new = {n for n in names.values() if not n.startswith("backbone.family.")}
    assert members["head"] | members["head.no_decay"] == new
    assert {"backbone.layer_weights", "head.linear.bias"} <= members["head.no_decay"]
    assert groups["head"]["lr"] == groups["head.no_decay"]["lr"] == 1e-3
    # Layer-wise decay: top layer (2) at backbone_lr, each layer below half of the one above.
    assert groups["backbone.layer2"]["lr"] == 1e-5
    assert groups["backbone.layer1"]["lr"] == 0.5e-5
    assert groups["backbone.layer0"]["lr"] == 0.25e-5  # the front end, below layer 1
    assert (
        "backbone.family.model.encoder.layers.0.attention.k_proj.weight"
        in (members["backbone.layer1"])
    )
    for name, group in groups.items():  # 1-D tensors (biases, norms, layer weights): no decay
        dims = {p.ndim for p in group["params"]}
        assert (dims == {1}) == name.endswith(".no_decay"), name
        assert group["weight_decay"] == (0.0 if name.endswith(".no_decay") else 1e-2), name
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    assert sorted(n for group in members.values() for n in group) == sorted(trainable)
    assert "head.no_decay" in caplog.text and "weight decay 0" in caplog.text


def test_head_weight_decay_applies_to_the_new_weights_only():
    model_type, config = TINY["wav2vec2-layer"]
    backbone = HFBackbone(model_type=model_type, config=config, layer_weighting=True)
    module = SERModule(backbone, CLASSES, head_weight_decay=1.0)
    module.schedule_steps = 10
    optimizer = module.configure_optimizers()["optimizer"]
    decays = {group["name"]: group["weight_decay"] for group in optimizer.param_groups}
    assert decays == {
        "backbone": 1e-2,  # the optimizer's
        "backbone.no_decay": 0.0,
        "head": 1.0,
        "head.no_decay": 0.0,  # layer weights and biases: never decayed
    }


def test_layer_weights_of_a_pretrained_backbone_learn(tmp_path):
    folder = saved_checkpoint("wavlm", tmp_path / "checkpoint")
    backbone = HFBackbone(source=folder, layer_weighting=True, segment_seconds=SEGMENT_SECONDS)
    before = backbone.layer_weights.detach().clone()
    module = SERModule(
        backbone, CLASSES, backbone_lr=3e-5, head_lr=1e-3, warmup_fraction=0.0, schedule="constant"
    )
    torch.manual_seed(0)
    fit(module, [], epochs=2, steps=2)
    # Adam moves a weight by at most about its rate per step: 4 * 3e-5 = 1.2e-4 at the
    # encoder's rate, where the layer weights used to be; its first step alone is head_lr.
    assert (backbone.layer_weights.detach() - before).abs().max() > 5e-4


def test_module_built_outside_the_cli_keeps_no_modules_as_hyperparameters(tmp_path, recwarn):
    model_type, config = TINY["hubert"]
    module = SERModule(HFBackbone(model_type=model_type, config=config), CLASSES)
    assert not [w for w in recwarn if "nn.Module" in str(w.message)]
    assert not any(callable(value) for value in module.hparams.values())  # no parts, no classes
    trainer = fit(module, [], steps=1)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    checkpoint = torch.load(tmp_path / "model.ckpt", weights_only=True)  # plain values only
    assert checkpoint["hyper_parameters"]["class_names"] == CLASSES
