"""Length buckets (few batch shapes) and the GPU loader settings chosen from the trainer."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.callbacks import Callback

from ser.commands.cli import build_cli
from ser.data import ShEMODataModule
from ser.data.dataset import padded_length
from ser.data.loader import LoaderSettings, pins_memory
from ser.data.synthetic import write_corpus

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BUCKET = 8_000  # 0.5 s at 16 kHz
CROP = 44_000  # 2.75 s: not a whole number of buckets
EVAL_CAP = 64_000  # 4 s


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("buckets") / "ShEMO"
    write_corpus("shemo", root, num_speakers=4, utterances_per_speaker=8, seed=5)
    return root


def batches(corpus: Path, cache: Path, bucket: float | None, train: bool) -> list:
    settings = LoaderSettings(
        batch_size=3,
        num_workers=0,
        max_seconds=CROP / 16_000,
        eval_max_seconds=EVAL_CAP / 16_000,
        cache_dir=str(cache),
        length_bucket_seconds=bucket,
    )
    datamodule = ShEMODataModule(str(corpus), loader=settings)
    datamodule.prepare_data()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader() if train else datamodule.val_dataloader()
    return list(loader)


@pytest.mark.parametrize("train", [True, False])
def test_batches_are_padded_to_whole_buckets_and_lengths_stay_exact(corpus, tmp_path, train):
    plain = batches(corpus, tmp_path / "cache", None, train)
    bucketed = batches(corpus, tmp_path / "cache", BUCKET / 16_000, train)
    cap = CROP if train else EVAL_CAP
    widths = {batch.waves.shape[1] for batch in bucketed}
    assert widths <= {*range(BUCKET, cap, BUCKET), cap}, widths
    assert {batch.waves.shape[1] for batch in plain} - widths, "no batch was padded further"
    for before, after in zip(plain, bucketed, strict=True):
        assert after.utt_ids == before.utt_ids
        assert torch.equal(after.lengths, before.lengths)
        width = before.waves.shape[1]
        assert torch.equal(after.waves[:, :width], before.waves)
        assert not after.waves[:, width:].any()  # the extra padding is zeros, masked by lengths


def test_padded_length_rounds_up_within_the_cap():
    assert padded_length(8_001, BUCKET) == 16_000
    assert padded_length(16_000, BUCKET) == 16_000
    assert padded_length(41_000, BUCKET, max_length=CROP) == CROP  # not past the crop
    assert padded_length(50_000, BUCKET, max_length=CROP) == 50_000  # never below the longest
    assert padded_length(8_001) == 8_001


def test_a_bucket_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match=r"data\.loader\.length_bucket_seconds must be positive"):
        LoaderSettings(length_bucket_seconds=0.0)


class BatchWidths(Callback):
    """The padded length of every batch a fit sees, training and validation."""

    def __init__(self) -> None:
        self.widths: set[int] = set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.widths.add(batch.waves.shape[1])

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.widths.add(batch.waves.shape[1])


def test_a_fit_with_buckets_sees_only_bucketed_shapes(corpus, tmp_path):
    cli = build_cli(
        [
            "-c", str(REPO_CONFIGS / "demo.yaml"), "-c", str(REPO_CONFIGS / "data/shemo.yaml"),
            "--data.root", str(corpus), "--data.loader.cache_dir", str(tmp_path / "cache"),
            "--data.loader.batch_size", "3", "--data.loader.num_workers", "0",
            "--data.loader.max_seconds", "2.75", "--data.loader.eval_max_seconds", "4.0",
            "--data.loader.length_bucket_seconds", "0.5",
            "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
            "--trainer.callbacks", "[]", "--trainer.accelerator", "cpu",
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "6",
            "--trainer.limit_val_batches", "3", "--trainer.num_sanity_val_steps", "0",
        ],
        run=False,
    )  # fmt: skip
    widths = BatchWidths()
    cli.trainer.callbacks.append(widths)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    buckets = {*range(BUCKET, EVAL_CAP + 1, BUCKET), CROP}
    assert widths.widths and widths.widths <= buckets, widths.widths


def test_loaders_pin_memory_only_when_the_trainer_runs_on_cuda(corpus, tmp_path):
    assert not pins_memory(None)
    assert not pins_memory(L.Trainer(accelerator="cpu", logger=False))
    on_gpu = SimpleNamespace(accelerator=CUDAAccelerator(), world_size=1, global_rank=0)
    assert pins_memory(on_gpu)
    settings = LoaderSettings(num_workers=0, cache_dir=str(tmp_path / "cache"))
    datamodule = ShEMODataModule(str(corpus), loader=settings)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert not datamodule.train_dataloader().pin_memory
    datamodule.trainer = on_gpu
    assert datamodule.train_dataloader().pin_memory and datamodule.val_dataloader().pin_memory


def test_the_gpu_trainer_config_composes_with_the_default_one(corpus, tmp_path):
    gpu = REPO_CONFIGS / "trainer/gpu.yaml"
    assert yaml.safe_load(gpu.read_text())["trainer"]["accelerator"] == "gpu"
    cli = build_cli(
        [
            "-c", str(REPO_CONFIGS / "demo.yaml"), "-c", str(REPO_CONFIGS / "trainer/default.yaml"),
            "-c", str(gpu), "-c", str(REPO_CONFIGS / "data/shemo.yaml"),
            "--data.root", str(corpus), "--trainer.logger.init_args.save_dir", str(tmp_path),
            "--trainer.accelerator", "cpu",  # no GPU here: the rest of the file is what is tested
        ],
        run=False,
    )  # fmt: skip
    assert cli.trainer.precision == "bf16-mixed" and cli.trainer.num_devices == 1
