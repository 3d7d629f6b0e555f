"""Feature store: a frozen encoder runs once, probes train and evaluate on its stored outputs."""

from __future__ import annotations

import json
import logging
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from cli_process import REPO
from models_tiny import TINY
from test_benchmarks import load

from ser.data import ShEMODataModule
from ser.data.cache import AudioCache, CacheDirError, CacheNotBuiltError
from ser.data.loader import LoaderSettings
from ser.data.synthetic import write_corpus
from ser.features import FeatureStore
from ser.features.extract import own_random_state
from ser.models import (
    AttentiveStatisticsPooling,
    HFBackbone,
    LinearHead,
    MeanPooling,
    StatisticsPooling,
)
from ser.training import module as module_code
from ser.training.augment import Augmentation
from ser.training.module import SERModule


def tiny_backbone(
    seed: int = 0,
    layer_weighting: bool = True,
    freeze: str = "all",
    layers: list[int] | None = None,
    normalize_states: bool = False,
    **config: float,
) -> HFBackbone:
    model_type, tiny = TINY["wav2vec2-layer"]
    torch.manual_seed(seed)
    return HFBackbone(
        model_type=model_type, config={**tiny, **config}, freeze=freeze,
        layer_weighting=layer_weighting, layers=layers, normalize_states=normalize_states,
    )  # fmt: skip


def probe(
    backbone: HFBackbone, data: ShEMODataModule, feature_store: str = "statistics", **kwargs
) -> SERModule:
    return SERModule(
        backbone, data.class_names, head=partial(LinearHead, standardize=True), head_lr=1e-2,
        backbone_lr=1e-2, warmup_fraction=0.0, feature_store=feature_store, **kwargs,
    )  # fmt: skip


