"""Filling a feature store: a frozen backbone run once over every utterance of the audio cache."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch

from ser.audio import TARGET_SAMPLE_RATE
from ser.data.cache import AudioCache, CacheDirError
from ser.data.dataset import UNKNOWN_LABEL, Batch, Item, collate
from ser.features.store import FORMAT_VERSION, FeatureStore, StoreKind
from ser.models import HFBackbone
from ser.models.distributed import wait_for_ranks
from ser.models.pooling import masked_mean_std

log = logging.getLogger(__name__)
PROGRESS_SECONDS = 30.0  # between two progress lines of a store being built

# Config entries that record where and how weights were saved, not what the model computes (the
# weights' bytes and dtypes are hashed themselves): the same weights loaded from a hub id, a
# folder or a copy of it, or built in memory, share one store.
CONFIG_RECORDS = frozenset(
    {"_name_or_path", "architectures", "dtype", "torch_dtype", "transformers_version"}
)


@dataclass(frozen=True)
class AugmentedView:
    """Augmented copy ``number`` (1, 2, ...) of every utterance, for a store of its own.

    Attributes:
        augment: waves (B, T), lengths (B,) -> augmented waves (B, T'), lengths (B,), drawing from
            Python's and torch's random state (``ser.training.augment.Augmentation``).
        settings: what ``augment`` does, as plain values: part of the store's key.
        number: the copy; each utterance's draws come from a random state seeded by it and the
            utterance's id, so a copy is the same whichever run, seed, fold or batch size builds it.
    """

    augment: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    settings: dict
    number: int


@contextmanager
def own_random_state(seed: int, device: torch.device) -> Iterator[None]:
    """Python's and torch's (CPU and ``device``) random state seeded by ``seed`` inside and
    restored after: the run's own draws go on as if the block never ran."""
    state = random.getstate()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


def utterance_seed(number: int, utt_id: str) -> int:
    """A 64-bit seed of copy ``number`` of utterance ``utt_id`` (stable across processes)."""
    return int.from_bytes(hashlib.sha256(f"{number}/{utt_id}".encode()).digest()[:8], "big")


def augmented(
    view: AugmentedView, batch: Batch, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy ``view.number`` of each utterance of ``batch``: the augmentation of the utterance alone
    under its own random state, padded again into waves (B, T') and lengths (B,). Neither the
    batch's other utterances nor its padding change a copy."""
    copies = []
    for wave, length, utt_id in zip(
        batch.waves, batch.lengths.tolist(), batch.utt_ids, strict=True
    ):
        with own_random_state(utterance_seed(view.number, utt_id), device):
            waves, lengths = view.augment(
                wave[None, :length].to(device), torch.tensor([length], device=device)
            )  # (1, T'), (1,)
        copies.append(waves[0, : int(lengths[0])])
    lengths = torch.tensor([len(copy) for copy in copies], device=device)
    return torch.nn.utils.rnn.pad_sequence(copies, batch_first=True), lengths


def store_key(state: Mapping[str, torch.Tensor], settings: dict) -> str:
    """sha256 of the weights ``state`` (names, dtypes, shapes, bytes) and of ``settings``."""
    digest = hashlib.sha256()
    digest.update(json.dumps([FORMAT_VERSION, settings], sort_keys=True, default=str).encode())
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def audio_batches(cache: AudioCache, max_samples: int | None, batch_size: int) -> Iterable[Batch]:
    """Every utterance of ``cache`` from its start, up to ``max_samples`` (no random crop), in
    padded batches of similar lengths (labels unknown)."""
    lengths = {utt_id: cache.num_samples(utt_id) for utt_id in cache.utt_ids}
    ordered = sorted(lengths, key=lengths.get)
    for start in range(0, len(ordered), batch_size):
        items = [
            Item(torch.from_numpy(cache.read(utt_id, 0, max_samples)), UNKNOWN_LABEL, utt_id)
            for utt_id in ordered[start : start + batch_size]
        ]
        yield collate(items)


def utterance_features(
    states: list[torch.Tensor], frame_lengths: torch.Tensor, kind: StoreKind
) -> list[np.ndarray]:
    """One float16 ``(count, L', H)`` array per item from the backbone's ``L'`` states
    ``(B, T', H)``: its valid frames, or (statistics) its mean and std over them."""
    if kind == "statistics":
        per_state = [torch.stack(masked_mean_std(s, frame_lengths), dim=1) for s in states]
        stacked = torch.stack(per_state, dim=2).to(torch.float16).cpu().numpy()  # (B, 2, L', H)
        return list(stacked)
    stacked = torch.stack(states, dim=2).to(torch.float16).cpu().numpy()  # (B, T', L', H)
    return [stacked[item, :count] for item, count in enumerate(frame_lengths.tolist())]


def extract(
    backbone: HFBackbone,
    batches: Iterable[Batch],
    kind: StoreKind,
    device: torch.device,
    precision: AbstractContextManager,
    root: Path,
    total_samples: int,
    view: AugmentedView | None = None,
) -> Iterator[tuple[list[str], list[np.ndarray], list[int]]]:
    """``(utt_ids, arrays, samples)`` per batch for ``FeatureStore.build``: the backbone in eval
    mode (no dropout) under ``precision`` (the run's autocast), as it would run in validation;
    with a ``view``, on its augmented copy of each batch (``samples``: the copy's lengths).

    After the first batch the store's size is estimated from its bytes per second of audio
    (``total_samples`` in all) and checked against ``root``'s free disk space; every
    ``PROGRESS_SECONDS`` the log says how much audio is done and about how long is left.
    """
    training = backbone.training
    backbone.to(device).eval()
    samples = written = 0
    start = last_report = time.perf_counter()
    with torch.no_grad(), precision:
        for number, batch in enumerate(batches):
            if view is None:
                waves, lengths = batch.waves.to(device), batch.lengths.to(device)  # (B, T), (B,)
            else:
                waves, lengths = augmented(view, batch, device)  # (B, T'), (B,)
            states, frame_lengths = backbone.hidden_states(waves, lengths)  # L' x (B, T', H)
            arrays = utterance_features(states, frame_lengths, kind)
            lengths_each = lengths.tolist()  # the copy's, with a view
            samples += sum(lengths_each)
            written += sum(array.nbytes for array in arrays)
            if number == 0:
                check_disk_space(root, kind, written / max(1, samples) * total_samples)
            now = time.perf_counter()
            if now - last_report >= PROGRESS_SECONDS and samples < total_samples:
                left = (now - start) / samples * (total_samples - samples)
                log.info(
                    "Feature store: %.1f of %.1f min of audio encoded, about %.1f min left",
                    samples / TARGET_SAMPLE_RATE / 60,
                    total_samples / TARGET_SAMPLE_RATE / 60,
                    left / 60,
                )
                last_report = now
            yield batch.utt_ids, arrays, lengths_each
    backbone.train(training)


def check_disk_space(root: Path, kind: StoreKind, expected_bytes: float) -> None:
    """Log the expected size of the store being built; refuse it if ``root`` cannot hold it (a
    frames store of wav2vec2-base's 13 states takes about 3.6 GB an hour of audio)."""
    free = shutil.disk_usage(root).free
    log.info("Building a %s feature store in %s: about %.3g MB", kind, root, expected_bytes / 1e6)
    if expected_bytes > free:
        advice = "" if kind == "statistics" else ", or --model.feature_store statistics (tiny)"
        raise CacheDirError(
            f"the {kind} feature store needs about {expected_bytes / 1e9:.3g} GB in {root}, which "
            f"has {free / 1e9:.3g} GB free: free space, or set --data.loader.cache_dir to a "
            f"bigger disk{advice}"
        )


def open_feature_store(
    backbone: HFBackbone, kind: StoreKind, trainer: L.Trainer, view: AugmentedView | None = None
) -> FeatureStore:
    """Find or build (on rank 0) the store of ``backbone`` over the datamodule's audio cache: of
    the recordings as they are, or of an augmented ``view`` of each (a store of its own, each
    utterance drawn under a random state seeded by the view's number and its id)."""
    data = trainer.datamodule
    cache: AudioCache | None = getattr(data, "cache", None)
    if cache is None:
        raise ValueError(
            f"feature_store needs a datamodule with one audio cache (a ser.data.SERDataModule); "
            f"{type(data).__name__} has none (a curriculum's stages each have their own): use "
            "--model.feature_store none"
        )
    family = backbone.family
    seconds = data.loader.eval_max_seconds
    settings = {
        "kind": kind,
        "audio_cache": cache.meta["key"],
        "trim_silence": cache.trim_silence,  # speech spans or whole files
        "eval_max_seconds": seconds,
        "backbone": backbone.output_settings(),  # layers kept, normalisation, input settings
        "family": type(family).__name__,
        "config": {
            k: v for k, v in family.model.config.to_dict().items() if k not in CONFIG_RECORDS
        },
        "front_end": family.feature_extractor().to_dict(),
        "precision": trainer.precision,  # bf16 states are not the fp32 run's
    }
    # Not part of the key: every family encodes each utterance as it would alone.
    batch_size = data.loader.eval_batch_size or data.loader.batch_size
    if view is not None:
        settings["augmented_view"] = {
            "settings": view.settings,
            "number": view.number,
            "drawn": "per utterance",  # copies drawn per batch (before 2026-12-07) are not reused
        }
    key = store_key(family.model.state_dict(), settings)
    root = cache.directory / "features"
    store = FeatureStore.find(root, key)
    how = "reused" if store is not None else "built by rank 0"
    if store is None and trainer.is_global_zero:
        max_samples = None if seconds is None else int(seconds * TARGET_SAMPLE_RATE)
        batches = audio_batches(cache, max_samples, batch_size)
        total = sum(min(cache.num_samples(u), max_samples or np.inf) for u in cache.utt_ids)
        device = trainer.strategy.root_device
        features = extract(
            backbone, batches, kind, device, trainer.precision_plugin.val_step_context(), root,
            int(total), view,
        )  # fmt: skip
        start = time.perf_counter()
        store = FeatureStore.build(root, key, kind, features)
        how = f"built in {time.perf_counter() - start:.1f} s"
    wait_for_ranks()  # the build can outlast the process group's timeout
    store = store or FeatureStore.find(root, key)
    if store is None:
        raise FileNotFoundError(
            f"feature store {root / key[:16]} is missing after rank 0 built it: the audio "
            "cache folder must be shared by all nodes (--data.loader.cache_dir)"
        )
    what = "" if view is None else f" (augmented copy {view.number})"
    log.info("Feature store%s %s (%s): %s", what, store.directory, how, store.describe())
    return store
