"""Seeded train/val/test splits of manifest rows.

Every function returns ``{"train": [...], "val": [...], "test": [...]}``, each part sorted by
``utt_id``. The result depends only on the rows (not their order) and the seed: rows are put in
``utt_id`` order before shuffling, and each class (or the speaker list) gets its own
``random.Random`` seeded from ``(seed, purpose, class)``, so adding a class leaves the others'
split unchanged. A part that would be empty raises ``ValueError`` saying which and why (but
``AllTest``, which is all test on purpose).

A datamodule is given one of the small typed strategies below (``split: SpeakerKFold(...)``, in
YAML a ``class_path`` such as ``ser.data.splits.SpeakerKFold``); it calls the strategy with its
rows and seed, and the strategy calls one of these functions. There is no string registry.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ser.data.utterance import Utterance, by_utt_id
from ser.evaluation.protocol import UNKNOWN_SPEAKERS

log = logging.getLogger(__name__)

PARTS: tuple[str, ...] = ("train", "val", "test")
Split = dict[str, list[Utterance]]


def stratified(
    rows: Iterable[Utterance], val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> Split:
    """Random split per class: each class gets ``round(n * fraction)`` val and test rows.

    Args:
        rows: the corpus rows (unique ``utt_id``).
        val_fraction: share of every class that goes to val.
        test_fraction: share of every class that goes to test.
        seed: the random seed.
    """
    _check_fractions(val_fraction=val_fraction, test_fraction=test_fraction)
    test, val, train = _cut_per_class(rows, [test_fraction, val_fraction], f"{seed}/split")
    why = f"stratified split, val_fraction={val_fraction}, test_fraction={test_fraction}"
    return _finish({"train": train, "val": val, "test": test}, why)


def speaker_independent(
    rows: Iterable[Utterance], val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> Split:
    """Whole speakers go to one part; parts aim at the fractions by utterance count.

    Speakers are shuffled, then taken in turn into test while each brings its count closer to
    ``test_fraction`` of all rows, then likewise into val; the rest is train. A part that no
    single speaker fits (every one alone overshoots twice the target) gets the smallest speaker.

    Args:
        rows: the corpus rows (unique ``utt_id``).
        val_fraction: target share of all utterances in val.
        test_fraction: target share of all utterances in test.
        seed: the random seed.
    """
    _check_fractions(val_fraction=val_fraction, test_fraction=test_fraction)
    groups = _speaker_groups(rows)
    total = sum(len(group) for group in groups.values())
    order = list(groups)
    random.Random(f"{seed}/speakers").shuffle(order)
    test, order = _take_speakers(order, groups, total * test_fraction)
    val, train = _take_speakers(order, groups, total * val_fraction)
    why = (
        f"speaker-independent split of {len(groups)} speakers, val_fraction={val_fraction}, "
        f"test_fraction={test_fraction}"
    )
    parts = {"train": train, "val": val, "test": test}
    return _finish({name: _flatten(groups, speakers) for name, speakers in parts.items()}, why)


def by_session(
    rows: Iterable[Utterance],
    test_session: str,
    val_session: str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Split:
    """Leave one session out (IEMOCAP): test is ``test_session``.

    Args:
        rows: the corpus rows, each with a ``session``.
        test_session: the held-out session, e.g. ``"Session5"``.
        val_session: a second held-out session for val; if None, val is a stratified
            ``val_fraction`` of the remaining sessions' rows.
        val_fraction: share of every class of the remaining rows that goes to val.
        seed: the random seed (used only without ``val_session``).
    """
    rows = _unique(rows)
    no_session = [row.utt_id for row in rows if row.session is None]
    if no_session:
        raise ValueError(
            f"by_session needs a session for every row; {len(no_session)} have none "
            f"(e.g. {no_session[:5]})"
        )
    sessions = sorted({row.session for row in rows})
    for name, value in (("test_session", test_session), ("val_session", val_session)):
        if value is not None and value not in sessions:
            raise ValueError(f"{name}={value!r} is not one of the sessions {sessions}")
    if val_session == test_session:
        raise ValueError(f"val_session and test_session are both {test_session!r}")
    test = [row for row in rows if row.session == test_session]
    rest = [row for row in rows if row.session != test_session]
    if val_session is not None:
        val = [row for row in rest if row.session == val_session]
        train = [row for row in rest if row.session != val_session]
        why = f"test_session={test_session!r}, val_session={val_session!r}, sessions {sessions}"
    else:
        _check_fractions(val_fraction=val_fraction)
        val, train = _cut_per_class(rest, [val_fraction], f"{seed}/val")
        why = f"test_session={test_session!r}, val_fraction={val_fraction}, sessions {sessions}"
    return _finish({"train": train, "val": val, "test": test}, why)


def kfold(
    rows: Iterable[Utterance],
    num_folds: int = 5,
    fold: int = 0,
    val_fraction: float = 0.1,
    seed: int = 0,
    by_speaker: bool = False,
) -> Split:
    """Test is fold ``fold`` of a seeded k-fold partition; val comes from the other folds.

    Without ``by_speaker`` every class is shuffled and dealt round-robin to the folds (stratified,
    fold sizes within one of each other). With it, whole speakers are dealt, largest first, to
    the fold with the fewest utterances, and val is made of whole speakers too, taken from the
    folds after the test fold in turn (so val rotates and each fold trains on other speakers).

    Args:
        rows: the corpus rows (unique ``utt_id``).
        num_folds: number of folds (>= 2).
        fold: which fold is the test part, ``0 <= fold < num_folds``.
        val_fraction: share of the remaining rows that goes to val.
        seed: the random seed; the same seed gives the same partition for every ``fold``.
        by_speaker: keep each speaker within one fold (and within one part).
    """
    _check_fold(num_folds, fold)
    _check_fractions(val_fraction=val_fraction)
    why = f"fold {fold} of {num_folds}, by_speaker={by_speaker}, val_fraction={val_fraction}"
    if by_speaker:
        groups = _speaker_groups(rows)
        folds = _speaker_folds(groups, num_folds, seed)
        # The other folds in turn from the one after the test fold, so val rotates with the fold
        # (in fold order one speaker was val, never trained on, in nearly every fold).
        after = [folds[(fold + step) % num_folds] for step in range(1, num_folds)]
        rest = [speaker for part in after for speaker in part]
        rest_count = sum(len(groups[speaker]) for speaker in rest)
        val, train = _take_speakers(rest, groups, rest_count * val_fraction)
        parts = {"train": train, "val": val, "test": folds[fold]}
        return _finish({name: _flatten(groups, part) for name, part in parts.items()}, why)
    folds = [[] for _ in range(num_folds)]
    dealt = 0  # continues across classes, so fold sizes differ by at most one
    for label, group in _groups(rows, lambda row: row.label).items():
        random.Random(f"{seed}/fold/{label}").shuffle(group)
        for row in group:
            folds[dealt % num_folds].append(row)
            dealt += 1
    rest = [row for i, part in enumerate(folds) if i != fold for row in part]
    val, train = _cut_per_class(rest, [val_fraction], f"{seed}/val")
    return _finish({"train": train, "val": val, "test": folds[fold]}, why)


def from_column(rows: Iterable[Utterance]) -> Split:
    """The official split given by a manifest's ``split`` column (``Utterance.split``).

    Args:
        rows: the corpus rows, each with ``split`` in train/val/test.
    """
    rows = _unique(rows)
    if rows and all(row.split is None for row in rows):
        raise ValueError(
            "the split comes from the manifest's split column (FromColumn), but the manifest has "
            f"none: give each row one of {list(PARTS)}, or choose a split, e.g. --data.split "
            "BySpeaker (speaker-independent), Stratified or SpeakerKFold"
        )
    bad = [f"{row.utt_id} ({row.split!r})" for row in rows if row.split not in PARTS]
    if bad:
        raise ValueError(
            f"{len(bad)} rows have no valid split, expected one of {list(PARTS)} in the manifest's "
            f"split column: {', '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}"
        )
    parts = {name: [row for row in rows if row.split == name] for name in PARTS}
    return _finish(parts, "as the manifest's split column gives it")


class SplitStrategy:
    """How a datamodule splits its usable rows: ``strategy(rows, seed) -> Split``."""

    # True where the protocol promises that no test speaker is heard in training; the protocol
    # card (``ser.evaluation.protocol``) then refuses a split that breaks the promise.
    speaker_independent: ClassVar[bool] = False

    def __call__(self, rows: list[Utterance], seed: int) -> Split:
        raise NotImplementedError

    def folds(self, rows: Sequence[Utterance]) -> dict[str, dict[str, Any]]:
        """The folds of this protocol on ``rows``: fold name -> the settings that make it.

        Cross-validation runs each (``--data.split.<setting> <value>``); a split that is not a
        protocol of folds has none.
        """
        return {}


@dataclass(frozen=True)
class Stratified(SplitStrategy):
    """Random split per class (the ShEMO paper's 80/10/10).

    Args:
        val_fraction: share of every class that goes to val.
        test_fraction: share of every class that goes to test.
    """

    val_fraction: float = 0.1
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        _check_fractions(val_fraction=self.val_fraction, test_fraction=self.test_fraction)

    def __call__(self, rows: list[Utterance], seed: int) -> Split:
        return stratified(rows, self.val_fraction, self.test_fraction, seed)


@dataclass(frozen=True)
class BySpeaker(SplitStrategy):
    """Speaker-independent split: whole speakers go to one part.

    Args:
        val_fraction: target share of all utterances in val.
        test_fraction: target share of all utterances in test.
    """

    speaker_independent: ClassVar[bool] = True
    val_fraction: float = 0.1
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        _check_fractions(val_fraction=self.val_fraction, test_fraction=self.test_fraction)

    def __call__(self, rows: list[Utterance], seed: int) -> Split:
        return speaker_independent(rows, self.val_fraction, self.test_fraction, seed)


@dataclass(frozen=True)
class KFold(SplitStrategy):
    """Test is one fold of a stratified k-fold partition; val comes from the other folds.

    Args:
        num_folds: number of folds (>= 2).
        fold: which fold is the test part, ``0 <= fold < num_folds``.
        val_fraction: share of the remaining rows that goes to val.
    """

    num_folds: int = 5
    fold: int = 0
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        _check_fold(self.num_folds, self.fold)
        _check_fractions(val_fraction=self.val_fraction)

    def __call__(self, rows: list[Utterance], seed: int) -> Split:
        return kfold(rows, self.num_folds, self.fold, self.val_fraction, seed)

    def folds(self, rows: Sequence[Utterance]) -> dict[str, dict[str, Any]]:
        """``fold_0`` ... ``fold_<num_folds - 1>``, whatever the rows."""
        return {f"fold_{i}": {"fold": i} for i in range(self.num_folds)}


@dataclass(frozen=True)
class SpeakerKFold(KFold):
    """Speaker k-fold: whole speakers in each fold, and val made of whole speakers too.

    Args:
        num_folds: number of folds (>= 2).
        fold: which fold is the test part, ``0 <= fold < num_folds``.
        val_fraction: target share of the remaining utterances in val.
    """

    speaker_independent: ClassVar[bool] = True

    def __call__(self, rows: list[Utterance], seed: int) -> Split:
        return kfold(rows, self.num_folds, self.fold, self.val_fraction, seed, by_speaker=True)

    def folds(self, rows: Sequence[Utterance]) -> dict[str, dict[str, Any]]:
        """``fold_0`` ... ``fold_<num_folds - 1>``; more folds than speakers is a ValueError
        (a fold without a test speaker would fail only after the others trained)."""
        speakers = len(_speaker_groups(rows))
        if self.num_folds > speakers:
            raise ValueError(
                f"SpeakerKFold: num_folds={self.num_folds} but the rows hold {speakers} speakers; "
                f"give at most {speakers} (--data.split.num_folds {speakers}: leave one speaker "
                "out)"
            )
        return super().folds(rows)


@dataclass(frozen=True)
class BySession(SplitStrategy):
    """Leave one session out (IEMOCAP).

    Args:
        test_session: the held-out session as the corpus names it, e.g. ``Session5``.
        val_session: a second held-out session for val; None takes ``val_fraction`` of the rest.
        val_fraction: share of every class of the remaining rows that goes to val.
    """

    speaker_independent: ClassVar[bool] = True  # a session's speakers speak in no other
    test_session: str = "Session5"
    val_session: str | None = None
    val_fraction: float = 0.1

    def __call__(self, rows: list[Utterance], seed: int) -> Split:
        return by_session(rows, self.test_session, self.val_session, self.val_fraction, seed)

    def folds(self, rows: Sequence[Utterance]) -> dict[str, dict[str, Any]]:
        """One fold per session of ``rows``, named as the corpus names it (``Session1``). With a
        ``val_session`` the validation session rotates with the fold: the session after the test
        one (after the last, the first), so every session is tested once and validates once."""
        sessions = sorted({row.session for row in rows if row.session is not None})
        if self.val_session is None:
            return {session: {"test_session": session} for session in sessions}
        if len(sessions) < 3:
            raise ValueError(
                f"BySession with val_session: {len(sessions)} session(s) {sessions}, and a fold "
                "needs a test, a validation and a training session; leave val_session unset"
            )
        return {
            session: {"test_session": session, "val_session": sessions[(i + 1) % len(sessions)]}
            for i, session in enumerate(sessions)
        }


@dataclass(frozen=True)
class AllTest(SplitStrategy):
    """Every row a test row, train and val empty: a trained model tested on another corpus
    (``python -m ser test --ckpt_path ...``). Fitting or validating on it is refused."""

    def __call__(self, rows: list[Utterance], seed: int) -> Split:
        return {"train": [], "val": [], "test": _unique(rows)}


@dataclass(frozen=True)
class FromColumn(SplitStrategy):
    """The official split given by a manifest's ``split`` column, used as is."""

    def __call__(self, rows: list[Utterance], seed: int) -> Split:
        return from_column(rows)


def _check_fold(num_folds: int, fold: int) -> None:
    if num_folds < 2:
        raise ValueError(f"num_folds must be at least 2, got {num_folds}")
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in 0..{num_folds - 1}, got {fold}")


def _check_fractions(**fractions: float) -> None:
    for name, value in fractions.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if sum(fractions.values()) >= 1.0:
        raise ValueError(f"fractions {fractions} leave nothing for train; their sum must be < 1")


def _unique(rows: Iterable[Utterance]) -> list[Utterance]:
    """Rows in ``utt_id`` order (the order the seeds apply to); duplicate ids fail."""
    rows = by_utt_id(rows, "the rows to split")
    if not rows:
        raise ValueError("no rows to split")
    return rows


def _groups(
    rows: Iterable[Utterance], key: Callable[[Utterance], str]
) -> dict[str, list[Utterance]]:
    """``{key: rows}`` with keys sorted and rows in ``utt_id`` order."""
    groups: dict[str, list[Utterance]] = {}
    for row in _unique(rows):
        groups.setdefault(key(row), []).append(row)
    return dict(sorted(groups.items()))


def _round(x: float) -> int:
    # Half up, not Python's banker's rounding: 0.5 utterance -> 1, the same for every class.
    return math.floor(x + 0.5)


def _cut_per_class(
    rows: Iterable[Utterance], fractions: list[float], salt: str
) -> list[list[Utterance]]:
    """Shuffle each class and cut ``round(n * f)`` rows per fraction; the remainder comes last."""
    parts: list[list[Utterance]] = [[] for _ in range(len(fractions) + 1)]
    for label, group in _groups(rows, lambda row: row.label).items():
        random.Random(f"{salt}/{label}").shuffle(group)
        start = 0
        for part, fraction in zip(parts, fractions, strict=False):
            stop = start + _round(len(group) * fraction)
            part.extend(group[start:stop])
            start = stop
        parts[-1].extend(group[start:])
    return parts


def _take_speakers(
    order: list[str], groups: dict[str, list[Utterance]], target: float
) -> tuple[list[str], list[str]]:
    """Speakers taken (in ``order``) while each brings the count closer to ``target``; the rest."""
    taken: list[str] = []
    rest: list[str] = []
    count = 0
    for speaker in order:
        size = len(groups[speaker])
        if abs(count + size - target) < abs(count - target):
            taken.append(speaker)
            count += size
        else:
            rest.append(speaker)
    if not taken and target > 0 and rest:
        smallest = min(rest, key=lambda speaker: len(groups[speaker]))
        taken.append(smallest)
        rest.remove(smallest)
    return taken, rest


def _speaker_folds(
    groups: dict[str, list[Utterance]], num_folds: int, seed: int
) -> list[list[str]]:
    """Speakers dealt largest first (ties in seeded order) to the fold with fewest utterances."""
    order = list(groups)
    random.Random(f"{seed}/fold/speakers").shuffle(order)
    order.sort(key=lambda speaker: -len(groups[speaker]))  # stable: ties keep the shuffle
    folds: list[list[str]] = [[] for _ in range(num_folds)]
    sizes = [0] * num_folds
    for speaker in order:
        lightest = sizes.index(min(sizes))
        folds[lightest].append(speaker)
        sizes[lightest] += len(groups[speaker])
    return folds


def _flatten(groups: dict[str, list[Utterance]], speakers: list[str]) -> list[Utterance]:
    return [row for speaker in speakers for row in groups[speaker]]


def _speaker_groups(rows: Iterable[Utterance]) -> dict[str, list[Utterance]]:
    """Rows by speaker, without those whose speaker is unknown (``UNKNOWN_SPEAKERS``: a manifest
    row without one, MSP-Podcast's ``Unknown``): such a row may be any speaker, a test speaker
    included, so no part of a speaker-independent split may hold it (left out, with a warning)."""
    groups = _groups(rows, lambda row: row.speaker)
    unknown = [row for name in UNKNOWN_SPEAKERS for row in groups.pop(name, [])]
    if unknown and not groups:
        raise ValueError(
            f"no row has a known speaker ({len(unknown)} rows): a speaker-independent split needs "
            "each row's speaker (a manifest's speaker column); or split otherwise (Stratified, "
            "KFold, the official split)"
        )
    if unknown:
        log.warning(
            "%d rows with an unknown speaker left out of the speaker-independent split (e.g. "
            "%s): they may be any speaker, a test speaker included",
            len(unknown),
            ", ".join(row.utt_id for row in unknown[:3]),
        )
    return groups


def _finish(parts: Split, why: str) -> Split:
    """The parts sorted by ``utt_id``; ``why`` describes the split (logged, and named when a part
    is empty)."""
    for name in PARTS:
        if not parts[name]:
            raise ValueError(f"the {name} part would be empty ({why})")
    log.info("split (%s): %s", why, {name: len(parts[name]) for name in PARTS})
    return {name: sorted(parts[name], key=lambda row: row.utt_id) for name in PARTS}
