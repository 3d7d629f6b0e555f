"""The device side of ``train_throughput.py``: timing on GPUs, profiler, FLOPs and MFU.

A library module of ``train_throughput.py``. CUDA runs asynchronously: step times are taken after
``synchronize()``, or they would measure only how fast steps are queued.

FLOPs of a training step are counted by ``torch.utils.flop_counter`` (matrix products,
convolutions, attention; not FFTs or element-wise ops) over one forward + backward on a full
batch (every item as long as the crop), then scaled to each measured step by its input units
(waveform samples, or AST fbank frames): ``flops per unit x units``. Units are linear in the
sequence length while attention is quadratic, so a short batch is over-counted a little (at 5 s,
attention is about 5 % of a wav2vec2-base step's FLOPs).

- executed TFLOP/s: FLOPs of the padded input actually computed, over the wall time.
- model TFLOP/s: FLOPs of the valid input only (padding is no useful work), over the wall time.
- MFU: model TFLOP/s over the device's peak for the precision (``--peak-tflops`` or, for the
  GPUs in ``PEAK_TFLOPS``, the datasheet's dense figure); none on CPU unless given.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

# Dense (no sparsity) datasheet peaks in TFLOP/s: (bf16 tensor cores, fp32 via TF32 tensor cores).
# fp32 training in PyTorch uses TF32 only with torch.backends.cuda.matmul.allow_tf32; the figure is
# the ceiling either way.
PEAK_TFLOPS = {
    "H100": {"bf16": 989.4, "fp32": 494.7},
    "H200": {"bf16": 989.4, "fp32": 494.7},
    "A100": {"bf16": 312.0, "fp32": 156.0},
}


def device_peak_tflops(precision: str) -> float | None:
    """The CUDA device's peak for ``precision`` ("bf16" or "fp32") if it is in the table."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, peaks in PEAK_TFLOPS.items():
        if key in name:
            return peaks[precision]
    return None


def synchronize() -> None:
    """Wait for the GPU's queued work (no-op on CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class StepClock:
    """Wall-clock start and end of every training step, each after the device's queued work.

    The trainers' callbacks (Lightning's and HF's) call ``begin``/``end`` from their step hooks.
    """

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []

    def begin(self) -> None:
        synchronize()
        self.starts.append(time.perf_counter())

    def end(self) -> None:
        synchronize()
        self.ends.append(time.perf_counter())


class StepProfiler:
    """torch.profiler over training steps ``first`` to ``first + steps - 1`` (counted from 0).

    CPU activity, and CUDA when there is a GPU; the trainers' callbacks call ``begin``/``end``.
    """

    def __init__(self, first: int, steps: int) -> None:
        self.first, self.last, self.step = first, first + steps - 1, -1
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profiler = torch.profiler.profile(activities=activities)

    def begin(self) -> None:
        self.step += 1
        if self.step == self.first:
            self.profiler.start()

    def end(self) -> None:
        if self.step == self.last:
            self.profiler.stop()

    def table(self) -> str:
        """The 15 ops with most self time (GPU time when there is a GPU)."""
        key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        return self.profiler.key_averages().table(sort_by=key, row_limit=15)


def count_flops(step: Callable[[], torch.Tensor]) -> int:
    """FLOPs of ``step()`` (returns a loss) and its backward pass; compiled code runs eagerly."""
    with torch.compiler.set_stance("force_eager"), FlopCounterMode(display=False) as counter:
        step().backward()
    return counter.get_total_flops()


def flop_rates(
    flops_per_unit: float, batches: list, wall: float, peak_tflops: float | None
) -> dict[str, float | None]:
    """Executed and model TFLOP/s and MFU of measured steps.

    Args:
        flops_per_unit: training FLOPs per input unit (sample or frame) of a full batch.
        batches: per measured step ``(clips, valid samples, valid units, padded units)``.
        wall: wall seconds of those steps, data waits included.
        peak_tflops: the device's peak, or None (no MFU).
    """
    valid = sum(batch[2] for batch in batches)
    padded = sum(batch[3] for batch in batches)
    model = flops_per_unit * valid / wall / 1e12
    return {
        "executed TFLOP/s": flops_per_unit * padded / wall / 1e12,
        "model TFLOP/s": model,
        "mfu": model / peak_tflops if peak_tflops else None,
    }
