"""The protocol card of a result: what was split how, a hash of the exact split, speaker overlap.

It is read from what the run directory already holds: ``splits/{train,val,test}.csv`` (the exact
split) and ``splits/split.json`` (reader, classes, split kind and settings, written by the
datamodule). A split whose kind promises speaker independence and still shares a speaker between
test and training is refused with the speakers' names; any other split states its overlap plainly,
so "speaker-dependent" numbers are never read as speaker-independent ones.

A split is held out from the model trained on it, not from a model trained on another split: a
checkpoint tested on another fold, or fine-tuned (``init_from``) from a checkpoint that trained on
this split's test part. So every checkpoint lists what its model heard (``HEARD``: per split it
learned from, the train and val utterances and speakers) and a test compares its part with it
(``heard_in_part``, ``check_held_out``); ``validate`` compares its val part with what the model
trained on, and warns (``warn_if_validated_on_heard``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

PARTS: tuple[str, ...] = ("train", "val", "test")
CARD_FILE = "protocol.json"
# The speaker of a row whose speaker is not known (a manifest without a speaker column,
# MSP-Podcast's "Unknown"); these names count in no overlap, and speaker splits leave them out.
UNKNOWN_SPEAKER = "unknown"
UNKNOWN_SPEAKERS = frozenset({"", UNKNOWN_SPEAKER})
# What a speaker column writes for "not known", in any case: read as UNKNOWN_SPEAKER.
UNKNOWN_SPEAKER_WORDS = frozenset({"", "unknown", "unk", "n/a", "none", "null", "?"})
PAIRS: tuple[tuple[str, str], ...] = (("train", "test"), ("val", "test"), ("train", "val"))
# The checkpoint key listing what its model heard: one entry per split it learned from (a
# curriculum's stages, the checkpoints ``init_from`` started from), each the reader and, for its
# train and val parts, the utterances (``utterance_key``s, 8 bytes each) and speakers.
HEARD = "heard"
HEARD_PARTS: tuple[str, ...] = ("train", "val")


def speaker_or_unknown(value: str | None) -> str:
    """A speaker column's ``value``, stripped; ``UNKNOWN_SPEAKER`` for none or a word meaning
    "not known" (``UNKNOWN_SPEAKER_WORDS``: MSP-Podcast's ``Unknown``, ``N/A``), which would
    otherwise be one speaker holding every such row."""
    value = (value or "").strip()
    return UNKNOWN_SPEAKER if value.casefold() in UNKNOWN_SPEAKER_WORDS else value


class Row(Protocol):
    """An utterance as ``Utterance`` holds it (``utt_id``, ``duration``, ``speaker``)."""

    utt_id: str
    duration: float
    speaker: str


def utterance_key(utt_id: str, duration: float) -> int:
    """An 8-byte hash of an utterance's id and duration: the same recording on every machine,
    whatever its path; ids alone could repeat across corpora a reader holds (manifests)."""
    text = f"{utt_id}\0{float(duration):.3f}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little", signed=True)


def heard_entry(reader: str, parts: Mapping[str, Iterable[Row]]) -> dict[str, Any]:
    """The ``HEARD`` entry of a split a model learns from: ``reader`` (the datamodule's class),
    and per part of ``parts`` (train, val) its utterance keys, sorted, as bytes, and speakers."""
    entry: dict[str, Any] = {"reader": reader}
    for part, rows in parts.items():
        rows = list(rows)
        keys = sorted({utterance_key(row.utt_id, row.duration) for row in rows})
        entry[part] = {
            "utterances": np.array(keys, dtype="<i8").tobytes(),
            "speakers": sorted({row.speaker for row in rows} - UNKNOWN_SPEAKERS),
        }
    return entry


def merge_heard(*lists: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries of ``lists`` in order, each once (a resumed fit meets its own again)."""
    merged: list[dict[str, Any]] = []
    for entry in (entry for entries in lists for entry in entries):
        if entry not in merged:
            merged.append(entry)
    return merged


def heard_in_part(
    heard: Sequence[dict[str, Any]],
    reader: str,
    rows: Sequence[Row],
    learned_from: Sequence[str] = HEARD_PARTS,
) -> dict[str, Any]:
    """Of ``rows`` (a test or val part), how many utterances the model of ``heard`` learned from
    (in the ``learned_from`` parts of its entries: train and val, or train alone), and which of
    their speakers it heard there (from entries of the same ``reader`` only: speaker names are a
    corpus's own)."""
    keys: set[int] = set()
    speakers: set[str] = set()
    for entry in heard:
        for part in learned_from:
            if part in entry:
                keys.update(np.frombuffer(entry[part]["utterances"], dtype="<i8").tolist())
                if entry["reader"] == reader:
                    speakers.update(entry[part]["speakers"])
    heard_rows = [row for row in rows if utterance_key(row.utt_id, row.duration) in keys]
    return {
        "utterances": len(heard_rows),
        "of": len(rows),
        "speakers": sorted(speakers & {row.speaker for row in rows}),
        "examples": sorted(row.utt_id for row in heard_rows)[:5],
    }


def _heard_in_words(found: dict[str, Any], speaker_independent: bool, part: str) -> str | None:
    """What of a ``part`` (test, validation) ``found`` (``heard_in_part``) says its model heard,
    in words, where that part is not held out from it: utterances, or, with a
    ``speaker_independent`` split, speakers; None where it is."""
    utterances, speakers = found["utterances"], found["speakers"]
    if not (utterances or (speaker_independent and speakers)):
        return None
    what = f"{utterances} of the {found['of']} {part} utterances"
    if utterances:
        what += f" (e.g. {', '.join(found['examples'])})"
    if speakers:
        what += f" and {len(speakers)} of their speakers ({', '.join(speakers[:10])}"
        what += " ...)" if len(speakers) > 10 else ")"
    return what


def check_held_out(
    found: dict[str, Any], split: str, speaker_independent: bool, whose: str
) -> None:
    """Raise ValueError where a test of the model whose ``HEARD`` gave ``found``
    (``heard_in_part`` of the test part) would not be held out: it trained or validated on test
    utterances, or, with a ``speaker_independent`` split, heard test speakers. ``AllTest`` scores
    a model on what it is given, so it only warns. ``whose``: the checkpoint option, for the
    message."""
    what = _heard_in_words(found, speaker_independent, "test")
    if what is None:
        return
    if split == "AllTest":
        log.warning(
            "%s trained or validated on %s: these scores are not of held-out data", whose, what
        )
        return
    raise ValueError(
        f"{whose} trained or validated on {what} of this {split} split: its test would not be "
        "held out. Test a checkpoint on the split it was trained with (its run's config.yaml, "
        "e.g. the same fold), start init_from from a model of another corpus, or use "
        "--data.split AllTest to score it on this data knowingly"
    )


def warn_if_validated_on_heard(
    found: dict[str, Any], split: str, speaker_independent: bool, whose: str
) -> None:
    """Warn where ``validate`` scores the model whose ``HEARD`` gave ``found`` (``heard_in_part``
    of the val part, from its train parts) on utterances, or, with a ``speaker_independent``
    split, speakers it trained on. A warning, not a refusal: validation after training selects
    nothing and writes no result file, and measuring a model on data it trained on knowingly
    stays possible (``AllTest`` has no val part to do it with)."""
    what = _heard_in_words(found, speaker_independent, "validation")
    if what is not None:
        log.warning(
            "%s trained on %s of this %s split: these validation scores are not of held-out "
            "data; validate a checkpoint on the split it was trained with (its run's "
            "config.yaml, e.g. the same fold)",
            whose,
            what,
            split,
        )


def read_split_rows(splits_dir: Path) -> dict[str, list[dict[str, str]]]:
    """``{part: rows}`` of ``splits_dir/<part>.csv`` (utt_id, speaker, label ...), by utt_id."""
    parts = {}
    for part in PARTS:
        with (splits_dir / f"{part}.csv").open(newline="", encoding="utf-8") as f:
            parts[part] = sorted(csv.DictReader(f), key=lambda row: row["utt_id"])
    return parts


def split_hash(parts: dict[str, list[dict[str, str]]]) -> str:
    """A short sha256 of the sorted utt ids of every part: equal hashes, equal splits."""
    ids = {part: ",".join(sorted(row["utt_id"] for row in parts[part])) for part in PARTS}
    text = "\n".join(f"{part}:{ids[part]}" for part in PARTS)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _speakers(rows: list[dict[str, str]]) -> set[str]:
    return {row["speaker"] for row in rows} - UNKNOWN_SPEAKERS


def _counts(rows: list[dict[str, str]]) -> dict[str, Any]:
    """Utterances and speakers of a part, in all and per class."""
    per_class: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        per_class[row["label"]].append(row)
    classes = {
        label: {"utterances": len(group), "speakers": len(_speakers(group))}
        for label, group in sorted(per_class.items())
    }
    return {"utterances": len(rows), "speakers": len(_speakers(rows)), "per_class": classes}


def card(splits_dir: Path) -> dict[str, Any]:
    """The protocol card of the split in ``splits_dir``; a speaker leak it promised away raises.

    Args:
        splits_dir: a run's ``splits`` folder (or a curriculum stage's ``splits/<stage>``).

    Raises:
        ValueError: the split kind is speaker-independent but a test speaker is in train or val.
    """
    parts = read_split_rows(splits_dir)
    made = splits_dir / "split.json"
    info = json.loads(made.read_text(encoding="utf-8")) if made.is_file() else {}
    speakers = {part: _speakers(parts[part]) for part in PARTS}
    overlap = {}
    for a, b in PAIRS:
        shared = sorted(speakers[a] & speakers[b])
        overlap[f"{a}-{b}"] = {"count": len(shared), "speakers": shared}
    result = {
        **info,
        "split_hash": split_hash(parts),
        "parts": {part: _counts(parts[part]) for part in PARTS},
        "speakers": len(set().union(*speakers.values())),
        "speaker_overlap": overlap,
    }
    _check_promise(result, splits_dir)
    result["summary"] = summary_line(result)
    return result


def _check_promise(result: dict[str, Any], splits_dir: Path) -> None:
    split = result.get("split", {})
    if not split.get("speaker_independent"):
        return
    for pair in ("train-test", "val-test"):
        shared = result["speaker_overlap"][pair]["speakers"]
        if shared:
            a, b = pair.split("-")
            raise ValueError(
                f"protocol: the {split['kind']} split promises speaker independence, but "
                f"{len(shared)} speakers are in both {a} and {b}: {', '.join(shared[:20])}"
                f"{' ...' if len(shared) > 20 else ''} ({splits_dir}); check the speaker ids of "
                "the corpus (a manifest's speaker column)"
            )


def overlap_words(result: dict[str, Any]) -> str:
    """``speaker-dependent: 83 of 87 speakers in train and test`` (or speaker-independent: 0)."""
    if result["speakers"] == 0:
        return "speakers unknown: speaker overlap not checked"
    shared = result["speaker_overlap"]["train-test"]["count"]
    kind = "speaker-dependent" if shared else "speaker-independent"
    return f"{kind}: {shared} of {result['speakers']} speakers in train and test"


def summary_line(result: dict[str, Any]) -> str:
    """One line: reader, classes, split kind and settings, hash, sizes, speaker overlap."""
    split = result.get("split", {})
    settings = ", ".join(f"{k}={v}" for k, v in split.get("settings", {}).items())
    kind = f"{split.get('kind', 'unknown split')}({settings}) seed {split.get('seed', '?')}"
    sizes = ", ".join(
        f"{part} {result['parts'][part]['utterances']} utt/{result['parts'][part]['speakers']} spk"
        for part in PARTS
    )
    classes = len(result.get("classes") or result["parts"]["train"]["per_class"])
    return (
        f"protocol: {result.get('reader', 'unknown reader')}, {classes} classes, {kind}, "
        f"split {result['split_hash']}; {sizes}; {overlap_words(result)}"
    )


def splits_dir_of(run_dir: Path, test_ids: set[str]) -> Path | None:
    """``run_dir``'s split folder whose test part is ``test_ids`` (curricula have several)."""
    for candidate in [run_dir / "splits", *sorted((run_dir / "splits").glob("*/"))]:
        path = candidate / "test.csv"
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as f:
                if {row["utt_id"] for row in csv.DictReader(f)} == test_ids:
                    return candidate
    return None


def write_card(
    run_dir: Path, test_ids: set[str], tested: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Write ``run_dir/protocol.json`` for the test of ``test_ids`` and log its line.

    Args:
        run_dir: the run directory.
        test_ids: the utt ids the test scored.
        tested: which model the test scored (``checkpoint``, ``epoch``, ``global_step``): the
            card's ``tested`` entry, logged beside its line.
    """
    splits_dir = splits_dir_of(run_dir, test_ids)
    if splits_dir is None:
        log.warning("no split in %s/splits has these test utterances: no protocol card", run_dir)
        return None
    result = {**card(splits_dir), "splits_dir": str(splits_dir.relative_to(run_dir))}
    if tested is not None:
        result["tested"] = tested
    tmp = run_dir / f"{CARD_FILE}.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(run_dir / CARD_FILE)
    log.info("%s", result["summary"])
    if tested is not None:
        log.info(
            "tested: %s (epoch %s, step %s); %s",
            tested["checkpoint"] or "the model as the fit left it",
            tested.get("epoch", "?"),
            tested.get("global_step", "?"),
            heard_words(tested.get("heard_in_training")),
        )
    return result


def heard_words(found: dict[str, Any] | None) -> str:
    """``held out: it trained on none of the 72 test utterances`` or what it heard."""
    if found is None:
        return "what it trained on is not recorded (a checkpoint from before 2026-12-08)"
    speakers = f"; it heard {len(found['speakers'])} of their speakers" if found["speakers"] else ""
    if not found["utterances"]:
        return f"held out: it trained on none of the {found['of']} test utterances{speakers}"
    return (
        f"NOT held out: it trained or validated on {found['utterances']} of the {found['of']} "
        f"test utterances{speakers}"
    )


def read_card(run_dir: Path) -> dict[str, Any] | None:
    """The ``protocol.json`` of a run directory, or None where it has none."""
    path = run_dir / CARD_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def protocol_kind(result: dict[str, Any]) -> str:
    """What folds of one protocol share: reader, classes, split kind, speaker (in)dependence."""
    split = result.get("split", {})
    dependence = overlap_words(result).split(":")[0]
    classes = ",".join(result.get("classes") or [])
    return f"{result.get('reader')} [{classes}] {split.get('kind')} {dependence}"


def folds_card(cards: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The card of a cross-validation: each fold's split hash and overlap under one kind.

    Args:
        cards: fold name -> its run's protocol card (None: the fold's run wrote none).

    Raises:
        ValueError: the folds' protocols differ in kind (they must not be averaged).
    """
    kinds = {name: protocol_kind(c) for name, c in cards.items() if c is not None}
    if len(set(kinds.values())) > 1:
        listed = "; ".join(f"{name}: {kind}" for name, kind in kinds.items())
        raise ValueError(f"cv: the folds' protocols differ, so they are not averaged: {listed}")
    folds = {
        name: {"split_hash": c["split_hash"], "summary": c["summary"]} if c else None
        for name, c in cards.items()
    }
    kind = next(iter(kinds.values()), "no protocol cards")
    missing = [name for name, c in cards.items() if c is None]
    hashes = ", ".join(f"{name} {c['split_hash']}" for name, c in cards.items() if c)
    splits = len({c["split_hash"] for c in cards.values() if c})
    runs = f"{len(kinds)} folds"
    if splits < len(kinds):  # folds x seeds: each fold's seeds share its split
        runs = f"{len(kinds)} runs of {splits} splits"
    line = f"protocol of {runs}: {kind}" + (f"; splits {hashes}" if hashes else "")
    if missing:
        line += f"; no protocol card: {', '.join(missing)}"
    return {"kind": kind, "folds": folds, "summary": line}
