"""Protocol cards: hash, counts, speaker overlap, a broken promise refused, cv folds of one kind."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from ser.data.splits import BySession, BySpeaker, KFold, SpeakerKFold, Stratified
from ser.data.utterance import Utterance, write_csv
from ser.evaluation import protocol
from ser.evaluation.cv_summary import summarise


def rows(speakers: int, per_speaker: int) -> list[Utterance]:
    labels = ("anger", "neutral")
    return [
        Utterance(f"s{s}_{i:02d}", f"/c/s{s}_{i}.wav", f"s{s}", labels[i % 2], 1.0, 16_000,
                  session=f"Session{s % 3 + 1}")
        for s in range(speakers) for i in range(per_speaker)
    ]  # fmt: skip


def write_split(splits_dir: Path, parts: dict[str, list[Utterance]], kind: str, promise: bool):
    for part, part_rows in parts.items():
        write_csv(splits_dir / f"{part}.csv", part_rows)
    made = {"reader": "TestData", "classes": ["anger", "neutral"], "merge": {}, "label_map": {}}
    made["split"] = {"kind": kind, "settings": {}, "seed": 0, "speaker_independent": promise}
    (splits_dir / "split.json").write_text(json.dumps(made))


INDEPENDENT = [BySpeaker(0.2, 0.2), SpeakerKFold(3, 1), BySession("Session2")]


@pytest.mark.parametrize("strategy", INDEPENDENT)
def test_speaker_independent_splits_have_no_overlap(tmp_path, strategy):
    assert strategy.speaker_independent
    write_split(tmp_path, strategy(rows(9, 6), seed=0), type(strategy).__name__, True)
    card = protocol.card(tmp_path)
    assert card["speaker_overlap"]["train-test"] == {"count": 0, "speakers": []}
    assert "speaker-independent: 0 of 9 speakers in train and test" in card["summary"]


@pytest.mark.parametrize("strategy", [Stratified(0.2, 0.2), KFold(3, 0)])
def test_random_split_states_its_overlap(tmp_path, strategy):
    assert not strategy.speaker_independent
    write_split(tmp_path, strategy(rows(9, 10), seed=0), type(strategy).__name__, False)
    card = protocol.card(tmp_path)
    shared = card["speaker_overlap"]["train-test"]
    assert shared["count"] == 9 and shared["speakers"] == [f"s{i}" for i in range(9)]
    assert "speaker-dependent: 9 of 9 speakers in train and test" in card["summary"]
    test = card["parts"]["test"]
    assert test["utterances"] == sum(c["utterances"] for c in test["per_class"].values())


def test_a_leak_in_a_speaker_independent_split_is_refused_with_names(tmp_path):
    parts = BySpeaker(0.2, 0.2)(rows(9, 6), seed=0)
    intruder = parts["test"][0]
    parts["train"] = [*parts["train"], Utterance("extra", "/c/x.wav", intruder.speaker, "anger",
                                                 1.0, 16_000)]  # fmt: skip
    write_split(tmp_path, parts, "BySpeaker", True)
    with pytest.raises(
        ValueError, match=rf"1 speakers are in both train and test: {intruder.speaker}"
    ):
        protocol.card(tmp_path)


def test_split_hash_is_the_exact_split(tmp_path):
    parts = Stratified(0.2, 0.2)(rows(4, 10), seed=0)
    write_split(tmp_path / "a", parts, "Stratified", False)
    moved = {**parts, "val": parts["val"][1:], "train": [*parts["train"], parts["val"][0]]}
    write_split(tmp_path / "b", moved, "Stratified", False)
    reordered = {part: list(reversed(r)) for part, r in parts.items()}
    write_split(tmp_path / "c", reordered, "Stratified", False)
    hashes = [protocol.card(tmp_path / name)["split_hash"] for name in "abc"]
    assert hashes[0] != hashes[1] and hashes[0] == hashes[2]


def fold_dir(cv_dir: Path, name: str, kind: str, ua: float) -> None:
    run = cv_dir / name
    write_split(run / "splits", KFold(2, int(name[-1]))(rows(4, 6), seed=0), kind, False)
    test_ids = {row.utt_id for row in KFold(2, int(name[-1]))(rows(4, 6), seed=0)["test"]}
    protocol.write_card(run, test_ids)
    metrics = {"test/WA": ua, "test/UA": ua, "test/F1": ua, "test/UA_ci95_lo": 0.0}
    (run / "test_metrics.json").write_text(json.dumps(metrics))
    (run / "predictions.csv").write_text("utt_id,label,pred,prob_anger,prob_neutral\n")


def test_cv_summary_records_fold_hashes_and_an_interval(tmp_path):
    (tmp_path / "cv_plan.json").write_text(json.dumps({"folds": [{"name": "fold_0"},
                                                                 {"name": "fold_1"}]}))  # fmt: skip
    fold_dir(tmp_path, "fold_0", "KFold", 0.6)
    fold_dir(tmp_path, "fold_1", "KFold", 0.7)
    summary = summarise(tmp_path)
    hashes = {name: fold["split_hash"] for name, fold in summary["protocol"]["folds"].items()}
    assert len(set(hashes.values())) == 2 and "test/UA_ci95_lo" not in summary["mean"]
    low, high = summary["ci95"]["test/UA"]
    assert low < 0.65 < high and high - low == pytest.approx(2 * 12.706 * 0.05, rel=1e-3)
    assert (
        json.loads((tmp_path / "protocol.json").read_text())["folds"]
        == summary["protocol"]["folds"]
    )
    assert "95 % interval over folds" in (tmp_path / "cv_summary.md").read_text()


def test_cv_summary_refuses_folds_of_different_kinds(tmp_path):
    (tmp_path / "cv_plan.json").write_text(json.dumps({"folds": [{"name": "fold_0"},
                                                                 {"name": "fold_1"}]}))  # fmt: skip
    fold_dir(tmp_path, "fold_0", "KFold", 0.6)
    fold_dir(tmp_path, "fold_1", "Stratified", 0.7)
    with pytest.raises(
        ValueError, match=r"protocols differ.*fold_0: .*KFold.*fold_1: .*Stratified"
    ):
        summarise(tmp_path)


def test_a_cv_whose_folds_all_failed_says_so_in_whole_lines(tmp_path, caplog):
    (tmp_path / "cv_plan.json").write_text(json.dumps({"folds": [{"name": "fold_0"},
                                                                 {"name": "fold_1"}]}))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ser"):
        summary = summarise(tmp_path)
    assert summary["protocol"]["summary"] == "protocol of 0 folds: no protocol cards"
    assert "cv: 0 of 2 folds: no results to average; summary in" in caplog.text


def test_what_a_checkpoint_heard_is_counted_in_a_test_part_by_utterance_and_speaker():
    corpus = rows(4, 6)
    heard = protocol.heard_entry("TestData", {"train": corpus[:12], "val": corpus[12:18]})
    found = protocol.heard_in_part([heard], "TestData", corpus[6:])  # s1 heard, s2 half heard
    assert (found["utterances"], found["of"], found["speakers"]) == (12, 18, ["s1", "s2"])
    assert found["examples"] == ["s1_00", "s1_01", "s1_02", "s1_03", "s1_04"]
    # Another recording under a heard id (its duration differs), another reader's speakers.
    other = [replace(row, duration=2.0) for row in corpus[6:12]]
    found = protocol.heard_in_part([heard], "OtherData", other)
    assert (found["utterances"], found["speakers"]) == (0, [])
    # A resumed fit meets its own entry again: kept once.
    assert protocol.merge_heard([heard], [heard, {"reader": "X"}]) == [heard, {"reader": "X"}]


@pytest.mark.parametrize(
    ("utterances", "speakers", "split", "promise", "refused"),
    [
        (3, ["s1"], "Stratified", False, True),  # heard test utterances: never held out
        (0, ["s1"], "Stratified", False, False),  # speakers shared: what the split is
        (0, ["s1"], "SpeakerKFold", True, True),  # ... but not in a speaker-independent one
        (0, [], "SpeakerKFold", True, False),
        (3, ["s1"], "AllTest", False, False),  # scores what it is given: a warning
    ],
)
def test_a_test_the_model_heard_is_refused_where_the_split_promises_it_held_out(
    utterances, speakers, split, promise, refused, caplog
):
    found = {"utterances": utterances, "of": 6, "speakers": speakers, "examples": ["s1_00"]}
    if refused:
        with pytest.raises(
            ValueError, match=rf"--ckpt_path a.ckpt trained or validated on .*{split}"
        ):
            protocol.check_held_out(found, split, promise, "--ckpt_path a.ckpt")
        return
    with caplog.at_level(logging.WARNING):
        protocol.check_held_out(found, split, promise, "--ckpt_path a.ckpt")
    assert ("not of held-out data" in caplog.text) == (split == "AllTest")
