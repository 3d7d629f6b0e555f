"""benchmarks/real_speech.py: skipped without weights or corpus; end to end on a tiny encoder."""

from __future__ import annotations

import re

import pytest
from cli_process import REPO
from test_benchmarks import load
from test_feature_store import tiny_backbone

from ser.data.synthetic import write_corpus


def test_without_weights_or_corpus_it_says_what_is_missing_and_runs_nothing(tmp_path, capsys):
    bench = load("real_speech")
    argv = ["--source", str(tmp_path / "none"), "--data", "configs/data/emodb.yaml"]
    assert (
        bench.main([*argv, "--root", str(tmp_path / "EmoDB"), "--work", str(tmp_path / "w")])
        is None
    )
    out = capsys.readouterr().out
    assert "skipped" in out and "no pretrained model folder" in out and "no corpus folder" in out
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_every_way_is_scored_on_the_same_folds(tmp_path):
    """About 4 min: a tiny encoder as the pretrained source, 2 speaker folds of synthetic ShEMO."""
    bench = load("real_speech")
    tiny_backbone(layer_weighting=False).save_pretrained(tmp_path / "encoder")
    write_corpus("shemo", tmp_path / "ShEMO", num_speakers=4, utterances_per_speaker=12, seed=1)
    data = tmp_path / "data.yaml"
    data.write_text(
        "data:\n  class_path: ser.data.ShEMODataModule\n  init_args:\n    split:\n"
        "      class_path: ser.data.splits.SpeakerKFold\n      init_args: {num_folds: 2}\n"
        "trainer:\n  max_epochs: 2\n"
    )
    finetune = tmp_path / "finetune.yaml"
    finetune.write_text(
        "model:\n  backbone:\n    class_path: ser.models.HFBackbone\n"
        "    init_args: {freeze: feature_encoder}\ntrainer:\n  max_epochs: 1\n"
    )
    # An older format's cache beside the probe's (ser builds anew after a format change): the
    # reference reads the probe's own, as its loader read it (speech spans).
    stale = tmp_path / "work" / "cache" / "0123456789abcdef"
    stale.mkdir(parents=True)
    (stale / "meta.json").write_text('{"format_version": 5}')
    text = bench.main([
        "--source", str(tmp_path / "encoder"), "--data", str(data),
        "--root", str(tmp_path / "ShEMO"),
        "--work", str(tmp_path / "work"), "--finetune", str(finetune), "--finetune_folds", "1",
    ])  # fmt: skip
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert re.search(r"\| reference \(LogReg C=0.1\) \| 2 \| 0\.\d{3} ± ", text)
    assert text.count("| speech spans, encoder pass included |") == 2  # a pass per kind of state
    assert re.search(r"\| reference, normalized states \(LogReg C=0.1\) \| 2 \| 0\.\d{3} ± ", text)
    assert "| reference, normalized states (LogReg C=0.1) | 1 |" in text  # the fine-tune's folds
    assert re.search(
        r"\| reference, normalized states, balanced classes \(LogReg C=0.1\) \| 2 \| ", text
    )
    assert any(way.startswith("ser probe") and "| 2 |" in line for way, line in rows.items())
    assert re.search(r"\| ser fine-tune \(finetune.yaml\) \| 1 \| 0\.\d{3} ± 0\.000 \|", text)
    assert (tmp_path / "work" / "real_speech.md").read_text() == text
    # A probe of other settings on the same --work: cv refuses, and so does the benchmark,
    # instead of scoring the folds of the settings before.
    other = tmp_path / "probe.yaml"
    recipe = (REPO / "configs/experiments/shemo_wav2vec2_probe.yaml").read_text()
    assert "head_lr: 1.0e-2" in recipe
    other.write_text(recipe.replace("head_lr: 1.0e-2", "head_lr: 2.0e-2"))
    with pytest.raises(SystemExit, match=r"ser cv stopped before running .*were made with other"):
        bench.main([
            "--source", str(tmp_path / "encoder"), "--data", str(data),
            "--root", str(tmp_path / "ShEMO"), "--work", str(tmp_path / "work"),
            "--probe", str(other),
        ])  # fmt: skip
