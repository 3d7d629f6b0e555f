"""Feature store: a frozen encoder's outputs for each cached utterance, float16 on disk.

Two kinds, one layout: each utterance owns ``count`` consecutive rows of ``(L', H)`` values
(``L'``: the hidden states the backbone keeps, its ``layers``):

- ``frames``: ``count`` = the utterance's frames; any pooling works on them;
- ``statistics``: ``count`` = 2, the mean and the standard deviation of each state over the
  frames (``ser.models.pooling.masked_mean_std``): tiny, for the poolings with
  ``from_statistics`` (mean, statistics).

A finished store, ``<audio cache folder>/features/<key[:16]>/``:

- ``features.float16``: ``(rows, L', H)`` float16, memory-mapped when read;
- ``index.json``: ``{utt_id: [first_row, count, samples]}`` (``samples``: the length of the audio
  the rows were computed from, in 16 kHz samples: what a probe trained on the store heard);
- ``meta.json``: the full key, format version, kind and shapes; written last.

The key (``ser.features.extract.store_key``) hashes the encoder's weights (not its name) with the
settings that shape the features. As for the audio cache (``ser.data.cache``), a build writes
into ``<key>.tmp-<host>-<pid>`` and renames it into place only when complete: an unfinished build
is never opened, and a later build on the same host removes it once its process is gone.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from ser.data.cache import (
    CacheDirError,
    CacheNotBuiltError,
    ProcessMemmap,
    check_size,
    publish_build,
    read_json,
    remove_dead_builds,
    start_build,
    tmp_suffix,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 3: each utterance's audio length in the index
FEATURES_FILE = "features.float16"
StoreKind = Literal["statistics", "frames"]
KINDS: tuple[StoreKind, ...] = ("statistics", "frames")


class FeatureStore:
    """A finished store: ``.read(utt_ids)`` gives their rows, padded into one array.

    Make one with ``FeatureStore.build`` or ``FeatureStore.find``. The memmap is opened lazily in
    each process and never pickled.

    Args:
        directory: a finished store folder ``root/<key[:16]>``.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.meta: dict = read_json(self.directory / "meta.json", "Feature store")
        self._index: dict[str, list[int]] = read_json(
            self.directory / "index.json", "Feature store"
        )
        rows = (self.meta["rows"], *self.meta["row_shape"])
        path = self.directory / FEATURES_FILE
        check_size(path, 2 * math.prod(rows), "Feature store")  # float16
        self._rows = ProcessMemmap(path, np.float16, rows)

    @property
    def kind(self) -> StoreKind:
        return self.meta["kind"]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(N, L', H)``: utterances, hidden states kept, hidden size."""
        return (len(self._index), *self.meta["row_shape"])

    @property
    def num_rows(self) -> int:
        """Rows in all: frames of every utterance, or 2 an utterance for statistics."""
        return self.meta["rows"]

    @property
    def size_bytes(self) -> int:
        return (self.directory / FEATURES_FILE).stat().st_size

    def describe(self) -> str:
        """One line for the log: kind, shape and size."""
        n, states, hidden = self.shape
        what = f"{self.num_rows} frames" if self.kind == "frames" else "mean and std"
        return (
            f"{self.kind}: {n} utterances x {states} states x {hidden} ({what}), "
            f"{self.size_bytes / 1e6:.3g} MB"
        )

    @classmethod
    def find(cls, root: str | Path, key: str) -> FeatureStore | None:
        """The finished store of ``key`` under ``root``, or None (unfinished builds never count)."""
        folder = Path(root) / key[:16]
        if not folder.is_dir():
            return None
        store = cls(folder)  # a finished store's folder: damaged where it is not whole
        if store.meta.get("key") != key or store.meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"feature store {folder} belongs to another key or format (meta.json key "
                f"{store.meta.get('key')!r}, expected {key!r}); delete the folder to rebuild it"
            )
        return store

    @classmethod
    def build(
        cls,
        root: str | Path,
        key: str,
        kind: StoreKind,
        batches: Iterable[tuple[Sequence[str], Sequence[np.ndarray], Sequence[int]]],
    ) -> FeatureStore:
        """Write ``batches`` of ``(utt_ids, a (count, L', H) array each, the audio samples each
        was computed from)`` as store ``key``.

        All or nothing: the folder appears under its final name only once every batch is written.
        """
        if kind not in KINDS:
            raise ValueError(f"feature store kind {kind!r}; expected one of {KINDS}")
        root = Path(root)
        try:
            return cls._build(root, key, kind, batches)
        # Errors that say themselves what to do (a full disk foreseen; another process's finished
        # store of this key, damaged: delete it), though OSErrors: not an unwritable folder.
        except (CacheDirError, CacheNotBuiltError):
            raise
        except OSError as err:  # read-only, no permission, disk full
            raise CacheDirError(
                f"cannot write the feature store in {root} ({err}); set "
                "--data.loader.cache_dir to a writable folder (the store lies in the audio cache)"
            ) from err

    @classmethod
    def _build(
        cls,
        root: Path,
        key: str,
        kind: StoreKind,
        batches: Iterable[tuple[Sequence[str], Sequence[np.ndarray], Sequence[int]]],
    ) -> FeatureStore:
        root.mkdir(parents=True, exist_ok=True)
        remove_dead_builds(root, "feature store")
        final = root / key[:16]
        tmp = root / f"{key}{tmp_suffix()}"
        lock = start_build(tmp)
        try:
            index: dict[str, list[int]] = {}
            rows, row_shape = 0, ()
            with (tmp / FEATURES_FILE).open("wb") as out:
                for utt_ids, arrays, samples in batches:
                    for utt_id, array, length in zip(utt_ids, arrays, samples, strict=True):
                        half = np.ascontiguousarray(array, dtype=np.float16)
                        if not np.isfinite(half).all():
                            raise ValueError(
                                f"feature store: the hidden states of {utt_id!r} are not finite "
                                "in float16 (beyond its range of 65504, or NaN in the encoder); "
                                "use --model.feature_store none"
                            )
                        out.write(half.tobytes())
                        index[utt_id] = [rows, len(array), int(length)]
                        rows, row_shape = rows + len(array), tuple(array.shape[1:])
            meta = {
                "key": key,
                "format_version": FORMAT_VERSION,
                "kind": kind,
                "rows": rows,
                "row_shape": list(row_shape),
            }
            (tmp / "index.json").write_text(json.dumps(index), encoding="utf-8")
            # Written last: the rename below is the commit.
            (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
            publish_build(tmp, final, "feature store")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            lock.close()
        return cls(final)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._index

    def read(self, utt_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(B, T, L', H)`` float16 rows of ``utt_ids``, zero-padded to the longest, and their
        counts ``(B,)`` int64 (frames; 2 for statistics: mean, std)."""
        return padded([self.rows(utt_id) for utt_id in utt_ids], self.meta["row_shape"])

    def rows(self, utt_id: str) -> np.ndarray:
        """``(count, L', H)`` float16: the rows of ``utt_id``, memory-mapped. A statistics
        store's are checked finite (the build checked every row; a frames store's are too many
        to check on every read)."""
        start, count, _ = self._span(utt_id)
        rows = self._rows.array[start : start + count]
        if self.kind == "statistics" and not np.isfinite(rows).all():
            raise ValueError(
                f"Feature store {self.directory}: the rows of {utt_id!r} are not finite, though "
                "they were when built: the file is damaged; delete the folder and run again"
            )
        return rows

    def samples(self, utt_ids: Sequence[str]) -> np.ndarray:
        """``(B,)`` int64: the length in 16 kHz samples of the audio each row was computed from."""
        return np.array([self._span(utt_id)[2] for utt_id in utt_ids], dtype=np.int64)

    def _span(self, utt_id: str) -> list[int]:
        try:
            return self._index[utt_id]
        except KeyError:
            raise KeyError(f"{utt_id!r} is not in feature store {self.directory}") from None


def padded(arrays: Sequence[np.ndarray], row_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(count, *row_shape)`` arrays -> ``(B, T, *row_shape)`` float16 zero-padded to the
    longest, counts ``(B,)`` int64."""
    counts = np.array([len(array) for array in arrays], dtype=np.int64)
    out = np.zeros((len(arrays), int(counts.max(initial=0)), *row_shape), np.float16)
    for row, array in enumerate(arrays):
        out[row, : len(array)] = array
    return out, counts


def read_views(
    stores: Sequence[FeatureStore], utt_ids: Sequence[str], views: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each utterance's rows from ``stores[view]`` (its recording, or one augmented copy of it):
    ``(B, T, L', H)`` float16 zero-padded, counts ``(B,)`` and audio samples ``(B,)`` int64."""
    chosen = list(zip([stores[view] for view in views], utt_ids, strict=True))
    rows, counts = padded([store.rows(u) for store, u in chosen], stores[0].meta["row_shape"])
    samples = np.array([store.samples([u])[0] for store, u in chosen], dtype=np.int64)
    return rows, counts, samples
