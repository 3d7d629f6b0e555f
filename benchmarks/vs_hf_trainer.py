"""ser training vs the HF Trainer recipe: same architecture, corpus, crop, batch and steps, on CPU.

Ours is ``train_throughput.run_model`` (ShEMODataModule's 16 kHz cache, length-grouped batches,
5 s random crops; SERModule; Lightning Trainer). The baseline is the recipe most people copy
(transformers' ``run_audio_classification.py``), written here: a torch Dataset that decodes and
resamples each 44.1 kHz file per item, takes a random 5 s subsequence (``random_subsample``) and
runs the HF feature extractor on it; the extractor pads each batch to its longest item
(``Wav2Vec2FeatureExtractor``; ``ASTFeatureExtractor`` always pads to ``max_length`` = 1024
frames, 10.24 s); random batches; ``Wav2Vec2ForSequenceClassification`` /
``ASTForAudioClassification``; ``transformers.Trainer`` with AdamW, fp32, gradient clipping 1.0,
no eval, no saving, no logging, the same DataLoader workers.

Each side of each model runs in its own spawned process (peak RSS is its own; DataLoader workers
are forked in both). Steps after the warm-up are timed from the end of the last warm-up step, so
waiting for data counts. Padded fraction is of the model input: waveform samples for wav2vec2,
fbank frames for AST (ours: 498 frames per 5 s window; baseline: 1024).

    .venv/bin/python benchmarks/vs_hf_trainer.py [--models tiny,wav2vec2-base,ast-base]
        [--steps N] [--warmup N] [--batch-size 8] [--workers 2] [--workdir DIR]

Needs ``accelerate`` (HF Trainer does): ``pip install -e .[bench]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import multiprocessing
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _load_train_throughput():
    """``benchmarks/train_throughput.py`` by path (it puts the checkout on ``sys.path``)."""
    path = HERE / "train_throughput.py"
    spec = importlib.util.spec_from_file_location("_ser_benchmarks_train_throughput", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tt = _load_train_throughput()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402
from transformers import (  # noqa: E402
    ASTConfig,
    ASTFeatureExtractor,
    ASTForAudioClassification,
    PreTrainedModel,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForSequenceClassification,
)
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor  # noqa: E402

from ser import audio  # noqa: E402
from ser.data import ShEMODataModule  # noqa: E402
from ser.data.utterance import Utterance  # noqa: E402

# (warm-up, measured) steps: AST-base at 1024 frames takes about a minute a step on 2 cores.
DEFAULT_STEPS = {"tiny": (2, 10), "wav2vec2-base": (1, 3), "ast-base": (1, 2)}


def hf_model(name: str, num_labels: int) -> tuple[PreTrainedModel, SequenceFeatureExtractor]:
    """The recipe's model (random init, same encoder config as ours) and feature extractor."""
    if name == "ast-base":  # default config: max_length 1024 frames, as the AudioSet checkpoints
        return ASTForAudioClassification(ASTConfig(num_labels=num_labels)), ASTFeatureExtractor()
    if name == "tiny":
        overrides = yaml.safe_load(tt.DEMO_CONFIG.read_text())["model"]["backbone"]["init_args"]
        config = Wav2Vec2Config(**overrides["config"], num_labels=num_labels)
    elif name == "wav2vec2-base":
        config = Wav2Vec2Config(num_labels=num_labels)
    else:
        raise ValueError(f"unknown model {name!r}; use one of {', '.join(tt.MODELS)}")
    model = Wav2Vec2ForSequenceClassification(config)
    if name == "wav2vec2-base":
        model.freeze_feature_encoder()  # the recipe's --freeze_feature_encoder (default True)
    # HF checkpoints ask for an attention mask only with layer-norm CNNs (wav2vec2-base: none).
    mask = config.feat_extract_norm == "layer"
    return model, Wav2Vec2FeatureExtractor(return_attention_mask=mask)


