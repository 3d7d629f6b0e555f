"""Training and inference throughput of ser vs the HF reference recipe, on the CPU.

Writes the ShEMO-like corpus of ``data_loading.py`` (44.1 kHz files, ShEMO-like durations) and
builds its 16 kHz cache once; then, for each model and side, in a fresh spawned process (so peak
RSS is its own; DataLoader workers are forked on both sides), trains ``--warmup`` + ``--steps``
steps, timing the steps after the warm-up, then scores the first ``--predict-files`` files:

- ours: ``ShEMODataModule`` (cache, length-grouped batches, 5 s random crops; each file whole,
  ``trim_silence`` false, as the HF side reads it: the synthetic clips' leading silence would
  otherwise make ours train on less audio a clip) + ``SERModule`` + ``Trainer.fit`` with no
  logger and no checkpoints; then ``EmotionRecognizer.predict`` as
  ``python -m ser predict`` runs it (decode + resample per file in reading threads, windows of the
  median length the fit trained on, at most the 5 s crop, every half window).
- hf: the recipe of ``hf_recipe.py`` (decode per item, pad to the batch's longest, HF ``Trainer``;
  then ``pipeline("audio-classification")`` over the files, decoded per file).

Same architecture, corpus, crop, batch size and steps on both sides, and the same DataLoader
workers for training. Predict runs as each side does by default: ``python -m ser predict`` reads
the next files in two threads, the pipeline decodes in the main process.
Training is timed from the end of the last warm-up step, so waiting for data counts. Padded
fraction is of the model input: waveform samples for wav2vec2, fbank frames for AST (ours: each
batch runs at its longest window, at most 498 frames for 5 s; hf: 1024 frames per item). Predict
runs right after training in the same process, so neither side gets a warm-up call.

Predict ratios compare what each side does by default, not equal work: ours scores overlapping
windows (half-window hop: a long file costs about twice its length) and averages them; the pipeline
scores each file once, whole (wav2vec2: one pass over the full length) or cut to its first
10.24 s (AST). Audio s/s counts the files' full duration on both sides; real-time factor is wall
time over that duration.

Models (random init: no downloads): ``tiny`` is the model of configs/demo.yaml;
``wav2vec2-base`` is the wav2vec2 default (base) config with the CNN feature encoder frozen, as
when fine-tuning; ``wav2vec2-large`` the same at the size of wav2vec2-large / XLS-R-300M
(``LARGE``); ``ast-base`` is the AST default (base) config.

``--length-bucket-seconds S`` pads ours' batches to whole multiples of S seconds
(``data.loader.length_bucket_seconds``: few batch shapes); the HF side pads as its recipe does.

``--profile N`` trains 2N more steps after the timed ones (not in the timed figures): N timed by
phase (``device_timing.StepPhases``: loader wait, forward, loss and logging, backward, clipping,
optimizer, the loop's hooks; synchronised at each mark on a GPU), printed ours next to HF per
model, then N under torch.profiler, whose ops with the most self time (GPU time on CUDA) are
printed per side and model.

    .venv/bin/python benchmarks/train_throughput.py [--models tiny,wav2vec2-base,ast-base]
        [--sides ours,hf] [--steps N] [--warmup N] [--batch-size 8] [--profile N] [--workdir DIR]

The hf side needs ``accelerate`` (HF Trainer does): ``pip install -e .[bench]``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import textwrap
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if importlib.util.find_spec("ser") is None:  # a checkout without ``pip install -e .``
    sys.path.insert(0, str(ROOT))

import data_loading  # noqa: E402
import device_timing  # noqa: E402
import hf_recipe  # noqa: E402
import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402
from lightning.pytorch.cli import LightningArgumentParser  # noqa: E402

from ser.audio import TARGET_SAMPLE_RATE  # noqa: E402
from ser.data import ShEMODataModule  # noqa: E402
from ser.data.loader import LoaderSettings  # noqa: E402
from ser.inference.recognizer import EmotionRecognizer, torch_scorer  # noqa: E402
from ser.models.backbones.ast import ASTFamily  # noqa: E402
from ser.models.network import EmotionModel, model_windows  # noqa: E402
from ser.training.module import SERModule  # noqa: E402

DEMO_CONFIG = ROOT / "configs" / "demo.yaml"
MODELS = ("tiny", "wav2vec2-base", "ast-base", "wav2vec2-large")
SIDES = ("ours", "hf")
# (warm-up steps, measured steps, files to predict) per model. On 2 cores a base-model step takes
# seconds (HF's AST, at 1024 frames, about a minute): all defaults together run about 15 minutes.
DEFAULT_BUDGET = {
    "tiny": (2, 100, 300),
    "wav2vec2-base": (1, 10, 24),
    "ast-base": (1, 5, 24),
    "wav2vec2-large": (1, 3, 8),
}
# wav2vec2-large / XLS-R-300M: 24 layers of 1024, layer-norm CNN (its config's differences from
# the wav2vec2 default, which is base).
LARGE = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
    "conv_bias": True,
}


def model_config(
    name: str, segment_seconds: float, attn: str | None = None, compile: bool = False
) -> dict:
    """The ``model:`` section (LightningCLI form) of ``name``; ``tiny`` is read from demo.yaml.

    ``attn`` sets ``attn_implementation`` (None: transformers' default), ``compile`` the
    backbone's regional ``torch.compile``.
    """
    if name == "tiny":
        config = yaml.safe_load(DEMO_CONFIG.read_text())["model"]
    elif name in ("wav2vec2-base", "wav2vec2-large"):
        hf = {"model_type": "wav2vec2", "freeze": "feature_encoder"}
        hf |= {"config": dict(LARGE)} if name == "wav2vec2-large" else {}
        config = {"backbone": {"class_path": "ser.models.HFBackbone", "init_args": hf}}
    elif name == "ast-base":
        hf = {"model_type": "audio-spectrogram-transformer", "freeze": "none"}
        config = {"backbone": {"class_path": "ser.models.HFBackbone", "init_args": hf}}
    else:
        raise ValueError(f"unknown model {name!r}; use one of {', '.join(MODELS)}")
    init_args = config["backbone"]["init_args"]
    # The CLI links data.loader.max_seconds to the segment length (AST's frames per window).
    init_args["segment_seconds"] = segment_seconds
    init_args |= {"attn_implementation": attn} if attn else {}
    init_args |= {"compile": True} if compile else {}
    return config


def build_module(config: dict, class_names: list[str]) -> SERModule:
    """Instantiate ``SERModule`` from a ``model:`` section as LightningCLI does."""
    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_lightning_class_args(SERModule, "model")
    parsed = parser.parse_object({"model": {**config, "class_names": class_names}})
    return parser.instantiate(parsed).model


def input_fill(lengths: torch.Tensor, padded_samples: int, family=None) -> tuple[int, int]:
    """(valid, total) units of ours' model input for one batch: samples, or AST's fbank frames.

    AST runs each batch at its longest window (``family.window_plan``): the padding that costs
    compute is in that plan's frames, not in the (length-grouped) waveforms.
    """
    if not isinstance(family, ASTFamily):
        return int(lengths.sum()), padded_samples
    plan = family.window_plan(lengths.tolist())
    valid = sum(min(frames, plan.input_frames) for frames in plan.frames)
    return valid, len(plan.frames) * plan.input_frames


def summarize(clock: device_timing.StepClock, batches: list) -> dict:
    """Figures of the clock's timed steps; the wall time includes what runs between them.

    ``batches`` holds ``(clips, valid samples, valid input units, padded input units)`` per
    recorded step (warm-up, then timed).
    """
    timed = clock.figures()
    durations, wall = timed["durations"], timed["wall"]
    clips, samples, valid, padded = (sum(b[i] for b in batches[clock.warmup :]) for i in range(4))
    return {
        "steps": len(durations),
        "clips/s": clips / wall,
        "audio s/s": samples / TARGET_SAMPLE_RATE / wall,
        "padded": 1.0 - valid / padded,
        "wall": wall,
        "warmup wall": timed["warmup wall"],
        "step mean": statistics.fmean(durations),
        "step median": statistics.median(durations),
        "between steps": wall - sum(durations),
        "epoch starts": timed["epoch starts"],
    }


class StepTimer(L.Callback):
    """The time of every training step (``clock``) and the size of its batch, read after
    training (``batches``): reading a GPU tensor in a step would make the host wait there.

    Args:
        warmup, steps: the clock's warm-up and timed steps.
        family: the backbone family (AST's padding is counted in frames), None if not an HF one.
    """

    def __init__(self, warmup: int, steps: int, family=None) -> None:
        self.family = family
        self.clock = device_timing.StepClock(warmup, steps)
        self.inputs: list[tuple[torch.Tensor, int]] = []  # lengths (B,), waveform elements

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.clock.epoch_begin()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.clock.begin()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.clock.end()
        if len(self.inputs) < self.clock.recorded:
            self.inputs.append((batch.lengths, batch.waves.numel()))

    def batches(self) -> list[tuple[int, int, int, int]]:
        """``(clips, valid samples, valid input units, padded input units)`` per recorded step."""
        return [
            (len(lengths), int(lengths.sum()), *input_fill(lengths, padded, self.family))
            for lengths, padded in self.inputs
        ]


class StepProfiler(L.Callback):
    """``device_timing.StepPhases``, ``SyncLog`` and ``StepProfiler`` on Lightning's hooks."""

    def __init__(self, profiled: Profiled) -> None:
        self.profiled = profiled

    def on_train_start(self, trainer, pl_module) -> None:
        self.profiled.phases.attach(pl_module.backbone, trainer.optimizers[0], pl_module.head)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.profiled.begin()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.profiled.end()


class Profiled:
    """``--profile N``: after the timed steps, N steps timed by phase (and their host syncs, on
    CUDA), then N under torch.profiler."""

    def __init__(self, args) -> None:
        first = args.warmup + args.steps
        self.phases = device_timing.StepPhases(first, args.profile)
        self.syncs = device_timing.SyncLog(first, args.profile)
        self.ops = device_timing.StepProfiler(first + args.profile, args.profile)

    def begin(self) -> None:
        self.syncs.begin()
        self.phases.begin()
        self.ops.begin()

    def end(self) -> None:
        self.ops.end()
        self.phases.end()
        self.syncs.end()

    def results(self) -> dict:
        return {
            "phases": self.phases.means(),
            "syncs": self.syncs.counts(),
            "profile": self.ops.table(),
            "dispatched": self.ops.dispatched(),
        }


def profiled_steps(args) -> int:
    """Steps trained after the timed ones: ``--profile`` with phases, as many under the profiler."""
    return 2 * args.profile


def trainer_kwargs(args) -> dict:
    """One device, ``--precision``; no logger / checkpoints / progress bar; our own sampler."""
    return {
        "accelerator": "gpu" if args.device == "cuda" else "cpu",
        "devices": 1,
        "precision": "bf16-mixed" if args.precision == "bf16" else "32-true",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "use_distributed_sampler": False,
    }


def fit_throughput(module: SERModule, datamodule: ShEMODataModule, args) -> dict:
    timer = StepTimer(args.warmup, args.steps, getattr(module.backbone, "family", None))
    profiled = Profiled(args) if args.profile else None
    trainer = L.Trainer(
        **trainer_kwargs(args),
        max_steps=args.warmup + args.steps + profiled_steps(args),
        max_epochs=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,  # configs/trainer/default.yaml
        callbacks=[timer, StepProfiler(profiled)] if profiled else [timer],
    )
    with (
        profiled.phases.clipping() if profiled else contextlib.nullcontext(),
        device_timing.RecompileCounter() if args.compile else contextlib.nullcontext() as counted,
    ):
        trainer.fit(module, datamodule=datamodule)
    # Peaks before the FLOP count, whose step runs in float32.
    result = {"fit rss": peak_rss()} | peak_gpu_memory()
    batches = timer.batches()
    result |= summarize(timer.clock, batches)
    result |= {"recompiles": len(counted.reasons)} if counted else {}
    if args.flops:
        per_unit = flops_per_unit(module, args)
        result |= flop_figures(per_unit, batches, result["wall"], args)
    return result | (profiled.results() if profiled else {})


def flops_per_unit(module: SERModule, args) -> float:
    """Training FLOPs per input unit (sample, or AST frame) of a batch of full-crop clips."""
    crop = round(args.crop_seconds * TARGET_SAMPLE_RATE)
    device = torch.device(args.device)
    waves = 0.1 * torch.randn(args.batch_size, crop, generator=torch.Generator().manual_seed(0))
    waves = waves.to(device)  # (B, T)
    lengths = torch.full((args.batch_size,), crop, device=device)  # (B,)
    labels = torch.zeros(args.batch_size, dtype=torch.long, device=device)  # (B,)
    module.to(device).train()
    flops = device_timing.count_flops(
        lambda: F.cross_entropy(module(waves, lengths), labels), module
    )
    module.zero_grad(set_to_none=True)
    _, units = input_fill(lengths.cpu(), waves.numel(), getattr(module.backbone, "family", None))
    return flops / units


def flop_figures(per_unit: float, batches: list, wall: float, args) -> dict:
    """TFLOP/s and MFU of the measured steps (``device_timing.flop_rates``)."""
    measured = batches[args.warmup : args.warmup + args.steps]
    peak = args.peak_tflops or device_timing.device_peak_tflops(args.precision)
    return device_timing.flop_rates(per_unit, measured, wall, peak)


def predict_figures(files: int, windows: int, seconds: float, wall: float) -> dict:
    return {"files": files, "windows": windows, "audio s/s": seconds / wall, "rtf": wall / seconds}


def predict_throughput(module: SERModule, files: list[str], seconds: float, args) -> dict:
    """Audio seconds of ``files`` (``seconds`` in all) scored per wall second by ``predict``.

    ``EmotionRecognizer`` over the trained network, as ``python -m ser predict`` runs it (windows
    of the median length the fit trained on, at most the crop; half-window hop); the wall time
    includes decoding + resampling the files.
    """
    model = EmotionModel(module.backbone, module.pooling, module.head).eval()
    score = torch_scorer(model, args.device)
    windows = 0

    def counted(waves, lengths):
        nonlocal windows
        windows += len(lengths)
        with torch.autocast(args.device, torch.bfloat16, enabled=args.precision == "bf16"):
            return score(waves, lengths)

    window = model_windows(module.trained_lengths, args.crop_seconds).item
    recognizer = EmotionRecognizer(counted, module.class_names, window, batch_size=args.batch_size)
    start = time.perf_counter()
    recognizer.predict(files)
    wall = time.perf_counter() - start  # the scorer copies probabilities to the host: synced
    return predict_figures(len(files), windows, seconds, wall)


def setup_process(seed: int) -> None:
    torch.manual_seed(seed)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no GPU/TPU banners
    logging.getLogger("transformers").setLevel(logging.ERROR)
    # A spawned process inherits "spawn", which would make every DataLoader worker re-import
    # torch (seconds per worker, each predict call); ``python -m ser`` forks them on Linux.
    if multiprocessing.parent_process() is not None and sys.platform == "linux":
        multiprocessing.set_start_method("fork", force=True)


def describe(name: str, side: str, model: torch.nn.Module, build: float, args) -> dict:
    params = list(model.parameters())
    trainable = sum(p.numel() for p in params if p.requires_grad)
    result = {"model": name, "side": side, "params": sum(p.numel() for p in params)}
    return result | {"trainable": trainable, "build s": build, "warmup": args.warmup}


def peak_rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB -> MiB


def peak_gpu_memory() -> dict:
    """Peak GPU memory allocated by tensors in this process, in MiB (nothing on CPU)."""
    if not torch.cuda.is_available():
        return {}
    return {"gpu peak": torch.cuda.max_memory_allocated() / 2**20}


def run_ours(name: str, corpus: str, files: list[str], seconds: float, args) -> dict:
    """Fit, then predict ``files`` (``seconds`` long in all), with ser."""
    setup_process(args.seed)
    loader = LoaderSettings(
        batch_size=args.batch_size,
        num_workers=args.workers,
        max_seconds=args.crop_seconds,
        cache_dir=str(Path(corpus).parent / "cache"),
        seed=args.seed,
        length_bucket_seconds=args.length_bucket_seconds,
        trim_silence=False,  # each file whole, as the HF recipe reads it: equal work a clip
    )
    datamodule = ShEMODataModule(corpus, loader=loader)
    start = time.perf_counter()
    config = model_config(name, args.crop_seconds, args.attn, args.compile)
    module = build_module(config, datamodule.class_names)
    result = describe(name, "ours", module, time.perf_counter() - start, args)
    result |= fit_throughput(module, datamodule, args)
    if files:
        result["predict"] = predict_throughput(module, files, seconds, args)
        result["rss"] = peak_rss()
    return result


def run_hf(name: str, rows: list, class_names: list[str], files: list[str], seconds: float, args):
    """Fit, then predict ``files`` (``seconds`` long in all), with the HF recipe."""
    setup_process(args.seed)
    start = time.perf_counter()
    backbone = model_config(name, args.crop_seconds, args.attn)["backbone"]["init_args"]
    model, extractor = hf_recipe.hf_model(backbone, len(class_names))
    result = describe(name, "hf", model, time.perf_counter() - start, args)
    crop = round(args.crop_seconds * TARGET_SAMPLE_RATE)
    dataset = hf_recipe.DecodedClips(rows, class_names, extractor, crop)
    timer = hf_recipe.HFStepTimer(args.warmup, args.steps)
    profiled = Profiled(args) if args.profile else None
    with profiled.phases.clipping() if profiled else contextlib.nullcontext():
        hf_recipe.train(
            model,
            dataset,
            timer,
            max_steps=args.warmup + args.steps + profiled_steps(args),
            batch_size=args.batch_size,
            workers=args.workers,
            seed=args.seed,
            device=args.device,
            bf16=args.precision == "bf16",
            compile=args.compile,
            callbacks=(hf_recipe.HFStepProfiler(profiled),) if profiled else (),
        )
    result |= {"fit rss": peak_rss()} | peak_gpu_memory()  # before the float32 FLOP count
    batches = timer.batches()
    result |= summarize(timer.clock, batches)
    if args.flops:
        per_unit = hf_recipe.flops_per_unit(model, extractor, args.batch_size, crop)
        result |= flop_figures(per_unit, batches, result["wall"], args)
    result |= profiled.results() if profiled else {}
    if files:
        bf16 = args.precision == "bf16"
        job = (model, extractor, files, args.batch_size, args.device, bf16)
        outputs, wall = hf_recipe.predict(*job)
        result["predict"] = predict_figures(len(files), len(outputs), seconds, wall)
        result["rss"] = peak_rss()
    return result


def report(r: dict, args) -> None:
    print(
        f"\n[{r['side']}] {r['model']}: {r['params'] / 1e6:.2f} M parameters "
        f"({r['trainable'] / 1e6:.2f} M trainable), built in {r['build s']:.1f} s"
    )
    print(
        f"  fit   ({r['steps']} steps after {r['warmup']} warm-up, batch {args.batch_size}, "
        f"{args.crop_seconds:g} s crops): {r['clips/s']:.2f} clips/s, "
        f"{r['audio s/s']:.1f} audio s/s, padded {r['padded']:.1%}"
    )
    print(
        f"        step {r['step mean']:.3f} s mean, {r['step median']:.3f} s median; "
        f"between steps {r['between steps']:.2f} s in all; peak RSS {r['fit rss']:.0f} MiB"
        + (f", GPU {r['gpu peak']:.0f} MiB" if "gpu peak" in r else "")
    )
    if r["epoch starts"]:
        print(
            f"        epoch start inside the timed steps ({r['epoch starts']}): the loader's "
            "restart is in the wall time (--num-files more, or --steps fewer, to keep it out)"
        )
    if "recompiles" in r:
        print(
            f"        torch.compile: warm-up steps {r['warmup wall']:.1f} s in all (they pay the "
            f"compilation), {r['recompiles']} recompilations during fit"
        )
    if "model TFLOP/s" in r:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "- (no peak known: --peak-tflops)"
        print(
            f"        compute: {r['executed TFLOP/s']:.4g} TFLOP/s executed, "
            f"{r['model TFLOP/s']:.4g} on valid input; MFU {mfu}"
        )
    if "predict" in r:
        p = r["predict"]
        print(
            f"  predict ({p['files']} files, {p['windows']} model inputs): {p['audio s/s']:.1f} "
            f"audio s/s, real-time factor {p['rtf']:.4f}; peak RSS {r['rss']:.0f} MiB"
        )
    if "syncs" in r and torch.cuda.is_available():
        syncs = r["syncs"]
        print(
            f"  host syncs torch reported in the {args.profile} phased step(s): "
            f"{sum(syncs.values())}" + "".join(f"\n    {n} at {line}" for line, n in syncs.items())
        )
    if "profile" in r:
        table = textwrap.indent(r["profile"], "    > ")  # marked: gpu_suite.sh keeps the lines
        print(f"  profile of {args.profile} training step(s) after the phased ones:\n{table}")


def versus(ours: float, hf: float, spec: str) -> str:
    """``ours / hf (ours/hf x)``, the figures formatted with ``spec``."""
    return f"{ours:{spec}} / {hf:{spec}} ({ours / hf:.2f}x)"


def print_tables(pairs: list[tuple[dict, dict]]) -> None:
    print(
        "\n| model | clips/s ours / HF (ratio) | audio-s/s ours / HF (ratio) | padded ours / HF "
        "| median step ours / HF | between steps ours / HF | peak RSS ours / HF |"
    )
    print("|---|---|---|---|---|---|---|")
    for ours, hf in pairs:
        cells = [
            versus(ours["clips/s"], hf["clips/s"], ".2f"),
            versus(ours["audio s/s"], hf["audio s/s"], ".1f"),
            f"{ours['padded']:.1%} / {hf['padded']:.1%}",
            f"{ours['step median']:.3f} s / {hf['step median']:.3f} s",
            f"{ours['between steps']:.2f} s / {hf['between steps']:.2f} s",
            f"{ours['fit rss']:.0f} / {hf['fit rss']:.0f} MiB",
        ]
        print(f"| {ours['model']} | " + " | ".join(cells) + " |")
    counted = [
        (ours, hf) for ours, hf in pairs if "model TFLOP/s" in ours and "model TFLOP/s" in hf
    ]
    if counted:
        print(
            "\n| model | model TFLOP/s ours / HF (ratio) | executed TFLOP/s ours / HF "
            "| MFU ours / HF |"
        )
        print("|---|---|---|---|")
    for ours, hf in counted:
        mfu = [f"{r['mfu']:.1%}" if r["mfu"] is not None else "-" for r in (ours, hf)]
        cells = [
            versus(ours["model TFLOP/s"], hf["model TFLOP/s"], ".4g"),
            f"{ours['executed TFLOP/s']:.4g} / {hf['executed TFLOP/s']:.4g}",
            " / ".join(mfu),
        ]
        print(f"| {ours['model']} | " + " | ".join(cells) + " |")
    for ours, hf in pairs:
        if "phases" in ours and "phases" in hf:
            sides = {"ours": ours["phases"], "HF": hf["phases"]}
            print(f"\nWhere a training step's time goes, {ours['model']} (mean per step):")
            print(device_timing.phase_table(sides))
            dispatched = {"ours": ours["dispatched"], "HF": hf["dispatched"]}
            print(f"\nWork launched per training step, {ours['model']} (ops that differ most):")
            print(device_timing.dispatch_table(dispatched))
    predicted = [(ours, hf) for ours, hf in pairs if "predict" in ours and "predict" in hf]
    if not predicted:
        return
    print("\n| model | predict audio-s/s ours / HF (ratio) | RTF ours / HF | files |")
    print("|---|---|---|---|")
    for ours, hf in predicted:
        p, q = ours["predict"], hf["predict"]
        cells = [versus(p["audio s/s"], q["audio s/s"], ".1f"), f"{p['rtf']:.4f} / {q['rtf']:.4f}"]
        print(f"| {ours['model']} | " + " | ".join(cells) + f" | {p['files']} |")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated, of " + ", ".join(MODELS)
    )
    parser.add_argument("--sides", default=",".join(SIDES), help="ours, hf or ours,hf")
    parser.add_argument(
        "--steps", type=int, default=None, help="measured steps (tiny 100, wav2vec2 10, AST 5)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="warm-up steps (default: tiny 2, base 1)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="both sides, fit and predict")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for fit")
    parser.add_argument("--crop-seconds", type=float, default=5.0)
    parser.add_argument(
        "--length-bucket-seconds", type=float, default=None, help="ours: pad to multiples of this"
    )
    parser.add_argument("--num-files", type=int, default=300, help="files in the corpus")
    parser.add_argument(
        "--predict-files", type=int, default=None, help="files to score (tiny 300, base 24)"
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        help="2N more training steps: N timed by phase, N under torch.profiler (0: none)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: autocast both sides"
    )
    parser.add_argument(
        "--attn", choices=("eager", "sdpa"), default=None, help="attention (transformers' default)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile: ours per layer, HF whole model"
    )
    parser.add_argument(
        "--flops", action="store_true", help="count FLOPs: TFLOP/s and MFU (one extra step)"
    )
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak, for MFU")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="the folder its temporary dir is made in (made if missing; default: the system's)",
    )
    parser.add_argument(
        "--in-process", action="store_true", help="no process per run (RSS is cumulative)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown := [m for m in args.models if m not in MODELS]:
        parser.error(f"unknown models {unknown}; use {', '.join(MODELS)}")
    args.sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not args.sides or set(args.sides) - set(SIDES):
        parser.error(f"--sides {args.sides}: use ours, hf or ours,hf")
    if args.profile < 0:
        parser.error(f"--profile {args.profile}: use a number of steps >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    return args


def model_args(args: argparse.Namespace, name: str) -> argparse.Namespace:
    """``args`` with this model's warm-up steps, measured steps and files to predict filled in."""
    budget = dict(zip(("warmup", "steps", "predict_files"), DEFAULT_BUDGET[name], strict=True))
    given = {key: getattr(args, key) for key in budget if getattr(args, key) is not None}
    return argparse.Namespace(**{**vars(args), **budget, **given})


def in_own_process(args, function, *job) -> dict:
    if args.in_process:
        return function(*job)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *job).result()


def machine_line() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{datetime.datetime.now().isoformat(timespec='seconds')}  {platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"python {platform.python_version()}, load average {load}"
    )


def prepare_corpus(tmp: Path, num_files: int, seed: int) -> tuple[Path, list]:
    """Write the ShEMO-like corpus under ``tmp`` and build its cache (``tmp/cache``) once."""
    corpus = tmp / "corpus"
    rows = data_loading.write_corpus(corpus, num_files, seed)
    ShEMODataModule(str(corpus), loader=LoaderSettings(cache_dir=str(tmp / "cache"))).prepare_data()
    return corpus, rows


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    print(machine_line())
    results, pairs, failed = [], [], []
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        corpus, rows = prepare_corpus(Path(tmp), args.num_files, args.seed)
        class_names = ShEMODataModule(str(corpus)).class_names
        print(
            f"corpus: {len(rows)} ShEMO-like files at 44.1 kHz, "
            f"{sum(row.duration for row in rows) / 60:.1f} min; classes {class_names}"
        )
        for name in args.models:
            margs, pair = model_args(args, name), {}
            chosen = rows[: margs.predict_files]
            files, seconds = [row.path for row in chosen], sum(row.duration for row in chosen)
            jobs = {
                "ours": (run_ours, name, str(corpus), files, seconds, margs),
                "hf": (run_hf, name, rows, class_names, files, seconds, margs),
            }
            for side in args.sides:  # each side's figures printed as soon as it ends
                try:
                    pair[side] = in_own_process(args, *jobs[side])
                except Exception:  # the other side and models still run and print
                    print(f"\n[{side}] {name} failed:\n{traceback.format_exc()}", flush=True)
                    failed.append(f"{side} {name}")
                    continue
                report(pair[side], margs)
                sys.stdout.flush()
                results.append(pair[side])
            if len(pair) == 2:
                pairs.append((pair["ours"], pair["hf"]))
    if pairs:
        print_tables(pairs)
    print(f"\n{machine_line()}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (tracebacks above)")
    return results


if __name__ == "__main__":
    main()
