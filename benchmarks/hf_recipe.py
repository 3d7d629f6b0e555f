"""The reference recipe, written here: how people train and score with Hugging Face transformers.

A library module of ``train_throughput.py`` (which runs and times it), not a script.

Training is transformers' ``run_audio_classification.py``: a torch Dataset decodes and resamples
each 44.1 kHz file per item, takes a random 5 s subsequence (the recipe's ``random_subsample``) and
runs the HF feature extractor on it; the extractor pads each batch to its longest item
(``Wav2Vec2FeatureExtractor``; ``ASTFeatureExtractor`` always pads or truncates to ``max_length`` =
1024 frames, 10.24 s); random batches; ``Wav2Vec2ForSequenceClassification`` /
``ASTForAudioClassification``; ``transformers.Trainer`` with its default optimizer (AdamW, fused
kernel: ``adamw_torch_fused`` with torch >= 2.8; ours is fused too), fp32, gradient clipping 1.0,
no eval, no saving, no logging.

Inference is the model card's snippet: ``pipeline("audio-classification", model=...,
feature_extractor=..., device="cpu", batch_size=B)`` fed a generator that decodes each file when
the pipeline pulls it, ``{"raw": ser.audio.load(path), "sampling_rate": 16000}``, in the main
process (the pipeline's default ``num_workers=0``). Each file is scored once: wav2vec2 at its full
length (a batch is padded to its longest file), AST padded or truncated to 1024 frames (the first
10.24 s). Decoding and resampling are ser's on both sides, so the comparison is of batching and
models only: the pipeline can resample a 44.1 kHz array itself without ffmpeg (``{"raw": array,
"sampling_rate": 44100}`` goes through ``torchaudio.functional.resample``, which builds its kernel
on every call); only a path or bytes input needs ffmpeg.

Models are random init (no downloads) with the architecture of ours: ``hf_model`` reads ours'
``HFBackbone`` init_args. The HF Trainer needs ``accelerate``: ``pip install -e .[bench]``.
"""

from __future__ import annotations

import tempfile
import time

import device_timing
import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import (
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
    pipeline,
)
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor

from ser import audio
from ser.data.utterance import Utterance
from ser.models.backbones.ast import num_fbank_frames


def hf_model(backbone: dict, num_labels: int) -> tuple[PreTrainedModel, SequenceFeatureExtractor]:
    """The recipe's model (random init) and feature extractor for ours' ``HFBackbone`` init_args.

    Reads ``model_type``, the ``config`` overrides and ``freeze``; AST keeps its default
    ``max_length`` (1024 frames, as the AudioSet checkpoints): ours' ``segment_seconds`` is ours.
    """
    overrides = {**backbone.get("config", {}), "num_labels": num_labels}
    if backbone.get("attn_implementation"):  # None: transformers' default, as ours
        overrides["attn_implementation"] = backbone["attn_implementation"]
    model_type = backbone["model_type"]
    if model_type == "audio-spectrogram-transformer":
        config = ASTConfig(**overrides)
        extractor = ASTFeatureExtractor(
            num_mel_bins=config.num_mel_bins, max_length=config.max_length
        )
        return ASTForAudioClassification(config), extractor
    if model_type != "wav2vec2":
        raise ValueError(
            f"no HF recipe for model_type {model_type!r}; use wav2vec2 or "
            "audio-spectrogram-transformer"
        )
    config = Wav2Vec2Config(**overrides)
    model = Wav2Vec2ForSequenceClassification(config)
    if backbone.get("freeze", "feature_encoder") == "feature_encoder":  # HFBackbone's default
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


def input_fill(samples: torch.Tensor, shape: torch.Size) -> tuple[int, int]:
    """(valid, total) units of one batch's model input: samples, or AST's fbank frames.

    ``samples (B,)`` is each item's audio; ``shape`` the model input's, ``(B, T)`` samples
    (wav2vec2) or ``(B, L, M)`` fbank frames (AST: ``L`` = 1024 whatever the batch holds).
    """
    total = shape[0] * shape[1]
    if len(shape) == 2:
        return int(samples.sum()), total
    return sum(min(num_fbank_frames(n), shape[1]) for n in samples.tolist()), total


