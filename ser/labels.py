"""One canonical emotion vocabulary and the code maps of every corpus.

Every corpus' codes map into the same words, so a classifier head trained on one corpus can carry
on to the next (IEMOCAP -> ShEMO): class ``i`` of a run is ``LabelSet.classes[i]``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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

SHEMO_CLASSES: tuple[str, ...] = ("anger", "fear", "happiness", "neutral", "sadness", "surprise")
# The standard IEMOCAP 4-class protocol: exc merged into hap, the rest dropped.
IEMOCAP_4_CLASSES: tuple[str, ...] = ("anger", "happiness", "neutral", "sadness")
IEMOCAP_4_MERGE: dict[str, str] = {"excitement": "happiness"}


def check_emotion(word: str, where: str) -> str:
    """Return ``word`` if it is in the canonical vocabulary, else raise naming ``where``."""
    if word not in EMOTIONS:
        raise ValueError(f"{where}: unknown emotion {word!r}; expected one of {list(EMOTIONS)}")
    return word


@dataclass(frozen=True)
class LabelSet:
    """The classes of a run and how corpus emotions are merged into them.

    Args:
        classes: canonical emotion names, in class-index order.
        merge: emotion -> class it counts as (e.g. ``{"excitement": "happiness"}``).
    """

    classes: tuple[str, ...]
    merge: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        if len(self.classes) < 2:
            raise ValueError(f"a classifier needs at least two classes, got {list(self.classes)}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"duplicate classes in {list(self.classes)}")
        for name in self.classes:
            check_emotion(name, "classes")
        for source, target in self.merge.items():
            check_emotion(source, "merge")
            if target not in self.classes:
                raise ValueError(
                    f"merge target {target!r} is not one of the classes {self.classes}"
                )

    def map(self, emotion: str) -> str | None:
        """The class ``emotion`` counts as, or None when the run does not use it."""
        emotion = self.merge.get(emotion, emotion)
        return emotion if emotion in self.classes else None

    def index(self, class_name: str) -> int:
        return self.classes.index(class_name)

    def count(self, labels: Iterable[str]) -> dict[str, int]:
        """Utterances per class, in class order (zeros included)."""
        counts = Counter(labels)
        return {name: counts.get(name, 0) for name in self.classes}
