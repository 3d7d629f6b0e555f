"""A fine-tuned checkpoint holds its whole encoder and the encoder's config: predict, the Python
API and ``ser test`` use it where its pretrained source is not (another machine, a moved folder,
a hub id without network), and rebuild the front end as it trained."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from cli_process import REPO, TINY_RUN
from models_tiny import SEGMENT_SECONDS, TINY
from test_feature_store import tiny_backbone

from ser.models.checkpoint import ENCODER_CONFIG
from ser.models.network import load_model

# The encoder folder's feature extractor: no standardization (the family's default does it).
FRONT_END = {"do_normalize": False, "return_attention_mask": True}


@pytest.fixture(scope="module")
def moved_source_run(shemo_corpus, tmp_path_factory, ser_cli):
    """A CLI fine-tune (+ test) of a pretrained-style encoder folder whose feature extractor does
    not standardize its input (as HuBERT's and WavLM's do not); the folder is then moved away."""
    work = tmp_path_factory.mktemp("source_moved")
    encoder = work / "encoder"
    tiny_backbone(seed=0, freeze="none", layer_weighting=False).save_pretrained(encoder)
    front_end = encoder / "preprocessor_config.json"
    front_end.write_text(json.dumps({**json.loads(front_end.read_text()), "do_normalize": False}))
    ser_cli(
        "fit", "-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml"),
        "--data.root", str(shemo_corpus), "--data.loader.cache_dir", str(work / "cache"),
        "--trainer.logger.init_args.save_dir", str(work / "logs"), *TINY_RUN,
        "--model.backbone.init_args.model_type", "null",
        "--model.backbone.init_args.config", "null",
        "--model.backbone.init_args.source", str(encoder),
        "--test_after_fit", "true", cwd=work,
    )  # fmt: skip
    (run_dir,) = (work / "logs" / "demo").iterdir()
    encoder.rename(work / "encoder_moved")
    return work, run_dir


def test_the_checkpoint_keeps_the_encoders_config_and_front_end(moved_source_run):
    _, run_dir = moved_source_run
    saved = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert saved[ENCODER_CONFIG]["preprocessor"] == FRONT_END
    config = saved[ENCODER_CONFIG]["config"]
    assert (config["model_type"], config["hidden_size"]) == ("wav2vec2", 32)


def test_the_model_is_rebuilt_with_the_front_end_it_trained_with(moved_source_run):
    _, run_dir = moved_source_run
    model, _, _ = load_model(run_dir / "checkpoints" / "best.ckpt")
    assert model.backbone.source is None  # not loaded from anywhere
    assert model.backbone.family.preprocessor_settings() == FRONT_END


def test_it_predicts_as_its_test_did_without_its_source(
    moved_source_run, assert_predicts_as_tested
):
    """The API rebuilds the encoder from the checkpoint and gives the test's probabilities."""
    work, run_dir = moved_source_run
    assert not (work / "encoder").exists()
    assert_predicts_as_tested(run_dir, work / "cache")


def test_ser_test_scores_it_without_its_source(moved_source_run, shemo_corpus, ser_cli):
    work, run_dir = moved_source_run
    ser_cli(
        "test", "--ckpt_path", str(run_dir / "checkpoints" / "best.ckpt"),
        "-c", str(REPO / "configs/data/shemo.yaml"), "--data.root", str(shemo_corpus),
        "--data.loader.cache_dir", str(work / "cache"), "--data.loader.num_workers", "0",
        cwd=work,
    )  # fmt: skip
    (test_dir,) = (work / "lightning_logs").iterdir()
    tested, retested = (read_probabilities(d / "predictions.csv") for d in (run_dir, test_dir))
    assert tested.keys() == retested.keys()
    for utt_id, probs in tested.items():
        np.testing.assert_allclose(retested[utt_id], probs, atol=2e-3, err_msg=utt_id)


def read_probabilities(path) -> dict[str, list[float]]:
    """Each utterance's class probabilities in a ``predictions.csv``."""
    with open(path, newline="") as f:
        return {
            row["utt_id"]: [float(v) for k, v in row.items() if k.startswith("prob_")]
            for row in csv.DictReader(f)
        }


@pytest.mark.parametrize("family", ["ast", "whisper"])
def test_a_fine_tune_of_each_front_end_family_is_used_as_it_was_tested(
    family, shemo_corpus, tmp_path, ser_cli, assert_predicts_as_tested
):
    """A fit's checkpoint of the families whose config holds their front end's sizes (AST's
    position table, max_length; Whisper's frames) is rebuilt from that config alone: an AST
    fine-tune could not be loaded by predict, export or test (its saved max_length refused)."""
    model_type, config = TINY[family]
    ser_cli(
        "fit", "-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml"),
        "--data.root", str(shemo_corpus), "--data.loader.cache_dir", str(tmp_path / "cache"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"), *TINY_RUN,
        "--model.backbone.init_args.model_type", model_type,
        "--model.backbone.init_args.config", json.dumps(config),
        "--model.backbone.init_args.segment_seconds", str(SEGMENT_SECONDS),
        "--test_after_fit", "true", cwd=tmp_path,
    )  # fmt: skip
    (run_dir,) = (tmp_path / "logs" / "demo").iterdir()
    assert_predicts_as_tested(run_dir, tmp_path / "cache")
