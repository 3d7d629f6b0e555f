"""One common emotion vocabulary, the code maps of every corpus, and open label sets.

The common vocabulary (``EMOTIONS``) is the lingua franca: every corpus' codes map into the same
words, so a classifier head trained on one corpus carries on to the next by class name (IEMOCAP ->
ShEMO). A run's classes may still be any label word: labels are lower-cased and normalised through
``ALIASES`` (``Angry`` -> ``anger``, ``hap`` -> ``happiness``), and other words (``calm``,
``boredom``, ``contempt``) are classes of their own. Class ``i`` of a run is
``LabelSet.classes[i]``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EMOTIONS: tuple[str, ...] = (
    "anger",
    "fear",
    "happiness",
    "neutral",
    "sadness",
    "surprise",
    "disgust",
    "excitement",
    "frustration",
    "other",
)

# Other spellings of the common words, as corpora and label maps write them (after lower-casing).
ALIASES: dict[str, str] = {
    "angry": "anger",
    "ang": "anger",
    "fearful": "fear",
    "fea": "fear",
    "afraid": "fear",
    "happy": "happiness",
    "hap": "happiness",
    "neu": "neutral",
    "sad": "sadness",
    "surprised": "surprise",
    "sur": "surprise",
    "disgusted": "disgust",
    "dis": "disgust",
    "excited": "excitement",
    "exc": "excitement",
    "frustrated": "frustration",
    "fru": "frustration",
    "oth": "other",
}

# ShEMO: the 4th character of the file name, e.g. F01A01.wav -> A.
SHEMO_CODES: dict[str, str] = {
    "A": "anger",
    "F": "fear",
    "H": "happiness",
    "N": "neutral",
    "S": "sadness",
    "W": "surprise",
}

# IEMOCAP EmoEvaluation codes. "xxx" means the annotators did not agree: no label.
IEMOCAP_CODES: dict[str, str | None] = {
    "neu": "neutral",
    "ang": "anger",
    "hap": "happiness",
    "exc": "excitement",
    "sad": "sadness",
    "fru": "frustration",
    "fea": "fear",
    "sur": "surprise",
    "dis": "disgust",
    "oth": "other",
    "xxx": None,
}

# MSP-Podcast's 8 consensus classes of the Odyssey 2024 challenge (EmoClass A S H U F D C N).
MSP_PODCAST_CLASSES: tuple[str, ...] = (
    "anger",
    "sadness",
    "happiness",
    "surprise",
    "fear",
    "disgust",
    "contempt",
    "neutral",
)
# RAVDESS: the 3rd field of 03-01-05-01-02-01-12.wav.
RAVDESS_CODES: dict[str, str] = {
    "01": "neutral",
    "02": "calm",
    "03": "happiness",
    "04": "sadness",
    "05": "anger",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
# CREMA-D: the 3rd field of 1001_DFA_ANG_XX.wav.
CREMAD_CODES: dict[str, str] = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happiness",
    "NEU": "neutral",
    "SAD": "sadness",
}
# EmoDB (German initials): the 6th character of 03a01Fa.wav.
EMODB_CODES: dict[str, str] = {
    "W": "anger",  # Wut
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fear",  # Angst
    "F": "happiness",  # Freude
    "T": "sadness",  # Trauer
    "N": "neutral",
}


def normalise(label: str) -> str:
    """The class word of a label: lower case, spaces squeezed, aliases resolved (Angry -> anger)."""
    word = " ".join(str(label).split()).lower()
    return ALIASES.get(word, word)


def ordered(words: Iterable[str]) -> tuple[str, ...]:
    """Class words in a stable order: the common vocabulary's order first, then alphabetical."""
    rank = {word: i for i, word in enumerate(EMOTIONS)}
    return tuple(sorted(set(words), key=lambda word: (rank.get(word, len(rank)), word)))


SHEMO_CLASSES: tuple[str, ...] = ("anger", "fear", "happiness", "neutral", "sadness", "surprise")
RAVDESS_CLASSES: tuple[str, ...] = ordered(RAVDESS_CODES.values())  # the 8, calm last
CREMAD_CLASSES: tuple[str, ...] = ordered(CREMAD_CODES.values())
EMODB_CLASSES: tuple[str, ...] = ordered(EMODB_CODES.values())  # the 7, boredom last
# The standard IEMOCAP 4-class protocol: exc merged into hap, the rest dropped.
IEMOCAP_4_CLASSES: tuple[str, ...] = ("anger", "happiness", "neutral", "sadness")
IEMOCAP_4_MERGE: dict[str, str] = {"excitement": "happiness"}


