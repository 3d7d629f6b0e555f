"""Feature store: each cached utterance's per-layer mean-pooled encoder states, float16 on disk.

Layout of a finished store, ``<audio cache folder>/features/<key[:16]>/``:

- ``features.float16``: ``(N, L', H)`` float16, one row per utterance, memory-mapped when read
  (``L'``: every hidden state with layer weighting, else 1, the last);
- ``index.json``: ``{utt_id: row}``;
- ``meta.json``: the full key, format version and shape; written last.

The key (``store_key``) hashes the encoder's weights (not its name) with the settings that shape
the features. As for the audio cache (``ser.data.cache``), a build writes into
``<key>.tmp-<host>-<pid>`` and renames it into place only when complete: an unfinished build is
never opened, and a later build on the same host removes it once its process is gone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ser.data.cache import AudioCache, ProcessMemmap, tmp_build_is_dead, tmp_suffix
from ser.data.dataset import Batch, Item, collate

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FEATURES_FILE = "features.float16"


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
            Item(torch.from_numpy(cache.read(utt_id, 0, max_samples)), -1, utt_id)
            for utt_id in ordered[start : start + batch_size]
        ]
        yield collate(items)


class FeatureStore:
    """A finished store: ``.read(utt_ids)`` gives their ``(B, L', H)`` float16 vectors.

    Make one with ``FeatureStore.build`` or ``FeatureStore.find``. The memmap is opened lazily in
    each process and never pickled.

    Args:
        directory: a finished store folder ``root/<key[:16]>``.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.meta: dict = json.loads((self.directory / "meta.json").read_text(encoding="utf-8"))
        self._index: dict[str, int] = json.loads(
            (self.directory / "index.json").read_text(encoding="utf-8")
        )
        self._vectors = ProcessMemmap(self.directory / FEATURES_FILE, np.float16, self.shape)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(N, L', H)``: utterances, hidden states kept, hidden size."""
        return tuple(self.meta["shape"])

    @property
    def size_bytes(self) -> int:
        return (self.directory / FEATURES_FILE).stat().st_size

    @classmethod
    def find(cls, root: str | Path, key: str) -> FeatureStore | None:
        """The finished store of ``key`` under ``root``, or None (unfinished builds never count)."""
        folder = Path(root) / key[:16]
        if not (folder / "meta.json").is_file():
            return None
        store = cls(folder)
        if store.meta.get("key") != key or store.meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"feature store {folder} belongs to another key or format (meta.json key "
                f"{store.meta.get('key')!r}, expected {key!r}); delete the folder to rebuild it"
            )
        return store

    @classmethod
    def build(
        cls, root: str | Path, key: str, batches: Iterable[tuple[Sequence[str], np.ndarray]]
    ) -> FeatureStore:
        """Write ``batches`` of ``(utt_ids, vectors (B, L', H))`` as the store of ``key``.

        All or nothing: the folder appears under its final name only once every batch is written.
        """
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        for tmp in root.glob("*.tmp-*"):
            if tmp.is_dir() and tmp_build_is_dead(tmp):
                log.info("Removing unfinished feature store of a killed build: %s", tmp)
                shutil.rmtree(tmp, ignore_errors=True)
        final = root / key[:16]
        tmp = root / f"{key}{tmp_suffix()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            index: dict[str, int] = {}
            layers_hidden: tuple[int, ...] = ()
            with (tmp / FEATURES_FILE).open("wb") as out:
                for utt_ids, vectors in batches:
                    out.write(np.ascontiguousarray(vectors, dtype=np.float16).tobytes())
                    index.update({utt_id: len(index) + i for i, utt_id in enumerate(utt_ids)})
                    layers_hidden = tuple(vectors.shape[1:])
            meta = {
                "key": key,
                "format_version": FORMAT_VERSION,
                "shape": [len(index), *layers_hidden],
            }
            (tmp / "index.json").write_text(json.dumps(index), encoding="utf-8")
            # Written last: the rename below is the commit.
            (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
            try:
                tmp.rename(final)
            except OSError:
                if not final.is_dir():
                    raise
                log.info("Another process finished feature store %s first; using it", final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls(final)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._index

    def read(self, utt_ids: Sequence[str]) -> np.ndarray:
        """``(B, L', H)`` float16 vectors of ``utt_ids`` (a copy)."""
        try:
            rows = [self._index[utt_id] for utt_id in utt_ids]
        except KeyError as err:
            raise KeyError(f"{err.args[0]!r} is not in feature store {self.directory}") from None
        return self._vectors.array[rows]
