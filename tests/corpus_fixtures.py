"""Corpus layouts for the corpora and splits tests: real names, tiny audio.

Plain helpers, not fixtures, so test files can build module-scoped fixtures from them. Audio is
one 0.3 s 16-bit WAV hard-linked (or copied) to every name: 3000 files in well under a second.
A steady tone that long is speech to the level threshold throughout, so the cache's speech spans
(``ser.vad.speech_span``) need no Silero pass over it (2 ms a file).
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np

from ser import audio
from ser.data.utterance import Utterance

DATA = Path(__file__).parent / "data"
SHARED_DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
# Released ShEMO audio, from tests/data/shemo_files.csv.
SHEMO_COUNTS = {
    "anger": 1059,
    "neutral": 1028,
    "sadness": 449,
    "surprise": 225,
    "happiness": 201,
    "fear": 38,
}
SHEMO_SPEAKERS = 87


def shemo_files() -> list[tuple[str, str]]:
    """``(gender folder, file name)`` of the 3000 released ShEMO files."""
    with (DATA / "shemo_files.csv").open(newline="", encoding="utf-8") as f:
        return [(Path(r["file"]).parent.name, Path(r["file"]).name) for r in csv.DictReader(f)]


def shemo_json_stems() -> list[str]:
    """The 3000 keys of the public ``shemo.json`` (a re-labelled version)."""
    return (DATA / "shemo_json_stems.txt").read_text(encoding="utf-8").split()


def shemo_rows() -> list[Utterance]:
    """Utterances for the real ShEMO names without any audio (for split tests)."""
    with (DATA / "shemo_files.csv").open(newline="", encoding="utf-8") as f:
        return [
            Utterance(Path(r["file"]).stem, r["file"], r["speaker"], r["emotion"], 3.0, 44100)
            for r in csv.DictReader(f)
        ]


def tiny_wav(path: Path, seconds: float = 0.3, sample_rate: int = 16_000) -> Path:
    """A short quiet sine, 16-bit PCM."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    audio.write(path, 0.1 * np.sin(2 * np.pi * 220.0 * t).astype(np.float32), sample_rate)
    return path


def link_copies(source: Path, targets: list[Path]) -> None:
    """Hard-link ``source`` to every target (copy where the file system cannot link)."""
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)


def write_shemo(root: Path, files: list[tuple[str, str]] | None = None, flat: bool = False) -> Path:
    """ShEMO in the released layout (``root/female/F01A01.wav``), or flat in ``root``."""
    files = shemo_files() if files is None else files
    source = tiny_wav(root.parent / f"{root.name}-source.wav")
    link_copies(source, [root / name if flat else root / folder / name for folder, name in files])
    return root


# IEMOCAP: (session, dialog, [(utterance, code), ...]) in the real naming; every code appears.
IEMOCAP_DIALOGS = [
    (1, "Ses01F_impro01", [("F000", "neu"), ("M000", "ang"), ("F001", "exc"), ("M001", "xxx")]),
    (1, "Ses01F_script01_1", [("F000", "hap"), ("M000", "sad"), ("F001", "fru"), ("M001", "neu")]),
    (2, "Ses02M_impro02", [("M000", "sad"), ("F000", "fea"), ("M001", "sur"), ("F001", "ang")]),
    (3, "Ses03F_impro03", [("F000", "dis"), ("M000", "oth"), ("F001", "exc"), ("M001", "hap")]),
    (4, "Ses04M_script02_2", [("M000", "neu"), ("F000", "neu"), ("M001", "sad"), ("F001", "xxx")]),
    (5, "Ses05F_impro04", [("F000", "ang"), ("M000", "exc"), ("F001", "sad"), ("M001", "neu")]),
]
# LabelSet(IEMOCAP_4_CLASSES, IEMOCAP_4_MERGE) counts of the above (hap + exc -> happiness).
IEMOCAP_4_COUNTS = {"anger": 3, "happiness": 5, "neutral": 5, "sadness": 4}
IEMOCAP_ALL = 22  # 24 label lines minus 2 xxx


# The evaluators' word for each code, as EmoEvaluation files write them (xxx: a split vote).
EVALUATOR_WORDS = {
    "neu": "Neutral state", "ang": "Anger", "hap": "Happiness", "exc": "Excited",
    "sad": "Sadness", "fru": "Frustration", "fea": "Fear", "sur": "Surprise", "dis": "Disgust",
    "oth": "Other", "xxx": "Frustration",
}  # fmt: skip


def emo_evaluation(dialog: str, utterances: list[tuple[str, str]]) -> str:
    """An EmoEvaluation file in the real format: header, blank-line separated turn blocks.

    Each turn's external evaluators vote: C-E2 for its code's word, C-E3 for that word and Anger
    (1/2 each), so a turn's votes are ``{word: 1.5, anger: 0.5}``; the self-evaluation C-F1
    (Sadness) does not count."""
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    for i, (suffix, code) in enumerate(utterances):
        start = 6.2901 + 3 * i
        times = f"[{start:.4f} - {start + 1.9456:.4f}]"
        word = EVALUATOR_WORDS[code]
        lines += [
            f"{times}\t{dialog}_{suffix}\t{code}\t[2.5000, 2.5000, 2.5000]",
            f"C-E2:\t{word};\t()",
            f"C-E3:\t{word}; Anger;\t()",
            "C-F1:\tSadness;\t(calm)",
            "A-E3:\tval 3; act 2; dom  2;\t()",
            "A-F1:\tval 2; act 3; dom  3;\t(mildly aggravated but staying polite)",
            "",
        ]
    return "\n".join(lines)