def fit(model: SERModule, data: ShEMODataModule, root: Path) -> L.Trainer:
    trainer = L.Trainer(
        max_epochs=2, default_root_dir=root, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    return trainer


@pytest.fixture
def data_factory(shemo_corpus, tmp_path):
    def make(batch_size: int = 8) -> ShEMODataModule:
        loader = LoaderSettings(
            cache_dir=str(tmp_path / "cache"), batch_size=batch_size, num_workers=0,
            max_seconds=2.0, eval_max_seconds=2.0,
        )  # fmt: skip  # 2 s: the store reads up to eval_max_seconds; short keeps the test fast
        return ShEMODataModule(str(shemo_corpus), loader=loader)

    return make


def store_folders(data: ShEMODataModule) -> list[Path]:
    return sorted((data.cache.directory / "features").iterdir())


def assert_store_gives_the_encoders_logits(model: SERModule, data, atol: float) -> None:
    """The test utterances' logits from the store equal the encoder's on their audio (eval)."""
    model.eval()
    data.read_audio = True  # the same utterances, through the encoder
    for batch in data.test_dataloader():
        with torch.no_grad():
            through_encoder = model(batch.waves, batch.lengths)  # (B, C)
            from_store = model.stored_logits(batch.utt_ids)  # (B, C)
        torch.testing.assert_close(from_store, through_encoder, atol=atol, rtol=1e-2)


def recording_reads(read, utt_ids: list[str]):
    """``AudioCache.read`` that also appends each utterance id it reads to ``utt_ids``."""

    def recorded(cache, utt_id, *args, **kwargs):
        utt_ids.append(utt_id)
        return read(cache, utt_id, *args, **kwargs)

    return recorded


def count_encoder_calls(backbone: HFBackbone) -> list[int]:
    calls = [0]
    backbone.family.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_stored_logits_match_the_encoder_and_training_never_runs_it(
    data_factory, tmp_path, monkeypatch, caplog
):
    data = data_factory()
    model = probe(tiny_backbone(), data)
    with caplog.at_level(logging.INFO, logger="ser.features"):
        fit(model, data, tmp_path)
    (folder,) = store_folders(data)
    assert f"Feature store {folder} (built in " in caplog.text
    assert "statistics: 48 utterances x 3 states x 32 (mean and std)" in caplog.text
    assert model.features.shape == (48, 3, 32)
    assert_store_gives_the_encoders_logits(model, data, atol=5e-3)

    # A second fit with the same weights reuses the store: no encoder call, no training audio
    # read (evaluation reads its audio: an utterance longer than the window, none here with
    # eval_max_seconds = max_seconds, would be scored in windows through the encoder).
    data = data_factory()
    second = probe(tiny_backbone(), data)
    calls = count_encoder_calls(second.backbone)
    data.prepare_data()
    data.setup("fit")
    read = []
    monkeypatch.setattr(AudioCache, "read", recording_reads(AudioCache.read, read))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ser.features"):
        trainer = fit(second, data, tmp_path)
    assert f"Feature store {folder} (reused)" in caplog.text
    (metrics,) = trainer.test(second, datamodule=data, verbose=False)
    assert calls == [0]
    assert read and not set(read) & {row.utt_id for row in data.parts["train"]}
    assert store_folders(data) == [folder]
    assert 0.0 <= metrics["test/UA"] <= 1.0
    untrained = probe(tiny_backbone(), data).head.linear.weight
    assert not torch.equal(second.head.linear.weight, untrained)


def test_a_probe_with_augmentation_trains_on_stored_copies_of_each_utterance(
    data_factory, tmp_path, monkeypatch, caplog
):
    """Augmentation on a store probe: each utterance is stored as recorded and in
    ``feature_store_views`` augmented copies (noise here), each a store of its own; training reads
    all three, evaluation the recordings; a copy rebuilt is the same copy, whichever run seed and
    batch size build it."""
    data = data_factory()
    noise = Augmentation(noise_snr_db=(0.0, 10.0))
    model = probe(tiny_backbone(), data, augmentation=noise, feature_store_views=2)
    views_read, read_views = [], module_code.read_views

    def recording_views(stores, utt_ids, views):
        views_read.extend(views)
        return read_views(stores, utt_ids, views)

    monkeypatch.setattr(module_code, "read_views", recording_views)
    with caplog.at_level(logging.INFO, logger="ser.features"):
        fit(model, data, tmp_path)
    recorded, first, second = model.feature_views
    assert recorded is model.features and len(store_folders(data)) == 3
    for number, copy in ((1, first), (2, second)):
        assert f"Feature store (augmented copy {number}) {copy.directory} (built in " in caplog.text
    train_ids = [row.utt_id for row in data.parts["train"]]
    as_recorded = recorded.read(train_ids)[0].astype(np.float32)
    noisy = [copy.read(train_ids)[0].astype(np.float32) for copy in (first, second)]
    assert not np.allclose(noisy[0], as_recorded, atol=1e-2)
    assert not np.allclose(noisy[1], noisy[0], atol=1e-2)
    assert sorted(set(views_read)) == [0, 1, 2]  # training read the recordings and both copies
    assert len(views_read) == 2 * len(train_ids)  # one of each utterance an epoch, 2 epochs
    (metrics,) = L.Trainer(logger=False, enable_progress_bar=False).test(
        model, datamodule=data, verbose=False
    )
    assert 0.0 <= metrics["test/UA"] <= 1.0

    shutil.rmtree(first.directory)  # rebuilt by the next fit, from its own seed: the same copy
    L.seed_everything(7)  # another run seed and other batches draw the same copies
    data = data_factory(batch_size=3)
    again = probe(tiny_backbone(), data, augmentation=noise, feature_store_views=2)
    fit(again, data, tmp_path)
    assert [view.directory for view in again.feature_views] == [
        view.directory for view in model.feature_views
    ]
    rebuilt = again.feature_views[1].read(train_ids)[0].astype(np.float32)
    np.testing.assert_allclose(rebuilt, noisy[0], atol=2e-3)


def test_building_a_copy_leaves_the_runs_random_draws_as_they_were():
    random.seed(3)
    torch.manual_seed(3)
    expected = random.random(), torch.rand(2)
    random.seed(3)
    torch.manual_seed(3)
    with own_random_state(1, torch.device("cpu")):
        inside = random.random(), torch.rand(2)
    assert (random.random(), *torch.rand(2).tolist()) == (expected[0], *expected[1].tolist())
    with own_random_state(1, torch.device("cpu")):
        assert (random.random(), *torch.rand(2).tolist()) == (inside[0], *inside[1].tolist())


@pytest.mark.slow
def test_a_probe_from_the_store_trains_and_tests_as_through_the_encoder(shemo_corpus, tmp_path):
    """About 20 s. Where the two ways see the same input (whole utterances), they agree: the same
    trained head, the same test metrics, the same training lengths counted (the store's: of the
    audio its rows came from), which predict windows at. Also with a checkpoint's dropout,
    LayerDrop and SpecAugment: the frozen encoder runs in eval mode, as the store's extraction."""
    noisy = {"hidden_dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.1}
    noisy |= {"feat_proj_dropout": 0.1, "layerdrop": 0.1, "mask_time_prob": 0.05}
    results = {}
    for feature_store in ("none", "statistics"):
        loader = LoaderSettings(
            cache_dir=str(tmp_path / "cache"), batch_size=8, num_workers=0, max_seconds=30.0
        )  # max_seconds as eval_max_seconds: training sees the whole utterances too
        data = ShEMODataModule(str(shemo_corpus), loader=loader)
        L.seed_everything(0)
        model = probe(tiny_backbone(**noisy), data, feature_store)
        trainer = fit(model, data, tmp_path)
        (metrics,) = trainer.test(model, datamodule=data, verbose=False)
        weight, heard = model.head.linear.weight.detach().clone(), model.trained_lengths.clone()
        results[feature_store] = metrics, weight, heard
        assert int(heard.sum()) == 2 * len(data.parts["train"])  # every item of both epochs
    (encoder_metrics, encoder_weight, encoder_heard), (store_metrics, store_weight, store_heard) = (
        results.values()
    )
    torch.testing.assert_close(store_weight, encoder_weight, atol=2e-3, rtol=1e-2)
    assert store_metrics == pytest.approx(encoder_metrics, abs=2e-3)
    assert torch.equal(store_heard, encoder_heard)


def validate(model: SERModule, data: ShEMODataModule, precision: str = "32-true") -> None:
    """A validation run: opens (or builds) the store in setup, as fit and test do."""
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False, precision=precision
    )
    trainer.validate(model, datamodule=data, verbose=False)


def test_store_is_rebuilt_when_the_weights_states_precision_or_kind_change(data_factory):
    data = data_factory()
    validate(probe(tiny_backbone(seed=0), data), data)
    other_weights = probe(tiny_backbone(seed=1), data)
    calls = count_encoder_calls(other_weights.backbone)
    validate(other_weights, data)
    assert calls[0] > 0
    last_state_only = probe(tiny_backbone(seed=0, layer_weighting=False), data)
    validate(last_state_only, data)
    assert last_state_only.features.shape == (48, 1, 32)
    validate(probe(tiny_backbone(seed=0), data), data, precision="bf16-mixed")
    validate(probe(tiny_backbone(seed=0), data, "frames"), data)
    two_states = probe(tiny_backbone(seed=0, layers=[1, 2]), data)
    validate(two_states, data)
    assert two_states.features.shape == (48, 2, 32)
    validate(probe(tiny_backbone(seed=0, normalize_states=True), data), data)
    assert len(store_folders(data)) == 7


def test_a_group_norm_encoders_store_is_the_same_whatever_the_batch_size(data_factory):
    """wav2vec2-base-style encoders (group-norm CNN) encode each utterance as alone: the store
    built in batches of 3 is the one built in batches of 8 (same key, same states)."""
    stored, keys = [], []
    for batch_size in (8, 3):
        data = data_factory(batch_size=batch_size)
        model = probe(tiny_backbone(feat_extract_norm="group"), data)
        validate(model, data)
        stored.append(model.features.read(data.cache.utt_ids)[0].astype(np.float32))
        (folder,) = store_folders(data)
        keys.append(folder.name)
        shutil.rmtree(folder)  # so the second batch size builds it again
    assert keys[0] == keys[1]
    np.testing.assert_allclose(stored[0], stored[1], atol=2e-3)  # float16 in the store


def test_a_checkpoint_folder_and_its_copy_share_one_store(data_factory, tmp_path):
    """Keyed by the weights a model loads (from_pretrained), not by the folder they came from."""
    tiny_backbone().save_pretrained(tmp_path / "encoder")
    shutil.copytree(tmp_path / "encoder", tmp_path / "moved")
    data = data_factory()
    for folder in ("encoder", "moved"):
        backbone = HFBackbone(
            source=str(tmp_path / folder), freeze="all", layer_weighting=True
        )  # from_pretrained
        model = probe(backbone, data)
        validate(model, data)
    assert model.backbone.training  # from_pretrained's eval mode is not kept
    assert len(store_folders(data)) == 1
    validate(probe(tiny_backbone(), data), data)  # the same weights built in memory
    assert len(store_folders(data)) == 1


def test_a_datamodule_serves_each_model_what_it_reads(data_factory, tmp_path):
    data = data_factory()
    model = probe(tiny_backbone(), data)
    trainer = fit(model, data, tmp_path)
    first = model.features.directory
    write_corpus("shemo", tmp_path / "other", num_speakers=4, utterances_per_speaker=12, seed=9)
    other = ShEMODataModule(str(tmp_path / "other"), loader=data.loader)
    (metrics,) = trainer.test(model, datamodule=other, verbose=False)  # its store, built now
    assert 0.0 <= metrics["test/UA"] <= 1.0
    assert model.features.shape == (48, 3, 32) and model.features.directory != first
    assert len(list(Path(data.loader.cache_dir).glob("*/features/*"))) == 2
    # The same datamodule then serves a model that reads audio.
    through_encoder = probe(tiny_backbone(), data, "none")
    (metrics,) = trainer.test(through_encoder, datamodule=data, verbose=False)
    assert 0.0 <= metrics["test/UA"] <= 1.0


KILLED_BUILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from ser.features import FeatureStore
    def batches():
        yield ["a", "b"], [np.ones((3, 2, 4)), np.ones((1, 2, 4))], [960, 320]
        os.kill(os.getpid(), signal.SIGKILL)
    FeatureStore.build(sys.argv[1], sys.argv[2], "frames", batches())
    """
)


def test_a_half_written_store_is_never_taken(tmp_path):
    key = "ab" * 32
    frames = [np.ones((3, 2, 4), dtype=np.float32), np.ones((1, 2, 4), dtype=np.float32)]

    def failing_batches():
        yield ["a", "b"], frames, [960, 320]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        FeatureStore.build(tmp_path, key, "frames", failing_batches())
    assert list(tmp_path.iterdir()) == []  # the unfinished build removed itself
    # A build killed after its first batch (no cleanup runs: like a node going down).
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_BUILD, str(tmp_path), key],
        cwd=REPO, capture_output=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    (unfinished,) = tmp_path.iterdir()
    assert ".tmp-" in unfinished.name and (unfinished / "features.float16").is_file()
    assert FeatureStore.find(tmp_path, key) is None
    batches = [(["a", "b"], frames, [960, 320]), (["c"], [2 * frames[1]], [330])]
    store = FeatureStore.build(tmp_path, key, "frames", batches)
    assert not unfinished.exists()  # its process is gone: removed by the next build
    assert FeatureStore.find(tmp_path, key).directory == store.directory == tmp_path / key[:16]
    assert (store.shape, store.num_rows, store.kind) == ((3, 2, 4), 5, "frames")
    rows, counts = store.read(["c", "a"])  # zero-padded to a's 3 frames
    assert counts.tolist() == [1, 3] and rows.dtype == np.float16
    assert rows.tolist() == [[[[2.0] * 4] * 2, *[[[0.0] * 4] * 2] * 2], [[[1.0] * 4] * 2] * 3]
    assert store.samples(["c", "a"]).tolist() == [330, 960]


def test_a_store_damaged_after_its_build_is_refused_naming_it(tmp_path):
    """Cut short, its meta.json lost, its index cut, NaN bytes written into it: each was used
    (or rebuilt and then not found) and failed deep in a run, or trained a NaN model."""
    rows = [np.full((2, 3, 4), i, np.float32) for i in range(4)]
    ids = [f"u{i}" for i in range(4)]

    def build() -> FeatureStore:
        shutil.rmtree(tmp_path / "features", ignore_errors=True)
        return FeatureStore.build(tmp_path / "features", "ab" * 32, "statistics",
                                  [(ids, rows, [16_000] * 4)])  # fmt: skip

    folder = build().directory
    data = folder / "features.float16"
    with data.open("r+b") as f:
        f.truncate(data.stat().st_size // 2)
    with pytest.raises(CacheNotBuiltError, match=rf"{folder} is damaged: features.float16 holds"):
        FeatureStore.find(tmp_path / "features", "ab" * 32)
    build()
    (folder / "meta.json").unlink()
    with pytest.raises(CacheNotBuiltError, match=rf"{folder / 'meta.json'} is missing"):
        FeatureStore.find(tmp_path / "features", "ab" * 32)
    build()
    (folder / "index.json").write_text('{"u0": [0,')
    with pytest.raises(CacheNotBuiltError, match=rf"{folder / 'index.json'} is damaged"):
        FeatureStore.find(tmp_path / "features", "ab" * 32)
    build()
    with data.open("r+b") as f:
        f.seek(data.stat().st_size - 8)
        f.write(b"\xff" * 8)  # float16 NaN in u3's rows
    store = FeatureStore.find(tmp_path / "features", "ab" * 32)
    assert store.read(ids[:3])[0].shape == (3, 2, 3, 4)
    with pytest.raises(ValueError, match=r"the rows of 'u3' are not finite, though they were"):
        store.read(ids)


def test_a_store_is_built_finite_and_where_it_can_be_written(tmp_path):
    beyond_half = [np.full((2, 1, 2), 1e5, np.float32)]  # beyond float16's 65504
    with pytest.raises(ValueError, match=r"hidden states of 'u0' are not finite in float16"):
        FeatureStore.build(tmp_path / "a", "ab" * 32, "statistics", [(["u0"], beyond_half, [1])])
    assert not list((tmp_path / "a").iterdir())  # nothing half-written left
    (tmp_path / "file").write_text("not a folder")
    fine = [np.ones((2, 1, 2), np.float32)]
    with pytest.raises(CacheDirError, match=r"cannot write the feature store in .*file/features"):
        FeatureStore.build(tmp_path / "file" / "features", "ab" * 32, "statistics",
                           [(["u0"], fine, [1])])  # fmt: skip


def test_a_build_that_meets_a_damaged_store_says_so_not_that_the_folder_is_unwritable(tmp_path):
    """Another process's store of the same key, finished first and then damaged (here: its
    meta.json lost), is the one a build uses; its CacheNotBuiltError (delete the folder and run
    again) came out as "cannot write the feature store ... set --data.loader.cache_dir to a
    writable folder"."""
    root, key, rows = tmp_path / "features", "ab" * 32, [np.ones((2, 1, 2), np.float32)]
    folder = FeatureStore.build(root, key, "statistics", [(["u0"], rows, [1])]).directory
    (folder / "meta.json").unlink()
    with pytest.raises(CacheNotBuiltError, match=rf"{folder / 'meta.json'} is missing") as err:
        FeatureStore.build(root, key, "statistics", [(["u0"], rows, [1])])
    assert not isinstance(err.value, CacheDirError)
    assert f"Delete {folder} and run again" in str(err.value)


