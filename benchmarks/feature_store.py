"""A probe epoch from the feature store vs through the frozen encoder, and the store's size.

    python benchmarks/feature_store.py --work /tmp/fs_bench --speakers 4 --per-speaker 8

Writes a synthetic ShEMO, then fits the probe of configs/experiments/shemo_wav2vec2_probe.yaml
(frozen encoder, layer weighting, mean pooling, standardized linear head) on a random-init
encoder the size of wav2vec2-base (``--config`` overrides its config, e.g. a tiny one), one
training epoch without validation, three ways: through the encoder; with the feature store,
first run (extraction included); with the store again (reused). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from ser.data import ShEMODataModule
from ser.data.loader import LoaderSettings
from ser.data.synthetic import write_corpus
from ser.models import HFBackbone, LinearHead
from ser.module import SERModule


class EpochClock(Callback):
    """Seconds of the (last) training epoch."""

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


def run(
    work: Path, config: dict, feature_store: bool, batch_size: int
) -> tuple[float, float, SERModule, ShEMODataModule]:
    """Fit seconds, training-epoch seconds, model and data of one probe fit of one epoch."""
    loader = LoaderSettings(cache_dir=str(work / "cache"), batch_size=batch_size, num_workers=0)
    data = ShEMODataModule(str(work / "ShEMO"), loader=loader)
    L.seed_everything(0)
    backbone = HFBackbone(model_type="wav2vec2", config=config, freeze="all", layer_weighting=True)
    model = SERModule(
        backbone, data.class_names, head=partial(LinearHead, standardize=True),
        backbone_lr=1e-2, head_lr=1e-2, warmup_fraction=0.0, feature_store=feature_store,
    )  # fmt: skip
    clock = EpochClock()
    trainer = L.Trainer(
        max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[clock],
        default_root_dir=work,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    return time.perf_counter() - start, clock.seconds, model, data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="folder for the corpus and the caches")
    parser.add_argument("--speakers", type=int, default=4)
    parser.add_argument("--per-speaker", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--config", default="{}", help="JSON overrides of the wav2vec2 config ({}: base size)"
    )
    args = parser.parse_args(argv)
    work, config = Path(args.work), json.loads(args.config)
    if not (work / "ShEMO").is_dir():
        write_corpus("shemo", work / "ShEMO", args.speakers, args.per_speaker, seed=0)
    through = run(work, config, False, args.batch_size)
    first = run(work, config, True, args.batch_size)
    reused = run(work, config, True, args.batch_size)
    model, data = reused[2], reused[3]
    n, states, hidden = model.features.shape
    size = model.features.size_bytes
    hours = sum(data.cache.num_samples(u) for u in data.cache.utt_ids) / 16_000 / 3600
    print("| way | fit (s) | training epoch (s) |")
    print("|---|---|---|")
    print(f"| through the frozen encoder | {through[0]:.1f} | {through[1]:.2f} |")
    print(f"| feature store, built (extraction) | {first[0]:.1f} | {first[1]:.2f} |")
    print(f"| feature store, reused | {reused[0]:.1f} | {reused[1]:.2f} |")
    print()
    print(f"epoch speed-up from the store: {through[1] / reused[1]:.0f}x")
    print(
        f"store: {n} utterances x {states} states x {hidden}, {size / 1e6:.3g} MB for "
        f"{hours * 60:.1f} min of audio ({size / 1e6 / hours:.3g} MB per hour)"
    )


if __name__ == "__main__":
    main()
