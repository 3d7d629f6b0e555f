"""Seeded splits on the 3000 real ShEMO names (no audio needed) and small synthetic sets."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import pytest
from corpus_fixtures import SHEMO_COUNTS, shemo_rows

from ser.data import splits
from ser.data.utterance import Utterance


@pytest.fixture(scope="module")
def rows() -> list[Utterance]:
    return shemo_rows()


def ids(parts: dict[str, list[Utterance]]) -> dict[str, list[str]]:
    return {name: [r.utt_id for r in part] for name, part in parts.items()}


def assert_partition(parts: dict[str, list[Utterance]], rows: list[Utterance]) -> None:
    assert set(parts) == {"train", "val", "test"}
    all_ids = [r.utt_id for part in parts.values() for r in part]
    assert len(all_ids) == len(set(all_ids)) == len(rows)
    assert set(all_ids) == {r.utt_id for r in rows}


def speakers(part: list[Utterance]) -> set[str]:
    return {r.speaker for r in part}


def test_all_test_puts_every_row_in_test(rows: list[Utterance]) -> None:
    parts = splits.AllTest()(list(reversed(rows)), seed=0)
    assert ids(parts) == {"train": [], "val": [], "test": sorted(row.utt_id for row in rows)}
    with pytest.raises(ValueError, match="appears twice"):
        splits.AllTest()(rows + rows[:1], seed=0)


def test_stratified_80_10_10_per_class(rows: list[Utterance]) -> None:
    parts = splits.stratified(rows, val_fraction=0.1, test_fraction=0.1, seed=0)
    assert_partition(parts, rows)
    for name, fraction in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        counts = Counter(r.label for r in parts[name])
        for label, n in SHEMO_COUNTS.items():
            assert abs(counts[label] - fraction * n) <= 1, (name, label, counts[label])
    assert Counter(r.label for r in parts["test"])["fear"] == 4  # 3.8 rounds to 4


def test_stratified_is_seeded_and_order_independent(rows: list[Utterance]) -> None:
    first = ids(splits.stratified(rows, seed=3))
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert ids(splits.stratified(shuffled, seed=3)) == first
    assert ids(splits.stratified(rows, seed=4))["test"] != first["test"]


def test_stratified_other_fractions(rows: list[Utterance]) -> None:
    parts = splits.stratified(rows, val_fraction=0.05, test_fraction=0.25, seed=1)
    counts = Counter(r.label for r in parts["test"])
    assert all(abs(counts[label] - 0.25 * n) <= 1 for label, n in SHEMO_COUNTS.items())
    assert abs(len(parts["val"]) - 150) <= len(SHEMO_COUNTS)


def test_speaker_independent_shares_no_speaker(rows: list[Utterance]) -> None:
    parts = splits.speaker_independent(rows, val_fraction=0.1, test_fraction=0.1, seed=0)
    assert_partition(parts, rows)
    train, val, test = (speakers(parts[name]) for name in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert len(train | val | test) == 87
    largest = max(Counter(r.speaker for r in rows).values())
    for name in ("val", "test"):
        assert abs(len(parts[name]) - 300) <= largest / 2, (name, len(parts[name]))
    shuffled = rows[::-1]
    assert ids(splits.speaker_independent(shuffled, 0.1, 0.1, seed=0)) == ids(parts)
    assert ids(splits.speaker_independent(rows, 0.1, 0.1, seed=1)) != ids(parts)


def test_speaker_independent_needs_three_speakers(rows: list[Utterance]) -> None:
    two = [r for r in rows if r.speaker in ("F01", "M01")]
    with pytest.raises(ValueError, match=r"the train part would be empty.*2 speakers"):
        splits.speaker_independent(two, 0.1, 0.1)
    three = [r for r in rows if r.speaker in ("F01", "F02", "M01")]
    parts = splits.speaker_independent(three, 0.1, 0.1)
    assert all(len(speakers(part)) == 1 for part in parts.values())


def with_sessions(rows: list[Utterance], count: int = 5) -> list[Utterance]:
    return [
        dataclasses.replace(r, session=f"Session{int(r.speaker[1:]) % count + 1}") for r in rows
    ]


def test_by_session(rows: list[Utterance]) -> None:
    rows = with_sessions(rows)
    parts = splits.by_session(rows, test_session="Session2", val_fraction=0.1, seed=0)
    assert_partition(parts, rows)
    assert {r.session for r in parts["test"]} == {"Session2"}
    rest = len(rows) - len(parts["test"])
    assert abs(len(parts["val"]) - 0.1 * rest) <= len(SHEMO_COUNTS)
    parts = splits.by_session(rows, test_session="Session2", val_session="Session5")
    assert {r.session for r in parts["val"]} == {"Session5"}
    assert "Session2" not in {r.session for r in parts["train"]}


def test_by_session_errors(rows: list[Utterance]) -> None:
    with pytest.raises(ValueError, match=r"needs a session for every row"):
        splits.by_session(rows, test_session="Session1")
    rows = with_sessions(rows)
    with pytest.raises(ValueError, match=r"test_session='Session9' is not one of the sessions"):
        splits.by_session(rows, test_session="Session9")
    with pytest.raises(ValueError, match=r"both 'Session1'"):
        splits.by_session(rows, test_session="Session1", val_session="Session1")
    two = with_sessions(rows, count=2)
    with pytest.raises(ValueError, match=r"the train part would be empty"):
        splits.by_session(two, test_session="Session1", val_session="Session2")


def test_kfold_test_folds_partition_the_corpus(rows: list[Utterance]) -> None:
    tests = [splits.kfold(rows, num_folds=5, fold=k, seed=0)["test"] for k in range(5)]
    all_ids = [r.utt_id for fold in tests for r in fold]
    assert len(all_ids) == len(set(all_ids)) == 3000
    for fold in tests:
        assert len(fold) == 600
        counts = Counter(r.label for r in fold)
        assert all(abs(counts[label] - n / 5) <= 1 for label, n in SHEMO_COUNTS.items())
    parts = splits.kfold(rows, num_folds=5, fold=2, val_fraction=0.1, seed=0)
    assert_partition(parts, rows)
    assert abs(len(parts["val"]) - 240) <= len(SHEMO_COUNTS)
    assert ids(parts) == ids(splits.kfold(rows[::-1], num_folds=5, fold=2, seed=0))


def test_kfold_by_speaker(rows: list[Utterance]) -> None:
    tests = [splits.kfold(rows, 5, fold=k, seed=0, by_speaker=True) for k in range(5)]
    fold_speakers = [speakers(parts["test"]) for parts in tests]
    assert sum(len(s) for s in fold_speakers) == len(set().union(*fold_speakers)) == 87
    largest = max(Counter(r.speaker for r in rows).values())
    assert all(abs(len(parts["test"]) - 600) <= largest for parts in tests)
    for parts in tests:
        assert_partition(parts, rows)
        train, val, test = (speakers(parts[name]) for name in ("train", "val", "test"))
        assert not (train & val or train & test or val & test)


@pytest.mark.parametrize("unknown", ["unknown", ""])
def test_speaker_splits_leave_out_rows_whose_speaker_is_unknown(
    rows: list[Utterance], unknown: str, caplog
) -> None:
    """MSP-Podcast's ``Unknown`` speakers, a manifest without speakers: such a row may be any
    speaker, a test speaker included, so no part of a speaker-independent split may hold it."""
    anonymous = [dataclasses.replace(row, speaker=unknown) for row in rows[::10]]
    known = [row for row in rows if row.utt_id not in {r.utt_id for r in anonymous}]
    for parts in (
        splits.speaker_independent(known + anonymous, seed=0),
        splits.kfold(known + anonymous, num_folds=5, fold=1, by_speaker=True),
    ):
        assert_partition(parts, known)
    assert f"{len(anonymous)} rows with an unknown speaker left out" in caplog.text
    with pytest.raises(ValueError, match="no row has a known speaker"):
        splits.BySpeaker()(anonymous, seed=0)


def test_kfold_by_speaker_val_rotates() -> None:
    """Val comes from the folds after the test fold, so no speaker is held out of training in
    nearly every fold (in fold order, fold 0's speaker was val in all the others): ten speakers of
    50-58 utterances (EmoDB's shape), ten folds."""
    ten = [
        Utterance(f"s{s}_{i}", f"/c/s{s}_{i}.wav", f"s{s}", ("anger", "sadness")[i % 2], 2.0, 16000)
        for s in range(10)
        for i in range(50 + s % 9)
    ]
    folds = [
        splits.kfold(ten, 10, fold=k, val_fraction=0.1, seed=0, by_speaker=True) for k in range(10)
    ]
    val_speakers = [speakers(parts["val"]) for parts in folds]
    assert all(len(s) == 1 for s in val_speakers)
    assert len(set().union(*val_speakers)) == 10  # each speaker is val in exactly one fold
    assert [
        speakers(parts["test"]) for parts in folds[1:] + folds[:1]
    ] == val_speakers  # next fold's
    assert len({frozenset(speakers(parts["train"])) for parts in folds}) == 10


def test_kfold_errors(rows: list[Utterance]) -> None:
    with pytest.raises(ValueError, match=r"num_folds must be at least 2"):
        splits.kfold(rows, num_folds=1)
    with pytest.raises(ValueError, match=r"fold must be in 0..4, got 5"):
        splits.kfold(rows, num_folds=5, fold=5)
    three = [r for r in rows if r.speaker in ("F01", "F02", "M01")]
    with pytest.raises(ValueError, match=r"the test part would be empty.*fold 3 of 4"):
        splits.kfold(three, num_folds=4, fold=3, by_speaker=True)


def test_from_column(rows: list[Utterance]) -> None:
    labelled = [
        dataclasses.replace(r, split=("train", "val", "test")[i % 3]) for i, r in enumerate(rows)
    ]
    parts = splits.from_column(labelled)
    assert_partition(parts, rows)
    assert all(r.split == name for name, part in parts.items() for r in part)
    broken = [*labelled[:5], dataclasses.replace(labelled[5], split=None)]
    with pytest.raises(ValueError, match=rf"{labelled[5].utt_id} \(None\)"):
        splits.from_column(broken)
    no_test = [r for r in labelled if r.split != "test"]
    with pytest.raises(ValueError, match=r"the test part would be empty.*split column"):
        splits.from_column(no_test)
    with pytest.raises(ValueError, match=r"the manifest has none: .* --data.split BySpeaker"):
        splits.from_column(rows)  # no split column at all (ser synth's manifest)


def test_from_column_logs_a_description_not_an_error(rows: list[Utterance], caplog) -> None:
    labelled = [
        dataclasses.replace(r, split=("train", "val", "test")[i % 3]) for i, r in enumerate(rows)
    ]
    with caplog.at_level("INFO", logger="ser.data.splits"):
        splits.from_column(labelled)
    (line,) = [m for m in caplog.messages if m.startswith("split (")]
    counts = "{'train': 1000, 'val': 1000, 'test': 1000}"
    assert line == f"split (as the manifest's split column gives it): {counts}"


def test_bad_inputs(rows: list[Utterance]) -> None:
    with pytest.raises(ValueError, match=r"the test part would be empty"):
        splits.stratified(rows, test_fraction=0.0)
    with pytest.raises(ValueError, match=r"leave nothing for train"):
        splits.stratified(rows, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        splits.stratified(rows, val_fraction=-0.1)
    with pytest.raises(ValueError, match=r"rows to split: utt_id 'F01A01' appears twice"):
        splits.stratified([*rows, next(r for r in rows if r.utt_id == "F01A01")])
    with pytest.raises(ValueError, match=r"no rows to split"):
        splits.stratified([])
