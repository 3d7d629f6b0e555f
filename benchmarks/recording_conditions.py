"""Trained models against recording conditions: test UA with the test audio played louder or
quieter, in noise, in a reverberant room, over a telephone line, or with silence around it.

    python benchmarks/recording_conditions.py RUN_OR_CV_DIR [...] [--conditions recorded gain:-20
        white:20 pink:10 reverb:0.6 telephone pad:2 ...] [--checkpoint last.ckpt] [--seed 0]
        [--trim_silence true|false]

A corpus is recorded one way, new audio any way: a microphone farther away, another gain, a room,
a street, a phone. Each run (a ``ser fit`` run directory, or every ``fold_*`` of a ``ser cv``
directory) predicts the files of its test split (``splits/test.csv``) through ``EmotionRecognizer``
once per condition; ``recorded`` is the test as it is. Conditions (each 16 kHz file, values clipped
to [-1, 1] at the end, as a recording clips):

- ``gain:DB``: every sample times ``10^(DB / 20)``;
- ``white:SNR``, ``pink:SNR``: stationary noise (flat, or 1/f power: the slope of most room and
  traffic noise) at SNR dB against the file's mean power;
- ``babble:SNR``: other people talking: four utterances of the run's training split (never the
  test speaker), each at one level, summed, at SNR dB;
- ``reverb:RT60``: convolved with a synthetic room impulse response: the direct sound, then
  exponentially decaying noise reaching -60 dB after RT60 seconds, as much energy as the direct
  sound (a direct-to-reverberant ratio of 0 dB: a talker a metre or two from the microphone in an
  ordinary room); the energy kept equal;
- ``telephone``: narrow band (300-3400 Hz, as a G.711 line passes) and 8-bit mu-law;
- ``pad:SECONDS``: the clip unchanged with SECONDS of a quiet room before and after it (white
  noise ``ROOM_FLOOR_BELOW_SPEECH_DB`` below the clip's mean power): a recording started before
  the speaker spoke and stopped after, where corpora cut each clip to its utterance.

Noise and rooms are drawn from ``--seed`` and the file's place in the split: every model hears the
same degraded files. Prints each directory's mean test UA per condition and the test files' RMS
level. Used in docs/real_speech.md ("Recording level", "Noise, rooms and telephones").
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF
from sklearn.metrics import balanced_accuracy_score

from ser import audio
from ser.evaluation.cv_summary import PLAN_FILE, fold_status
from ser.inference.recognizer import EmotionRecognizer

RATE = audio.TARGET_SAMPLE_RATE
DEFAULT_CONDITIONS = [
    "recorded", "gain:-20", "white:20", "white:10", "pink:20", "pink:10", "babble:10",
    "reverb:0.3", "reverb:0.6", "telephone", "pad:2",
]  # fmt: skip
BABBLE_TALKERS = 4
TELEPHONE_BAND_HZ = (300.0, 3400.0)
MU_LAW_CHANNELS = 256  # 8 bits
ROOM_FLOOR_BELOW_SPEECH_DB = 50.0  # a quiet room's noise floor under conversational speech


def runs_of(directory: Path) -> list[Path]:
    """The run directories of a ``ser cv`` directory (the folds of its plan that finished: not
    one still training, nor an earlier try cv moved aside), or the run itself."""
    if (directory / PLAN_FILE).is_file():
        plan = json.loads((directory / PLAN_FILE).read_text(encoding="utf-8"))
        runs = [directory / fold["name"] for fold in plan["folds"]]
        finished = [run for run in runs if fold_status(directory, run.name) == "done"]
        if not finished:
            raise SystemExit(f"{directory}: none of the {len(runs)} folds of its plan finished")
        return finished
    if (directory / "splits" / "test.csv").is_file():
        return [directory]
    raise SystemExit(f"{directory}: no splits/test.csv, neither a ser fit run nor a ser cv folder")


def level_dbfs(wave: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(wave**2)) + 1e-12))


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of white or pink (power 1/f) noise, unit RMS."""
    noise = rng.standard_normal(n)
    if colour == "pink":
        spectrum = np.fft.rfft(noise)
        frequencies = np.fft.rfftfreq(n, 1.0 / RATE)
        spectrum[1:] /= np.sqrt(frequencies[1:])
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n)
    return unit_rms(noise)


