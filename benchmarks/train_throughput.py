"""Training and inference throughput of ser on the CPU, through the real pipeline.

Writes the ShEMO-like corpus of ``data_loading.py`` (44.1 kHz files, ShEMO-like durations) and
builds its 16 kHz cache once; then, for each model, in a fresh process (so peak RSS is the
model's own): ``ShEMODataModule`` (cache, length-grouped batches, 5 s random crops) +
``SERModule`` + ``Trainer.fit`` with no logger and no checkpoints, timing ``--steps`` optimizer
steps after ``--warmup`` steps; then ``Trainer.predict`` over files through
``AudioFilesDataModule`` (decode + resample per file, 5 s windows with a 2.5 s hop).

Models (random init: no downloads): ``tiny`` is the model of configs/demo.yaml;
``wav2vec2-base`` is the wav2vec2 default (base) config with the CNN feature encoder frozen, as
when fine-tuning; ``ast-base`` is the AST default (base) config with 5 s windows (498 frames).

    .venv/bin/python benchmarks/train_throughput.py [--models tiny,wav2vec2-base,ast-base]
        [--steps N] [--batch-size 8] [--workdir DIR]
"""

from __future__ import annotations

import argparse
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
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if importlib.util.find_spec("ser") is None:  # a checkout without ``pip install -e .``
    sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from lightning.pytorch.cli import LightningArgumentParser  # noqa: E402

from ser.audio import TARGET_SAMPLE_RATE  # noqa: E402
from ser.data import AudioFilesDataModule, ShEMODataModule  # noqa: E402
from ser.models.backbones.ast import ASTFamily, num_fbank_frames  # noqa: E402
from ser.module import SERModule  # noqa: E402


