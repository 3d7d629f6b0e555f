"""ONNX Runtime vs PyTorch on the CPU: audio seconds scored per wall second, same model and batches.

For each architecture a random-init model (throughput does not depend on the weights) is built as
``EmotionModel`` (backbone -> mean pooling -> linear head -> softmax), exported with
``ser.inference.export.export_onnx`` (which checks it against PyTorch), and both run the same
batches of
``--batch`` windows of ``--seconds`` (one item 60 % shorter, so masks matter) after one warm-up
batch. Prints a markdown table with the machine and date.

    .venv/bin/python benchmarks/onnx_throughput.py [--models tiny wav2vec2-base] [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
import yaml

from ser.inference.export import export_onnx
from ser.models import HFBackbone, LinearHead, MeanPooling
from ser.models.network import EmotionModel

ROOT = Path(__file__).resolve().parents[1]
# name -> (HF model_type, config overrides); empty overrides: the base architecture's defaults.
# "tiny" is configs/demo.yaml's model, read from there so it is written once.
_DEMO = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())["model"]["backbone"]
MODELS: dict[str, tuple[str, dict]] = {
    "tiny": (_DEMO["init_args"]["model_type"], _DEMO["init_args"]["config"]),
    "wav2vec2-base": ("wav2vec2", {}),
    "wavlm-base": ("wavlm", {}),
    "ast-base": ("audio-spectrogram-transformer", {}),
    "whisper-base": (  # the encoder of openai/whisper-base
        "whisper",
        {
            "d_model": 512,
            "encoder_layers": 6,
            "encoder_attention_heads": 8,
            "decoder_attention_heads": 8,
            "encoder_ffn_dim": 2048,
            "num_mel_bins": 80,
        },
    ),
}
CLASSES = ["anger", "fear", "happiness", "neutral", "sadness", "surprise"]


def build(name: str, seconds: float) -> EmotionModel:
    model_type, config = MODELS[name]
    backbone = HFBackbone(model_type=model_type, config=config, segment_seconds=seconds)
    pooling = MeanPooling(backbone.output_size)
    return EmotionModel(backbone, pooling, LinearHead(pooling.output_size, len(CLASSES))).eval()


def audio_per_second(run, waves: np.ndarray, lengths: np.ndarray, repeats: int) -> float:
    run(waves, lengths)  # warm-up: allocations, ORT's first-run graph work
    start = time.perf_counter()
    for _ in range(repeats):
        run(waves, lengths)
    return repeats * lengths.sum() / 16_000 / (time.perf_counter() - start)


def measure(name: str, args: argparse.Namespace, workdir: Path) -> dict:
    torch.manual_seed(0)
    model = build(name, args.seconds)
    window = round(args.seconds * 16_000)
    lengths = np.full(args.batch, window, dtype=np.int64)  # (B,)
    lengths[-1] = int(0.4 * window)
    waves = 0.1 * np.random.default_rng(0).standard_normal((args.batch, window), dtype=np.float32)
    waves[-1, lengths[-1] :] = 0.0  # (B, T)
    path = workdir / f"{name}.onnx"
    diff = export_onnx(model, CLASSES, args.seconds, path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same cores for both
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def torch_run(w, n):
        with torch.inference_mode():
            return model(torch.from_numpy(w), torch.from_numpy(n)).numpy()

    def ort_run(w, n):
        return session.run(["probs"], {"waves": w, "lengths": n})[0]

    return {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "torch": audio_per_second(torch_run, waves, lengths, args.repeats),
        "ort": audio_per_second(ort_run, waves, lengths, args.repeats),
        "diff": diff,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0, help="window length")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per runtime")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        rows = [measure(name, args, Path(workdir)) for name in args.models]
    print(
        f"\n{datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"onnxruntime {onnxruntime.__version__}; batch {args.batch} x {args.seconds} s\n"
    )
    print("| model | params | PyTorch audio-s/s | ORT audio-s/s | ORT / PyTorch | max diff |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['params'] / 1e6:.2f} M | {r['torch']:.1f} | {r['ort']:.1f} | "
            f"{r['ort'] / r['torch']:.2f}x | {r['diff']:.1e} |"
        )


if __name__ == "__main__":
    main()
