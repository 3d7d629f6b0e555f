"""Write a synthetic corpus in the real ShEMO or IEMOCAP layout and naming.

ShEMO: ``out/female/F01A01.wav``, ``out/male/M01N03.wav``: 44.1 kHz 16-bit mono, ~5 % of the
files at 22.05 kHz like the release; speakers alternate female/male (F01.., M01..); classes are
balanced inside every speaker (a shuffled cycle over the six codes) so that UA on a 10 % test
split is not decided by two fear files, unlike the real corpus (fear is 1.3 % there).
Both layouts also get ``out/manifest.csv`` (path, label, speaker, arousal, valence): the
continuous arousal/valence of every file, drawn from the prosody it was spoken with
(``ratings.py``), for the dimensional task (``docs/dimensional.md``).
IEMOCAP: ``out/Session{n}/sentences/wav/<dialog>/<utt>.wav`` at 16 kHz, two speakers (F, M) per
session, and ``out/Session{n}/dialog/EmoEvaluation/<dialog>.txt`` in the real format, with
codes neu/ang/hap/exc/sad and a few fru/sur/xxx.
Durations are lognormal (median 3 s, ~15 % over 5 s) and drawn independently of the emotion.
Every file has its own random stream seeded by (seed, speaker, utterance): deterministic.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import shutil
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np

from ser import audio
from ser.data.synthetic.ratings import DIMENSIONS, ratings
from ser.data.synthetic.voice import PROSODY, Speaker, make_speaker, render, vary
from ser.labels import IEMOCAP_CODES, SHEMO_CODES

SHEMO_RATE, SHEMO_LOW_RATE, IEMOCAP_RATE = 44_100, 22_050, 16_000
# IEMOCAP code shares: the 4-class codes dominate, plus a few of the others the scanner must skip.
IEMOCAP_SHARES = {"neu": 0.24, "ang": 0.15, "hap": 0.1, "exc": 0.15, "sad": 0.15,
                  "fru": 0.1, "sur": 0.04, "xxx": 0.07}  # fmt: skip
_SHEMO_ORDER = "AFHNSW"
RECORDING_LEVEL_DB = 30.0  # per-file attenuation drawn from [-30, 0] dB
_TURNS_PER_DIALOG = 10  # per speaker
_ANNOTATOR_WORDS = {"neu": "Neutral", "ang": "Anger", "hap": "Happiness", "exc": "Excited",
                    "sad": "Sadness", "fru": "Frustration", "sur": "Surprise"}  # fmt: skip
_VAD = {"neu": (2.5, 2.5, 2.5), "ang": (1.5, 4.0, 4.0), "hap": (4.0, 3.0, 3.0),
        "exc": (4.0, 4.0, 3.5), "sad": (1.5, 2.0, 2.0), "fru": (2.0, 3.5, 3.5),
        "sur": (3.5, 4.0, 3.0), "xxx": (2.5, 3.0, 3.0)}  # fmt: skip


def write_corpus(
    layout: Literal["shemo", "iemocap"],
    out: str | Path,
    num_speakers: int,
    utterances_per_speaker: int,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic corpus under ``out`` and return a summary.

    Args:
        layout: "shemo" (``female/``, ``male/``) or "iemocap" (``Session{n}/...``).
        out: corpus root; must be empty or absent unless ``overwrite``.
        num_speakers: ShEMO 1..87 (alternating F/M); IEMOCAP an even number 2..10 (2 a session).
        utterances_per_speaker: files per speaker (ShEMO at most 6 * 99).
        seed: seed of every random choice; the same seed writes identical files.
        overwrite: replace the layout's folders (``female``/``male`` or ``Session*``) in ``out``.

    Returns:
        ``{"layout", "out", "files", "speakers", "per_code", "sample_rates", "duration"}``;
        ``duration`` has total/median/max seconds and the count over 5 s.
    """
    out = Path(out)
    if utterances_per_speaker < 1:
        raise ValueError(f"utterances_per_speaker must be >= 1, got {utterances_per_speaker}")
    _prepare_folder(out, layout, overwrite)
    if layout == "shemo":
        records = _write_shemo(out, num_speakers, utterances_per_speaker, seed)
    elif layout == "iemocap":
        records = _write_iemocap(out, num_speakers, utterances_per_speaker, seed)
    else:
        raise ValueError(f"unknown layout {layout!r}; expected 'shemo' or 'iemocap'")
    durations = np.array([r[2] for r in records])
    summary = {
        "layout": layout,
        "out": str(out),
        "seed": seed,
        "files": len(records),
        "speakers": len({r[0] for r in records}),
        "per_code": dict(sorted(Counter(r[1] for r in records).items())),
        "sample_rates": dict(sorted(Counter(r[3] for r in records).items())),
        "duration": {
            "total_s": round(float(durations.sum()), 1),
            "median_s": round(float(np.median(durations)), 2),
            "max_s": round(float(durations.max()), 2),
            "over_5s": int((durations > 5.0).sum()),
        },
    }
    (out / "synthetic.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _write_manifest(out, records)
    return summary


def _write_manifest(out: Path, records: list[tuple]) -> None:
    """``out/manifest.csv``: each file's path (relative to ``out``), label, speaker, ratings."""
    with (out / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "speaker", *DIMENSIONS])
        for speaker, _, _, _, path, emotion, values in sorted(records, key=lambda r: r[4]):
            relative = Path(path).relative_to(out).as_posix()
            writer.writerow([relative, emotion, speaker, *(f"{values[d]:.4f}" for d in DIMENSIONS)])


