"""A frozen-encoder probe with and without the feature store: epoch, 5-fold cv, store sizes.

    python benchmarks/feature_store.py --work /tmp/fs_bench --speakers 4 --per-speaker 8

Writes a synthetic ShEMO, then fits the probe of configs/experiments/shemo_wav2vec2_probe.yaml
(frozen encoder, layer weighting, mean pooling, standardized linear head) on a random-init
encoder the size of wav2vec2-base (``--config`` overrides its config, e.g. a tiny one):

1. one training epoch without validation, five ways: through the encoder; with a statistics
   store, built then reused; with a frames store, built then reused. The audio cache the five
   share is built first and timed apart, so no way's "fit (s)" pays for decoding the corpus.
   Prints the times and each store's size per hour of audio.
2. ``--cv-folds K`` (0: skip): ``python -m ser cv`` of K k-fold folds (fit ``--cv-epochs``
   epochs + test, each fold its own process, as a user runs it) without and with the statistics
   store, wall-clock. Each cv starts from an empty cache folder of its own, so its audio cache
   and (with the store) its store are built once, inside the timed run.

``--work`` must be new or empty: a second run there would time the first one's caches, stores
and folds as built, so it is refused.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.callbacks import Callback

from ser.data import ShEMODataModule
from ser.data.loader import LoaderSettings
from ser.data.synthetic import write_corpus
from ser.models import HFBackbone, LinearHead
from ser.training.module import SERModule

REPO = Path(__file__).resolve().parents[1]
PROBE_CONFIGS = [
    "configs/trainer/default.yaml",
    "configs/data/shemo.yaml",
    "configs/experiments/shemo_wav2vec2_probe.yaml",
]


class EpochClock(Callback):
    """Seconds of the (last) training epoch."""

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


def build_audio_cache(work: Path) -> float:
    """Seconds to build the audio cache of ``work``'s corpus, which every way of part 1 reads."""
    start = time.perf_counter()
    data = ShEMODataModule(
        str(work / "ShEMO"), loader=LoaderSettings(cache_dir=str(work / "cache"))
    )
    data.prepare_data()
    return time.perf_counter() - start


def run(
    work: Path, config: dict, feature_store: str, batch_size: int
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


def cv_seconds(work: Path, config: dict, feature_store: str, folds: int, epochs: int) -> float:
    """Wall-clock seconds of ``python -m ser cv`` of ``folds`` k-fold folds, from a new cache."""
    name = f"cv_{feature_store}"
    encoder = work / "encoder.yaml"  # the probe's encoder, random-init instead of the hub's
    backbone = {"source": None, "model_type": "wav2vec2", "config": config}
    encoder.write_text(yaml.safe_dump({"model": {"backbone": {"init_args": backbone}}}))
    argv = [sys.executable, "-m", "ser", "cv", "--cv_dir", str(work / name)]
    for path in [*PROBE_CONFIGS, encoder]:
        argv += ["-c", str(path)]
    argv += [
        "--data.root", str(work / "ShEMO"), "--data.loader.cache_dir", str(work / f"{name}_cache"),
        "--data.split", "KFold", "--data.split.num_folds", str(folds),
        "--data.split.val_fraction", "0.25",  # a small corpus: some validation files per class
        "--trainer.max_epochs", str(epochs), "--model.feature_store", feature_store,
    ]  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"cv failed (see {work / name}/*.log):\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="folder for the corpus and the caches")
    parser.add_argument("--speakers", type=int, default=4)
    parser.add_argument("--per-speaker", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--config", default="{}", help="JSON overrides of the wav2vec2 config ({}: base size)"
    )
    parser.add_argument("--cv-folds", type=int, default=5, help="folds of the cv part (0: skip)")
    parser.add_argument("--cv-epochs", type=int, default=3, help="training epochs of each fold")
    args = parser.parse_args(argv)
    work, config = Path(args.work), json.loads(args.config)
    if work.exists() and any(work.iterdir()):
        raise SystemExit(
            f"{work} is not empty: this benchmark times building its caches, stores and cv folds "
            "there, and would time an earlier run's as built; give a new or empty --work "
            "(nothing was written)"
        )
    write_corpus("shemo", work / "ShEMO", args.speakers, args.per_speaker, seed=0)
    audio_cache_s = build_audio_cache(work)
    ways = {  # way -> feature_store; the second fit of a kind reuses the first one's store
        "through the frozen encoder": "none",
        "statistics store, built (extraction)": "statistics",
        "statistics store, reused": "statistics",
        "frames store, built (extraction)": "frames",
        "frames store, reused": "frames",
    }
    results = {way: run(work, config, kind, args.batch_size) for way, kind in ways.items()}
    print("| way | fit (s) | training epoch (s) |")
    print("|---|---|---|")
    for way, (fit_s, epoch_s, _, _) in results.items():
        print(f"| {way} | {fit_s:.1f} | {epoch_s:.2f} |")
    print(f"\nThe audio cache the five fits read: built in {audio_cache_s:.1f} s before them.\n")
    through = results["through the frozen encoder"][1]
    for kind in ("statistics", "frames"):
        _, epoch_s, model, data = results[f"{kind} store, reused"]
        store = model.features
        hours = sum(data.cache.num_samples(u) for u in data.cache.utt_ids) / 16_000 / 3600
        print(f"epoch speed-up from the {kind} store: {through / epoch_s:.0f}x")
        print(
            f"{kind} store: {store.describe()} for {hours * 60:.1f} min of audio "
            f"({store.size_bytes / 1e6 / hours:.4g} MB per hour)"
        )
    if args.cv_folds:
        print()
        print(f"| {args.cv_folds}-fold cv, {args.cv_epochs} epochs a fold | wall (s) |")
        print("|---|---|")
        seconds = {}
        for kind in ("none", "statistics"):
            seconds[kind] = cv_seconds(work, config, kind, args.cv_folds, args.cv_epochs)
            print(f"| feature store {kind} | {seconds[kind]:.1f} |")
        print()
        print(f"cv speed-up from the store: {seconds['none'] / seconds['statistics']:.1f}x")


if __name__ == "__main__":
    main()
