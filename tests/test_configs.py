"""Every YAML under configs/ parses and instantiates (pretrained sources swapped for tiny ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from corpus_fixtures import (
    write_cremad,
    write_emodb,
    write_iemocap,
    write_msppodcast,
    write_ravdess,
    write_shemo,
)
from models_tiny import TINY

from ser.commands.cli import build_cli
from ser.data import CurriculumDataModule
from ser.data.splits import BySession, SpeakerKFold
from ser.labels import SHEMO_CLASSES
from ser.models.heads import Standardize
from ser.training.module import SERModule

CONFIGS = Path(__file__).parents[1] / "configs"
EXPERIMENTS = sorted((CONFIGS / "experiments").glob("*.yaml"))
# Curriculum experiments bring their own data (several corpora); the rest compose with one.
CURRICULA = [p for p in EXPERIMENTS if "CurriculumDataModule" in p.read_text()]


def names_a_backbone(config: Path) -> bool:
    """Whether the config chooses a backbone class (not only options for the one chosen before)."""
    backbone = (yaml.safe_load(config.read_text()).get("model") or {}).get("backbone") or {}
    return "class_path" in backbone


# Added after a store probe's recipe (it sets augmentation only): tested with the probe below.
PROBE_ADDITIONS = [CONFIGS / "experiments" / "probe_with_augmented_copies.yaml"]
# Added after any recipe with rooms, noise and the low-pass (augmentation only): tested below.
CHANNEL_ADDITIONS = [CONFIGS / "experiments" / "telephone_channel.yaml"]
ADDITIONS = PROBE_ADDITIONS + CHANNEL_ADDITIONS
# Recipes without a backbone (probe_then_finetune.yaml) compose with a model config: tested in
# tests/test_finetuning.py.
RECIPES = [p for p in EXPERIMENTS if p not in CURRICULA + ADDITIONS and not names_a_backbone(p)]
MODEL_FILES = sorted((CONFIGS / "model").glob("*.yaml")) + [
    p for p in EXPERIMENTS if p not in CURRICULA + RECIPES + ADDITIONS
]
FAMILY = {  # hub id prefix -> tiny random-init stand-in of the same architecture
    "facebook/wav2vec2": "wav2vec2-group",
    "facebook/hubert": "hubert",
    "microsoft/wavlm": "wavlm",
    "facebook/data2vec-audio": "data2vec-audio",
    "MIT/ast": "ast",
    "openai/whisper": "whisper",
}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    files = [("female", f"F01{code}0{i}.wav") for code in "AFHNSW" for i in range(1, 4)]
    shemo = write_shemo(root / "ShEMO", files)
    manifest = root / "manifest.csv"
    rows = [f"ShEMO/female/{name},{label},F01,train" for (_, name), label in
            zip(files[:4], ["anger", "anger", "fear", "fear"], strict=True)]  # fmt: skip
    manifest.write_text("path,label,speaker,split\n" + "\n".join(rows) + "\n")
    return {
        "shemo": ["--data.root", str(shemo)],
        "iemocap": ["--data.root", str(write_iemocap(root / "IEMOCAP"))],
        "manifest": ["--data.path", str(manifest)],
        "ravdess": ["--data.root", str(write_ravdess(root / "RAVDESS"))],
        "cremad": ["--data.root", str(write_cremad(root / "CREMA-D"))],
        "emodb": ["--data.root", str(write_emodb(root / "EmoDB"))],
        "msppodcast": ["--data.root", str(write_msppodcast(root / "MSP-Podcast"))],
    }


def tiny_backbone(model_file: Path) -> list[str]:
    source = yaml.safe_load(model_file.read_text())["model"]["backbone"]["init_args"]["source"]
    (family,) = [name for prefix, name in FAMILY.items() if source.startswith(prefix)]
    model_type, config = TINY[family]
    return [
        "--model.backbone.init_args.source", "null",
        "--model.backbone.init_args.model_type", model_type,
        "--model.backbone.init_args.config", json.dumps(config),
    ]  # fmt: skip


def instantiate_cli(args: list[str], monkeypatch):
    monkeypatch.setattr("sys.argv", ["ser"])  # only ``args`` are parsed
    return build_cli([*args, "--trainer.logger", "false"], run=False)  # parsed as for fit


def instantiate(args: list[str], monkeypatch):
    cli = instantiate_cli(args, monkeypatch)
    return cli.model, cli.datamodule


@pytest.mark.parametrize(
    "data", ["shemo", "iemocap", "manifest", "ravdess", "cremad", "emodb", "msppodcast"]
)
def test_demo_composes_with_every_data_config(data, corpora, monkeypatch):
    model, datamodule = instantiate(
        ["-c", str(CONFIGS / "demo.yaml"), "-c", str(CONFIGS / "data" / f"{data}.yaml"),
         *corpora[data]],
        monkeypatch,
    )  # fmt: skip
    assert isinstance(model, SERModule)
    assert model.class_names == datamodule.class_names  # linked, never written twice
    assert model.head.linear.out_features == len(datamodule.class_names)


@pytest.mark.parametrize("model_file", MODEL_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_model_and_experiment_configs_instantiate(model_file, corpora, monkeypatch):
    model, datamodule = instantiate(
        ["-c", str(CONFIGS / "trainer" / "default.yaml"), "-c", str(CONFIGS / "data/shemo.yaml"),
         "-c", str(model_file), *corpora["shemo"], *tiny_backbone(model_file)],
        monkeypatch,
    )  # fmt: skip
    assert model.class_names == datamodule.class_names
    # The segment length is the data's crop length, linked into the backbone.
    assert model.hparams.backbone["init_args"]["segment_seconds"] == datamodule.loader.max_seconds


@pytest.mark.parametrize(
    "model_file",
    [*sorted((CONFIGS / "model").glob("*.yaml")), CONFIGS / "experiments/shemo_wav2vec2.yaml"],
    ids=lambda p: p.stem,
)
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipes_compose_with_every_model_config(recipe, model_file, corpora, monkeypatch):
    model, _ = instantiate(
        ["-c", str(CONFIGS / "trainer" / "default.yaml"), "-c", str(CONFIGS / "data/shemo.yaml"),
         "-c", str(model_file), "-c", str(recipe), *corpora["shemo"], *tiny_backbone(model_file)],
        monkeypatch,
    )  # fmt: skip
    chosen = yaml.safe_load(model_file.read_text())["model"]["backbone"]["init_args"]
    options = yaml.safe_load(recipe.read_text())["model"]["backbone"]["init_args"]
    # The recipe's backbone options join the model config's own; its head is the probe's.
    assert model.hparams.backbone["init_args"] == model.hparams.backbone["init_args"] | options
    assert model.hparams.backbone["init_args"]["freeze"] == chosen.get("freeze", "feature_encoder")
    assert model.backbone.normalize_states and model.backbone.layer_weights is not None
    assert isinstance(model.head.standardize, Standardize)


def test_augmented_copies_compose_with_the_probe_recipe(corpora, monkeypatch):
    probe = CONFIGS / "experiments" / "shemo_wav2vec2_probe.yaml"
    (addition,) = PROBE_ADDITIONS
    model, _ = instantiate(
        ["-c", str(CONFIGS / "trainer" / "default.yaml"), "-c", str(CONFIGS / "data/shemo.yaml"),
         "-c", str(probe), "-c", str(addition), *corpora["shemo"], *tiny_backbone(probe)],
        monkeypatch,
    )  # fmt: skip
    assert model.hparams.feature_store == "statistics" and model.hparams.feature_store_views == 4
    assert model.augmentation.reverb_rt60 == (0.2, 0.8) and model.augmentation.mixup_alpha == 0


@pytest.mark.parametrize(
    "recipe",
    ["probe_then_finetune.yaml", "whisper_base_small_data.yaml", "shemo_wav2vec2_probe.yaml"],
)
def test_the_telephone_channel_adds_to_a_recipes_augmentation(recipe, corpora, monkeypatch):
    recipe_files = [CONFIGS / "experiments" / recipe]
    if recipe == "probe_then_finetune.yaml":
        recipe_files.insert(0, CONFIGS / "model" / "whisper_small.yaml")
    if recipe == "shemo_wav2vec2_probe.yaml":
        recipe_files += PROBE_ADDITIONS
    (addition,) = CHANNEL_ADDITIONS
    model, _ = instantiate(
        ["-c", str(CONFIGS / "trainer" / "default.yaml"), "-c", str(CONFIGS / "data/shemo.yaml"),
         *(arg for f in [*recipe_files, addition] for arg in ("-c", str(f))),
         *corpora["shemo"], *tiny_backbone(recipe_files[0])],
        monkeypatch,
    )  # fmt: skip
    augmentation = model.augmentation  # the recipe's, with the line's high-pass and coding
    assert augmentation.lowpass_hz == (3400, 8000) and augmentation.noise_probability == 0.5
    assert augmentation.highpass_hz == (50, 400) and augmentation.mu_law_probability == 0.25


@pytest.mark.parametrize(
    "files",
    # A curriculum experiment composes with the experiment of its model (named in its usage).
    [["trainer/default.yaml", "experiments/shemo_wav2vec2.yaml", f"experiments/{p.name}"]
     for p in CURRICULA]
    + [["demo.yaml", "demo_curriculum.yaml"]],
    ids=lambda files: files[-1],
)  # fmt: skip
def test_curriculum_configs_instantiate(files, corpora, monkeypatch):
    backbone = [] if files[0] == "demo.yaml" else tiny_backbone(CONFIGS / files[1])
    cli = instantiate_cli(
        [*(arg for f in files for arg in ("-c", str(CONFIGS / f))),
         "--data.init_args.stages.iemocap.init_args.root", corpora["iemocap"][1],
         "--data.init_args.stages.shemo.init_args.root", corpora["shemo"][1], *backbone],
        monkeypatch,
    )  # fmt: skip
    model, datamodule = cli.model, cli.datamodule
    assert isinstance(datamodule, CurriculumDataModule)
    assert datamodule.names == ["iemocap", "shemo"]
    # The head is the final stage's (ShEMO's 6 classes); IEMOCAP's 4 map into it by name.
    assert model.class_names == datamodule.class_names == list(SHEMO_CLASSES)
    assert set(datamodule.stage_class_names(0)) < set(model.class_names)
    # Each stage keeps its own split; the curriculum's loader group is every stage's.
    assert datamodule.stages[0].splitter == BySession(test_session="Session5")
    assert all(stage.loader is datamodule.loader for stage in datamodule.stages)
    assert model.hparams.backbone["init_args"]["segment_seconds"] == datamodule.loader.max_seconds

    callbacks = [type(c).__name__ for c in cli.trainer.callbacks]
    # callbacks+: appends the curriculum to the trainer config's checkpoints (its LR monitor is
    # left out under instantiate_cli's --trainer.logger false: it needs a logger).
    assert callbacks.count("ModelCheckpoint") == 2 and "LearningRateMonitor" not in callbacks
    assert callbacks.count("Curriculum") == 1


def test_manifest_label_map_and_split_from_the_command_line(corpora, tmp_path, monkeypatch):
    label_map = tmp_path / "label_map.json"
    label_map.write_text(json.dumps({"fear": "Calm"}), encoding="utf-8")
    model, datamodule = instantiate(
        ["-c", str(CONFIGS / "demo.yaml"), "-c", str(CONFIGS / "data/manifest.yaml"),
         *corpora["manifest"], "--data.label_map", str(label_map),
         "--data.split", "SpeakerKFold", "--data.split.num_folds", "3"],
        monkeypatch,
    )  # fmt: skip
    assert model.class_names == datamodule.class_names == ["anger", "calm"]
    assert datamodule.splitter == SpeakerKFold(num_folds=3)


def test_the_small_data_recipes_train_on_the_same_rooms_noise_and_channel():
    # The augmentation measured on real speech (docs/real_speech.md, "Noise, rooms and
    # telephones") is written in both small-data recipes and in the probe's stored copies: one
    # changed alone would leave the others' measurements behind.
    generic, whisper_base, probe_copies = (
        yaml.safe_load((CONFIGS / "experiments" / name).read_text())["model"]["augmentation"]
        for name in (
            "probe_then_finetune.yaml",
            "whisper_base_small_data.yaml",
            "probe_with_augmented_copies.yaml",
        )
    )
    assert generic == whisper_base == probe_copies
    assert whisper_base["noise_probability"] == whisper_base["reverb_probability"] == 0.5
