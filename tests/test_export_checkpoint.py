"""``ser export --output model.ckpt``: the model alone, for sharing. It predicts, tests and starts
a new fit as the checkpoint it came from does, at a third of its size (half that in float16); it
cannot resume a fit, and says so."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_process import REPO, TINY_RUN
from test_checkpoint_source import read_probabilities

from ser.inference.export import ExportError, export_checkpoint
from ser.inference.recognizer import EmotionRecognizer

# What a fit resumes from, and nothing else, is left out.
RESUME_STATE = {"optimizer_states", "lr_schedulers", "loops", "callbacks", "lr_schedule"}


@pytest.fixture(scope="module")
def exported(demo_run, ser_cli, tmp_path_factory):
    """The demo run's best checkpoint exported as float32 and float16, and its last (the one a fit
    resumes from) as float32, with each export's log."""
    work = tmp_path_factory.mktemp("model_only")
    checkpoints = demo_run["ckpt"].parent
    files, logs = {}, {}
    for name, dtype in (("best", "float32"), ("best", "float16"), ("last", "float32")):
        files[name, dtype] = work / f"{name}-{dtype}.ckpt"
        logs[name, dtype] = ser_cli(
            "export", "--ckpt_path", str(checkpoints / f"{name}.ckpt"),
            "--output", str(files[name, dtype]), "--dtype", dtype, cwd=work,
        ).stderr  # fmt: skip
    return work, files, logs


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_it_keeps_what_the_model_is_used_with_and_drops_what_a_fit_resumes_from(demo_run, exported):
    _, files, logs = exported
    last = demo_run["ckpt"].parent / "last.ckpt"
    full, lean = load(last), load(files["last", "float32"])
    assert set(full) >= RESUME_STATE
    assert set(lean) == set(full) - RESUME_STATE  # ser's own records (encoder config ...) kept
    assert lean["state_dict"].keys() == full["state_dict"].keys()
    for key, tensor in full["state_dict"].items():
        assert torch.equal(lean["state_dict"][key], tensor), key
    assert lean["hyper_parameters"] == full["hyper_parameters"]
    # AdamW's two moments per weight: the model alone is about a third of the file.
    assert files["last", "float32"].stat().st_size < 0.45 * last.stat().st_size
    assert "weights float32, no optimizer or schedule state" in logs["last", "float32"]
    assert "differ from the checkpoint's by at most 0.00e+00" in logs["last", "float32"]


def test_a_fit_saves_its_best_checkpoint_without_the_optimizer_state(demo_run, exported):
    """Nothing resumes from ``best.ckpt`` (the trainer configs' ``save_weights_only``): it is the
    model alone, as an export of it is, save Lightning's loop counters."""
    _, files, _ = exported
    best = load(demo_run["ckpt"])
    assert not {"optimizer_states", "lr_schedulers", "callbacks"} & set(best)
    assert set(load(files["best", "float32"])) == set(best) - {"loops"}


def test_predict_and_test_give_the_checkpoints_results(demo_run, exported, ser_cli, tmp_path):
    _, files, _ = exported
    one_male = sorted((demo_run["corpus"] / "male").glob("*.wav"))[0]
    outputs = []
    for model in (demo_run["ckpt"], files["best", "float32"]):
        outputs.append(tmp_path / f"{model.stem}.csv")
        ser_cli("predict", "--ckpt_path", str(model), "--data.paths",
                f"[{one_male}, {demo_run['long']}]", "--output", str(outputs[-1]),
                cwd=tmp_path)  # fmt: skip
    assert outputs[0].read_text() == outputs[1].read_text()
    # `ser test` with the fit's saved configuration: the test after fit's scores, utterance by
    # utterance.
    ser_cli("test", "-c", str(demo_run["run_dir"] / "config.yaml"),
            "--ckpt_path", str(files["best", "float32"]),
            "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
            cwd=tmp_path)  # fmt: skip
    (test_dir,) = (tmp_path / "logs" / "demo").iterdir()
    tested = read_probabilities(demo_run["run_dir"] / "predictions.csv")
    assert read_probabilities(test_dir / "predictions.csv") == tested
    metrics = (
        json.loads((d / "test_metrics.json").read_text()) for d in (test_dir, demo_run["run_dir"])
    )
    assert next(metrics) == pytest.approx(next(metrics))


