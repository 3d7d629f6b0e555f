"""The throughput benchmark runs both sides end to end on a tiny setting with sane figures."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import soundfile as sf
import torch
from models_tiny import TINY
from packaging.requirements import Requirement
from packaging.version import Version

from ser import EmotionRecognizer, audio
from ser.data.corpora import emodb
from ser.models import HFBackbone
from ser.models.checkpoint import TRIM_SILENCE
from ser.training import augment

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    # benchmarks/ is a folder of scripts, not a package: load the file by path, with its folder on
    # sys.path for its siblings, as when it runs as a script.
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_row(stdout: str, header: str, model: str) -> list[str]:
    """Cells of ``model``'s row in the markdown table whose header starts with ``header``."""
    table = stdout[stdout.index(header) :].split("\n\n")[0]
    row = next(line for line in table.splitlines() if line.startswith(f"| {model} |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def rounding(text: str) -> float:
    """Half a unit of the last digit ``text`` was printed with (``0.16`` -> 0.005)."""
    mantissa, _, exponent = text.partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 0.5 * 10.0 ** (int(exponent or 0) - decimals)


def ratio(cell: str) -> float:
    """``ours / hf (ratio)``: the ratio, checked against the two printed (rounded) figures."""
    number = r"([\d.]+(?:e[+-]\d+)?)"  # a loaded machine's TFLOP/s print as 5.585e-05
    ours, hf, given = re.fullmatch(rf"{number} / {number} \({number}x\)", cell).groups()
    low = (float(ours) - rounding(ours)) / (float(hf) + rounding(hf))
    high = (float(ours) + rounding(ours)) / max(float(hf) - rounding(hf), 1e-30)
    assert low - rounding(given) <= float(given) <= high + rounding(given), cell
    return float(given)


def test_tiny_model_both_sides_print_train_and_predict_tables(tmp_path: Path, capsys) -> None:
    pytest.importorskip("accelerate", reason="HF Trainer needs it: pip install -e .[bench]")
    bench = load("train_throughput")
    argv = ["--models", "tiny", "--sides", "ours,hf", "--steps", "2", "--warmup", "1"]
    argv += ["--batch-size", "2", "--crop-seconds", "1", "--num-files", "30", "--workers", "0"]
    argv += ["--predict-files", "2", "--profile", "1", "--in-process", "--workdir", str(tmp_path)]
    ours, hf = bench.main(argv)
    stdout = capsys.readouterr().out

    assert (ours["side"], hf["side"]) == ("ours", "hf")
    for result in (ours, hf):
        assert result["model"] == "tiny"
        assert result["steps"] == 2  # the profiled step is not among the timed ones
        # 1 s crops of files mostly longer than 1 s: batches are close to full on both sides.
        assert 0.0 <= result["padded"] < 0.5
        assert 0 < result["audio s/s"] <= result["clips/s"] + 1e-9  # crops of at most 1 s
        assert result["step median"] > 0 and result["fit rss"] > 0
        assert result["epoch starts"] == 0  # 12 batches an epoch, 3 steps trained
        assert result["predict"]["files"] == 2 and result["predict"]["rtf"] > 0
        assert "Self CPU time total" in result["profile"]
        phases = result["phases"]  # every phase of the profiled step was marked, in order
        assert list(phases) == list(load("device_timing").PHASES.values())
        assert all(seconds >= 0 for seconds in phases.values())
        assert phases["model forward"] > 0 and phases["backward"] > 0
        dispatched = result["dispatched"]  # kernels a step launches: leaves, no views
        ops = {name: n for name, n in dispatched.items() if name.startswith("aten::")}
        assert dispatched["aten ops"] == pytest.approx(sum(ops.values()))
        assert ops.get("aten::mm", 0) + ops.get("aten::addmm", 0) > 0  # the linear layers
        assert not {"aten::view", "aten::linear", "aten::empty"} & set(ops)  # views, composites
    # Ours scores 1 s windows with a 0.5 s hop; the pipeline scores each file once.
    assert ours["predict"]["windows"] > 2 and hf["predict"]["windows"] == 2

    train = table_row(stdout, "| model | clips/s ours / HF", "tiny")
    for cell, key in ((train[1], "clips/s"), (train[2], "audio s/s")):  # the table shows the runs
        assert ratio(cell) == pytest.approx(ours[key] / hf[key], rel=0.05, abs=0.01)
    predict = table_row(stdout, "| model | predict audio-s/s ours / HF", "tiny")
    assert ratio(predict[1]) == pytest.approx(
        ours["predict"]["audio s/s"] / hf["predict"]["audio s/s"], rel=0.05, abs=0.01
    )
    assert predict[3] == "2"
    assert stdout.count("Self CPU time total") == 2  # one profile per side
    launched = table_row(stdout, "| per step | ours | HF |", "aten ops")
    assert float(launched[1]) == pytest.approx(ours["dispatched"]["aten ops"], abs=0.5)
    assert float(launched[2]) == pytest.approx(hf["dispatched"]["aten ops"], abs=0.5)
    phase_row = table_row(stdout, "| phase | ours ms | HF ms |", "model forward")
    assert float(phase_row[1]) == pytest.approx(ours["phases"]["model forward"] * 1e3, abs=0.06)
    assert not list(tmp_path.iterdir())  # the temporary corpus and cache are removed


def test_bf16_eager_attention_and_flop_counts_reach_both_sides(tmp_path: Path, capsys) -> None:
    pytest.importorskip("accelerate", reason="HF Trainer needs it: pip install -e .[bench]")
    bench = load("train_throughput")
    argv = ["--models", "tiny", "--steps", "2", "--warmup", "1", "--batch-size", "2"]
    argv += ["--crop-seconds", "1", "--num-files", "30", "--workers", "0", "--predict-files", "0"]
    argv += ["--precision", "bf16", "--attn", "eager", "--flops", "--peak-tflops", "0.5"]
    ours, hf = bench.main([*argv, "--profile", "1", "--in-process", "--workdir", str(tmp_path)])
    stdout = capsys.readouterr().out

    for result in (ours, hf):
        assert 0 < result["model TFLOP/s"] <= result["executed TFLOP/s"]  # padding is no work
        assert result["mfu"] == pytest.approx(result["model TFLOP/s"] / 0.5)
        # Every phase marked under autocast too (HF's returned logits are then off the loss path).
        assert len(result["phases"]) == len(load("device_timing").PHASES)
    assert ours["model TFLOP/s"] < 0.5  # a 2-core CPU, far below any accelerator's peak
    row = table_row(stdout, "| model | model TFLOP/s ours / HF", "tiny")
    ratio_given = ours["model TFLOP/s"] / hf["model TFLOP/s"]
    assert ratio(row[1]) == pytest.approx(ratio_given, rel=0.05, abs=0.01)
    assert row[3].count("%") == 2
    # Both models were built with eager attention and trained under bf16 autocast.
    config = bench.model_config("tiny", 1.0, "eager")["backbone"]["init_args"]
    assert config["attn_implementation"] == "eager"
    model, _ = load("hf_recipe").hf_model(config, num_labels=6)
    assert model.config._attn_implementation == "eager"
    assert bench.trainer_kwargs(bench.parse_args(argv))["precision"] == "bf16-mixed"


def test_a_full_batch_counts_the_flops_of_its_linear_layers() -> None:
    device_timing = load("device_timing")
    layer = torch.nn.Linear(64, 32)
    inputs = torch.randn(8, 64, requires_grad=True)
    flops = device_timing.count_flops(lambda: layer(inputs).sum())
    assert flops == 3 * 2 * 8 * 64 * 32  # forward, grad of the input, grad of the weight
    batches = [(8, 0, 60, 100), (8, 0, 40, 100)]  # (clips, samples, valid units, padded units)
    rates = device_timing.flop_rates(1e12, batches, wall=2.0, peak_tflops=None)
    assert rates == {"executed TFLOP/s": 100.0, "model TFLOP/s": 50.0, "mfu": None}


def test_the_step_clock_waits_for_the_device_only_around_the_timed_steps(monkeypatch) -> None:
    device_timing = load("device_timing")
    waits = []
    monkeypatch.setattr(device_timing, "synchronize", lambda: waits.append(clock.step))
    clock = device_timing.StepClock(warmup=2, steps=3)
    for step in range(8):  # 2 warm-up, 3 timed, 3 after (profiled): not recorded
        if step in (0, 4):
            clock.epoch_begin()  # the second epoch begins inside the timed steps
        clock.begin()
        clock.end()
    # A sync at every step would take away the overlap of host and GPU work being measured.
    assert waits == [1, 4]  # the ends of the last warm-up step and of the last timed one
    figures = clock.figures()
    assert len(figures["durations"]) == 3 and len(clock.ends) == 5
    assert figures["wall"] == clock.ends[4] - clock.ends[1] >= sum(figures["durations"])
    assert figures["epoch starts"] == 1  # step 0's epoch began before any timing

    # On CUDA a step's own time is the GPU's, between events queued at its hooks (here a stand-in
    # whose GPU runs each step in 2.5 ms whatever the host's clock says).
    class Event:
        queued = 0

        def __init__(self) -> None:
            self.at, Event.queued = Event.queued * 2.5, Event.queued + 1

        def elapsed_time(self, end) -> float:
            return end.at - self.at  # milliseconds

    monkeypatch.setattr(device_timing, "_cuda", lambda: True)
    monkeypatch.setattr(device_timing, "_queued_event", Event)
    waits.clear()
    clock = device_timing.StepClock(warmup=1, steps=2)
    for _ in range(4):
        clock.begin()
        clock.end()
    assert clock.figures()["durations"] == [0.0025, 0.0025]
    assert waits == [0, 2, 3] and len(clock.events) == 3  # figures() waits to read the events

    short = device_timing.StepClock(warmup=1, steps=3)
    short.begin()
    short.end()
    with pytest.raises(RuntimeError, match="the clock saw 1 of its 4 steps"):
        short.figures()


def test_flops_are_counted_over_every_layer_whatever_layerdrop_draws() -> None:
    # wav2vec2 skips each layer with probability layerdrop in training: one step's count was chance.
    bench, recipe = load("train_throughput"), load("hf_recipe")
    model_type, config = TINY["wav2vec2-layer"]
    config = {**config, "num_hidden_layers": 4}
    args = bench.parse_args(["--batch-size", "2", "--crop-seconds", "0.5"])
    counts = {}
    for layerdrop in (0.0, 0.7):
        backbone = {"model_type": model_type, "config": {**config, "layerdrop": layerdrop}}
        backbone |= {"segment_seconds": 0.5}
        module = bench.build_module(
            {"backbone": {"class_path": "ser.models.HFBackbone", "init_args": backbone}}, ["a", "b"]
        )
        model, extractor = recipe.hf_model(backbone, num_labels=2)
        torch.manual_seed(0)
        counts[layerdrop] = [
            (bench.flops_per_unit(module, args), recipe.flops_per_unit(model, extractor, 2, 8000))
            for _ in range(6)
        ]
        assert model.config.layerdrop == layerdrop  # restored after counting
        assert module.backbone.family.model.config.layerdrop == layerdrop
    assert len(set(counts[0.0])) == 1 and set(counts[0.7]) == set(counts[0.0])


def test_a_failed_side_loses_neither_the_other_side_nor_its_exit_status(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    bench = load("train_throughput")

    def broken(*args):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(bench, "run_hf", broken)
    argv = ["--models", "tiny", "--steps", "2", "--warmup", "1", "--batch-size", "2"]
    argv += ["--crop-seconds", "1", "--num-files", "30", "--workers", "0", "--predict-files", "0"]
    with pytest.raises(SystemExit, match="failed: hf tiny"):
        bench.main([*argv, "--in-process", "--workdir", str(tmp_path)])
    stdout = capsys.readouterr().out
    assert "[ours] tiny:" in stdout and "fit   (2 steps after 1 warm-up" in stdout
    assert "[hf] tiny failed:" in stdout and "illegal memory access" in stdout


@pytest.mark.parametrize("name", ["wav2vec2-layer", "ast"])
def test_hf_pipeline_scores_each_file_once(name: str, tmp_path: Path) -> None:
    recipe = load("hf_recipe")
    model_type, config = TINY[name]
    model, extractor = recipe.hf_model({"model_type": model_type, "config": config}, num_labels=3)
    rng = np.random.default_rng(0)
    files = []
    for i, seconds in enumerate((0.5, 1.2, 2.0)):  # 44.1 kHz: the pipeline gets ser's 16 kHz
        files.append(str(tmp_path / f"clip{i}.wav"))
        audio.write(files[-1], 0.1 * rng.standard_normal(int(seconds * 44_100)), 44_100)

    outputs, wall = recipe.predict(model, extractor, files, batch_size=2)

    assert wall > 0 and len(outputs) == 3
    for scores in outputs:  # every file gets a distribution over the model's labels
        assert {s["label"] for s in scores} == set(model.config.id2label.values())
        assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-4)


def test_ast_padding_is_counted_at_the_batch_longest_window() -> None:
    bench = load("train_throughput")
    model_type, config = TINY["ast"]
    family = HFBackbone(model_type=model_type, config=config, segment_seconds=1.0).family
    window_frames = family.window_frames  # 98 frames for 1 s

    short = torch.tensor([8_000, 8_000])  # two 0.5 s items: no padding at all
    valid, total = bench.input_fill(short, 16_000, family)
    assert valid == total and total < 2 * window_frames  # not padded to the window

    mixed = torch.tensor([16_000, 4_000])  # 1 s and 0.25 s: the short one is padded
    valid, total = bench.input_fill(mixed, 32_000, family)
    plan = family.window_plan(mixed.tolist())
    assert total == 2 * plan.input_frames
    assert valid == min(plan.frames[0], plan.input_frames) + plan.frames[1]
    assert valid < total

    waves = torch.tensor([16_000, 4_000])  # wav2vec2-like models: padding in samples
    assert bench.input_fill(waves, 32_000) == (20_000, 32_000)


def test_unknown_model_or_side_is_refused(capsys) -> None:
    bench = load("train_throughput")
    with pytest.raises(SystemExit) as err:
        bench.parse_args(["--models", "tiny,whisper-large"])
    assert err.value.code == 2
    assert "whisper-large" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(["--sides", "ours,espnet"])
    assert "espnet" in capsys.readouterr().err


def test_whisper_input_benchmark_times_both_ways(capsys):
    """benchmarks/whisper_input.py on a tiny Whisper: the padded way pays for the whole window."""
    tiny = {"d_model": 32, "encoder_layers": 2, "encoder_attention_heads": 2}
    tiny |= {"encoder_ffn_dim": 64, "num_mel_bins": 16, "max_source_positions": 300}  # 6 s
    load("whisper_input").main(["--seconds", "1", "--repeats", "1", "--config", json.dumps(tiny)])
    stdout = capsys.readouterr().out
    assert "padded to the 6 s window" in stdout
    own, padded, factor = table_row(stdout, "| clip (s)", "1")[1:]
    assert float(own) > 0 and float(padded) > 0 and factor.endswith("x")


def test_augmentation_is_timed_at_both_fft_lengths_and_the_module_left_as_it_was(capsys):
    rows = load("augmentation").main(["--files", "24", "--repeats", "1"])
    assert [row["what"] for row in rows] == ["training", "copies"]
    assert all(row["smooth"] > 0 and row["own"] > 0 for row in rows)
    assert augment.fft_length(32011) == 32400  # restored after timing the signals' own lengths
    assert "| copies |" in capsys.readouterr().out


def test_length_buckets_trade_padding_for_fewer_shapes(capsys):
    rows = load("length_buckets").main(["--files", "400", "--epochs", "3", "--buckets", "0,0.5"])
    plain, bucketed = rows
    assert bucketed["train padded"] > plain["train padded"]
    assert bucketed["train shapes"] <= 10 < plain["train shapes"]  # 0.5 s up to 5 s: 10 at most
    assert bucketed["eval shapes"] < plain["eval shapes"]
    assert "| 0.5 s |" in capsys.readouterr().out


def test_recompilations_are_counted_while_the_counter_is_open():
    scale = torch.compile(lambda x: 2 * x, backend="eager", dynamic=False)
    with load("device_timing").RecompileCounter() as counter:
        scale(torch.ones(3))  # the first compilation is not a recompilation
        scale(torch.ones(3))
        scale(torch.ones(5))  # a new shape: a recompilation
    scale(torch.ones(7))  # closed: not counted
    assert len(counter.reasons) == 1 and "size mismatch" in counter.reasons[0]


@pytest.mark.slow
def test_gpu_suite_dry_run_writes_every_table(tmp_path):
    # The GPU suite's own check on a CPU: tiny model, 2 steps, the same three runs (minutes:
    # inductor compiles the tiny model on the CPU).
    env = {**os.environ, "SUITE_DRY_RUN": "1"}
    script = BENCHMARKS / "gpu_suite.sh"
    subprocess.run(["bash", str(script), str(tmp_path)], cwd=BENCHMARKS.parent, env=env, check=True)
    tables = (tmp_path / "tables.md").read_text()
    # Three files, whatever is cut: the device tool brings back at most 8 from $OUT.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["gpu.txt", "logs.tar", "tables.md"]
    with tarfile.open(tmp_path / "logs.tar") as logs:
        names = {Path(name).name for name in logs.getnames()}
        gpu_tests = logs.extractfile("./gpu-tests.log").read().decode()
    for run in ("compare-tiny", "buckets", "compile", "gpu-tests"):
        assert f"## {run}" in tables and f"{run}.log" in names
    assert tables.count("exit 0 after") == 4, tables
    assert "| model forward |" in tables  # the profile's phase table, ours next to HF
    assert "Work launched per training step" in tables and "| aten ops |" in tables
    assert "recompilations during fit" in tables
    assert tables.count("Self CPU time total") == 2  # torch.profiler's top ops, ours and HF
    assert "2 skipped" in gpu_tests  # CUDA-only: skipped on a CPU


# A toy index for gpu_wheels.choose: name -> version -> (Requires-Dist, wheel bytes).
INDEX = {
    "app": {"1.0": (["hub>=2", "tok>=0.2", "torch>=2", "yaml", "big", "tiny"], 0)},
    "hub": {"2.0": (["httpx2"], 0), "1.0": ([], 0)},
    "tok": {"0.3": (["hub>=0.1,<3"], 0), "0.2": (["hub<2"], 0)},  # the target's tok pins hub < 2
    "httpx2": {"1.0": ([], 0)},
    "yaml": {"6.0": (["unpinned-need"], 0)},  # met by the target: its needs are not walked
    "big": {"1.0": ([], 3000)},
    "tiny": {"1.0": ([], 10)},
}


def fake_fetch(folder: Path):
    def fetch(specs: dict[str, str]) -> dict[str, Path]:
        wheels = {}
        for name, version in specs.items():
            requires, size = INDEX[name][version]
            wheels[name] = folder / f"{name}-{version}-py3-none-any.whl"
            with zipfile.ZipFile(wheels[name], "w") as archive:
                lines = [f"Name: {name}", f"Version: {version}"]
                lines += [f"Requires-Dist: {r}" for r in requires]
                archive.writestr(f"{name}-{version}.dist-info/METADATA", "\n".join(lines) + "\n")
                archive.writestr("payload", b"\0" * size)
        return wheels

    return fetch


def test_gpu_wheels_carry_what_the_target_lacks_holds_too_old_or_pins_against(tmp_path):
    wheels = load("gpu_wheels")
    pins = {name: max(versions, key=Version) for name, versions in INDEX.items()}
    target = {"hub": Version("1.0"), "tok": Version("0.2"), "yaml": Version("6.0")}
    target |= {"big": None, "tiny": None, "torch": Version("2.11.0")}
    carried, relied = wheels.choose(
        [Requirement("app")], pins, target, fake_fetch(tmp_path),
        wheels.marker_environment("3.12"), hedge_bytes=1000,
    )  # fmt: skip
    assert sorted(carried) == ["app", "httpx2", "hub", "tiny", "tok"]
    assert "lacks it" in carried["app"] and "lacks it" in carried["httpx2"]  # walked from hub 2.0
    assert "1.0 misses hub>=2" in carried["hub"]
    assert carried["tok"] == "0.3: the target's 0.2 needs hub<2, not 2.0"
    assert "version unknown" in carried["tiny"]  # a small wheel travels in case
    assert relied == {
        "torch": "the target's torch stack",
        "yaml": "the target's 6.0",
        "big": "the target's, version unknown (wheel 3 KiB)",
    }


def test_gpu_wheels_read_the_lock_for_the_targets_python_and_the_targets_packages(tmp_path):
    wheels = load("gpu_wheels")
    lock = tmp_path / "requirements.lock"
    lock.write_text(
        "numpy==2.4.6 ; python_full_version < '3.12' \\\n    --hash=sha256:00\n"
        "numpy==2.5.5 ; python_full_version >= '3.12' \\\n"
        "soundfile==0.14.0 \\\n    # via ser\n"
    )
    assert wheels.lock_pins(lock, wheels.marker_environment("3.11"))["numpy"] == "2.4.6"
    assert wheels.lock_pins(lock, wheels.marker_environment("3.12")) == {
        "numpy": "2.5.5",
        "soundfile": "0.14.0",
    }
    image = wheels.target_packages(BENCHMARKS / "gpu_image.txt")  # the lent GPUs' Python
    assert image["torch"] == Version("2.11.0") and image["huggingface-hub"] == Version("1.33.0")
    assert "lightning" in image and image["lightning"] is None and "jsonargparse" not in image
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("Torch==2.11.0\nsilero_vad @ file:///wheels/silero.whl\n# a comment\n")
    assert wheels.target_packages(freeze) == {"torch": Version("2.11.0"), "silero-vad": None}
    freeze.write_text("torch==2.11.0\nsoundfile==latest\n")
    with pytest.raises(SystemExit, match=r"freeze.txt:2: 'soundfile==latest': not NAME==VERSION"):
        wheels.target_packages(freeze)
    roots = {r.name: r for r in wheels.root_requirements(BENCHMARKS.parent / "pyproject.toml")}
    assert {"torch", "accelerate", "pytest"} <= set(roots)  # runtime, bench, the GPU tests
    assert roots["jsonargparse"].extras == {"signatures"}


def way_rows(text: str) -> dict[str, list[str]]:
    """The cells of each row of a markdown table whose header starts with "| way", by way."""
    return {
        cells[0]: cells
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| way")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }


def test_long_recordings_scores_every_way_on_recordings_of_held_out_clips(demo_run, tmp_path):
    """benchmarks/long_recordings.py on the demo run: recordings of 2 clips of one emotion (its
    training clips: the demo's test split has one clip per emotion), each way's UA in [0, 1],
    the default way at the checkpoint's window, the table written."""
    output = tmp_path / "long.md"
    bench = load("long_recordings")
    run_dir = demo_run["run_dir"]
    bench.main([str(run_dir), "--clips", "2", "--groupings", "1", "--windows", "1",
                "--part", "train", "--output", str(output)])  # fmt: skip
    text = output.read_text()
    rows = way_rows(text)
    assert list(rows) == [
        "default",
        "default, no overlap",
        "segment",
        "timeline",
        "window 1 s",
        "clips alone",
    ]
    window = EmotionRecognizer.from_checkpoint(run_dir / "checkpoints/last.ckpt").window
    assert float(rows["default"][1]) == window / 16_000 and rows["segment"][1] == "5"
    assert all(0.0 <= float(cells[2]) <= 1.0 for cells in rows.values())
    recordings = int(re.search(r"Recordings per run: (\d+)", text).group(1))
    assert recordings >= 6  # 36 training clips of 6 emotions, in pairs


def test_timelines_scores_every_way_on_recordings_whose_emotion_changes(demo_run, tmp_path):
    """benchmarks/timelines.py on the demo run twice: recordings of 3 clips of mixed emotions
    (its training clips), each way's time accuracy, coverage and clip UA in [0, 1], the paired
    difference against the first way, the table written."""
    output = tmp_path / "timelines.md"
    bench = load("timelines")
    run_dir = demo_run["run_dir"]
    bench.main([str(run_dir), str(run_dir), "--clips", "3", "--groupings", "1",
                "--part", "train", "--output", str(output)])  # fmt: skip
    text = output.read_text()
    rows = way_rows(text)
    assert list(rows) == [*bench.WAYS, "clips alone"]
    for name in bench.WAYS:
        for cell in (rows[name][1], rows[name][3], rows[name][4]):
            assert 0.0 <= float(cell.split(" ± ")[0]) <= 1.0
    assert re.fullmatch(r"[+-]\d\.\d{3} \(.+\)", rows["silero, pieces (before 2026-12-06)"][2])
    assert 0.0 <= float(rows["clips alone"][4].split(" ± ")[0]) <= 1.0
    assert "2 runs; recordings per run: 12, 12" in text  # 36 training clips in threes


@pytest.mark.slow
def test_recording_benchmarks_trim_silence_as_the_checkpoint_and_old_pieces_whole(
    demo_run, tmp_path, monkeypatch
):
    """long_recordings.py and timelines.py score as ``python -m ser predict``: with the
    checkpoint's trim_silence (the demo's, true, and a copy recording false), never the
    constructor's default (true); timelines' pieces way, the timeline before 2026-12-06, scores
    each piece whole (it ran the VAD on every piece). Minutes: both scripts on two runs."""
    runs = {True: demo_run["run_dir"], False: tmp_path / "untrimmed"}
    shutil.copytree(runs[True] / "splits", runs[False] / "splits")
    checkpoint = torch.load(runs[True] / "checkpoints/last.ckpt", weights_only=True)
    assert checkpoint[TRIM_SILENCE] is True
    (runs[False] / "checkpoints").mkdir()
    torch.save({**checkpoint, TRIM_SILENCE: False}, runs[False] / "checkpoints/last.ckpt")
    made = []  # (run folder, trim_silence) of each recognizer a benchmark builds

    class Recorded(EmotionRecognizer):
        def __init__(self, *args, trim_silence: bool = True, **kwargs):
            made.append((Path(kwargs["source"]).parents[1], trim_silence))
            super().__init__(*args, trim_silence=trim_silence, **kwargs)

    for name in ("long_recordings", "timelines"):
        bench = load(name)
        monkeypatch.setattr(bench, "EmotionRecognizer", Recorded)
        made.clear()
        argv = [str(runs[True]), str(runs[False]), "--clips", "3", "--groupings", "1"]
        bench.main([*argv, "--part", "train", "--output", str(tmp_path / f"{name}.md")])
        for trained, run in runs.items():
            trims = [trim for where, trim in made if where == run]
            if name == "long_recordings":
                assert trims and set(trims) == {trained}
            else:  # each way in WAYS' order, then the clips alone
                ways = [False if share is None else trained for _, share in bench.WAYS.values()]
                assert trims == [*ways, trained]


def test_first_prediction_times_the_import_of_transformers_in_its_own_row(demo_run):
    """benchmarks/first_prediction.py in a new interpreter: transformers is imported in the row
    that names it (since ser.models became lazy, ``import ser.models`` took 0.00 s and
    transformers came in "build model + load checkpoint"), and every row is printed."""
    script = BENCHMARKS / "first_prediction.py"
    argv = ["--ckpt_path", str(demo_run["ckpt"]), "--audio", str(demo_run["long"])]
    result = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = dict(re.findall(r"^(\S.*?)\s+([\d.]+) s$", result.stdout, flags=re.M))
    assert list(rows) == [
        "import ser", "import torch", "ser.inference.recognizer",
        "ser.models.HFBackbone (transformers)", "build model + load checkpoint",
        "first prediction", "second prediction", "to the first prediction",
    ]  # fmt: skip
    # transformers and the HF model classes take a second or more to import, never 0.05 s.
    assert float(rows["ser.models.HFBackbone (transformers)"]) >= 0.05


def test_varied_lengths_joins_each_clip_once_with_its_speakers_clips_of_its_emotion(tmp_path):
    """benchmarks/varied_lengths.py on a small EmoDB (3 speakers x 2 emotions x 4 clips, each
    clip one level, zero-padded): every clip lands once, trimmed, in an utterance of its speaker
    and emotion, clips 0.15-0.45 s apart; ser's EmoDB reader takes the result; a second run
    into the same folder is refused."""
    rate, source = 16_000, tmp_path / "EmoDB" / "wav"
    source.mkdir(parents=True)
    clips = {}  # level -> (speaker, emotion letter, samples before the padding)
    for index, (speaker, emotion, text) in enumerate(
        (s, e, t) for s in ("03", "08", "16") for e in "WT" for t in ("a01", "a02", "b01", "b03")
    ):
        level, samples = round(0.02 * (index + 1), 2), 3_000 + 100 * index
        wave = np.concatenate([np.full(samples, level), np.zeros(2_000)]).astype("float32")
        sf.write(source / f"{speaker}{text}{emotion}a.wav", wave, rate, subtype="FLOAT")
        clips[level] = (speaker, emotion, samples)
    output = tmp_path / "varied"
    load("varied_lengths").main([str(tmp_path / "EmoDB"), str(output), "--seed", "1"])

    seen = []
    for path in sorted((output / "wav").glob("*.wav")):
        wave, _ = sf.read(path, dtype="float32")
        loud = np.abs(wave) > 0.01  # the clips; the pauses are noise of 3e-4 RMS
        edges = np.flatnonzero(np.diff(loud.astype(int))) + 1
        runs = [r for r in np.split(np.arange(len(wave)), edges) if len(r)]
        speech = [r for r in runs if loud[r[0]]]
        pauses = [len(r) / rate for r in runs if not loud[r[0]]]
        assert len(pauses) == len(speech) - 1 and all(0.15 <= p <= 0.45 for p in pauses)
        for run in speech:
            level = round(float(wave[run].mean()), 2)
            speaker, emotion, samples = clips[level]
            assert (path.stem[:2], path.stem[5]) == (speaker, emotion) and len(run) == samples
            seen.append(level)
    assert sorted(seen) == sorted(clips)  # each clip once
    assert len(seen) > len(list((output / "wav").glob("*.wav")))  # some were joined

    rows = emodb.scan(output)
    assert {(r.speaker, r.label) for r in rows} == {
        (s, w) for s in ("03", "08", "16") for w in ("anger", "sadness")
    }
    with pytest.raises(SystemExit, match="exists"):
        load("varied_lengths").main([str(tmp_path / "EmoDB"), str(output)])


def test_recording_conditions_scores_a_run_in_each_and_the_level_is_heard_as_the_same(
    demo_run, capsys
):
    """benchmarks/recording_conditions.py on the demo run: a row of mean test UA per condition;
    the demo model scales each input to one level (input_level_db), so 20 dB quieter is no
    different (files scored whole: where the VAD puts the synthetic voice's edges depends on its
    level); a word that names no condition stops it before any model runs."""
    bench = load("recording_conditions")
    conditions = ["gain:-20", "recorded", "pink:10", "babble:10", "reverb:0.3", "telephone"]
    text = bench.main(
        [str(demo_run["run_dir"]), "--conditions", *conditions, "--checkpoint", "best.ckpt",
         "--trim_silence", "false"]
    )  # fmt: skip
    assert text.splitlines()[0] == "| runs | " + " | ".join(conditions) + " |"
    row = next(line for line in text.splitlines() if str(demo_run["run_dir"]) in line)
    scores = [float(cell) for cell in row.strip("| ").split(" | ")[1:]]
    assert scores[0] == scores[1] and all(0 <= ua <= 1 for ua in scores)
    assert re.search(r"median -?\d+\.\d dBFS", text)
    with pytest.raises(SystemExit, match="neither a ser fit run nor a ser cv folder"):
        bench.main([str(demo_run["work"])])
    with pytest.raises(SystemExit, match="--conditions 'pink:': expected recorded, telephone"):
        bench.main([str(demo_run["work"]), "--conditions", "recorded", "pink:"])


def test_recording_conditions_degrade_the_audio_as_named():
    """Noise and other talkers at the SNR asked for (pink: 10x the power per Hz a decade lower), a
    room that keeps the energy and smears the sound, a telephone band with nothing below 300 Hz,
    the clip unchanged between two stretches of a quiet room's noise floor."""
    bench = load("recording_conditions")
    rng = np.random.default_rng(0)
    t = np.arange(2 * bench.RATE) / bench.RATE
    wave = (0.1 * np.sin(2 * np.pi * 200 * t) + 0.1 * np.sin(2 * np.pi * 1000 * t)).astype("f4")
    talkers = [np.full(n, 0.1 * n, dtype="f4") for n in range(1_000, 6_000, 1_000)]
    for noise in ("white", "pink", "babble"):
        noisy = bench.condition(f"{noise}:10")(wave, np.random.default_rng(1), talkers)
        snr = 10 * np.log10(np.mean(wave**2) / np.mean((noisy - wave) ** 2))
        assert snr == pytest.approx(10, abs=1e-6)
    power = np.abs(np.fft.rfft(bench.coloured_noise(8 * bench.RATE, "pink", rng))) ** 2
    frequencies = np.fft.rfftfreq(8 * bench.RATE, 1 / bench.RATE)
    decade = power[(frequencies > 100) & (frequencies < 200)].mean()
    assert decade / power[(frequencies > 1000) & (frequencies < 2000)].mean() == pytest.approx(
        10, rel=0.2
    )
    room = bench.condition("reverb:0.6")(wave, np.random.default_rng(2), [])
    assert np.mean(room**2) == pytest.approx(np.mean(wave**2), rel=1e-4)
    assert not np.allclose(room, wave, atol=0.01)
    line = np.abs(np.fft.rfft(bench.condition("telephone")(wave, rng, [])))
    tone = np.abs(np.fft.rfft(wave))
    bins = np.fft.rfftfreq(len(wave), 1 / bench.RATE)
    assert line[bins == 200].item() < 0.01 * tone[bins == 200].item()  # below the band
    assert line[bins == 1000].item() == pytest.approx(tone[bins == 1000].item(), rel=0.05)
    padded = bench.condition("pad:1.5")(wave, np.random.default_rng(3), [])
    pad = int(1.5 * bench.RATE)
    assert len(padded) == len(wave) + 2 * pad and np.array_equal(padded[pad:-pad], wave)
    floor = 10 * np.log10(np.mean(padded[:pad] ** 2) / np.mean(wave**2))
    assert floor == pytest.approx(-bench.ROOM_FLOOR_BELOW_SPEECH_DB, abs=0.5)
    assert floor == pytest.approx(
        10 * np.log10(np.mean(padded[-pad:] ** 2) / np.mean(wave**2)), abs=0.5
    )


def test_imbalanced_classes_keeps_each_emotion_up_to_its_count_spread_over_the_speakers(tmp_path):
    """benchmarks/imbalanced_classes.py on a small EmoDB (3 speakers; 4 anger, 4 fear, 1 sadness
    clips each): anger and sadness whole, fear cut to its 8 in turn from the speakers (3/3/2), the
    files copied unchanged; ser's EmoDB reader takes it; a second run is refused."""
    bench = load("imbalanced_classes")
    source = tmp_path / "EmoDB" / "wav"
    source.mkdir(parents=True)
    texts = ("a01", "a02", "b01", "b03")
    for index, (speaker, emotion, text) in enumerate(
        [(s, e, t) for s in ("03", "08", "16") for e in "WA" for t in texts]
        + [(s, "T", "a05") for s in ("03", "08", "16")]
    ):
        wave = np.full(1_600, 0.01 * (index + 1), dtype="float32")
        sf.write(source / f"{speaker}{text}{emotion}a.wav", wave, 16_000, subtype="FLOAT")
    output = tmp_path / "imbalanced"
    bench.main([str(tmp_path / "EmoDB"), str(output), "--seed", "1"])

    kept = sorted(p.name for p in (output / "wav").glob("*.wav"))
    by_emotion = {e: [n for n in kept if n[5] == e] for e in "WAT"}
    assert len(by_emotion["W"]) == 12 and len(by_emotion["T"]) == 3  # fewer than KEEP: all
    assert len(by_emotion["A"]) == bench.KEEP["A"] == 8
    fear_per_speaker = sorted(sum(n[:2] == s for n in by_emotion["A"]) for s in ("03", "08", "16"))
    assert fear_per_speaker == [2, 3, 3]
    assert all((output / "wav" / n).read_bytes() == (source / n).read_bytes() for n in kept)
    assert len(emodb.scan(output)) == len(kept) == 23
    with pytest.raises(SystemExit, match="exists"):
        bench.main([str(tmp_path / "EmoDB"), str(output)])


@pytest.mark.parametrize("allowed", [True, False])
def test_the_cudnn_attention_row_lets_the_encoder_pick_cudnn(allowed):
    """The encoders run SDPA under their own kernel list, which overrides torch's global switch:
    the "cuDNN allowed" row measured the fixed encoder until its list was widened."""
    bench = load("gpu_shapes")
    model_type, config = TINY["wav2vec2-layer"]
    backbone = HFBackbone(model_type=model_type, config=config, segment_seconds=0.5)
    seen = []
    attention = torch.nn.functional.scaled_dot_product_attention

    def recorded(*args, **kwargs):
        seen.append(torch.backends.cuda.cudnn_sdp_enabled())
        return attention(*args, **kwargs)

    with (
        bench.cudnn_attention(allowed),
        mock.patch.object(torch.nn.functional, "scaled_dot_product_attention", recorded),
    ):
        backbone(torch.randn(2, 8000), torch.tensor([8000, 6000]))
    assert seen and set(seen) == {allowed}


def test_recording_conditions_scores_only_the_finished_folds_of_the_plan(tmp_path):
    """A fold still training (its last.ckpt mid-fit) and an earlier try cv moved aside were
    scored and averaged in beside the finished folds."""
    bench = load("recording_conditions")
    plan = {"folds": [{"name": "fold_0", "args": []}, {"name": "fold_1", "args": []}]}
    (tmp_path / "cv_plan.json").write_text(json.dumps(plan))
    for name in ("fold_0", "fold_0.incomplete-20261208-010203", "fold_1"):
        (tmp_path / name / "splits").mkdir(parents=True)
        (tmp_path / name / "splits" / "test.csv").write_text("utt_id,label\n")
    (tmp_path / "fold_0" / "test_metrics.json").write_text("{}")
    assert bench.runs_of(tmp_path) == [tmp_path / "fold_0"]
    (tmp_path / "fold_0" / "test_metrics.json").unlink()
    with pytest.raises(SystemExit, match="none of the 2 folds of its plan finished"):
        bench.runs_of(tmp_path)
