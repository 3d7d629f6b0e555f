"""A checkpoint is data: the parts it names are checked before anything is imported or built."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from cli_process import REPO

from ser.commands.cli import model_config_of_checkpoint
from ser.models.checkpoint import ENCODER_CONFIG
from ser.models.network import CheckpointPartError, checked_parts, load_model


def evil_checkpoint(path, part: str, marker) -> None:
    hparams = {
        "backbone": {"class_path": "ser.models.HFBackbone", "init_args": {}},
        "class_names": ["a", "b"],
    }
    hparams[part] = {"class_path": "subprocess.run", "init_args": {"args": ["touch", str(marker)]}}
    torch.save({"state_dict": {}, "hyper_parameters": hparams}, path)


@pytest.mark.parametrize("part", ["backbone", "pooling", "head", "dimension_head", "optimizer"])
def test_a_checkpoint_naming_another_class_is_refused_before_it_runs(tmp_path, part):
    marker = tmp_path / "PWNED"
    evil_checkpoint(tmp_path / "evil.ckpt", part, marker)
    with pytest.raises(CheckpointPartError, match=rf"hyper_parameters\.{part} names 'subprocess"):
        load_model(tmp_path / "evil.ckpt")
    assert not marker.exists()


@pytest.mark.parametrize("command", ["predict", "test", "export"])
def test_every_command_refuses_it_in_one_line(tmp_path, ser_cli, demo_run, command):
    marker = tmp_path / "PWNED"
    evil_checkpoint(tmp_path / "evil.ckpt", "backbone", marker)
    args = {
        "predict": ["--data.paths", f"[{demo_run['long']}]", "--output", str(tmp_path / "p.csv")],
        "test": ["--data.root", str(demo_run["corpus"])],
        "export": ["--output", str(tmp_path / "m.onnx")],
    }[command]
    result = ser_cli(command, "--ckpt_path", str(tmp_path / "evil.ckpt"), *args, cwd=tmp_path,
                     check=False)  # fmt: skip
    assert result.returncode != 0 and not marker.exists()
    refusals = [line for line in result.stderr.splitlines() if "may not be" in line]
    assert len(refusals) == 1 and "hyper_parameters.backbone" in refusals[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_the_parts_a_trained_run_names_pass(demo_run):
    checkpoint = torch.load(demo_run["ckpt"], map_location="cpu", weights_only=True, mmap=True)
    parts = checked_parts(checkpoint["hyper_parameters"], "best.ckpt")
    assert set(parts) == {"backbone", "pooling", "head", "dimension_head", "optimizer"}


def test_a_checkpoint_from_before_the_layout_move_names_the_optimizer_where_it_was():
    hparams = {"backbone": {"class_path": "ser.models.HFBackbone"}, "class_names": ["a"],
               "optimizer": {"class_path": "ser.optim.FusedAdamW"}}  # fmt: skip
    parts = checked_parts(hparams, "old.ckpt")
    assert parts["optimizer"]["class_path"] == "ser.training.optim.FusedAdamW"


def test_a_checkpoint_from_before_whisper_options_moved_gives_them_their_group():
    backbone = {"class_path": "ser.models.HFBackbone", "init_args": {"whisper_pad_to_window": True}}
    hparams = {"backbone": backbone, "class_names": ["a"]}
    parts = checked_parts(hparams, "old.ckpt")
    assert parts["backbone"]["init_args"]["whisper"] == {"pad_to_window": True}
    assert "whisper_pad_to_window" not in parts["backbone"]["init_args"]


@pytest.fixture
def run_from_before_the_input_level(demo_run, tmp_path) -> dict[str, Path]:
    """The demo run's last checkpoint (the one a fit resumes from) and config.yaml as saved before
    ``input_level_db`` existed."""
    last = demo_run["ckpt"].parent / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["backbone"]["init_args"]["input_level_db"] == -20.0
    del checkpoint["hyper_parameters"]["backbone"]["init_args"]["input_level_db"]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    config = yaml.safe_load((demo_run["run_dir"] / "config.yaml").read_text())
    del config["model"]["backbone"]["init_args"]["input_level_db"]
    (tmp_path / "old_config.yaml").write_text(yaml.safe_dump(config))
    return {"ckpt": tmp_path / "old.ckpt", "config": tmp_path / "old_config.yaml"}


def test_a_checkpoint_from_before_the_input_level_hears_its_audio_as_recorded(
    demo_run, run_from_before_the_input_level
):
    assert load_model(demo_run["ckpt"])[0].backbone.input_level_db == -20.0
    old = run_from_before_the_input_level["ckpt"]
    assert load_model(old)[0].backbone.input_level_db is None
    defaults = model_config_of_checkpoint(str(old))  # ser test's model config
    assert defaults["model.backbone"]["init_args"]["input_level_db"] is None


def test_a_run_from_before_the_input_level_resumes_as_recorded(
    demo_run, run_from_before_the_input_level, ser_cli
):
    """A resume with the run's own config.yaml, which does not name the option either, must not
    switch the new default on half-way through training."""
    old = run_from_before_the_input_level
    result = ser_cli(
        "fit", "-c", str(old["config"]), "--ckpt_path", str(old["ckpt"]), "--print_config",
        cwd=demo_run["work"],
    )  # fmt: skip
    printed = yaml.safe_load(result.stdout)
    assert printed["model"]["backbone"]["init_args"]["input_level_db"] is None
    assert printed["ckpt_path"] == str(old["ckpt"])


def test_a_model_trained_compiled_with_flash_attention_is_rebuilt_for_any_machine(
    demo_run, tmp_path, monkeypatch, ser_cli
):
    """Settings of the training machine: flash-attn is missing here (building with it raised),
    predict would pay the compilation at every start and an ONNX export cannot trace a compiled
    layer (the export failed). ``ser test`` on another machine takes the same defaults."""
    saved = torch.load(demo_run["ckpt"], map_location="cpu", weights_only=True)
    init_args = saved["hyper_parameters"]["backbone"]["init_args"]
    init_args.update(compile=True, attn_implementation="flash_attention_2")
    torch.save(saved, tmp_path / "gpu.ckpt")
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compiled.append(self))
    load_model(tmp_path / "gpu.ckpt")  # built with flash_attention_2, it raised ImportError
    assert compiled == []
    result = ser_cli(
        "test", "--ckpt_path", str(tmp_path / "gpu.ckpt"), "--print_config",
        "-c", str(REPO / "configs/data/shemo.yaml"), "--data.root", str(demo_run["corpus"]),
        cwd=tmp_path,
    )  # fmt: skip
    printed = yaml.safe_load(result.stdout)["model"]["backbone"]["init_args"]
    assert (printed["compile"], printed["attn_implementation"]) == (False, None)


def test_a_checkpoint_whose_saved_encoder_config_names_another_model_is_refused(demo_run, tmp_path):
    """The saved config picks the class transformers builds: checked before anything is."""
    saved = torch.load(demo_run["ckpt"], map_location="cpu", weights_only=True)
    saved[ENCODER_CONFIG]["config"]["model_type"] = "bert"
    torch.save(saved, tmp_path / "bert.ckpt")
    with pytest.raises(CheckpointPartError, match=r"bert.ckpt: encoder_config names the model "
                       r"type 'bert', which a checkpoint's encoder may not be"):  # fmt: skip
        load_model(tmp_path / "bert.ckpt")