def _load_sibling(name: str):
    """``benchmarks/<name>.py`` loaded by path: ``benchmarks`` is not an installed package."""
    spec = importlib.util.spec_from_file_location(f"_ser_benchmarks_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


data_loading = _load_sibling("data_loading")

DEMO_CONFIG = ROOT / "configs" / "demo.yaml"
MODELS = ("tiny", "wav2vec2-base", "ast-base")
# (warmup, measured) steps per model: the base models take seconds per step on 2 cores.
DEFAULT_STEPS = {"tiny": (2, 10), "wav2vec2-base": (1, 3), "ast-base": (1, 3)}
PREDICT_MODELS = ("tiny", "wav2vec2-base")


def model_config(name: str, segment_seconds: float) -> dict:
    """The ``model:`` section (LightningCLI form) of ``name``; ``tiny`` is read from demo.yaml."""
    if name == "tiny":
        config = yaml.safe_load(DEMO_CONFIG.read_text())["model"]
    elif name == "wav2vec2-base":
        hf = {"model_type": "wav2vec2", "freeze": "feature_encoder"}
        config = {"backbone": {"class_path": "ser.models.HFBackbone", "init_args": hf}}
    elif name == "ast-base":
        hf = {"model_type": "audio-spectrogram-transformer", "freeze": "none"}
        config = {"backbone": {"class_path": "ser.models.HFBackbone", "init_args": hf}}
    else:
        raise ValueError(f"unknown model {name!r}; use one of {', '.join(MODELS)}")
    # The CLI links data.max_seconds to the segment length (AST's frames per window).
    config["backbone"]["init_args"]["segment_seconds"] = segment_seconds
    return config


def build_module(config: dict, class_names: list[str]) -> SERModule:
    """Instantiate ``SERModule`` from a ``model:`` section as LightningCLI does."""
    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_lightning_class_args(SERModule, "model")
    parsed = parser.parse_object({"model": {**config, "class_names": class_names}})
    return parser.instantiate(parsed).model


def input_fill(lengths: torch.Tensor, padded_samples: int, frames: int | None) -> tuple[int, int]:
    """(valid, total) units of the model input of one batch: samples, or AST's fbank frames.

    ``frames`` is AST's frames per window: every item is padded to it whatever the batch holds,
    so the padding that costs compute is in frames, not in the (length-grouped) waveforms.
    """
    if frames is None:
        return int(lengths.sum()), padded_samples
    valid = sum(min(num_fbank_frames(n), frames) for n in lengths.tolist())
    return valid, frames * len(lengths)


def summarize(starts: list[float], ends: list[float], batches: list, warmup: int) -> dict:
    """Figures of the steps after ``warmup``; the wall time includes waiting for data.

    ``batches`` holds ``(clips, valid samples, valid input units, padded input units)`` per step.
    """
    steps = [e - s for s, e in zip(starts[warmup:], ends[warmup:], strict=True)]
    wall = ends[-1] - (ends[warmup - 1] if warmup else starts[0])
    clips, samples, valid, padded = (sum(b[i] for b in batches[warmup:]) for i in range(4))
    return {
        "steps": len(steps),
        "clips/s": clips / wall,
        "audio s/s": samples / TARGET_SAMPLE_RATE / wall,
        "padded": 1.0 - valid / padded,
        "step mean": statistics.fmean(steps),
        "step median": statistics.median(steps),
        "data wait": wall - sum(steps),
    }


class StepTimer(L.Callback):
    """Wall-clock time of every training step and the size of its batch.

    Args:
        frames: AST's frames per window (padding counted in frames), None for waveform models.
    """

    def __init__(self, frames: int | None = None) -> None:
        self.frames = frames
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.batches: list[tuple[int, int, int, int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.ends.append(time.perf_counter())
        waves, lengths = batch.waves, batch.lengths  # (B, T), (B,)
        fill = input_fill(lengths, waves.numel(), self.frames)
        self.batches.append((len(lengths), int(lengths.sum()), *fill))

    def summary(self, warmup: int) -> dict[str, float]:
        return summarize(self.starts, self.ends, self.batches, warmup)


def trainer_kwargs() -> dict:
    """CPU, fp32, no logger / checkpoints / progress bar; the sampler splits data itself."""
    return {
        "accelerator": "cpu",
        "devices": 1,
        "precision": "32-true",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "use_distributed_sampler": False,
    }


def fit_throughput(module: SERModule, datamodule: ShEMODataModule, warmup: int, steps: int):
    family = getattr(module.backbone, "family", None)
    frames = family.model.config.max_length if isinstance(family, ASTFamily) else None
    timer = StepTimer(frames)
    trainer = L.Trainer(
        **trainer_kwargs(),
        max_steps=warmup + steps,
        max_epochs=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,  # configs/trainer/default.yaml
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=datamodule)
    return timer.summary(warmup)


def predict_throughput(module: SERModule, files: list[str], seconds: float, args) -> dict:
    """Audio seconds of ``files`` (``seconds`` in all) scored per wall second by ``predict``.

    The wall time includes decoding + resampling the files and the DataLoader workers' start.
    No warm-up call: the module has just run its training steps in this process.
    """
    datamodule = AudioFilesDataModule(
        files,
        window_seconds=args.crop_seconds,  # the CLI links it to the segment length
        hop_seconds=args.crop_seconds / 2,
        batch_size=args.batch_size,
        num_workers=args.workers,
    )
    trainer = L.Trainer(**trainer_kwargs())
    start = time.perf_counter()
    outputs = trainer.predict(module, datamodule=datamodule)
    wall = time.perf_counter() - start
    windows = sum(len(batch["utt_ids"]) for batch in outputs)
    return {
        "files": len(files),
        "windows": windows,
        "audio s/s": seconds / wall,
        "rtf": wall / seconds,
    }


def run_model(name: str, corpus: str, predict_files: list[str], predict_seconds: float, args):
    """Fit (and predict) one model; runs in its own process so its peak RSS is its own."""
    torch.manual_seed(args.seed)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no GPU/TPU banners
    # A spawned process inherits "spawn", which would make every DataLoader worker re-import
    # torch (seconds per worker, each predict call); ``python -m ser`` forks them on Linux.
    if multiprocessing.parent_process() is not None and sys.platform == "linux":
        multiprocessing.set_start_method("fork", force=True)
    warmup, steps = DEFAULT_STEPS[name]
    steps = args.steps or steps
    warmup = warmup if args.warmup is None else args.warmup
    datamodule = ShEMODataModule(
        corpus,
        batch_size=args.batch_size,
        num_workers=args.workers,
        max_seconds=args.crop_seconds,
        cache_dir=str(Path(corpus).parent / "cache"),
        seed=args.seed,
    )
    start = time.perf_counter()
    module = build_module(model_config(name, args.crop_seconds), datamodule.class_names)
    build = time.perf_counter() - start
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    result = {"model": name, "params": sum(p.numel() for p in module.parameters())}
    result |= {"trainable": trainable, "build s": build, "warmup": warmup}
    result |= fit_throughput(module, datamodule, warmup, steps)
    result["fit rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB -> MiB
    if name in PREDICT_MODELS and args.predict_files:
        result["predict"] = predict_throughput(module, predict_files, predict_seconds, args)
        result["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    return result


def report(r: dict, batch_size: int, crop_seconds: float) -> None:
    print(
        f"\n{r['model']}: {r['params'] / 1e6:.2f} M parameters ({r['trainable'] / 1e6:.2f} M "
        f"trainable), built in {r['build s']:.1f} s"
    )
    print(
        f"  fit   ({r['steps']} steps after {r['warmup']} warm-up, batch {batch_size}, "
        f"{crop_seconds:g} s crops): {r['clips/s']:.2f} clips/s, {r['audio s/s']:.1f} audio s/s, "
        f"padded {r['padded']:.1%}"
    )
    print(
        f"        step {r['step mean']:.3f} s mean, {r['step median']:.3f} s median; "
        f"data wait {r['data wait']:.2f} s in all; peak RSS {r['fit rss']:.0f} MiB"
    )
    if "predict" in r:
        p = r["predict"]
        print(
            f"  predict ({p['files']} files, {p['windows']} windows): {p['audio s/s']:.1f} audio "
            f"s/s, real-time factor {p['rtf']:.4f}; peak RSS {r['rss']:.0f} MiB"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated, of " + ", ".join(MODELS)
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="measured steps (default: tiny 10, base 3)"
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="warm-up steps (default: tiny 2, base 1)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--crop-seconds", type=float, default=5.0)
    parser.add_argument("--num-files", type=int, default=300, help="files in the corpus")
    parser.add_argument("--predict-files", type=int, default=24, help="files to predict (0: none)")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    parser.add_argument(
        "--in-process", action="store_true", help="no process per model (RSS is cumulative)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; use {', '.join(MODELS)}")
    return args


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
    ShEMODataModule(str(corpus), cache_dir=str(tmp / "cache")).prepare_data()
    return corpus, rows


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    print(machine_line())
    results = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        corpus, rows = prepare_corpus(Path(tmp), args.num_files, args.seed)
        chosen = rows[: args.predict_files]
        files, seconds = [row.path for row in chosen], sum(row.duration for row in chosen)
        print(
            f"corpus: {len(rows)} ShEMO-like files at 44.1 kHz, "
            f"{sum(row.duration for row in rows) / 60:.1f} min; predict: {len(files)} files, "
            f"{seconds:.0f} s"
        )
        for name in args.models:
            job = (name, str(corpus), files, seconds, args)
            if args.in_process:
                result = run_model(*job)
            else:
                spawn = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(1, mp_context=spawn) as pool:
                    result = pool.submit(run_model, *job).result()
            report(result, args.batch_size, args.crop_seconds)
            results.append(result)
    print(f"\n{machine_line()}")
    return results


if __name__ == "__main__":
    main()