def test_feature_store_refuses_what_it_cannot_serve():
    classes = ["anger", "neutral"]
    with pytest.raises(ValueError, match=r"AttentiveStatisticsPooling pools frames.*store frames"):
        SERModule(
            tiny_backbone(), classes, pooling=AttentiveStatisticsPooling,
            feature_store="statistics",
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"mean pooling only.*StatisticsPooling.*layer_weighting"):
        SERModule(tiny_backbone(), classes, pooling=StatisticsPooling, feature_store="statistics")
    with pytest.raises(ValueError, match="freeze all"):
        SERModule(tiny_backbone(freeze="feature_encoder"), classes, feature_store="frames")
    with pytest.raises(ValueError, match="expected none, statistics or frames"):
        SERModule(tiny_backbone(), classes, feature_store="pooled")
    # What it can serve: any pooling on frames, statistics pooling of one state.
    SERModule(tiny_backbone(), classes, pooling=AttentiveStatisticsPooling, feature_store="frames")
    SERModule(
        tiny_backbone(layer_weighting=False), classes, pooling=StatisticsPooling,
        feature_store="statistics",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "pooling", "layer_weighting", "normalize_states"),
    [
        ("frames", AttentiveStatisticsPooling, True, False),
        ("frames", StatisticsPooling, True, False),
        ("statistics", StatisticsPooling, False, False),
        ("statistics", MeanPooling, True, True),
    ],
)
def test_every_servable_pooling_gives_the_encoders_logits_from_the_store(
    data_factory, tmp_path, kind, pooling, layer_weighting, normalize_states
):
    data = data_factory()
    backbone = tiny_backbone(layer_weighting=layer_weighting, normalize_states=normalize_states)
    model = probe(backbone, data, kind, pooling=pooling)
    fit(model, data, tmp_path)  # trains the layer weights and the pooling too
    assert model.features.kind == kind
    if layer_weighting:
        assert not torch.equal(backbone.layer_weights, torch.zeros_like(backbone.layer_weights))
    assert_store_gives_the_encoders_logits(model, data, atol=1e-2)


