"""Why ours trains slower than the HF recipe on a GPU: per-step cost of changing batch shapes.

Times forward + backward + AdamW of an ``SERModule`` (wav2vec2-base or AST-base, random init) under
bf16 autocast on random batches, with batches of one fixed length (the HF recipe pads random
batches to 5 s) against lengths that change every step (ours: length-grouped batches), with
cuDNN attention allowed (torch's default; the encoders exclude it: ``ATTENTION_BACKENDS``) and
excluded, and with eager attention; then the cost of the torchmetrics update with and without
its argument checks (``torch.unique``: a host sync per update).

    python benchmarks/gpu_shapes.py [--models wav2vec2-base,ast-base] [--steps 20]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("ser") is None:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import train_throughput as tt  # noqa: E402
from torch.nn.attention import SDPBackend  # noqa: E402

from ser.evaluation.metrics import EmotionMetrics  # noqa: E402
from ser.models.backbones import hf  # noqa: E402

CLASSES = ["anger", "fear", "happiness", "neutral", "sadness", "surprise"]


def lengths_of(step: int, varying: bool, batch: int) -> torch.Tensor:
    """(B,) lengths in samples: all 5 s, or a new 1.5-5 s length group every step."""
    if not varying:
        return torch.full((batch,), 80_000)
    top = 24_000 + (step * 7919) % 56_000
    return torch.clamp(top - torch.arange(batch) * 400, min=16_000)


def time_steps(module, steps: int, varying: bool, batch: int, multiple: int = 1) -> float:
    """Median step time; ``multiple``: pad each batch's length up to a multiple of this."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-5, fused=True)
    times = []
    for step in range(steps + 3):
        lengths = lengths_of(step, varying, batch).cuda()
        padded = -(-int(lengths.max()) // multiple) * multiple
        waves = 0.1 * torch.randn(batch, padded, device="cuda")  # (B, T)
        labels = torch.randint(0, len(CLASSES), (batch,), device="cuda")
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(module(waves, lengths).float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[3:])


@contextlib.contextmanager
def cudnn_attention(allowed: bool) -> Iterator[None]:
    """While open, the encoders' SDPA may (``allowed``) or may not pick cuDNN attention.

    The encoders run under ``sdpa_kernel(hf.ATTENTION_BACKENDS)``, which overrides torch's global
    switch (``enable_cudnn_sdp``): the list itself is widened, as it was before the fix.
    """
    fixed = hf.ATTENTION_BACKENDS
    if allowed:
        hf.ATTENTION_BACKENDS = [SDPBackend.CUDNN_ATTENTION, *fixed]
    try:
        yield
    finally:
        hf.ATTENTION_BACKENDS = fixed


def time_metrics(validate: bool, steps: int, batch: int) -> float:
    metrics = EmotionMetrics(CLASSES, "train").cuda()
    for metric in metrics.modules():
        if hasattr(metric, "validate_args"):
            metric.validate_args = validate
    logits = torch.randn(batch, len(CLASSES), device="cuda")
    labels = torch.randint(0, len(CLASSES), (batch,), device="cuda")
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        metrics.update(logits, labels)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="wav2vec2-base,ast-base")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    print(tt.machine_line(), torch.cuda.get_device_name())
    for name in args.models.split(","):
        for attn, cudnn in (("sdpa", True), ("sdpa", False), ("eager", False)):
            module = tt.build_module(tt.model_config(name, 5.0, attn), CLASSES).cuda().train()
            with cudnn_attention(cudnn):
                fixed = time_steps(module, args.steps, False, args.batch_size)
                varying = time_steps(module, args.steps, True, args.batch_size)
                bucketed = time_steps(module, args.steps, True, args.batch_size, 16_000)
            print(
                f"{name:14s} {attn:5s} cudnn_sdp={cudnn!s:5s}  median step: fixed 5 s "
                f"{fixed * 1e3:6.1f} ms, varying 1.5-5 s {varying * 1e3:6.1f} ms, "
                f"varying padded to whole seconds {bucketed * 1e3:6.1f} ms",
                flush=True,
            )
            del module
    for validate in (True, False):
        ms = time_metrics(validate, 200, args.batch_size) * 1e3
        print(f"EmotionMetrics.update, validate_args={validate}: {ms:.2f} ms per call")


if __name__ == "__main__":
    main()
