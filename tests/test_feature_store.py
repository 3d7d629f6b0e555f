"""Feature store: a frozen encoder runs once, probes train and evaluate on its stored outputs."""

from __future__ import annotations

import csv
import json
import logging
import signal
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from cli_process import REPO
from models_tiny import TINY
from test_benchmarks import load

from ser.data import ShEMODataModule
from ser.data.cache import AudioCache
from ser.data.loader import LoaderSettings
from ser.features import FeatureStore
from ser.inference import EmotionRecognizer
from ser.models import AttentiveStatisticsPooling, HFBackbone, LinearHead
from ser.module import SERModule


def tiny_backbone(
    seed: int = 0, layer_weighting: bool = True, freeze: str = "all", **config: float
) -> HFBackbone:
    model_type, tiny = TINY["wav2vec2-layer"]
    torch.manual_seed(seed)
    return HFBackbone(
        model_type=model_type, config={**tiny, **config}, freeze=freeze,
        layer_weighting=layer_weighting,
    )  # fmt: skip


def probe(backbone: HFBackbone, data: ShEMODataModule, feature_store: bool = True) -> SERModule:
    return SERModule(
        backbone, data.class_names, head=partial(LinearHead, standardize=True), head_lr=1e-2,
        backbone_lr=1e-2, warmup_fraction=0.0, feature_store=feature_store,
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
    def make() -> ShEMODataModule:
        loader = LoaderSettings(
            cache_dir=str(tmp_path / "cache"), batch_size=8, num_workers=0, max_seconds=2.0,
            eval_max_seconds=2.0,
        )  # fmt: skip  # 2 s: the store reads up to eval_max_seconds; short keeps the test fast
        return ShEMODataModule(str(shemo_corpus), loader=loader)

    return make


def store_folders(data: ShEMODataModule) -> list[Path]:
    return sorted((data.cache.directory / "features").iterdir())


def count_encoder_calls(backbone: HFBackbone) -> list[int]:
    calls = [0]
    backbone.family.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_stored_logits_match_the_encoder_and_training_never_runs_it(
    data_factory, tmp_path, monkeypatch, caplog
):
    data = data_factory()
    model = probe(tiny_backbone(), data)
    with caplog.at_level(logging.INFO, logger="ser.module"):
        fit(model, data, tmp_path)
    (folder,) = store_folders(data)
    assert f"Feature store {folder} (built in " in caplog.text
    assert "48 utterances x 3 states x 32" in caplog.text
    assert model.features.shape == (48, 3, 32)
    model.eval()
    data.read_audio = True  # the same utterances, through the encoder
    for batch in data.test_dataloader():
        with torch.no_grad():
            through_encoder = model(batch.waves, batch.lengths)  # (B, C)
            from_store = model.stored_logits(batch.utt_ids)  # (B, C)
        torch.testing.assert_close(from_store, through_encoder, atol=5e-3, rtol=1e-2)

    # A second fit with the same weights reuses the store: no encoder call, no audio read.
    data = data_factory()
    second = probe(tiny_backbone(), data)
    calls = count_encoder_calls(second.backbone)
    data.prepare_data()
    data.setup("fit")

    def no_audio(*args, **kwargs):
        raise AssertionError("audio read during a feature-store fit")

    monkeypatch.setattr(AudioCache, "read", no_audio)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ser.module"):
        trainer = fit(second, data, tmp_path)
    assert f"Feature store {folder} (reused)" in caplog.text
    (metrics,) = trainer.test(second, datamodule=data, verbose=False)
    assert calls == [0]
    assert store_folders(data) == [folder]
    assert 0.0 <= metrics["test/UA"] <= 1.0
    untrained = probe(tiny_backbone(), data).head.linear.weight
    assert not torch.equal(second.head.linear.weight, untrained)


@pytest.mark.slow
def test_a_probe_from_the_store_trains_and_tests_as_through_the_encoder(shemo_corpus, tmp_path):
    """About 20 s. Where the two ways see the same input (whole utterances, no dropout), they
    agree: the same trained head, the same test metrics."""
    no_dropout = {"hidden_dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0}
    no_dropout |= {"feat_proj_dropout": 0.0}
    results = {}
    for feature_store in (False, True):
        loader = LoaderSettings(
            cache_dir=str(tmp_path / "cache"), batch_size=8, num_workers=0, max_seconds=30.0
        )  # max_seconds as eval_max_seconds: training sees the whole utterances too
        data = ShEMODataModule(str(shemo_corpus), loader=loader)
        L.seed_everything(0)
        model = probe(tiny_backbone(**no_dropout), data, feature_store)
        trainer = fit(model, data, tmp_path)
        (metrics,) = trainer.test(model, datamodule=data, verbose=False)
        results[feature_store] = metrics, model.head.linear.weight.detach().clone()
    (encoder_metrics, encoder_weight), (store_metrics, store_weight) = results.values()
    torch.testing.assert_close(store_weight, encoder_weight, atol=2e-3, rtol=1e-2)
    assert store_metrics == pytest.approx(encoder_metrics, abs=2e-3)


def validate(model: SERModule, data: ShEMODataModule, precision: str = "32-true") -> None:
    """A validation run: opens (or builds) the store in setup, as fit and test do."""
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False, precision=precision
    )
    trainer.validate(model, datamodule=data, verbose=False)


def test_store_is_rebuilt_when_the_weights_the_kept_states_or_the_precision_change(data_factory):
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
    assert len(store_folders(data)) == 4


KILLED_BUILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from ser.features import FeatureStore
    def batches():
        yield ["a", "b"], np.ones((2, 3, 4))
        os.kill(os.getpid(), signal.SIGKILL)
    FeatureStore.build(sys.argv[1], sys.argv[2], batches())
    """
)


def test_a_half_written_store_is_never_taken(tmp_path):
    key = "ab" * 32
    vectors = np.ones((2, 3, 4), dtype=np.float32)

    def failing_batches():
        yield ["a", "b"], vectors
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        FeatureStore.build(tmp_path, key, failing_batches())
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
    store = FeatureStore.build(tmp_path, key, [(["a", "b"], vectors), (["c"], 2 * vectors[:1])])
    assert not unfinished.exists()  # its process is gone: removed by the next build
    assert FeatureStore.find(tmp_path, key).directory == store.directory == tmp_path / key[:16]
    assert store.read(["c", "a"]).tolist() == [[[2.0] * 4] * 3, [[1.0] * 4] * 3]
    assert store.read(["a"]).dtype == np.float16


def test_feature_store_refuses_frames_poolings_and_trainable_encoders():
    classes = ["anger", "neutral"]
    with pytest.raises(ValueError, match=r"not frames.*MeanPooling.*AttentiveStatisticsPooling"):
        SERModule(tiny_backbone(), classes, pooling=AttentiveStatisticsPooling, feature_store=True)
    with pytest.raises(ValueError, match="freeze all"):
        SERModule(tiny_backbone(freeze="feature_encoder"), classes, feature_store=True)


@pytest.mark.slow
def test_cli_probe_from_the_store_tests_and_its_checkpoint_predicts_through_the_encoder(
    shemo_corpus, tmp_path, ser_cli
):
    """About 25 s: a CLI fit + test from the store, then the checkpoint alone on the audio."""
    result = ser_cli(
        "fit", "-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml"),
        "--data.root", str(shemo_corpus), "--data.loader.cache_dir", str(tmp_path / "cache"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--trainer.max_epochs", "2", "--data.loader.num_workers", "0",
        "--model.backbone.init_args.freeze", "all",
        "--model.backbone.init_args.layer_weighting", "true",
        "--model.head.init_args.standardize", "true", "--model.feature_store", "true",
        "--test_after_fit", "true", cwd=tmp_path,
    )  # fmt: skip
    assert "Feature store " in result.stderr
    (run_dir,) = (tmp_path / "logs" / "demo").iterdir()
    assert set(json.loads((run_dir / "test_metrics.json").read_text())) >= {"test/UA", "test/WA"}
    with open(run_dir / "predictions.csv", newline="") as f:
        stored = {row["utt_id"]: row for row in csv.DictReader(f)}
    recognizer = EmotionRecognizer.from_checkpoint(
        run_dir / "checkpoints" / "best.ckpt", window_seconds=30.0
    )  # one window: the whole utterance, as the store saw it
    # The cache's audio, which the store was computed from: its int16 rounding alone moves this
    # random encoder's probabilities by up to 0.03 against the float files.
    (cache_folder,) = (tmp_path / "cache").iterdir()
    cache = AudioCache(cache_folder)
    items = [(cache.read(utt_id), 16_000) for utt_id in stored]
    for utt_id, prediction in zip(stored, recognizer.predict(items), strict=True):
        from_store = [float(stored[utt_id][f"prob_{name}"]) for name in recognizer.classes]
        np.testing.assert_allclose(prediction.probs, from_store, atol=2e-3)


@pytest.mark.slow
def test_benchmark_times_the_three_ways_on_a_tiny_encoder(tmp_path, capsys):
    """About 20 s: benchmarks/feature_store.py end to end with a tiny encoder."""
    _, config = TINY["wav2vec2-layer"]
    argv = ["--work", str(tmp_path), "--speakers", "4", "--per-speaker", "12"]
    load("feature_store").main([*argv, "--config", json.dumps(config)])
    stdout = capsys.readouterr().out
    for way in ("through the frozen encoder", "feature store, built", "feature store, reused"):
        assert f"| {way}" in stdout
    assert "store: 48 utterances x 3 states x 32" in stdout
    assert float(stdout.split("epoch speed-up from the store: ")[1].split("x")[0]) > 1