def babble(n: int, talkers: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of ``BABBLE_TALKERS`` of ``talkers`` at one level each, summed; unit RMS."""
    mix = np.zeros(n)
    for index in rng.choice(len(talkers), BABBLE_TALKERS, replace=False):
        talker = np.resize(talkers[index], n + len(talkers[index]))  # repeated to cover n
        start = rng.integers(len(talkers[index]))
        mix += unit_rms(talker[start : start + n])
    return unit_rms(mix)


def unit_rms(wave: np.ndarray) -> np.ndarray:
    return wave / (np.sqrt(np.mean(wave**2)) + 1e-12)


def noise_under(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Unit-RMS ``noise`` scaled to ``snr_db`` below ``wave``'s mean power."""
    return np.sqrt(np.mean(wave**2) / 10.0 ** (snr_db / 10.0)) * noise


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``wave`` with unit-RMS ``noise`` at ``snr_db`` against its mean power."""
    return wave + noise_under(wave, noise, snr_db)


def reverberate(wave: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """``wave`` in a room whose synthetic impulse response decays 60 dB in ``rt60`` s, its tail
    as energetic as the direct sound."""
    t = np.arange(int(rt60 * RATE)) / RATE
    tail = rng.standard_normal(len(t)) * 10.0 ** (-3.0 * t / rt60)  # -60 dB at rt60
    response = tail / np.sqrt(np.sum(tail[1:] ** 2))  # tail energy 1: 0 dB DRR
    response[0] = 1.0  # the direct sound
    wet = AF.fftconvolve(torch.from_numpy(wave), torch.from_numpy(response))[: len(wave)].numpy()
    return wet * np.sqrt(np.mean(wave**2) / (np.mean(wet**2) + 1e-12))


def telephone(wave: np.ndarray) -> np.ndarray:
    """300-3400 Hz, then 8-bit mu-law, as a G.711 line carries it."""
    spectrum = np.fft.rfft(wave)
    frequencies = np.fft.rfftfreq(len(wave), 1.0 / RATE)
    low, high = TELEPHONE_BAND_HZ
    spectrum[(frequencies < low) | (frequencies > high)] = 0.0
    band = torch.from_numpy(np.clip(np.fft.irfft(spectrum, len(wave)), -1.0, 1.0))
    coded = AF.mu_law_encoding(band, MU_LAW_CHANNELS)
    return AF.mu_law_decoding(coded, MU_LAW_CHANNELS).numpy()


def pad_with_room(wave: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """``wave`` between two stretches of ``seconds`` of a quiet room's noise floor."""
    pad = round(seconds * RATE)
    floor = noise_under(wave, coloured_noise(2 * pad, "white", rng), ROOM_FLOOR_BELOW_SPEECH_DB)
    return np.concatenate([floor[:pad], wave, floor[pad:]])


Change = Callable[[np.ndarray, np.random.Generator, list[np.ndarray]], np.ndarray]


def condition(spec: str) -> Change:
    """The function a ``--conditions`` word names, called with a wave, a random generator and
    the training split's waves (the babble's talkers); SystemExit naming the word if it names
    none."""
    kind, _, value = spec.partition(":")
    try:
        if kind == "recorded" and not value:
            return lambda wave, rng, talkers: wave
        if kind == "telephone" and not value:
            return lambda wave, rng, talkers: telephone(wave)
        number = float(value)
        if kind == "gain":
            return lambda wave, rng, talkers: wave * 10.0 ** (number / 20.0)
        if kind in ("white", "pink"):
            return lambda wave, rng, talkers: add_noise(
                wave, coloured_noise(len(wave), kind, rng), number
            )
        if kind == "babble":
            return lambda wave, rng, talkers: add_noise(
                wave, babble(len(wave), talkers, rng), number
            )
        if kind == "reverb" and number > 0:
            return lambda wave, rng, talkers: reverberate(wave, number, rng)
        if kind == "pad" and number > 0:
            return lambda wave, rng, talkers: pad_with_room(wave, number, rng)
    except ValueError:
        pass
    raise SystemExit(
        f"--conditions {spec!r}: expected recorded, telephone, gain:DB, white:SNR, pink:SNR, "
        "babble:SNR, reverb:RT60 or pad:SECONDS (seconds > 0)"
    )


def degrade(
    change: Change, wave: np.ndarray, rng: np.random.Generator, talkers: list
) -> np.ndarray:
    """``wave`` changed, clipped to [-1, 1] as a recording clips, as float32."""
    return np.clip(change(wave, rng, talkers), -1.0, 1.0).astype(np.float32)


def score_run(
    run: Path, checkpoint: str, conditions: list[str], seed: int, trim_silence: bool | None = None
) -> tuple[dict, list]:
    """UA per condition of one run's checkpoint on its test files, and the files' levels (dBFS)."""
    with open(run / "splits" / "test.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labels = [row["label"] for row in rows]
    waves = [audio.load(row["path"]) for row in rows]  # (T,) at 16 kHz each
    talkers = []
    if any(spec.startswith("babble:") for spec in conditions):
        with open(run / "splits" / "train.csv", newline="", encoding="utf-8") as f:
            talkers = [audio.load(row["path"]) for row in csv.DictReader(f)]
    recognizer = EmotionRecognizer.from_checkpoint(
        run / "checkpoints" / checkpoint, trim_silence=trim_silence
    )
    scores = {}
    for spec in conditions:
        change = condition(spec)
        items = [
            (degrade(change, wave, np.random.default_rng([seed, index]), talkers), RATE)
            for index, wave in enumerate(waves)
        ]
        predicted = [p.label for p in recognizer.predict(items)]
        with warnings.catch_warnings():  # a LOSO test speaker may lack emotions others have
            warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
            scores[spec] = float(balanced_accuracy_score(labels, predicted))  # UA
    return scores, [level_dbfs(wave) for wave in waves]


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", type=Path, nargs="+", help="ser fit runs or ser cv folders")
    parser.add_argument("--conditions", nargs="+", default=DEFAULT_CONDITIONS)
    parser.add_argument("--checkpoint", default="last.ckpt", help="file name in checkpoints/")
    parser.add_argument("--seed", type=int, default=0, help="draws the noise and the rooms")
    parser.add_argument(
        "--trim_silence", choices=["true", "false"], default=None,
        help="EmotionRecognizer's trim_silence (false: score each file whole; default: as "
        "the model's training read its corpus)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    for spec in args.conditions:
        condition(spec)  # a bad word stops here, before any model runs
    header = "| runs | " + " | ".join(args.conditions) + " |"
    lines = [header, "|---" * (len(args.conditions) + 1) + "|"]
    levels = []
    for directory in args.directories:
        per_condition = {spec: [] for spec in args.conditions}
        runs = runs_of(directory)
        for run in runs:
            scores, run_levels = score_run(
                run,
                args.checkpoint,
                args.conditions,
                args.seed,
                None if args.trim_silence is None else args.trim_silence == "true",
            )
            levels += run_levels
            for spec, ua in scores.items():
                per_condition[spec].append(ua)
            print(run, " ".join(f"{c} {s:.3f}" for c, s in scores.items()), flush=True)
        means = " | ".join(f"{statistics.mean(per_condition[c]):.3f}" for c in args.conditions)
        lines.append(f"| {directory} ({len(runs)}) | {means} |")
    quantiles = np.percentile(levels, [5, 50, 95])
    lines.append(
        f"\nmean test UA per condition; the test files' RMS level as recorded: median "
        f"{quantiles[1]:.1f} dBFS, 90 % within {quantiles[0]:.1f} .. {quantiles[2]:.1f}"
    )
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
