"""A probe's checkpoint holds what it trained plus its frozen encoder's source and hash."""

from __future__ import annotations

import pytest
import torch
from cli_process import REPO
from test_feature_store import tiny_backbone

from ser.inference.recognizer import EmotionRecognizer
from ser.models.checkpoint import ENCODER_PREFIX


@pytest.fixture(scope="module")
def probe_run(shemo_corpus, tmp_path_factory, ser_cli):
    """A CLI probe fit (+ test of best.ckpt) on a pretrained-style encoder folder."""
    work = tmp_path_factory.mktemp("probe_ckpt")
    tiny_backbone(seed=0).save_pretrained(work / "encoder")
    fit = ser_cli(
        "fit", "-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml"),
        "--data.root", str(shemo_corpus), "--data.loader.cache_dir", str(work / "cache"),
        "--trainer.logger.init_args.save_dir", str(work / "logs"),
        "--trainer.max_epochs", "2", "--data.loader.num_workers", "0",
        "--model.backbone.init_args.model_type", "null",
        "--model.backbone.init_args.config", "null",
        "--model.backbone.init_args.source", str(work / "encoder"),
        "--model.backbone.init_args.freeze", "all",
        "--model.backbone.init_args.layer_weighting", "true",
        "--model.head.init_args.standardize", "true", "--model.feature_store", "statistics",
        "--test_after_fit", "true", cwd=work,
    )  # fmt: skip
    (run_dir,) = (work / "logs" / "demo").iterdir()
    return work, run_dir, fit.stderr


def test_the_checkpoint_leaves_the_encoder_out_and_names_it(probe_run):
    work, run_dir, _ = probe_run
    for name in ("best.ckpt", "last.ckpt"):
        saved = torch.load(run_dir / "checkpoints" / name, map_location="cpu", weights_only=True)
        assert not [key for key in saved["state_dict"] if key.startswith(ENCODER_PREFIX)]
        assert saved["frozen_encoder"]["source"] == str(work / "encoder")
        assert len(saved["frozen_encoder"]["sha256"]) == 64
        assert "backbone.layer_weights" in saved["state_dict"]  # what the probe trained stays


def test_it_predicts_as_its_test_did(probe_run, assert_predicts_as_tested):
    """The API rebuilds the encoder from its source; the test (Lightning's load) did too, and
    scored each utterance as predict does (longer ones in its windows)."""
    work, run_dir, _ = probe_run
    assert_predicts_as_tested(run_dir, work / "cache")


def test_another_encoder_at_the_source_is_refused_by_name(probe_run, tmp_path):
    _, run_dir, _ = probe_run
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    moved = tmp_path / "encoder"
    tiny_backbone(seed=1).save_pretrained(moved)  # same architecture, other weights
    saved["frozen_encoder"]["source"] = str(moved)
    saved["hyper_parameters"]["backbone"]["init_args"]["source"] = str(moved)
    torch.save(saved, tmp_path / "probe.ckpt")
    with pytest.raises(ValueError, match=r"trained on the frozen encoder .* holds other weights"):
        EmotionRecognizer.from_checkpoint(tmp_path / "probe.ckpt")


def test_loading_the_encoder_writes_no_progress_bar_into_a_log(probe_run):
    """stderr that is no terminal (a cv fold's log, a cluster job's): transformers' "Loading
    weights" bar would be a line of carriage returns in it."""
    *_, stderr = probe_run
    assert "Loading weights" not in stderr
    assert "Feature store" in stderr  # ser's own lines are there
