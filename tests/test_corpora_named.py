"""RAVDESS, CREMA-D and EmoDB: scanners on their real naming, and their datamodules."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
from corpus_fixtures import (
    CREMAD_ACTORS,
    EMODB_SPEAKERS,
    RAVDESS_ACTORS,
    link_copies,
    tiny_wav,
    write_cremad,
    write_emodb,
    write_ravdess,
)
from jsonargparse import ArgumentParser

from ser.data import CREMADDataModule, EmoDBDataModule, RAVDESSDataModule
from ser.data.corpora import cremad, emodb, ravdess
from ser.data.datamodule import SERDataModule
from ser.data.loader import LoaderSettings
from ser.data.splits import SpeakerKFold
from ser.labels import CREMAD_CLASSES, EMODB_CLASSES, RAVDESS_CLASSES

WRITERS = {"ravdess": write_ravdess, "cremad": write_cremad, "emodb": write_emodb}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("named")
    return {name: write(base / name) for name, write in WRITERS.items()}


def test_ravdess_speech_with_calm_by_actor_song_and_video_skipped(roots, caplog):
    with caplog.at_level(logging.INFO):
        rows = ravdess.scan(roots["ravdess"])
    assert "skipped 6 song and 6 video files" in caplog.text
    assert len(rows) == 15 * len(RAVDESS_ACTORS)
    counts = Counter(row.label for row in rows)
    assert counts["neutral"] == 6 and counts["calm"] == counts["anger"] == 12
    assert set(counts) == set(RAVDESS_CLASSES)
    angry = next(row for row in rows if row.utt_id == "03-01-05-02-01-01-04")
    assert (angry.label, angry.speaker, angry.sample_rate) == ("anger", "Actor_04", 44_100)
    assert angry.path.endswith(".flac")
    assert {row.sample_rate for row in rows} == {48_000, 44_100}


def test_cremad_emotions_and_actors(roots):
    rows = cremad.scan(roots["cremad"])
    assert len(rows) == 12 * len(CREMAD_ACTORS)
    assert set(Counter(row.label for row in rows)) == set(CREMAD_CLASSES)
    row = next(row for row in rows if row.utt_id == "1003_DFA_FEA_XX")
    assert (row.speaker, row.label) == ("1003", "fear")


def test_emodb_german_codes_with_boredom(roots):
    rows = emodb.scan(roots["emodb"])
    assert len(rows) == 14 * len(EMODB_SPEAKERS)
    labels = {row.utt_id: row.label for row in rows}
    assert (labels["03a01Wa"], labels["08b02La"], labels["10a01Ta"]) == (
        "anger",
        "boredom",
        "sadness",
    )
    assert {row.speaker for row in rows} == set(EMODB_SPEAKERS)


@pytest.mark.parametrize(
    ("module", "name", "message"),
    [
        (ravdess, "Actor_01/03-01-05-01-02.wav", "RAVDESS naming MM-VV-EE"),
        (ravdess, "Actor_01/03-01-09-01-01-01-01.wav", "unknown RAVDESS emotion code '09'"),
        (cremad, "AudioWAV/1001_DFA_XYZ_XX.wav", "unknown CREMA-D emotion code 'XYZ'"),
        (cremad, "AudioWAV/1001-DFA-ANG-XX.wav", "CREMA-D naming <actor>_<sentence>"),
        (emodb, "wav/03a01Xa.wav", "unknown EmoDB emotion code 'X'"),
        (emodb, "wav/anger_03.wav", "EmoDB naming <speaker><text>"),
    ],
)
def test_a_bad_file_name_is_named_with_the_naming_expected(module, name, message, tmp_path):
    link_copies(tiny_wav(tmp_path / "x.wav"), [tmp_path / "corpus" / name])
    with pytest.raises(ValueError, match=message) as err:
        module.scan(tmp_path / "corpus")
    assert name.split("/")[-1] in str(err.value)


@pytest.mark.parametrize("module", [ravdess, cremad, emodb], ids=lambda m: m.__name__)
def test_a_missing_root_says_which_layout_was_expected(module, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist or is not a folder; expected root"):
        module.scan(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("name", "datamodule", "classes"),
    [
        ("ravdess", RAVDESSDataModule, RAVDESS_CLASSES),
        ("cremad", CREMADDataModule, CREMAD_CLASSES),
        ("emodb", EmoDBDataModule, EMODB_CLASSES),
    ],
)
def test_default_protocol_is_speaker_independent(roots, tmp_path, name, datamodule, classes):
    dm = datamodule(roots[name], loader=LoaderSettings(cache_dir=str(tmp_path), num_workers=0))
    dm.prepare_data()
    dm.setup("fit")
    assert dm.class_names == list(classes)
    speakers = [{row.speaker for row in dm.parts[part]} for part in ("train", "val", "test")]
    assert all(speakers) and not (speakers[0] & speakers[1] or speakers[0] & speakers[2])
    assert not speakers[1] & speakers[2]
    batch = next(iter(dm.train_dataloader()))
    assert batch.waves.ndim == 2 and set(batch.labels.tolist()) <= set(range(len(classes)))


def test_ravdess_without_calm_or_with_calm_as_neutral(roots, tmp_path):
    seven = [name for name in RAVDESS_CLASSES if name != "calm"]
    loader = LoaderSettings(cache_dir=str(tmp_path), num_workers=0)
    dropped = RAVDESSDataModule(roots["ravdess"], classes=seven, loader=loader).labelled_rows()
    merged = RAVDESSDataModule(
        roots["ravdess"], classes=seven, merge={"calm": "neutral"}, loader=loader
    ).labelled_rows()
    assert len(dropped) == 15 * len(RAVDESS_ACTORS) - 12
    assert Counter(row.label for row in merged)["neutral"] == 6 + 12


@pytest.mark.parametrize(
    ("datamodule", "classes", "folds"),
    [(RAVDESSDataModule, RAVDESS_CLASSES, 5), (CREMADDataModule, CREMAD_CLASSES, 5),
     (EmoDBDataModule, EMODB_CLASSES, 10)],
)  # fmt: skip
def test_each_corpus_defaults_are_its_signature_the_cli_shows(datamodule, classes, folds):
    parser = ArgumentParser()
    parser.add_subclass_arguments(SERDataModule, "data")
    config = parser.parse_args(
        ["--data", datamodule.__name__, "--data.root", "r", "--data.split.fold", "3"]
    )
    dm = parser.instantiate(config).data
    assert type(dm) is datamodule and dm.root == "r"
    assert dm.class_names == list(classes)
    assert dm.splitter == SpeakerKFold(num_folds=folds, fold=3)
