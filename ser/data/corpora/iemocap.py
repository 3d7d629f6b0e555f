"""IEMOCAP (English, 5 sessions, 10 speakers) as it is on disk; users bring their licensed copy.

Audio: ``root/Session{n}/sentences/wav/<dialog>/<utt>.wav`` (16 kHz mono). Labels:
``root/Session{n}/dialog/EmoEvaluation/<dialog>.txt``, one block per turn whose first line is::

    [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]

followed by annotator lines. The categorical evaluators' lines are the row's rater ``votes``::

    C-E2:<TAB>Frustration; Anger;<TAB>()

Only the external evaluators (``C-E1``, ``C-E2`` ...) count, the raters whose majority is the
label; the actors' self-evaluations (``C-F1``, ``C-M1``) and the dimensional lines (``A-E3``,
``A-F1``) do not. Each evaluator has one vote, shared equally by the categories they chose (0.5
each above); ``Neutral state`` is ``neutral``, the other words go through ``ser.labels.normalise``
(``Excited`` -> ``excitement``). The ``%`` header line is ignored. Codes map through
``ser.labels.IEMOCAP_CODES``; ``xxx`` (no agreement) rows are dropped. The bracket holds the
evaluators' mean valence, arousal and dominance (1-5): each row carries them as ``dimensions``
(``valence``, ``arousal``, ``dominance``). Every label is returned in the canonical vocabulary;
choosing the 4-class protocol (exc merged into hap) is the ``LabelSet``'s job, not the parser's.

The speaker is the session plus the gender letter of the LAST ``_F000`` / ``_M000`` part:
in ``Ses01F_impro01_M011`` the female actor leads the dialog but the male speaks, so ``Ses01M``.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from ser.data.corpora import absolute, count_unreadable, read_header, wav_files
from ser.data.utterance import Utterance
from ser.labels import IEMOCAP_CODES, normalise

log = logging.getLogger(__name__)

EXPECTED_LAYOUT = (
    "root/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav and "
    "root/Session1/dialog/EmoEvaluation/Ses01F_impro01.txt, for Session1..Session5"
)
SESSION_PATTERN = re.compile(r"Session(\d+)")
LABEL_LINE = re.compile(
    r"\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\S+)\s+\[\s*([\d.]+),\s*([\d.]+),\s*([\d.]+)\s*\]"
)
# The order of the ratings in the label line's bracket.
DIMENSIONS = ("valence", "arousal", "dominance")
UTTERANCE_NAME = re.compile(r"Ses(\d\d)[FM]_\w+_([FM])\d+")
# An external evaluator's categories: "C-E2:<TAB>Frustration; Anger;<TAB>(comment)".
EVALUATOR_LINE = re.compile(r"C-E\d+:\s*([^(]*)")
# Evaluator words that are not spellings of a class word (``ser.labels.ALIASES``).
EVALUATOR_WORDS = {"neutral state": "neutral"}


class Label(NamedTuple):
    """One EmoEvaluation turn: the canonical emotion (None for ``xxx``), where its label line
    is, its valence/arousal/dominance ratings and its external evaluators' votes."""

    emotion: str | None
    where: str
    ratings: dict[str, float]
    votes: dict[str, float]


def scan(root: str | Path) -> list[Utterance]:
    """Rows for every labelled IEMOCAP utterance under ``root``, sorted by ``utt_id``.

    Args:
        root: the folder holding ``Session1`` ... ``Session5`` (any subset of them).

    Raises:
        FileNotFoundError: ``root`` is missing or holds no ``Session<n>`` folder with audio.
        ValueError: an EmoEvaluation line is malformed or has an unknown emotion code; an
            utterance's audio is there twice.
    """
    wavs: dict[str, tuple[str, Path]] = {}
    labels: dict[str, Label] = {}
    for session in find_sessions(root):
        for path in session_wavs(session):
            if path.stem in wavs:  # a .wav and a .WAV, or a copy in another dialog's folder
                raise ValueError(
                    f"IEMOCAP: utterance {path.stem!r} appears twice ({wavs[path.stem][1]} and "
                    f"{path}); keep one copy"
                )
            wavs[path.stem] = (session.name, path)
        for path in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):
            if not path.name.startswith("."):
                _merge_labels(labels, read_labels(path))
    if not wavs:
        raise FileNotFoundError(f"no IEMOCAP .wav files under {root}; expected {EXPECTED_LAYOUT}")
    rows = []
    for utt_id in sorted(set(wavs) & set(labels)):
        emotion = labels[utt_id].emotion
        if emotion is None:
            continue
        session, path = wavs[utt_id]
        duration, sample_rate = read_header(path)
        speaker = speaker_of(utt_id, labels[utt_id].where)
        rows.append(
            Utterance(
                utt_id,
                absolute(path),
                speaker,
                emotion,
                duration,
                sample_rate,
                session,
                dimensions=labels[utt_id].ratings,
                votes=labels[utt_id].votes,
            )
        )
    _log_summary(root, rows, wavs, labels)
    return rows


