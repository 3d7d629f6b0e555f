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