def test_float16_halves_the_file_and_rounds_the_outputs_within_what_it_reports(demo_run, exported):
    _, files, logs = exported
    half = load(files["best", "float16"])["state_dict"]
    floats = [tensor for tensor in half.values() if tensor.is_floating_point()]
    assert floats and all(tensor.dtype == torch.float16 for tensor in floats)
    assert half["trained_lengths"].dtype == torch.int64  # counts stay counts
    assert files["best", "float16"].stat().st_size < 0.55 * files["best", "float32"].stat().st_size
    reported = float(logs["best", "float16"].rsplit("at most ", 1)[1].split()[0])
    assert 0 < reported < 1e-2
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(seconds * 16_000).astype(np.float32), 16_000)
             for seconds in (1, 3)]  # fmt: skip
    full, rounded = (
        EmotionRecognizer.from_checkpoint(path).predict(waves)
        for path in (demo_run["ckpt"], files["best", "float16"])
    )
    for a, b in zip(full, rounded, strict=True):
        np.testing.assert_allclose(b.probs, a.probs, atol=1e-2)


def test_it_starts_a_new_fit_and_refuses_to_resume_one(demo_run, exported, ser_cli):
    work, files, _ = exported
    for model in (files["best", "float16"], demo_run["ckpt"]):
        resumed = ser_cli("fit", "--ckpt_path", str(model), cwd=work, check=False)
        assert resumed.returncode == 1 and "Traceback" not in resumed.stderr
        (line,) = [line for line in resumed.stderr.splitlines() if line.startswith("error:")]
        assert (
            "holds the model alone" in line
            and "resume from the run's checkpoints/last.ckpt" in line
        )
        assert f"--model.init_from {model}" in line
    started = ser_cli(
        "fit", "-c", str(REPO / "configs/demo.yaml"), "-c", str(REPO / "configs/data/shemo.yaml"),
        "--data.root", str(demo_run["corpus"]),
        "--data.loader.cache_dir", str(demo_run["work"] / "cache"),
        "--trainer.logger.init_args.save_dir", str(work / "logs"), *TINY_RUN,
        "--trainer.max_epochs", "1", "--model.init_from", str(files["best", "float16"]), cwd=work,
    )  # fmt: skip
    assert (
        f"init_from {files['best', 'float16']}: backbone and pooling copied; class head: "
        in started.stderr
    )


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            ["--output", "model.pt"],
            "--output model.pt: expected a file name ending in .onnx or .ckpt",
        ),
        (
            ["--output", "m.onnx", "--dtype", "float16"],
            "--dtype float16: applies to a .ckpt output",
        ),
    ],
)
def test_an_output_it_cannot_write_is_one_line(options, expected, ser_cli, tmp_path):
    result = ser_cli("export", "--ckpt_path", "m.ckpt", *options, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0].startswith(f"error: {expected}")


def test_a_weight_beyond_float16s_range_is_refused_and_nothing_written(demo_run, tmp_path):
    checkpoint = load(demo_run["ckpt"])
    key = next(k for k in checkpoint["state_dict"] if k.startswith("head."))
    checkpoint["state_dict"][key] = torch.full_like(checkpoint["state_dict"][key], 1e6)
    torch.save(checkpoint, tmp_path / "big.ckpt")
    output = tmp_path / "model.ckpt"
    with pytest.raises(ExportError, match=rf"--dtype float16: the weights {key} exceed its range"):
        export_checkpoint(tmp_path / "big.ckpt", output, torch.float16)
    assert list(tmp_path.iterdir()) == [tmp_path / "big.ckpt"]
    assert export_checkpoint(tmp_path / "big.ckpt", output, torch.bfloat16) >= 0


def test_the_dtype_may_be_named_as_on_the_command_line(demo_run, tmp_path):
    export_checkpoint(demo_run["ckpt"], tmp_path / "half.ckpt", "bfloat16")
    weights = load(tmp_path / "half.ckpt")["state_dict"].values()
    assert {t.dtype for t in weights if t.is_floating_point()} == {torch.bfloat16}
    with pytest.raises(ValueError, match=r"dtype='int8'; expected float32, float16 or bfloat16"):
        export_checkpoint(demo_run["ckpt"], tmp_path / "int.ckpt", "int8")
    assert not list(tmp_path.glob("int.ckpt*"))