def find_sessions(root: str | Path) -> list[Path]:
    """The ``Session<n>`` folders of ``root``, in session order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"IEMOCAP root {root} does not exist or is not a folder; expected {EXPECTED_LAYOUT}"
        )
    sessions = [p for p in root.iterdir() if p.is_dir() and SESSION_PATTERN.fullmatch(p.name)]
    if not sessions:
        raise FileNotFoundError(
            f"no Session<n> folders in IEMOCAP root {root}; expected {EXPECTED_LAYOUT}"
        )
    return sorted(sessions, key=lambda p: int(SESSION_PATTERN.fullmatch(p.name).group(1)))


def session_wavs(session: Path) -> list[Path]:
    """``session/sentences/wav/<dialog>/<utt>.wav`` (any suffix case, no hidden files)."""
    return sorted(wav_files((session / "sentences" / "wav").glob("*/*"), f"IEMOCAP {session}"))


def read_labels(path: str | Path) -> dict[str, Label]:
    """``{utterance: Label}`` from one EmoEvaluation file."""
    path = Path(path)
    labels: dict[str, Label] = {}
    turn: str | None = None  # the turn whose evaluator lines follow
    for number, line in enumerate(
        path.read_text(encoding="utf-8", errors="replace").splitlines(), 1
    ):
        line = line.strip()
        evaluator = EVALUATOR_LINE.match(line)
        if evaluator is not None and turn is not None:
            add_votes(labels[turn].votes, evaluator.group(1))
        if not line.startswith("["):  # the "%" header, other annotator lines, blank lines
            continue
        where = f"{path}:{number}"
        match = LABEL_LINE.fullmatch(line)
        if match is None:
            raise ValueError(
                f"{where}: malformed label line {line!r}; expected "
                "'[START - END]<TAB>TURN_NAME<TAB>CODE<TAB>[V, A, D]'"
            )
        utt_id, code, *ratings = match.groups()
        if code not in IEMOCAP_CODES:
            raise ValueError(
                f"{where}: unknown IEMOCAP emotion code {code!r} for {utt_id}; "
                f"expected one of {sorted(IEMOCAP_CODES)}"
            )
        if utt_id in labels:
            raise ValueError(
                f"{where}: {utt_id} is labelled twice (first at {labels[utt_id].where})"
            )
        values = dict(zip(DIMENSIONS, map(float, ratings), strict=True))
        labels[utt_id] = Label(IEMOCAP_CODES[code], where, values, {})
        turn = utt_id
    return labels


def add_votes(votes: dict[str, float], categories: str) -> None:
    """Add one evaluator's ``"Frustration; Anger;"`` to ``votes``, 1/n to each of n words."""
    words = [normalise(word) for word in categories.split(";") if word.strip()]
    for word in words:
        word = EVALUATOR_WORDS.get(word, word)
        votes[word] = votes.get(word, 0.0) + 1.0 / len(words)


def speaker_of(utt_id: str, where: str = "") -> str:
    """``Ses01M`` for ``Ses01F_impro01_M011``: the session plus the gender of the last part."""
    match = UTTERANCE_NAME.fullmatch(utt_id)
    if match is None:
        raise ValueError(
            f"{where or utt_id}: utterance name {utt_id!r} does not follow the IEMOCAP naming "
            "Ses<NN><F|M>_<dialog>_<F|M><NNN>, e.g. Ses01F_impro01_M011"
        )
    session, gender = match.groups()
    return f"Ses{session}{gender}"


def _merge_labels(labels: dict[str, Label], new: dict[str, Label]) -> None:
    for utt_id, label in new.items():
        if utt_id in labels:
            raise ValueError(
                f"{label.where}: {utt_id} is labelled twice (first at {labels[utt_id].where})"
            )
        labels[utt_id] = label


def _log_summary(
    root: str | Path,
    rows: list[Utterance],
    wavs: dict[str, tuple[str, Path]],
    labels: dict[str, Label],
) -> None:
    unlabelled = sorted(set(wavs) - set(labels))
    no_audio = sorted(set(labels) - set(wavs))
    dropped = sum(1 for utt_id in set(wavs) & set(labels) if labels[utt_id].emotion is None)
    log.info(
        "IEMOCAP %s: dropped %d utterances labelled xxx (no annotator agreement)", root, dropped
    )
    if unlabelled or no_audio:
        log.warning(
            "IEMOCAP %s: %d wav files have no EmoEvaluation label line (e.g. %s); %d label lines "
            "have no wav file (e.g. %s)",
            root,
            len(unlabelled),
            unlabelled[:5],
            len(no_audio),
            no_audio[:5],
        )
    count_unreadable(rows, f"IEMOCAP {root}")
    log.info(
        "IEMOCAP %s: %d utterances, %d speakers, %s",
        root,
        len(rows),
        len({row.speaker for row in rows}),
        dict(sorted(Counter(row.label for row in rows).items())),
    )