def write_iemocap(root: Path) -> Path:
    """IEMOCAP in the real layout: every code of ``IEMOCAP_DIALOGS`` with a tiny wav each."""
    targets = []
    for session, dialog, utterances in IEMOCAP_DIALOGS:
        session_dir = root / f"Session{session}"
        label_file = session_dir / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        label_file.parent.mkdir(parents=True, exist_ok=True)
        label_file.write_text(emo_evaluation(dialog, utterances), encoding="utf-8")
        wav_dir = session_dir / "sentences" / "wav" / dialog
        targets += [wav_dir / f"{dialog}_{suffix}.wav" for suffix, _ in utterances]
    link_copies(tiny_wav(root.parent / f"{root.name}-source.wav"), targets)
    return root


# Corpora whose file names carry the labels, in their real naming, WAV and FLAC, several rates.
RAVDESS_ACTORS = (1, 2, 3, 4, 5, 6)  # odd = male


def write_ravdess(root: Path) -> Path:
    """RAVDESS speech: every emotion of every actor twice (neutral once, as in the corpus'
    normal-intensity-only neutral), actors 1-3 in 48 kHz WAV, 4-6 in 44.1 kHz FLAC; plus one
    song file and one video file per actor, which the scanner skips."""
    wav = tiny_wav(root.parent / f"{root.name}-48k.wav", sample_rate=48_000)
    flac = tiny_wav(root.parent / f"{root.name}-44k.flac", sample_rate=44_100)
    for actor in RAVDESS_ACTORS:
        folder = root / f"Actor_{actor:02d}"
        source = wav if actor <= 3 else flac
        names = [
            f"03-01-{emotion:02d}-{intensity:02d}-01-01-{actor:02d}"
            for emotion in range(1, 9)
            for intensity in ((1,) if emotion == 1 else (1, 2))
        ]
        link_copies(source, [folder / f"{name}{source.suffix}" for name in names])
        link_copies(wav, [folder / f"03-02-03-01-01-01-{actor:02d}.wav"])  # song
        (folder / f"01-01-03-01-01-01-{actor:02d}.mp4").write_bytes(b"")  # audio-video
    return root


CREMAD_ACTORS = ("1001", "1002", "1003", "1004", "1005")


def write_cremad(root: Path) -> Path:
    """CREMA-D: ``AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav``, 2 sentences each."""
    source = tiny_wav(root.parent / f"{root.name}-source.wav")
    codes = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
    names = [
        f"{actor}_{sentence}_{code}_{level}"
        for actor in CREMAD_ACTORS
        for code in codes
        for sentence, level in (("DFA", "XX"), ("IEO", "HI"))
    ]
    link_copies(source, [root / "AudioWAV" / f"{name}.wav" for name in names])
    return root


EMODB_SPEAKERS = ("03", "08", "09", "10", "11")


def write_emodb(root: Path) -> Path:
    """EmoDB: ``wav/<speaker><text><emotion><version>.wav``, 2 texts per emotion and speaker."""
    source = tiny_wav(root.parent / f"{root.name}-source.wav")
    names = [
        f"{speaker}{text}{code}a"
        for speaker in EMODB_SPEAKERS
        for code in "WLEAFTN"
        for text in ("a01", "b02")
    ]
    link_copies(source, [root / "wav" / f"{name}.wav" for name in names])
    return root


# MSP-Podcast: (file, EmoClass, arousal, valence, dominance, speaker, Split_Set).
MSP_PODCAST_ROWS = [
    ("MSP-PODCAST_0001_0001.wav", "A", 5.5, 2.0, 5.0, "127", "Train"),
    ("MSP-PODCAST_0001_0002.wav", "N", 4.0, 4.0, 4.0, "127", "Train"),
    ("MSP-PODCAST_0002_0001.wav", "S", 2.5, 2.5, 3.0, "Unknown", "Train"),
    ("MSP-PODCAST_0003_0001.wav", "X", 4.0, 3.5, 4.0, "33", "Train"),
    ("MSP-PODCAST_0004_0001.wav", "H", 5.0, 6.0, 5.0, "45", "Development"),
    ("MSP-PODCAST_0005_0001.wav", "C", 4.5, 3.0, 5.0, "51", "Test1"),
    ("MSP-PODCAST_0006_0001.wav", "N", 3.5, 4.0, 3.5, "99", "Test2"),
]


def write_msppodcast(root: Path) -> Path:
    """MSP-Podcast in the real layout: ``Audios/`` and ``Labels/labels_consensus.csv``."""
    labels = root / "Labels" / "labels_consensus.csv"
    labels.parent.mkdir(parents=True, exist_ok=True)
    header = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"
    lines = [",".join(map(str, (*row[:6], "Female", row[6]))) for row in MSP_PODCAST_ROWS]
    labels.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    targets = [root / "Audios" / row[0] for row in MSP_PODCAST_ROWS]
    link_copies(tiny_wav(root.parent / f"{root.name}-source.wav"), targets)
    return root
