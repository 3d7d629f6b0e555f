"""The training-throughput benchmark runs end to end on a tiny setting and reports sane figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"


def load_benchmark():
    # benchmarks/ is a folder of scripts, not a package: load the file by path.
    spec = importlib.util.spec_from_file_location("train_throughput", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_model_fit_and_predict_figures(tmp_path: Path) -> None:
    bench = load_benchmark()
    argv = ["--models", "tiny", "--steps", "2", "--warmup", "1", "--batch-size", "2"]
    argv += ["--crop-seconds", "1", "--num-files", "30", "--predict-files", "2", "--workers", "0"]
    results = bench.main([*argv, "--in-process", "--workdir", str(tmp_path)])

    (result,) = results
    assert result["model"] == "tiny"
    assert result["steps"] == 2
    # 1 s crops of files that are mostly longer than 1 s: batches are close to full.
    assert 0.0 <= result["padded"] < 0.5
    assert result["clips/s"] > 0 and result["audio s/s"] <= result["clips/s"] + 1e-9  # <= 1 s each
    assert result["step median"] > 0 and result["fit rss"] > 0
    predict = result["predict"]
    assert predict["files"] == 2 and predict["windows"] >= 2
    assert predict["rtf"] > 0
    assert not list(tmp_path.iterdir())  # the temporary corpus and cache are removed


def test_unknown_model_is_refused(capsys) -> None:
    bench = load_benchmark()
    with pytest.raises(SystemExit) as err:
        bench.parse_args(["--models", "tiny,whisper-large"])
    assert err.value.code == 2
    assert "whisper-large" in capsys.readouterr().err


VS_HF = BENCHMARK.with_name("vs_hf_trainer.py")


def test_hf_trainer_baseline_figures(tmp_path: Path) -> None:
    pytest.importorskip("accelerate", reason="HF Trainer needs it: pip install -e .[bench]")
    spec = importlib.util.spec_from_file_location("vs_hf_trainer", VS_HF)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--models", "tiny", "--sides", "hf", "--steps", "2", "--warmup", "1"]
    argv += ["--batch-size", "2", "--crop-seconds", "1", "--num-files", "20", "--workers", "0"]
    (result,) = bench.main([*argv, "--in-process", "--workdir", str(tmp_path)])

    assert result["model"] == "tiny" and result["side"] == "hf"
    assert result["steps"] == 2
    # Random batches of crops of at most 1 s, each padded to its batch's longest.
    assert 0.0 <= result["padded"] < 0.5
    assert 0 < result["audio s/s"] <= result["clips/s"] + 1e-9
    assert result["step median"] > 0 and result["fit rss"] > 0
    assert not list(tmp_path.iterdir())