def test_a_frames_store_holds_each_utterances_frames_and_is_refused_on_a_full_disk(
    data_factory, monkeypatch, caplog
):
    data = data_factory()
    model = probe(tiny_backbone(), data, "frames")
    monkeypatch.setattr("ser.features.extract.PROGRESS_SECONDS", 0.0)  # a line every batch
    with caplog.at_level(logging.INFO, logger="ser.features"):
        validate(model, data)
    progress = [r.message for r in caplog.records if "min of audio encoded" in r.message]
    assert len(progress) == 5  # 6 batches of 8: after each but the last
    assert progress[0].startswith("Feature store: 0.") and "about " in progress[0]
    store = model.features
    n, states, hidden = store.shape
    assert (n, states, hidden, store.kind) == (48, 3, 32, "frames")
    # Each utterance's frames of its first eval_max_seconds (2 s), as the encoder gives them alone.
    utt_ids = list(data.cache.utt_ids)
    rows, counts = store.read(utt_ids[:3])
    model.backbone.eval()
    for row, count, utt_id in zip(rows, counts, utt_ids, strict=False):
        wave = torch.from_numpy(data.cache.read(utt_id, 0, 32_000))[None]  # (1, T)
        with torch.no_grad():
            alone, frames = model.backbone.hidden_states(wave, torch.tensor([wave.shape[1]]))
        assert count == frames.item() > 100
        alone = torch.stack(alone, dim=2)[0]  # (T', L', H)
        torch.testing.assert_close(
            torch.from_numpy(row[:count]).float(), alone, atol=2e-3, rtol=2e-3
        )
    _, counts = store.read(utt_ids)
    assert store.size_bytes == counts.sum() * states * hidden * 2
    assert (
        f"{counts.sum()} frames" in caplog.text and "Building a frames feature store" in caplog.text
    )

    # Another kind is another store; on a disk too small, one clear error and nothing left.
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=1000))
    before = store_folders(data)
    with pytest.raises(CacheDirError, match=r"needs about .* GB in .*features, which has 1e-06 GB"):
        validate(probe(tiny_backbone(seed=3), data, "frames"), data)
    assert store_folders(data) == before


