"""EmoDB of varied lengths: one speaker's clips of one emotion joined 1-4 at a time.

    python benchmarks/varied_lengths.py EMODB_ROOT OUTPUT_ROOT [--seed 7]

Real corpora hold utterances of many lengths (ShEMO median 3.1 s, 27 % over 5 s; EmoDB itself
1.2-9 s), while the public EmoDB copy ser's real-speech checks use holds every clip cut or padded
to 2.0 s: models trained on it hear one length, and whatever depends on length (training crops,
the windows predict and the test score long utterances in) goes unseen. This writes a corpus of
varied lengths from it: each clip's zero padding trimmed, then per speaker and emotion the clips
shuffled and joined in groups of 1-4 (probabilities 0.45 / 0.25 / 0.18 / 0.12) with 0.15-0.45 s
of quiet noise between them (the level of a silent room, 3e-4 RMS). Each utterance keeps EmoDB's
file name pattern (speaker, first clip's text, emotion, a new version letter from j on), so ser's
EmoDB reader and ``configs/data/emodb.yaml`` (leave one speaker out) take OUTPUT_ROOT as they
take EmoDB. From the 535 clips of the copy, seed 7: 303 utterances of 1.4-9.1 s (median 2.0 s,
mean 3.6 s, 22 % over 5 s). The corpus is written into a new folder and moved into place whole.
Used in docs/real_speech.md ("Clips of many lengths").
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from ser.data.corpora.emodb import NAME_PATTERN

GROUP_SIZES = (1, 2, 3, 4)
GROUP_WEIGHTS = (0.45, 0.25, 0.18, 0.12)
PAUSE_SECONDS = (0.15, 0.45)
NOISE_RMS = 3e-4
SILENCE = 1e-4  # |sample| at or below this at a clip's end is padding
VERSIONS = "jklmnopqrstuvwxyz"  # the copy's own versions are a-i


def trimmed(wave: np.ndarray) -> np.ndarray:
    """The clip without the near-zero samples padded onto its end."""
    loud = np.flatnonzero(np.abs(wave) > SILENCE)
    return wave[: loud[-1] + 1] if len(loud) else wave


def write_corpus(source: Path, output: Path, seed: int) -> list[float]:
    """Writes ``output``'s utterances (files directly in it); their lengths in seconds."""
    folder = source / "wav" if (source / "wav").is_dir() else source
    clips = collections.defaultdict(list)  # (speaker, emotion letter) -> paths
    for path in sorted(folder.glob("*.wav")):
        match = NAME_PATTERN.fullmatch(path.stem)
        if match is None:
            raise SystemExit(f"{path}: not an EmoDB file name (e.g. 03a01Fa.wav)")
        clips[(match.group(1), match.group(3))].append(path)
    if not clips:
        raise SystemExit(f"{folder}: no EmoDB .wav files")
    choose, noise = random.Random(seed), np.random.default_rng(seed)
    names, lengths = set(), []
    for (speaker, emotion), paths in sorted(clips.items()):
        choose.shuffle(paths)
        start = 0
        while start < len(paths):
            size = choose.choices(GROUP_SIZES, GROUP_WEIGHTS)[0]
            group, start = paths[start : start + size], start + size
            pieces = []
            for index, path in enumerate(group):
                wave, rate = sf.read(path, dtype="float32")
                if index:
                    pause = int(rate * choose.uniform(*PAUSE_SECONDS))
                    pieces.append((noise.standard_normal(pause) * NOISE_RMS).astype("float32"))
                pieces.append(trimmed(wave))
            text = NAME_PATTERN.fullmatch(group[0].stem).group(2)
            name = next(
                f"{speaker}{text}{emotion}{v}"
                for v in VERSIONS
                if f"{speaker}{text}{emotion}{v}" not in names
            )
            names.add(name)
            wave = np.concatenate(pieces)
            sf.write(output / f"{name}.wav", wave, rate)
            lengths.append(len(wave) / rate)
    return lengths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="EmoDB folder (holding wav/, or the files)")
    parser.add_argument("output", type=Path, help="new corpus folder (its wav/ is written)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    target = args.output / "wav"
    if target.exists():
        raise SystemExit(f"{target} exists: give a new OUTPUT_ROOT (nothing was written)")
    args.output.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".wav-", dir=args.output))
    try:
        lengths = np.array(write_corpus(args.source, partial, args.seed))
    except BaseException:
        shutil.rmtree(partial)
        raise
    partial.rename(target)
    print(
        f"{target}: {len(lengths)} utterances, {lengths.min():.2f}-{lengths.max():.2f} s "
        f"(median {np.median(lengths):.2f} s, mean {lengths.mean():.2f} s, "
        f"{(lengths > 5).mean():.0%} over 5 s), {lengths.sum() / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
