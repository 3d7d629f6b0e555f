"""MSP-Podcast (English podcasts; licence-gated, users bring their copy): both tasks in one table.

Audio: ``root/Audios/<FileName>`` (16 kHz). Labels: ``root/Labels/labels_consensus.csv`` with
columns ``FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set``: the consensus
class (a letter, ``X`` no agreement, ``O`` other), the mean arousal (activation), valence and
dominance ratings (1-7), the speaker and the official partition. Each row carries the ratings as
``dimensions`` (``arousal``, ``valence``, ``dominance``) and the partition as its ``split``
(Train -> train, Development -> val, the chosen test set -> test; the other test sets are left
out). Rows with class ``X`` keep the label ``no_agreement``, which no default class uses, so a
categorical run leaves them out. A speaker ``Unknown`` (segments not yet attributed) is
``UNKNOWN_SPEAKER``, which speaker-independent splits leave out. Releases 1.6-1.9 name the table
``labels_concensus.csv`` in ``label/`` or ``labels/``, and the development set ``Validation``:
read as well. Test3's labels are not public.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path

from ser.data.corpora import absolute, count_unreadable, read_header, read_table
from ser.data.utterance import Utterance, by_utt_id
from ser.evaluation.protocol import UNKNOWN_SPEAKER, speaker_or_unknown

log = logging.getLogger(__name__)

LABELS = Path("Labels") / "labels_consensus.csv"
# Where releases before 1.10 keep the table (its name misspelt; 1.6: label/, 1.9: labels/).
OLD_LABELS = [Path(folder) / "labels_concensus.csv" for folder in ("Labels", "labels", "label")]
AUDIO = "Audios"
COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Split_Set")
# EmoClass letters in the common vocabulary (ser.labels) where there is a word for them.
CODES = {
    "A": "anger",
    "S": "sadness",
    "H": "happiness",
    "U": "surprise",
    "F": "fear",
    "D": "disgust",
    "C": "contempt",
    "N": "neutral",
    "O": "other",
    "X": "no_agreement",
}
RATINGS = {"arousal": "EmoAct", "valence": "EmoVal", "dominance": "EmoDom"}
SPLITS = {"Train": "train", "Development": "val", "Validation": "val"}  # Validation: < 1.10


def scan(root: str | Path, test_set: str = "Test1") -> list[Utterance]:
    """Rows of every labelled file of ``root``'s official train, development and ``test_set``.

    Args:
        root: the folder holding ``Audios/`` and ``Labels/labels_consensus.csv``.
        test_set: the ``Split_Set`` value that becomes the test part (Test1, Test2).

    Raises:
        FileNotFoundError: the label table or the audio folder is missing.
        ValueError: a missing column, a row of too few or too many fields, an empty or repeated
            FileName, an unknown class letter or a rating that is not a number (the message
            names the file and line); a ``test_set`` that is the train or development
            partition, or that no labelled row has.
    """
    root = Path(root)
    table = next((root / p for p in (LABELS, *OLD_LABELS) if (root / p).is_file()), None)
    if table is None:
        raise FileNotFoundError(
            f"MSP-Podcast: {root / LABELS} not found; expected root/{LABELS.as_posix()} (before "
            f"release 1.10: {', '.join(p.as_posix() for p in OLD_LABELS)}) and "
            f"root/{AUDIO}/<FileName>"
        )
    if not (root / AUDIO).is_dir():
        raise FileNotFoundError(
            f"MSP-Podcast: {root / AUDIO} is no folder; expected the audio files in "
            f"root/{AUDIO}/<FileName>, as the release has them"
        )
    if test_set in SPLITS:
        raise ValueError(
            f"MSP-Podcast test_set {test_set!r} is the official {SPLITS[test_set]} partition; "
            "expected a test set (Test1, Test2)"
        )
    splits = {**SPLITS, test_set: "test"}
    rows, left_out = [], Counter()
    for where, record in read_table(table, COLUMNS):
        split = splits.get(record["Split_Set"].strip())
        if split is None:
            left_out[record["Split_Set"]] += 1
            continue
        rows.append(_row(record, root, split, where))
    rows = by_utt_id(rows, str(table))
    if not any(row.split == "test" for row in rows):
        raise ValueError(
            f"MSP-Podcast test_set {test_set!r}: no row of {table} has that Split_Set (its test "
            f"sets: {', '.join(sorted(s for s in left_out if s.startswith('Test')))}; Test3's "
            "labels are hidden by the corpus)"
        )
    log.info("MSP-Podcast %s: %d files; left out by Split_Set: %s", root, len(rows),
             dict(left_out))  # fmt: skip
    count_unreadable(rows, f"MSP-Podcast {root}")
    return rows


def _row(record: dict[str, str], root: Path, split: str, where: str) -> Utterance:
    code = record["EmoClass"].strip()
    if code not in CODES:
        raise ValueError(f"{where}: EmoClass {code!r}; expected one of {sorted(CODES)}")
    ratings = {}
    for name, column in RATINGS.items():
        try:
            ratings[name] = float(record[column])
        except ValueError:
            ratings[name] = math.nan
        if not math.isfinite(ratings[name]):  # nan, inf: a loss of NaN from the first batch
            raise ValueError(f"{where}: {column} is {record[column]!r}; expected a number")
    name = record["FileName"].strip()
    if not name:
        raise ValueError(f"{where}: empty FileName")
    path = root / AUDIO / name
    duration, sample_rate = read_header(path)
    speaker = speaker_or_unknown(record["SpkrID"])
    return Utterance(
        utt_id=path.stem,
        path=absolute(path),
        speaker=speaker if speaker == UNKNOWN_SPEAKER else f"msp{speaker}",
        label=CODES[code],
        duration=duration,
        sample_rate=sample_rate,
        split=split,
        dimensions=ratings,
    )
