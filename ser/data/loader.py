"""The loader settings every corpus datamodule shares: one typed config group, ``loader:``.

A dataclass argument is a nested, typed group in jsonargparse: ``--data.loader.batch_size 16`` on
the command line, ``loader: {batch_size: 16}`` in YAML, and a link source
(``data.init_args.loader.max_seconds`` sets the backbone's segment length).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import lightning as L
from lightning.pytorch.accelerators import CUDAAccelerator

from ser.audio import MIN_SECONDS, TARGET_SAMPLE_RATE


@dataclass(frozen=True)
class LoaderSettings:
    """How a datamodule caches, crops and batches its split.

    Args:
        batch_size: utterances per training batch (per device).
        eval_batch_size: utterances per validation/test batch; None: ``batch_size``.
        num_workers: DataLoader worker processes.
        max_seconds: training crop length in seconds (random crop; the paper's 5 s segments);
            the CLI links it to the backbone's segment length.
        eval_max_seconds: evaluation reads the whole utterance up to this cap (None: no cap);
            the model scores one longer than its window in windows, as predict does.
        min_seconds: shorter files are reported as bad.
        on_bad_file: "skip" bad files with one summary warning, or "fail" listing them.
        cache_dir: where the 16 kHz cache lives (None: ``~/.cache/ser``).
        seed: seed of the batch order and the crops, and of the split unless ``split_seed``.
        split_seed: seed of the split; None: ``seed``. Cross-validation's seeds of a fold keep it,
            so the fold tests the same utterances under every seed.
        length_bucket_seconds: pad every batch up to a whole multiple of this many seconds (not
            past the longest item a part can hold), so a run sees a handful of batch shapes: on a
            GPU each new shape is a new kernel choice, allocator pattern and, compiled, a
            recompilation. Lengths stay exact (the padding is masked). None: pad to the batch's
            longest item.
        trim_silence: train, validate and test on each utterance from its first speech to its
            last (``ser.vad.speech_span``, found when the cache is built), the span predict
            scores of a recording (``EmotionRecognizer(trim_silence=True)``): a model then learns
            and is tested on what it will be given. False: whole files, silence included. The
            cache holds both readings (changing it rebuilds nothing).
    """

    batch_size: int = 8
    eval_batch_size: int | None = None
    num_workers: int = 2
    max_seconds: float = 5.0
    eval_max_seconds: float | None = 30.0
    min_seconds: float = MIN_SECONDS
    on_bad_file: Literal["skip", "fail"] = "skip"
    cache_dir: str | None = None
    seed: int = 0
    split_seed: int | None = None
    length_bucket_seconds: float | None = None
    trim_silence: bool = True

    def __post_init__(self) -> None:
        bucket = self.length_bucket_seconds
        if bucket is not None and round(bucket * TARGET_SAMPLE_RATE) <= 0:
            raise ValueError(
                f"data.loader.length_bucket_seconds must be positive (at least one sample at "
                f"{TARGET_SAMPLE_RATE} Hz) or null, got {bucket}"
            )

    @property
    def seed_of_split(self) -> int:
        """The seed the split is made with."""
        return self.seed if self.split_seed is None else self.split_seed

    def bucket_samples(self) -> int:
        """Batch lengths are padded to whole multiples of this many samples (1: no buckets)."""
        bucket = self.length_bucket_seconds
        return 1 if bucket is None else round(bucket * TARGET_SAMPLE_RATE)


def pins_memory(trainer: L.Trainer | None) -> bool:
    """Whether loaders pin their batches' memory: when ``trainer`` runs on CUDA GPUs.

    Page-locked batches copy to the GPU asynchronously (Lightning moves them with
    ``non_blocking``); on a CPU they would only cost the pinning.
    """
    return trainer is not None and isinstance(trainer.accelerator, CUDAAccelerator)