def read_label_map(label_map: Mapping[str, str] | str | None) -> dict[str, str]:
    """``{raw label: class word}`` from a dict, a JSON file (EmoBox's label_map.json) or None."""
    if label_map is None:
        return {}
    if isinstance(label_map, Mapping):
        return {str(raw): str(word) for raw, word in label_map.items()}
    return read_json_object(
        label_map, "label_map", str, '{"ANG": "anger", "W": "Angry"} (raw label -> class)'
    )


def read_json_object(path: str | Path, what: str, value_type: type, example: str) -> dict[str, Any]:
    """The JSON object in ``path`` whose every value is a ``value_type``.

    Args:
        path: the JSON file.
        what: what the file is, for error messages (``label_map``, ``shemo.json``).
        value_type: the type every value of the object must have.
        example: the shape expected, shown when the file has another.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file is not JSON, or not an object of ``value_type`` values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: no such file (expected a JSON object {example})")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # -sig: Windows editors' BOM
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or not all(isinstance(v, value_type) for v in data.values()):
        raise ValueError(f"{what} {path}: expected a JSON object {example}, got {str(data)[:80]}")
    return data


@dataclass(frozen=True)
class LabelSet:
    """The classes of a run and how a corpus' raw labels become them.

    A raw label goes through ``label_map`` (if listed there), is normalised (``normalise``) and
    goes through ``merge``; a result outside ``classes`` is not used.

    Args:
        classes: class words, in class-index order (any words; normalised, so ``Angry`` is
            ``anger``).
        merge: label -> class it counts as (e.g. ``{"excitement": "happiness"}``).
        label_map: raw label -> label, applied first (a corpus' own codes: ``{"W": "anger"}``).
    """

    classes: tuple[str, ...]
    merge: Mapping[str, str] = field(default_factory=dict)
    label_map: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        classes = tuple(normalise(name) for name in self.classes)
        object.__setattr__(self, "classes", classes)
        merge = {normalise(k): normalise(v) for k, v in self.merge.items()}
        object.__setattr__(self, "merge", merge)
        if len(classes) < 2:
            raise ValueError(f"a classifier needs at least two classes, got {list(classes)}")
        if len(set(classes)) != len(classes):
            raise ValueError(f"duplicate classes in {list(classes)} (after normalising labels)")
        for source, target in merge.items():
            if target not in classes:
                raise ValueError(f"merge target {target!r} is not one of the classes {classes}")
            if source in classes:
                raise ValueError(f"merge source {source!r} is itself one of the classes {classes}")

    @classmethod
    def of_labels(
        cls,
        labels: Iterable[str],
        merge: Mapping[str, str] | None = None,
        label_map: Mapping[str, str] | None = None,
    ) -> LabelSet:
        """Every class the raw ``labels`` become, in ``ordered`` order (a manifest's default)."""
        merge = {normalise(k): normalise(v) for k, v in (merge or {}).items()}
        words = {_class_word(label, label_map or {}, merge) for label in labels}
        return cls(ordered(words), merge, label_map or {})

    def word(self, label: str) -> str:
        """The class word ``label`` stands for, whether or not the run uses it."""
        return _class_word(label, self.label_map, self.merge)

    def map(self, label: str) -> str | None:
        """The class ``label`` counts as, or None when the run does not use it."""
        word = self.word(label)
        return word if word in self.classes else None

    def index(self, class_name: str) -> int:
        return self.classes.index(class_name)

    def map_votes(self, votes: Mapping[str, float]) -> dict[str, float]:
        """Rater ``votes`` by the class they count as (merged words add up); votes for labels
        the run does not use are dropped."""
        classes: dict[str, float] = {}
        for label, weight in votes.items():
            name = self.map(label)
            if name is not None:
                classes[name] = classes.get(name, 0.0) + weight
        return classes

    def count(self, labels: Iterable[str]) -> dict[str, int]:
        """Utterances per class, in class order (zeros included)."""
        counts = Counter(labels)
        return {name: counts.get(name, 0) for name in self.classes}


def _class_word(label: str, label_map: Mapping[str, str], merge: Mapping[str, str]) -> str:
    word = normalise(label_map.get(label, label))
    return merge.get(word, word)
