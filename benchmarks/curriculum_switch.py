"""What a curriculum stage switch costs: wall time between epochs at the switch vs. elsewhere.

    python benchmarks/curriculum_switch.py --iemocap demo_data/curriculum/iemocap \
        --shemo demo_data/curriculum/shemo --cache demo_data/cache

Fits the demo model (configs/demo.yaml) for 2 IEMOCAP + 2 ShEMO epochs and reports, per epoch
boundary, the gap from the last training batch of one epoch to the first of the next (validation
excluded), and from the last training batch to the first validation batch (a new stage's val
loader is built there; the one training loader serves every stage, its sampler follows the
epoch). The switch itself (optimizer, schedule, model classes) is timed by the callback.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.callbacks import Callback

from ser.data import CurriculumDataModule, IEMOCAPDataModule, ShEMODataModule
from ser.data.loader import LoaderSettings
from ser.models import HFBackbone
from ser.training.callbacks import Curriculum
from ser.training.module import SERModule

REPO = Path(__file__).parents[1]


class Clock(Callback):
    """Timestamps of the first/last batches of every epoch and of validation."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.val_first: dict[int, float] = {}
        self.val_time: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.first.setdefault(trainer.current_epoch, time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.last[trainer.current_epoch] = time.perf_counter()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self.val_first.setdefault(trainer.current_epoch, time.perf_counter())

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.val_time[trainer.current_epoch] = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iemocap", required=True)
    parser.add_argument("--shemo", required=True)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--num-workers", type=int, default=2)
    args = parser.parse_args()
    datamodule = CurriculumDataModule(
        stages={
            "iemocap": partial(IEMOCAPDataModule, root=args.iemocap),
            "shemo": partial(ShEMODataModule, root=args.shemo),
        },
        epochs={"iemocap": 2, "shemo": 2},
        loader=LoaderSettings(cache_dir=args.cache, num_workers=args.num_workers),
    )
    L.seed_everything(0)
    backbone_args = yaml.safe_load((REPO / "configs/demo.yaml").read_text())["model"]["backbone"]
    model = SERModule(HFBackbone(**backbone_args["init_args"]), datamodule.class_names)
    clock, curriculum = Clock(), Curriculum()
    L.Trainer(
        max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        num_sanity_val_steps=0, callbacks=[clock, curriculum],
    ).fit(model, datamodule=datamodule)  # fmt: skip
    print(f"switch (callback: classes, optimizer, schedule): {curriculum.switch_seconds[0]:.3f} s")
    print("epoch  stage  train gap s  train->val gap s  (gaps before the epoch's first batch)")
    for epoch in range(1, 4):
        gap = clock.first[epoch] - clock.val_time[epoch - 1]
        to_val = clock.val_first[epoch] - clock.last[epoch]
        stage = datamodule.stage_at(epoch)
        note = "  <- first epoch of stage 2" if epoch == 2 else ""
        print(f"{epoch:>5}  {stage:>5}  {gap:11.3f}  {to_val:16.3f}{note}")
    for epoch in range(4):
        print(f"epoch {epoch}: training {clock.last[epoch] - clock.first[epoch]:.1f} s")


if __name__ == "__main__":
    main()