@pytest.mark.slow
def test_cli_probe_from_the_store_tests_and_its_checkpoint_predicts_through_the_encoder(
    shemo_corpus, tmp_path, ser_cli, assert_predicts_as_tested
):
    """About 25 s: a CLI fit + test from the store, then the checkpoint alone on the audio."""
    result = ser_cli(
        "fit", "-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml"),
        "--data.root", str(shemo_corpus), "--data.loader.cache_dir", str(tmp_path / "cache"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--trainer.max_epochs", "2", "--data.loader.num_workers", "0",
        "--model.backbone.init_args.freeze", "all",
        "--model.backbone.init_args.layer_weighting", "true",
        "--model.pooling", "ser.models.AttentiveStatisticsPooling",
        "--model.head.init_args.standardize", "true", "--model.feature_store", "frames",
        "--test_after_fit", "true", cwd=tmp_path,
    )  # fmt: skip
    assert "Feature store " in result.stderr
    (run_dir,) = (tmp_path / "logs" / "demo").iterdir()
    assert set(json.loads((run_dir / "test_metrics.json").read_text())) >= {"test/UA", "test/WA"}
    # Its window: shorter utterances whole, from the store; longer ones in windows, as predict.
    recognizer, waves = assert_predicts_as_tested(run_dir, tmp_path / "cache")
    assert any(len(wave) > recognizer.window for wave in waves)  # some in windows


