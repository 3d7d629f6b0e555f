"""Time to a first prediction from a fresh process, step by step (run it in a new interpreter).

.venv/bin/python benchmarks/first_prediction.py --ckpt_path best.ckpt --audio a.wav
"""

from __future__ import annotations

import argparse
import itertools
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--audio", required=True, help="a short audio file")
    args = parser.parse_args()
    marks = [("start", time.perf_counter())]
    import ser

    marks.append(("import ser", time.perf_counter()))
    import torch  # noqa: F401

    marks.append(("import torch", time.perf_counter()))
    EmotionRecognizer = ser.EmotionRecognizer  # ser.inference.recognizer: torchaudio, VAD
    marks.append(("ser.inference.recognizer", time.perf_counter()))
    # ser.models loads each class on first use: HFBackbone brings transformers and the HF model
    # classes of every family, which from_checkpoint would otherwise import inside its own row.
    from ser.models import HFBackbone  # noqa: F401

    marks.append(("ser.models.HFBackbone (transformers)", time.perf_counter()))
    recognizer = EmotionRecognizer.from_checkpoint(args.ckpt_path)
    marks.append(("build model + load checkpoint", time.perf_counter()))
    recognizer.predict([args.audio])
    marks.append(("first prediction", time.perf_counter()))
    recognizer.predict([args.audio])
    marks.append(("second prediction", time.perf_counter()))
    for (_, before), (name, after) in itertools.pairwise(marks):
        print(f"{name:<38} {after - before:6.2f} s")
    print(f"{'to the first prediction':<38} {marks[-2][1] - marks[0][1]:6.2f} s")


if __name__ == "__main__":
    main()