class DecodedClips(Dataset):
    """Decode + resample the file, random crop of at most ``crop_samples``, feature extractor.

    Args:
        rows: the corpus.
        class_names: label order.
        extractor: the HF feature extractor of the model.
        crop_samples: longest crop, in 16 kHz samples.
    """

    def __init__(
        self,
        rows: list[Utterance],
        class_names: list[str],
        extractor: SequenceFeatureExtractor,
        crop_samples: int,
    ) -> None:
        self.rows = [row for row in rows if row.label in class_names]
        self.class_names, self.extractor, self.crop_samples = class_names, extractor, crop_samples

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        wave = audio.load(row.path)  # (T,) 16 kHz
        if len(wave) > self.crop_samples:  # the recipe's random_subsample
            start = np.random.randint(0, max(1, len(wave) - self.crop_samples - 1))
            wave = wave[start : start + self.crop_samples]
        features = self.extractor(wave, sampling_rate=audio.TARGET_SAMPLE_RATE)
        label = self.class_names.index(row.label)
        return {"input_values": features["input_values"][0], "labels": label, "samples": len(wave)}


class PadCollator:
    """The extractor pads the batch (to its longest item; AST items are all 1024 frames)."""

    def __init__(self, extractor: SequenceFeatureExtractor) -> None:
        self.extractor = extractor

    def __call__(self, items: list[dict]) -> dict:
        batch = self.extractor.pad(
            [{"input_values": item["input_values"]} for item in items],
            padding="longest",
            return_tensors="pt",
        )
        batch["labels"] = torch.tensor([item["labels"] for item in items])  # (B,)
        batch["samples"] = torch.tensor([item["samples"] for item in items])  # (B,)
        return batch


class HFStepTimer(TrainerCallback):
    """``StepTimer`` for the HF Trainer; the trainer hands it each batch's sizes."""

    def __init__(self, frames: int | None) -> None:
        self.frames = frames
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.batches: list[tuple[int, int, int, int]] = []

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        self.starts.append(time.perf_counter())

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.ends.append(time.perf_counter())

    def record(self, samples: torch.Tensor, inputs: torch.Tensor) -> None:
        """``samples (B,)`` valid audio per item; ``inputs`` the padded model input."""
        padded = inputs.shape[0] * inputs.shape[1]  # (B, T) samples or (B, L, M) frames
        fill = tt.input_fill(samples, padded, self.frames)
        self.batches.append((len(samples), int(samples.sum()), *fill))


class TimedTrainer(Trainer):
    """``Trainer`` that takes the batch's valid lengths out of the inputs and records them."""

    def __init__(self, *args, timer: HFStepTimer, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.timer = timer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.timer.record(inputs.pop("samples"), inputs["input_values"])
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def run_baseline(name: str, rows: list[Utterance], class_names: list[str], args) -> dict:
    """The HF recipe for ``args.warmup + args.steps`` steps; runs in its own process."""
    torch.manual_seed(args.seed)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if multiprocessing.parent_process() is not None and sys.platform == "linux":
        multiprocessing.set_start_method("fork", force=True)  # as ours: workers are forked
    start = time.perf_counter()
    model, extractor = hf_model(name, len(class_names))
    build = time.perf_counter() - start
    frames = model.config.max_length if name == "ast-base" else None
    dataset = DecodedClips(rows, class_names, extractor, round(args.crop_seconds * 16_000))
    timer = HFStepTimer(frames)
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out,
            use_cpu=True,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.warmup + args.steps,
            learning_rate=3e-5,  # the recipe's
            optim="adamw_torch",
            max_grad_norm=1.0,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=args.workers,
            remove_unused_columns=False,  # keep "samples" for the timer
            seed=args.seed,
        )
        trainer = TimedTrainer(
            model=model,
            args=training_args,
            train_dataset=dataset,
            data_collator=PadCollator(extractor),
            callbacks=[timer],
            timer=timer,
        )
        trainer.remove_callback(PrinterCallback)  # no end-of-training metrics dict on stdout
        trainer.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result = {"model": name, "params": sum(p.numel() for p in model.parameters())}
    result |= {"trainable": trainable, "build s": build, "warmup": args.warmup}
    result |= tt.summarize(timer.starts, timer.ends, timer.batches, args.warmup)
    result["fit rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # MiB
    return result


def run_ours(name: str, corpus: str, args) -> dict:
    """``train_throughput.run_model`` without predict; a function of this file so spawn finds it."""
    return tt.run_model(name, corpus, [], 0.0, args)


def in_own_process(args, function, *job):
    if args.in_process:
        return function(*job)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *job).result()


