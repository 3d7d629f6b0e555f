"""The datamodules: corpus -> cache -> split -> batches, with the run's split written to disk."""

from __future__ import annotations

import csv
import logging
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from corpus_fixtures import IEMOCAP_4_COUNTS, SHEMO_COUNTS, write_iemocap, write_shemo

from ser.data import IEMOCAPDataModule, ManifestDataModule, ShEMODataModule
from ser.data.loader import LoaderSettings
from ser.data.splits import BySession, BySpeaker, KFold, Stratified
from ser.labels import SHEMO_CLASSES


@pytest.fixture(scope="module")
def shemo_root(tmp_path_factory):
    return write_shemo(tmp_path_factory.mktemp("corpus") / "ShEMO")


def cached(tmp_path, **settings) -> LoaderSettings:
    return LoaderSettings(cache_dir=str(tmp_path / "cache"), **settings)


def ready(datamodule, trainer: L.Trainer | None = None):
    if trainer is not None:
        datamodule.trainer = trainer
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def test_shemo_paper_split_written_into_the_run_directory(shemo_root, tmp_path):
    trainer = L.Trainer(default_root_dir=tmp_path, logger=L.pytorch.loggers.CSVLogger(tmp_path))
    dm = ready(ShEMODataModule(str(shemo_root), loader=cached(tmp_path)), trainer)
    assert dm.class_names == list(SHEMO_CLASSES)
    totals = [
        sum(c) for c in zip(*(dm.class_counts(p) for p in ("train", "val", "test")), strict=True)
    ]
    assert dict(zip(dm.class_names, totals, strict=True)) == SHEMO_COUNTS
    assert [len(dm.parts[p]) for p in ("train", "val", "test")] == pytest.approx(
        [2400, 300, 300], abs=6
    )
    written = {}
    for part in ("train", "val", "test"):
        with open(f"{trainer.log_dir}/splits/{part}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["utt_id", "path", "speaker", "label", "duration"]
        written[part] = {row["utt_id"] for row in rows}
        assert written[part] == {row.utt_id for row in dm.parts[part]}
    assert not (written["train"] & written["val"]) and not (written["train"] & written["test"])


def test_loaders_give_batches_of_the_split(shemo_root, tmp_path):
    dm = ready(
        ShEMODataModule(str(shemo_root), loader=cached(tmp_path, batch_size=16, num_workers=0))
    )
    batch = next(iter(dm.train_dataloader()))
    assert batch.waves.shape[0] == 16 and batch.waves.dtype == torch.float32
    assert batch.lengths.max() == batch.waves.shape[1]
    assert set(batch.labels.tolist()) <= set(range(6))
    seen = [u for b in dm.test_dataloader() for u in b.utt_ids]
    assert sorted(seen) == sorted(row.utt_id for row in dm.parts["test"])


def test_speaker_independent_split_shares_no_speaker(shemo_root, tmp_path):
    dm = ready(ShEMODataModule(str(shemo_root), split=BySpeaker(), loader=cached(tmp_path)))
    speakers = [{row.speaker for row in dm.parts[p]} for p in ("train", "val", "test")]
    assert not (speakers[0] & speakers[1]) and not (speakers[0] & speakers[2])
    assert not (speakers[1] & speakers[2])


def test_bad_files_are_skipped_with_a_warning_or_fail(tmp_path, caplog):
    files = [("female", f"F01{code}0{i}.wav") for code in "ANS" for i in range(1, 9)]
    root = write_shemo(tmp_path / "ShEMO", files)
    (root / "female" / "F01A01.wav").unlink()
    (root / "female" / "F01A01.wav").write_bytes(b"not audio at all")
    kwargs = {"root": str(root), "classes": ["anger", "neutral", "sadness"]}
    with caplog.at_level(logging.WARNING):
        dm = ready(ShEMODataModule(**kwargs, loader=cached(tmp_path / "skip")))
    assert "F01A01.wav" in caplog.text
    assert "F01A01" not in {row.utt_id for part in dm.parts.values() for row in part}
    with pytest.raises(ValueError, match=r"F01A01\.wav"):
        ShEMODataModule(
            **kwargs, loader=cached(tmp_path / "fail", on_bad_file="fail")
        ).prepare_data()


def test_iemocap_four_class_protocol_leaves_one_session_out(tmp_path):
    root = write_iemocap(tmp_path / "IEMOCAP")
    split = BySession(test_session="Session5", val_fraction=0.2)
    dm = IEMOCAPDataModule(str(root), split=split, loader=cached(tmp_path))
    ready(dm)
    totals = [
        sum(c) for c in zip(*(dm.class_counts(p) for p in ("train", "val", "test")), strict=True)
    ]
    assert dict(zip(dm.class_names, totals, strict=True)) == IEMOCAP_4_COUNTS
    assert {row.session for row in dm.parts["test"]} == {"Session5"}
    assert "Session5" not in {row.session for row in dm.parts["train"] + dm.parts["val"]}


def test_manifest_classes_default_to_those_found_and_official_split_is_kept(tmp_path):
    names = [f"F01{code}0{i}" for code in "SA" for i in range(1, 4)]  # sadness first on purpose
    write_shemo(tmp_path / "audio", [("female", f"{name}.wav") for name in names])
    lines = ["path,label,speaker,split"]
    for i, name in enumerate(names):
        label = {"A": "anger", "S": "sadness"}[name[3]]
        lines.append(f"audio/female/{name}.wav,{label},F01,{['train', 'val', 'test'][i % 3]}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    dm = ready(ManifestDataModule(str(tmp_path / "m.csv"), loader=cached(tmp_path)))
    assert dm.class_names == ["anger", "sadness"]  # canonical order, not order of appearance
    assert {p: [r.utt_id for r in dm.parts[p]] for p in dm.parts} == {
        "train": ["F01A01", "F01S01"],
        "val": ["F01A02", "F01S02"],
        "test": ["F01A03", "F01S03"],
    }


def test_bad_split_settings_fail_early():
    with pytest.raises(ValueError, match="leave nothing for train"):
        Stratified(val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match=r"fold must be in 0\.\.4"):
        KFold(num_folds=5, fold=5)


def test_split_and_loader_are_what_the_datamodule_uses(shemo_root, tmp_path):
    """The injected split strategy and loader group decide the parts and the batches."""
    loader = cached(tmp_path, batch_size=5, eval_batch_size=7, num_workers=0, seed=3)
    dm = ready(ShEMODataModule(str(shemo_root), split=KFold(fold=2), loader=loader))
    rows = [row for part in dm.parts.values() for row in part]
    assert dm.parts == KFold(fold=2)(rows, seed=3)
    assert dm.parts != KFold(fold=2)(rows, seed=4)
    assert len(next(iter(dm.train_dataloader())).labels) == 5
    assert len(next(iter(dm.val_dataloader())).labels) == 7


def test_a_split_seed_keeps_the_split_while_the_seed_moves_the_batches(shemo_root, tmp_path):
    def parts_and_order(seed: int) -> tuple[dict, list[str]]:
        loader = cached(tmp_path, batch_size=4, num_workers=0, seed=seed, split_seed=3)
        dm = ready(ShEMODataModule(str(shemo_root), split=KFold(fold=2), loader=loader))
        first = [
            dm.parts["train"][i].utt_id for i in next(iter(dm.train_dataloader().batch_sampler))
        ]
        return dm.parts, first

    (parts_0, order_0), (parts_1, order_1) = parts_and_order(0), parts_and_order(1)
    rows = [row for part in parts_0.values() for row in part]
    assert parts_0 == parts_1 == KFold(fold=2)(rows, seed=3)
    assert order_0 != order_1


def test_manifest_with_its_own_labels_and_a_label_map_file(tmp_path, caplog):
    """Raw labels become classes through label_map, aliases and merge; the rest are counted."""
    names = [f"F01{code}0{i}" for code in "AFHNSW" for i in range(1, 4)]
    write_shemo(tmp_path / "audio", [("female", f"{name}.wav") for name in names])
    raw = {"A": "Angry", "F": "X", "H": "happy", "N": "calm", "S": "SAD", "W": "contempt"}
    lines = ["path,label,speaker,split"]
    for i, name in enumerate(names):
        lines.append(
            f"audio/female/{name}.wav,{raw[name[3]]},F01,{['train', 'val', 'test'][i % 3]}"
        )
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "label_map.json").write_text('{"X": "Fearful"}')
    kwargs = {"label_map": str(tmp_path / "label_map.json"), "loader": cached(tmp_path)}
    dm = ManifestDataModule(str(tmp_path / "m.csv"), **kwargs)
    assert dm.class_names == ["anger", "fear", "happiness", "sadness", "calm", "contempt"]

    chosen = ["anger", "sadness", "calm"]
    dm = ManifestDataModule(
        str(tmp_path / "m.csv"), classes=chosen, merge={"Happy": "calm"}, **kwargs
    )
    with caplog.at_level(logging.INFO):
        ready(dm)
    assert "6 utterances have labels outside the classes" in caplog.text
    assert "{'X': 3, 'contempt': 3}" in caplog.text  # dropped, counted by raw label
    assert "train: 4 utterances, per class {'anger': 1, 'sadness': 1, 'calm': 2}" in caplog.text
    missing = ManifestDataModule(str(tmp_path / "m.csv"), classes=["anger", "neutral"], **kwargs)
    with pytest.raises(ValueError, match=r"classes \['neutral'\] have no utterance"):
        missing.setup("fit")


def write_manifest(tmp_path, splits_of: dict[str, list[str]], extra: list[str] = ()) -> str:
    """A manifest of tiny ShEMO files: ``{code: [split of each file]}``, plus ``extra`` lines."""
    names = {f"F01{code}0{i}": split for code, parts in splits_of.items() for i, split in
             enumerate(parts, 1)}  # fmt: skip
    write_shemo(tmp_path / "audio", [("female", f"{name}.wav") for name in names])
    codes = {"A": "anger", "N": "neutral", "S": "sadness"}
    lines = ["path,label,speaker,split", *extra]
    lines += [f"audio/female/{n}.wav,{codes[n[3]]},F01,{split}" for n, split in names.items()]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    return str(tmp_path / "m.csv")


def test_each_warning_of_a_manifest_is_printed_once(tmp_path, caplog):
    """The corpus is scanned once per datamodule: prepare_data and setup do not repeat its
    warnings (a path outside the corpus that is no audio: one warning, not three)."""
    path = write_manifest(
        tmp_path,
        {"A": ["train", "val", "test"], "S": ["train", "val", "test"]},
        extra=["../../../../etc/passwd,anger,F01,train"],
    )
    with caplog.at_level(logging.WARNING):
        dm = ready(ManifestDataModule(path, loader=cached(tmp_path)))
    assert "passwd" not in {row.utt_id for part in dm.parts.values() for row in part}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("unreadable audio header" in w for w in warnings)
    assert len(warnings) == len(set(warnings)), warnings


def test_a_class_without_training_rows_stops_before_training(tmp_path):
    path = write_manifest(
        tmp_path, {"A": ["train", "val", "test"], "S": ["train", "test"], "N": ["val", "test"]}
    )
    with pytest.raises(ValueError, match=r"neutral.* no row in the train part") as err:
        ready(ManifestDataModule(path, loader=cached(tmp_path)))
    assert "sadness" not in str(err.value)  # it has a train row (no val row is allowed)


def test_an_eval_part_smaller_than_the_processes_is_refused_in_one_line(shemo_root, tmp_path):
    """Under DDP each process evaluates at least one utterance: a val part of one utterance
    for two processes ended in Lightning's "DataLoader within local rank has zero length"
    (and ser cv could not read that error from the fold's log)."""
    dm = ready(ShEMODataModule(str(shemo_root), loader=cached(tmp_path, num_workers=0)))
    dm.parts["val"] = dm.parts["val"][:1]
    dm.trainer = SimpleNamespace(world_size=2, global_rank=0)
    with pytest.raises(ValueError, match=r"the val part holds 1 utterance\(s\), fewer than the 2"):
        dm.val_dataloader()
    dm.trainer = SimpleNamespace(world_size=1, global_rank=0, accelerator=None)
    assert [len(batch.utt_ids) for batch in dm.val_dataloader()] == [1]