def _prepare_folder(out: Path, layout: str, overwrite: bool) -> None:
    folders = ["female", "male"] if layout == "shemo" else [f"Session{n}" for n in range(1, 6)]
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out} is not empty; remove it, pick another folder or pass overwrite=True "
                "(--overwrite) to replace its synthetic corpus"
            )
        for name in folders:
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _duration(rng: np.random.Generator) -> float:
    # Real ShEMO: median 3.1 s, 27 % > 5 s; a bit shorter here to keep the demo corpus small.
    return float(np.clip(np.exp(rng.normal(np.log(3.0), 0.5)), 1.0, 12.0))


def _utterance(
    path: Path, speaker: Speaker, emotion: str, sample_rate: int, rng: np.random.Generator
) -> tuple[float, dict[str, float]]:
    """Write one file; its duration and its arousal/valence ratings."""
    duration = _duration(rng)
    prosody = vary(PROSODY[emotion], speaker, rng)
    wave = render(speaker, prosody, duration, sample_rate, rng)  # (T,)
    # Each recording's own level (microphone distance, input gain), independent of the emotion,
    # wider than the emotions' loudness differences: without it loud emotions sit at the peak
    # limiter and peak level alone gave IEMOCAP's label (UA 0.62 on 4 classes).
    wave *= 10 ** (rng.uniform(-RECORDING_LEVEL_DB, 0.0) / 20)
    audio.write(path, wave, sample_rate)
    return duration, ratings(prosody)


def _write_shemo(out: Path, num_speakers: int, per_speaker: int, seed: int) -> list[tuple]:
    females = (num_speakers + 1) // 2
    if not num_speakers >= 1 or females > 31 or num_speakers - females > 56:
        raise ValueError(
            f"ShEMO layout takes 1..62 speakers (F01-F31, M01-M56), got {num_speakers}"
        )
    if per_speaker > 6 * 99:
        raise ValueError(f"ShEMO names hold 99 files per speaker and emotion; {per_speaker} > 594")
    jobs = [(out, index, per_speaker, seed) for index in range(num_speakers)]
    return [record for part in _map(_shemo_speaker, jobs) for record in part]


def _shemo_speaker(out: Path, index: int, per_speaker: int, seed: int) -> list[tuple]:
    """All files of speaker ``index`` (even: F, odd: M); classes cycle, shuffled."""
    gender = "F" if index % 2 == 0 else "M"
    name = f"{gender}{index // 2 + 1:02d}"
    speaker_rng = np.random.default_rng([seed, index])
    speaker = make_speaker(gender, speaker_rng)
    codes = speaker_rng.permutation([_SHEMO_ORDER[i % 6] for i in range(per_speaker)])
    counts: Counter[str] = Counter()
    records = []
    for number, code in enumerate(codes):
        counts[code] += 1
        rng = np.random.default_rng([seed, index, number])
        rate = SHEMO_LOW_RATE if rng.random() < 0.05 else SHEMO_RATE
        folder = out / ("female" if gender == "F" else "male")
        path = folder / f"{name}{code}{counts[code]:02d}.wav"
        emotion = SHEMO_CODES[code]
        duration, values = _utterance(path, speaker, emotion, rate, rng)
        records.append((name, str(code), duration, rate, str(path), emotion, values))
    return records