def print_table(pairs: list[tuple[dict, dict]]) -> None:
    print(
        "\n| model | clips/s ours / HF (ratio) | audio-s/s ours / HF (ratio) | padded ours / HF "
        "| median step ours / HF | data wait ours / HF | peak RSS ours / HF |"
    )
    print("|---|---|---|---|---|---|---|")
    for ours, hf in pairs:
        cells = [
            f"{ours['clips/s']:.2f} / {hf['clips/s']:.2f} ({ours['clips/s'] / hf['clips/s']:.2f}x)",
            f"{ours['audio s/s']:.1f} / {hf['audio s/s']:.1f} "
            f"({ours['audio s/s'] / hf['audio s/s']:.2f}x)",
            f"{ours['padded']:.1%} / {hf['padded']:.1%}",
            f"{ours['step median']:.3f} s / {hf['step median']:.3f} s",
            f"{ours['data wait']:.2f} s / {hf['data wait']:.2f} s",
            f"{ours['fit rss']:.0f} / {hf['fit rss']:.0f} MiB",
        ]
        print(f"| {ours['model']} | " + " | ".join(cells) + " |")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(tt.MODELS), help="comma-separated")
    parser.add_argument("--steps", type=int, default=None, help="measured (tiny 10, base 3/2)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up (tiny 2, base 1)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers, both sides")
    parser.add_argument("--crop-seconds", type=float, default=5.0)
    parser.add_argument("--num-files", type=int, default=300, help="files in the corpus")
    parser.add_argument("--sides", default="ours,hf", help="ours, hf or both")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    parser.add_argument("--in-process", action="store_true", help="no process per run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown := [m for m in args.models if m not in tt.MODELS]:
        parser.error(f"unknown models {unknown}; use {', '.join(tt.MODELS)}")
    args.sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not args.sides or set(args.sides) - {"ours", "hf"}:
        parser.error(f"--sides {args.sides}: use ours, hf or ours,hf")
    return args


def model_args(args: argparse.Namespace, name: str) -> argparse.Namespace:
    """``args`` with this model's steps filled in and no predict pass."""
    warmup, steps = DEFAULT_STEPS[name]
    warmup = warmup if args.warmup is None else args.warmup
    return argparse.Namespace(
        **{**vars(args), "warmup": warmup, "steps": args.steps or steps}, predict_files=0
    )


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    print(tt.machine_line())
    results, pairs = [], []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        corpus, rows = tt.prepare_corpus(Path(tmp), args.num_files, args.seed)
        class_names = ShEMODataModule(str(corpus)).class_names
        print(
            f"corpus: {len(rows)} ShEMO-like files at 44.1 kHz, "
            f"{sum(r.duration for r in rows) / 60:.1f} min; classes {class_names}"
        )
        for name in args.models:
            margs = model_args(args, name)
            pair = {}
            if "ours" in args.sides:
                pair["ours"] = in_own_process(args, run_ours, name, str(corpus), margs)
                pair["ours"]["side"] = "ours"
            if "hf" in args.sides:
                pair["hf"] = in_own_process(args, run_baseline, name, rows, class_names, margs)
                pair["hf"]["side"] = "hf"
            for side, result in pair.items():
                print(f"\n[{side}]", end="")
                tt.report(result, args.batch_size, args.crop_seconds)
                results.append(result)
            if len(pair) == 2:
                pairs.append((pair["ours"], pair["hf"]))
    if pairs:
        print_table(pairs)
    print(f"\n{tt.machine_line()}")
    return results


if __name__ == "__main__":
    main()
