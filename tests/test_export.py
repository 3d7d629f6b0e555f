"""ONNX export: dynamic batch and time, class names in the metadata, checked with onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from models_tiny import SEGMENT_SECONDS, TINY

from ser.inference.export import ExportError, export_onnx
from ser.inference.recognizer import EmotionRecognizer, torch_scorer
from ser.models import HFBackbone, LinearHead, MeanPooling, StatisticsPooling
from ser.models.network import EmotionModel

CLASSES = ["anger", "neutral", "sadness"]


def tiny_model(name: str, pooling=MeanPooling, **backbone_options) -> EmotionModel:
    torch.manual_seed(0)
    model_type, config = TINY[name]
    backbone = HFBackbone(
        model_type=model_type, config=config, segment_seconds=SEGMENT_SECONDS, **backbone_options
    )
    pooled = pooling(backbone.output_size)
    return EmotionModel(backbone, pooled, LinearHead(pooled.output_size, len(CLASSES))).eval()


# Chosen layers, normalised and mixed, then statistics pooling: what a probe may use.
PROBE_OPTIONS = {"layers": [0, 2], "layer_weighting": True, "normalize_states": True}


@pytest.mark.parametrize(
    ("name", "pooling", "options"),
    [
        ("wav2vec2-layer", MeanPooling, {}),
        ("wav2vec2-group", MeanPooling, {}),  # wav2vec2-base / HuBERT-base: the paper's encoder
        ("wavlm", MeanPooling, {}),
        ("data2vec-audio", MeanPooling, {}),
        ("whisper", MeanPooling, {}),
        ("ast", MeanPooling, {}),
        ("wav2vec2-layer", StatisticsPooling, PROBE_OPTIONS),
        ("whisper", StatisticsPooling, PROBE_OPTIONS),
    ],
    ids=[
        "wav2vec2-layer",
        "wav2vec2-group",
        "wavlm",
        "data2vec-audio",
        "whisper",
        "ast",
        "probe",
        "whisper-probe",
    ],
)
def test_export_matches_pytorch_for_any_batch_and_length(name, pooling, options, tmp_path):
    model = tiny_model(name, pooling, **options)
    path = tmp_path / "model.onnx"
    diff = export_onnx(model, CLASSES, SEGMENT_SECONDS, path)
    assert diff < 1e-4
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["class_names"]) == CLASSES
    assert float(meta["window_seconds"]) == SEGMENT_SECONDS
    # Three items of other lengths than export and verification used, two of them windowed.
    rng = np.random.default_rng(1)
    items = [(0.1 * rng.standard_normal(n).astype(np.float32), 16_000) for n in (5000, 9000, 23000)]
    from_onnx = EmotionRecognizer.from_onnx(path, batch_size=3).predict(items)
    from_torch = EmotionRecognizer(
        torch_scorer(model, "cpu"), CLASSES, SEGMENT_SECONDS, batch_size=3
    ).predict(items)
    for a, b in zip(from_onnx, from_torch, strict=True):
        assert a.label == b.label and np.allclose(a.probs, b.probs, atol=1e-4)


def test_a_window_longer_than_the_encoder_takes_in_one_pass_is_refused(tmp_path):
    """A graph cannot cut a row into windows: the tiny Whisper's table holds 1 s."""
    with pytest.raises(ExportError, match=r"window \(2.0 s\) is longer than the 1.00 s"):
        export_onnx(tiny_model("whisper"), CLASSES, 2.0, tmp_path / "long.onnx")
    assert not (tmp_path / "long.onnx").exists()
    path = tmp_path / "model.onnx"
    export_onnx(tiny_model("whisper"), CLASSES, SEGMENT_SECONDS, path)
    with pytest.raises(ValueError, match=r"model.onnx: window_seconds=1.5 .* the 1.0 s"):
        EmotionRecognizer.from_onnx(path, window_seconds=1.5)
    assert EmotionRecognizer.from_onnx(path, window_seconds=1.0).window == 16_000


def test_the_timeline_window_travels_in_the_file_and_an_older_file_uses_the_items(tmp_path):
    path = tmp_path / "model.onnx"
    export_onnx(tiny_model("wav2vec2-layer"), CLASSES, SEGMENT_SECONDS, path,
                timeline_window_seconds=0.25)  # fmt: skip
    recognizer = EmotionRecognizer.from_onnx(path)
    assert (recognizer.window, recognizer.timeline_window) == (8_000, 4_000)
    proto = onnx.load(str(path))  # as exported before the timeline had its own window
    kept = [p for p in proto.metadata_props if p.key != "timeline_window_seconds"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, str(tmp_path / "old.onnx"))
    assert EmotionRecognizer.from_onnx(tmp_path / "old.onnx").timeline_window == 8_000


def test_trim_silence_travels_in_the_file_and_an_older_file_scores_items_whole(tmp_path):
    """A model trained on speech spans is exported with ``trim_silence``: ``from_onnx``
    trims as ``from_checkpoint`` does; a file exported before it was recorded: whole."""
    path = tmp_path / "model.onnx"
    export_onnx(tiny_model("wav2vec2-layer"), CLASSES, SEGMENT_SECONDS, path, trim_silence=True)
    assert EmotionRecognizer.from_onnx(path).trim_silence
    assert not EmotionRecognizer.from_onnx(path, trim_silence=False).trim_silence
    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if p.key != "trim_silence"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, str(tmp_path / "old.onnx"))
    assert not EmotionRecognizer.from_onnx(tmp_path / "old.onnx").trim_silence


class TraceFixedPooling(MeanPooling):
    """Mean over the batch's longest valid stretch, taken as a Python int: a trace fixes it."""

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        longest = int(lengths.max())  # a constant in the exported graph
        return hidden[:, :longest].mean(dim=1)  # (B, H)


def test_a_graph_that_fails_the_check_is_refused_and_not_left_behind(tmp_path):
    with pytest.raises(ExportError, match=r"shape-dependent step was fixed|differs from PyTorch"):
        export_onnx(
            tiny_model("wav2vec2-layer", TraceFixedPooling), CLASSES, SEGMENT_SECONDS,
            tmp_path / "m.onnx",
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_a_missing_or_foreign_onnx_file_is_one_line_and_the_suffix_any_case(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx: no such ONNX file$"):
        EmotionRecognizer.from_onnx(tmp_path / "missing.onnx")
    (tmp_path / "clip.onnx").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    with pytest.raises(ValueError, match=r"clip\.onnx: onnxruntime cannot load it \(\w+: "):
        EmotionRecognizer.from_onnx(tmp_path / "clip.onnx")
    path = tmp_path / "Model.ONNX"  # renamed by hand or by a case-folding file system
    export_onnx(tiny_model("wav2vec2-layer"), CLASSES, SEGMENT_SECONDS, path)
    assert EmotionRecognizer.load(path).classes == CLASSES