def _map(function: Callable[..., list[tuple]], jobs: list[tuple]) -> list[list[tuple]]:
    """``function(*job)`` for every job, in worker processes when there are cores to spare.

    Forked workers inherit the imported modules (no second torch import); results keep job
    order and every file has its own seed, so the output does not depend on the worker count.
    Only a process with no other thread forks: a fork copies the locks other threads hold (a
    prediction's file-reading thread inside libsndfile), and a worker that needs one waits
    forever; such a process writes the files itself.
    """
    workers = min(len(jobs), os.cpu_count() or 1)
    if (
        workers < 2
        or "fork" not in multiprocessing.get_all_start_methods()
        or threading.active_count() > 1
    ):
        return [function(*job) for job in jobs]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(pool.map(function, *zip(*jobs, strict=True)))


def _write_iemocap(out: Path, num_speakers: int, per_speaker: int, seed: int) -> list[tuple]:
    if num_speakers not in (2, 4, 6, 8, 10):
        raise ValueError(f"IEMOCAP layout takes 2, 4, 6, 8 or 10 speakers (F+M per session), "
                         f"got {num_speakers}")  # fmt: skip
    jobs = [(out, session, per_speaker, seed) for session in range(1, num_speakers // 2 + 1)]
    return [record for part in _map(_iemocap_session, jobs) for record in part]


def _iemocap_session(out: Path, session: int, per_speaker: int, seed: int) -> list[tuple]:
    """Both speakers of a session, in dialogs of up to _TURNS_PER_DIALOG turns each."""
    records = []
    rng = np.random.default_rng([seed, session])
    speakers = {g: make_speaker(g, rng) for g in "FM"}
    codes = {g: rng.choice(list(IEMOCAP_SHARES), per_speaker, p=list(IEMOCAP_SHARES.values()))
             for g in "FM"}  # fmt: skip
    num_dialogs = -(-per_speaker // _TURNS_PER_DIALOG)
    for dialog_index in range(num_dialogs):
        dialog = _dialog_name(session, dialog_index)
        turns = range(dialog_index * _TURNS_PER_DIALOG,
                      min((dialog_index + 1) * _TURNS_PER_DIALOG, per_speaker))  # fmt: skip
        blocks, clock = [], float(rng.uniform(2.0, 8.0))
        for turn, number in enumerate(turns):
            for gender in "FM":
                code = str(codes[gender][number])
                utt = f"{dialog}_{gender}{turn:03d}"
                urng = np.random.default_rng([seed, session, "FM".index(gender), number])
                emotion = _iemocap_emotion(code, urng)
                path = out / f"Session{session}/sentences/wav/{dialog}/{utt}.wav"
                duration, values = _utterance(path, speakers[gender], emotion, IEMOCAP_RATE, urng)
                blocks.append(_evaluation_block(clock, duration, utt, code, urng))
                clock += duration + float(urng.uniform(0.2, 1.5))
                speaker = f"Ses{session:02d}{gender}"
                label = IEMOCAP_CODES[code] or code  # xxx: no agreement
                records.append((speaker, code, duration, IEMOCAP_RATE, str(path), label, values))
        text = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n" + "\n".join(blocks)
        path = out / f"Session{session}/dialog/EmoEvaluation/{dialog}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return records


def _dialog_name(session: int, index: int) -> str:
    lead, number = "FM"[index % 2], index // 2 + 1
    if number % 2:
        return f"Ses{session:02d}{lead}_impro{number:02d}"
    return f"Ses{session:02d}{lead}_script{number:02d}_{index % 3 + 1}"


def _iemocap_emotion(code: str, rng: np.random.Generator) -> str:
    """The emotion a file is spoken with; ``xxx`` (no agreement) is one of a few at random."""
    if code == "xxx":
        return str(rng.choice(["neutral", "frustration", "anger", "happiness"]))
    return str(IEMOCAP_CODES[code])


def _evaluation_block(
    start: float, duration: float, utt: str, code: str, rng: np.random.Generator
) -> str:
    """One EmoEvaluation block: the label line, then categorical and V/A/D annotator lines."""
    vad = ", ".join(f"{v:.4f}" for v in _VAD[code])
    lines = [f"[{start:.4f} - {start + duration:.4f}]\t{utt}\t{code}\t[{vad}]"]
    choices = list(_ANNOTATOR_WORDS.values())
    for annotator in ("C-E1", "C-E2", "C-E4"):
        word = _ANNOTATOR_WORDS.get(code) or str(rng.choice(choices))
        if code != "xxx" and rng.random() < 0.2:
            word = f"{word}; {rng.choice(choices)}"
        lines.append(f"{annotator}:\t{word};\t()")
    for annotator in ("A-E1", "A-E2", "A-E4"):
        v, a, d = (int(np.clip(round(x + rng.normal(0, 0.5)), 1, 5)) for x in _VAD[code])
        lines.append(f"{annotator}:\tval {v}; act {a}; dom  {d};\t()")
    return "\n".join(lines) + "\n"