class HFStepTimer(TrainerCallback):
    """The time of every step (``clock``: ``warmup`` steps, then ``steps`` timed ones);
    ``TimedTrainer`` hands it each batch's lengths, read after training (``batches``): reading a
    GPU tensor in a step would make the host wait for the GPU there."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.clock = device_timing.StepClock(warmup, steps)
        self.inputs: list[tuple[torch.Tensor, torch.Size]] = []

    def on_epoch_begin(self, args, state, control, **kwargs) -> None:
        self.clock.epoch_begin()

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        self.clock.begin()

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.clock.end()

    def record(self, samples: torch.Tensor, inputs: torch.Tensor) -> None:
        """``samples (B,)`` valid audio per item; ``inputs`` the padded model input."""
        if len(self.inputs) < self.clock.recorded:
            self.inputs.append((samples, inputs.shape))

    def batches(self) -> list[tuple[int, int, int, int]]:
        """``(clips, valid samples, valid input units, padded input units)`` per recorded step."""
        return [
            (len(samples), int(samples.sum()), *input_fill(samples, shape))
            for samples, shape in self.inputs
        ]


class HFStepProfiler(TrainerCallback):
    """``train_throughput.Profiled`` (phases, syncs, torch.profiler) on the HF Trainer's hooks."""

    def __init__(self, profiled) -> None:
        self.profiled = profiled

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs) -> None:
        # accelerate wraps the optimizer; the hooks go on torch's
        self.profiled.phases.attach(model, getattr(optimizer, "optimizer", optimizer))

    def on_step_begin(self, args, state, control, **kwargs) -> None:
        self.profiled.begin()

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.profiled.end()


class TimedTrainer(Trainer):
    """``Trainer`` that takes the batch's valid lengths out of the inputs and records them."""

    def __init__(self, *args, timer: HFStepTimer, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.timer = timer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.timer.record(inputs.pop("samples"), inputs["input_values"])
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def train(
    model: PreTrainedModel,
    dataset: DecodedClips,
    timer: HFStepTimer,
    *,
    max_steps: int,
    batch_size: int,
    workers: int,
    seed: int,
    device: str = "cpu",
    bf16: bool = False,
    compile: bool = False,
    callbacks: tuple[TrainerCallback, ...] = (),
) -> None:
    """``max_steps`` steps of the recipe, timed by ``timer``; ``callbacks`` run after it.

    ``device`` "cpu" or "cuda"; ``bf16`` the recipe's ``--bf16`` (autocast); ``compile`` its
    ``--torch_compile`` (the whole model).
    """
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out,
            use_cpu=device == "cpu",
            bf16=bf16,
            torch_compile=compile,
            per_device_train_batch_size=batch_size,
            max_steps=max_steps,
            learning_rate=3e-5,  # the recipe's
            max_grad_norm=1.0,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=workers,
            remove_unused_columns=False,  # keep "samples" for the timer
            seed=seed,
        )
        trainer = TimedTrainer(
            model=model,
            args=training_args,
            train_dataset=dataset,
            data_collator=PadCollator(dataset.extractor),
            callbacks=[timer, *callbacks],
            timer=timer,
        )
        trainer.remove_callback(PrinterCallback)  # no end-of-training metrics dict on stdout
        trainer.train()


def predict(
    model: PreTrainedModel,
    extractor: SequenceFeatureExtractor,
    files: list[str],
    batch_size: int,
    device: str = "cpu",
    bf16: bool = False,
) -> tuple[list, float]:
    """Score ``files`` with the audio-classification pipeline: (its outputs, wall seconds).

    The wall time includes decoding + resampling each file as the pipeline pulls it. ``bf16``
    runs it under bf16 autocast, as ours' ``bf16-mixed``.
    """
    classifier = pipeline(
        "audio-classification",
        model=model.eval(),  # from_pretrained's state; the Trainer leaves it in train mode
        feature_extractor=extractor,
        device=device,
        batch_size=batch_size,
    )
    rate = audio.TARGET_SAMPLE_RATE

    def decoded(path: str) -> dict:
        # Pulled inside the model's autocast: CPU bf16 autocast would resample in bf16.
        with torch.autocast("cpu", enabled=False):
            return {"raw": audio.load(path), "sampling_rate": rate}

    waves = (decoded(path) for path in files)  # lazy
    start = time.perf_counter()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        outputs = list(classifier(waves))
    device_timing.synchronize()
    return outputs, time.perf_counter() - start


def flops_per_unit(
    model: PreTrainedModel, extractor: SequenceFeatureExtractor, batch_size: int, crop: int
) -> float:
    """Training FLOPs per input unit (sample, or AST frame) of a batch of full ``crop`` clips."""
    wave = 0.1 * np.random.default_rng(0).standard_normal(crop).astype(np.float32)
    features = extractor([wave] * batch_size, sampling_rate=audio.TARGET_SAMPLE_RATE)
    inputs = torch.tensor(np.stack(features["input_values"]), device=model.device)  # (B, T[, M])
    labels = torch.zeros(batch_size, dtype=torch.long, device=model.device)  # (B,)
    model.train()
    flops = device_timing.count_flops(lambda: model(input_values=inputs, labels=labels).loss, model)
    model.zero_grad(set_to_none=True)
    return flops / (inputs.shape[0] * inputs.shape[1])
