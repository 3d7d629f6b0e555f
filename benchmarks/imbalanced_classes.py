"""EmoDB with ShEMO's class imbalance: each emotion's clips subsampled to a skewed count.

    python benchmarks/imbalanced_classes.py EMODB_ROOT OUTPUT_ROOT [--seed 7]

ShEMO, ser's first corpus, is far from balanced: anger 35 %, neutral 34 %, sadness 15 %, surprise
7.5 %, happiness 6.7 %, fear 1.3 % of 3000 utterances (28x between the largest and the smallest
class), while EmoDB, the corpus ser's real-speech checks use, is nearly balanced (127 anger to 46
disgust clips): whatever depends on class frequencies (the loss's class weights, what the
unweighted accuracy UA rewards) goes unseen on it. This keeps of each emotion at most KEEP clips
(of the 535-clip copy: 302 clips, anger 127 and neutral 79 whole, sadness 40, boredom 20,
happiness 16, disgust 12, fear 8: 16x between the largest and the smallest class), taken in turn
from each speaker after a seeded shuffle so every speaker keeps some of each emotion where it can.
The files are copied unchanged, so ser's EmoDB reader and ``configs/data/emodb.yaml`` (leave one
speaker out) take OUTPUT_ROOT as they take EmoDB. Written into a new folder and moved into place
whole. Used in docs/real_speech.md ("Class imbalance").
"""

from __future__ import annotations

import argparse
import collections
import random
import shutil
import tempfile
from pathlib import Path

from ser.data.corpora.emodb import NAME_PATTERN

# Clips kept per emotion (EmoDB's letters: W anger, N neutral, T sadness, L boredom, F happiness,
# E disgust, A fear), in the order they are drawn (one seeded generator for all).
KEEP = {"W": 127, "N": 79, "T": 40, "L": 20, "F": 16, "E": 12, "A": 8}


def chosen_clips(folder: Path, seed: int) -> list[Path]:
    """The clips kept: per emotion, shuffled, then one per speaker in turn up to KEEP."""
    by_emotion = collections.defaultdict(list)
    for path in sorted(folder.glob("*.wav")):
        match = NAME_PATTERN.fullmatch(path.stem)
        if match is None:
            raise SystemExit(f"{path}: not an EmoDB file name (e.g. 03a01Fa.wav)")
        by_emotion[match.group(3)].append(path)
    if not by_emotion:
        raise SystemExit(f"{folder}: no EmoDB .wav files")
    shuffle, kept = random.Random(seed), []
    for emotion, count in KEEP.items():
        pool = list(by_emotion.get(emotion, []))
        shuffle.shuffle(pool)
        by_speaker = collections.defaultdict(list)
        for path in pool:
            by_speaker[path.stem[:2]].append(path)
        in_turn = []
        while any(by_speaker.values()):
            for speaker in sorted(by_speaker):
                if by_speaker[speaker]:
                    in_turn.append(by_speaker[speaker].pop())
        kept += in_turn[:count]
    return kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="EmoDB folder (or its wav/ folder)")
    parser.add_argument("output", type=Path, help="new folder; the clips go into OUTPUT/wav/")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.output.exists():
        raise SystemExit(f"{args.output} exists; give a new folder")
    folder = args.source / "wav" if (args.source / "wav").is_dir() else args.source
    kept = chosen_clips(folder, args.seed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{args.output.name}.", dir=args.output.parent))
    (staging / "wav").mkdir()
    for path in kept:
        shutil.copyfile(path, staging / "wav" / path.name)
    staging.rename(args.output)
    counts = collections.Counter(NAME_PATTERN.fullmatch(p.stem).group(3) for p in kept)
    print(f"{args.output}: {len(kept)} clips; " + ", ".join(f"{e} {counts[e]}" for e in KEEP))


if __name__ == "__main__":
    main()