def test_benchmark_refuses_a_used_work_folder_and_builds_the_audio_cache_before_the_fits(
    tmp_path, monkeypatch
):
    """benchmarks/feature_store.py times builds: a --work holding anything is refused in one
    line, nothing written (a rerun timed the first run's caches, stores and cv folds as built:
    a cv of 26.7 s took 7.8 s); in a new one the audio cache is built before the first timed
    fit (the first way's fit paid for it, the others read it)."""
    bench = load("feature_store")
    used = tmp_path / "used"
    (used / "cv_none").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"used is not empty: .* \(nothing was written\)"):
        bench.main(["--work", str(used)])
    assert [p.name for p in used.iterdir()] == ["cv_none"]

    def first_fit(work: Path, *args) -> None:
        data = ShEMODataModule(str(work / "ShEMO"))
        AudioCache.open(data.labelled_rows(), work / "cache")  # CacheNotBuiltError if not built
        raise InterruptedError("the first timed fit starts")

    monkeypatch.setattr(bench, "run", first_fit)
    with pytest.raises(InterruptedError, match="the first timed fit starts"):
        bench.main(["--work", str(tmp_path / "new"), "--speakers", "2", "--per-speaker", "6"])


@pytest.mark.slow
def test_benchmark_times_every_way_and_a_cv_on_a_tiny_encoder(tmp_path, capsys):
    """About 2 min: benchmarks/feature_store.py end to end with a tiny encoder, 2 folds."""
    _, config = TINY["wav2vec2-layer"]
    argv = ["--work", str(tmp_path), "--speakers", "4", "--per-speaker", "12"]
    argv += ["--cv-folds", "2", "--cv-epochs", "1", "--config", json.dumps(config)]
    load("feature_store").main(argv)
    stdout = capsys.readouterr().out
    for way in ("through the frozen encoder", "statistics store, built", "frames store, reused"):
        assert f"| {way}" in stdout
    assert "The audio cache the five fits read: built in " in stdout
    assert "statistics store: statistics: 48 utterances x 3 states x 32 (mean and std)" in stdout
    assert "frames store: frames: 48 utterances x 3 states x 32 (" in stdout
    assert float(stdout.split("epoch speed-up from the frames store: ")[1].split("x")[0]) > 1
    assert "| feature store statistics |" in stdout
    for kind in ("none", "statistics"):
        summary = json.loads((tmp_path / f"cv_{kind}" / "cv_summary.json").read_text())
        assert not summary["missing"]
