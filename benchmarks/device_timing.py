"""The device side of ``train_throughput.py``: timing on GPUs, profiler, FLOPs and MFU.

A library module of ``train_throughput.py``. CUDA runs asynchronously: the timed steps' wall time
runs from a ``synchronize()`` after the warm-up to one after the last timed step, and each step's
own time is read from CUDA events (``StepClock``); a host clock read at each step without a sync
would measure only how fast steps are queued, and a sync at each step would remove the overlap of
host and GPU work that is part of what is measured. The profiling steps after the timed ones
(``StepPhases``) do sync at each mark.

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

import contextlib
import functools
import logging
import statistics
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

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
    if _cuda():
        torch.cuda.synchronize()


class StepClock:
    """Start and end of every training step, the host never waiting inside the timed steps.

    ``warmup`` steps, then ``steps`` timed ones (later steps are not recorded). The host waits for
    the device's queued work twice only: at the end of the last warm-up step (before the first
    step when there is none) and at the end of the last timed step, so ``wall`` between them is
    the timed steps' whole time with the host's and the GPU's work overlapping as they do without
    a clock (a sync at every step would remove that overlap). A step's own time is the GPU's, from
    a CUDA event queued at its start to one queued at its end (on a CPU, where work is synchronous,
    the host's clock); the rest of ``wall`` is what runs between steps (loader waits, the loop).
    The trainers' callbacks (Lightning's and HF's) call ``begin``/``end`` from their step hooks
    and ``epoch_begin`` from their epoch hooks.
    """

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps, self.step = warmup, steps, -1
        self.starts: list[float] = []  # host clock, each recorded step
        self.ends: list[float] = []
        self.events: list[list[torch.cuda.Event]] = []  # CUDA: [start, end] of each recorded step
        self.on_cuda = False  # whether the steps run on CUDA (decided at the first step)
        self.epoch_starts: list[int] = []  # the steps that began an epoch

    @property
    def recorded(self) -> int:
        """Steps recorded: the warm-up and the timed ones."""
        return self.warmup + self.steps

    def epoch_begin(self) -> None:
        self.epoch_starts.append(self.step + 1)

    def begin(self) -> None:
        self.step += 1
        if self.step >= self.recorded:
            return
        if self.step == 0:
            self.on_cuda = _cuda()
            if self.warmup == 0:
                synchronize()
        self.starts.append(time.perf_counter())
        if self.on_cuda:
            self.events.append([_queued_event()])

    def end(self) -> None:
        if self.step >= self.recorded:
            return
        if self.step in (self.warmup - 1, self.recorded - 1):
            synchronize()
        self.ends.append(time.perf_counter())
        if self.on_cuda:
            self.events[-1].append(_queued_event())

    def figures(self) -> dict:
        """``wall`` and ``warmup wall`` seconds, each timed step's seconds (``durations``) and
        how many epochs began inside the timed steps (``epoch starts``: the loader's restart is
        then in ``wall``)."""
        if len(self.ends) < self.recorded:
            raise RuntimeError(f"the clock saw {len(self.ends)} of its {self.recorded} steps")
        first = self.ends[self.warmup - 1] if self.warmup else self.starts[0]
        if self.on_cuda:
            synchronize()
            durations = [start.elapsed_time(end) / 1e3 for start, end in self.events[self.warmup :]]
        else:
            timed = zip(self.starts[self.warmup :], self.ends[self.warmup :], strict=True)
            durations = [end - start for start, end in timed]
        starts = [step for step in self.epoch_starts if max(self.warmup, 1) <= step < self.recorded]
        return {
            "wall": self.ends[-1] - first,
            "warmup wall": first - self.starts[0],
            "durations": durations,
            "epoch starts": len(starts),
        }


def _cuda() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _queued_event() -> torch.cuda.Event:
    """A timing event queued on the current CUDA stream (the host does not wait for it)."""
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


@contextlib.contextmanager
def every_layer(model: torch.nn.Module) -> Iterator[None]:
    """LayerDrop off in ``model`` while open, so that a training-mode step runs every layer.

    wav2vec2, HuBERT and WavLM skip each layer with probability ``config.layerdrop`` (0.1 by
    default) in training, Whisper's encoder with its ``layerdrop``: one step's FLOPs would be
    chance (about +-19 % for wav2vec2-base's 12 layers).
    """
    modules = list(model.modules())
    holders = {id(m.config): m.config for m in modules if hasattr(m, "config")}
    holders |= {id(m): m for m in modules if isinstance(getattr(m, "layerdrop", None), float)}
    saved = {key: h.layerdrop for key, h in holders.items() if hasattr(h, "layerdrop")}
    for key in saved:
        holders[key].layerdrop = 0.0
    try:
        yield
    finally:
        for key, value in saved.items():
            holders[key].layerdrop = value


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

    def dispatched(self) -> dict[str, float]:
        """Work launched per profiled step: calls of each innermost aten op that does work (no
        view, allocation or composite such as ``linear``: the ``addmm`` under it), about one
        kernel launch each on a GPU, with their total under ``"aten ops"`` and, on a GPU, the
        kernels the profiler saw under ``"GPU kernels"``. Where a step is bound by launches
        (a base model at 1 % MFU) the count is its cost. On a CPU the fused AdamW reads each
        tensor's step count (``_local_scalar_dense``); on a GPU it does not."""
        steps = self.last - self.first + 1
        calls: Counter[str] = Counter()
        kernels = 0
        for event in self.profiler.events():
            if event.device_type == torch.autograd.DeviceType.CUDA:
                kernels += 1
            elif _runs_a_kernel(event):
                calls[event.name] += 1
        counts = {name: n / steps for name, n in calls.items()}
        counts["aten ops"] = sum(calls.values()) / steps
        if torch.cuda.is_available():
            counts["GPU kernels"] = kernels / steps
        return counts


def _runs_a_kernel(event) -> bool:
    """Whether a profiler event is an aten op that runs a kernel itself: not a view or an
    allocation, and no such op anywhere under it (``addmm`` under ``linear`` counts, ``linear``
    does not; views under ``addmm`` do not stop it counting)."""
    return _does_work(event) and not any(_does_work(e) for e in _descendants(event))


def _does_work(event) -> bool:
    return event.name.startswith("aten::") and not _launches_nothing(event.name)


def _descendants(event) -> Iterator:
    for child in event.cpu_children:
        yield child
        yield from _descendants(child)


# Allocations and metadata: ops that launch no kernel though their schema is not a view's.
_NO_KERNEL = frozenset(
    {
        *("empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided"),
        *("_unsafe_view", "resize_", "result_type"),
    }
)


@functools.cache
def _launches_nothing(name: str) -> bool:
    """Whether the aten op ``name`` ("aten::view") only makes a view or allocates, by its schema:
    a view returns an alias of an input that it does not write."""
    op = name.removeprefix("aten::")
    if op in _NO_KERNEL:
        return True
    packet = getattr(torch.ops.aten, op, None)
    if packet is None:
        return False
    overloads = [getattr(packet, overload) for overload in packet.overloads()]
    if any(torch.Tag.inplace_view in overload.tags for overload in overloads):
        return True  # as_strided_, squeeze_: a tensor's sizes and strides change, not its data
    schemas = [overload._schema for overload in overloads]
    return any(
        ret.alias_info is not None and not ret.alias_info.is_write
        for schema in schemas
        for ret in schema.returns
    )


def dispatch_table(sides: dict[str, dict[str, float]], rows: int = 12) -> str:
    """Markdown table of the work launched per step (``StepProfiler.dispatched``), one column per
    side: the totals, then the ``rows`` ops whose calls differ most between the first two sides."""
    first, second = list(sides.values())[:2]
    totals = [name for name in ("aten ops", "GPU kernels") if name in first]
    ops = set(first) | set(second)
    ops -= {"aten ops", "GPU kernels"}
    differ = sorted(ops, key=lambda op: -abs(first.get(op, 0.0) - second.get(op, 0.0)))
    lines = ["| per step | " + " | ".join(sides) + " |", "|---|" + "---|" * len(sides)]
    for name in totals + differ[:rows]:
        cells = [f"{counts.get(name, 0.0):.0f}" for counts in sides.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# Where a training step's time goes: the marks both trainers pass, in order, and the phase that
# ends at each mark (the first, "between steps", runs from the previous step's end).
PHASES = {
    "begin": "between steps (loader, loop)",
    "forward": "step start to forward",
    "forward end": "model forward",
    "backward": "loss, metrics, logging",
    "clip": "backward",
    "clip end": "gradient clipping",
    "optimizer end": "optimizer step",
    "end": "after the optimizer",
}


class StepPhases:
    """Wall time of each phase of training steps ``first`` to ``first + steps - 1`` (from 0).

    Marks, each after the device's queued work: the trainers' step hooks (``begin``/``end``), a
    forward pre-hook and hook on the model, a gradient hook on its output (backward starts), the
    gradient clipping functions' calls (``clipping``) and the optimizer's step post-hook.
    Synchronising at every mark costs a little: profiled steps are not timed ones.
    """

    def __init__(self, first: int, steps: int) -> None:
        self.first, self.last, self.step = first, first + steps - 1, -1
        self.previous_end: float | None = None
        self.current: dict[str, float] | None = None  # marks of the step being profiled
        self.steps: list[dict[str, float]] = []  # phase durations of complete steps

    def mark(self, name: str) -> None:
        if self.current is not None and name not in self.current:
            synchronize()
            self.current[name] = time.perf_counter()

    def begin(self) -> None:
        self.step += 1
        if self.first <= self.step <= self.last and self.previous_end is not None:
            self.current = {}
            self.mark("begin")

    def end(self) -> None:
        synchronize()
        now = time.perf_counter()
        marks, self.current = self.current, None
        if marks is not None and len(marks) == len(PHASES) - 1:
            times = [self.previous_end, *marks.values(), now]
            names = [*marks, "end"]
            if names == list(PHASES):  # every mark, in order
                self.steps.append(
                    {
                        PHASES[name]: b - a
                        for name, a, b in zip(names, times[:-1], times[1:], strict=True)
                    }
                )
        self.previous_end = now

    def attach(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        last: torch.nn.Module | None = None,
    ) -> None:
        """Mark the forward from ``model``'s start to ``last``'s end (default: ``model``'s; ours
        runs its encoder and head separately, not through its own ``forward``), the backward of
        that output and the optimizer's step end."""

        def forward_end(module, args, output) -> None:
            self.mark("forward end")
            # Backward starts where the output's gradient arrives: ours returns logits, HF's
            # model its loss too (its returned logits may be a float32 copy off the loss's path).
            start = output
            if not isinstance(output, torch.Tensor):
                start = output.logits if output.get("loss") is None else output.loss
            if start.requires_grad:
                start.register_hook(lambda grad: self.mark("backward"))

        model.register_forward_pre_hook(lambda module, args: self.mark("forward"))
        (model if last is None else last).register_forward_hook(forward_end)
        optimizer.register_step_post_hook(lambda *args: self.mark("optimizer end"))

    @contextlib.contextmanager
    def clipping(self) -> Iterator[None]:
        """Mark where gradient clipping starts and ends while open.

        Lightning clips with ``torch.nn.utils.clip_grad_norm_``; accelerate (the HF Trainer) with
        its two halves, ``get_total_norm`` then ``clip_grads_with_norm_``: each is wrapped, and
        the first start and end marks of a step count.
        """
        utils = torch.nn.utils
        wrapped = {"clip_grad_norm_": (True, True), "get_total_norm": (True, False)}
        wrapped |= {"clip_grads_with_norm_": (False, True)}
        originals = {name: getattr(utils, name) for name in wrapped}

        def marking(function, starts: bool, ends: bool):
            def marked(*args, **kwargs):
                if starts:
                    self.mark("clip")
                result = function(*args, **kwargs)
                if ends:
                    self.mark("clip end")
                return result

            return marked

        for name, (starts, ends) in wrapped.items():
            setattr(utils, name, marking(originals[name], starts, ends))
        try:
            yield
        finally:
            for name, function in originals.items():
                setattr(utils, name, function)

    def means(self) -> dict[str, float]:
        """Mean seconds per step of each phase (empty if no step had every mark)."""
        if not self.steps:
            return {}
        return {name: statistics.fmean(step[name] for step in self.steps) for name in self.steps[0]}


def phase_table(sides: dict[str, dict[str, float]]) -> str:
    """Markdown table of mean ms per step of each phase, one column per side (``StepPhases``)."""
    names = list(PHASES.values())
    lines = ["| phase | " + " | ".join(f"{side} ms" for side in sides) + " |"]
    lines.append("|---|" + "---|" * len(sides))
    for name in [*names, "step, all phases"]:
        cells = []
        for means in sides.values():
            value = sum(means.values()) if name == "step, all phases" else means.get(name)
            cells.append("-" if not means or value is None else f"{value * 1e3:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


class SyncLog:
    """Host-device syncs torch reports on CUDA in steps ``first`` to ``first + steps - 1``.

    ``torch.cuda.set_sync_debug_mode("warn")`` warns at every operation that makes the host wait
    for the GPU (``.item()``, a copy to the host, ``nonzero``...), from the Python line that called
    it; ``counts`` tallies them by that line. This module's own ``synchronize`` (the step timing)
    is left out. Nothing is recorded without CUDA.
    """

    def __init__(self, first: int, steps: int) -> None:
        self.first, self.last, self.step = first, first + steps - 1, -1
        self._catching: warnings.catch_warnings | None = None
        self.records: list[warnings.WarningMessage] = []

    def begin(self) -> None:
        self.step += 1
        if self.step == self.first and torch.cuda.is_available():
            self._catching = warnings.catch_warnings(record=True)
            self.records = self._catching.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def end(self) -> None:
        if self.step == self.last and self._catching is not None:
            torch.cuda.set_sync_debug_mode("default")
            self._catching.__exit__(None, None, None)
            self._catching = None

    def counts(self) -> dict[str, int]:
        """Reported syncs per calling line (``file:line``), most first."""
        lines = Counter(
            f"{Path(record.filename).name}:{record.lineno}"
            for record in self.records
            if "synchroniz" in str(record.message) and Path(record.filename) != Path(__file__)
        )
        return dict(lines.most_common())


class RecompileCounter(logging.Handler):
    """Counts torch.compile's recompilations while open: the records of ``TORCH_LOGS=recompiles``.

    Each names the function and the guard that failed (a new shape, a changed constant); they are
    also printed, as that setting does.
    """

    LOGGER = "torch._dynamo.guards.__recompiles"  # the "recompiles" artifact's logger

    def __init__(self) -> None:
        super().__init__()
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.reasons.append(record.getMessage())

    def __enter__(self) -> RecompileCounter:
        torch._logging.set_logs(recompiles=True)
        logging.getLogger(self.LOGGER).addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger(self.LOGGER).removeHandler(self)
        torch._logging.set_logs()


def count_flops(step: Callable[[], torch.Tensor], model: torch.nn.Module | None = None) -> int:
    """FLOPs of ``step()`` (returns a loss) and its backward pass; compiled code runs eagerly and
    ``model``'s LayerDrop is off (``every_layer``), so the count is that of every layer."""
    with (
        torch.compiler.set_stance("force_eager"),
        every_layer(model) if model is not None else contextlib.nullcontext(),
        FlopCounterMode(display=False) as counter,
    ):
        step().backward()
    return counter.get_total_flops()


def flop_rates(
    flops_per_unit: float, batches: list, wall: float, peak_tflops: float | None
) -> dict[str, float | None]:
    """Executed and model TFLOP/s and MFU of measured steps.

    Args:
        flops_per_unit: training FLOPs per input unit (sample or frame) of a full batch.
        batches: per measured step ``(clips, valid samples, valid units, padded units)``.
        wall: wall seconds of those steps, what runs between them included.
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
