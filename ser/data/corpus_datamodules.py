"""The datamodules of each corpus: ShEMO, IEMOCAP, and any corpus described by a manifest.

A corpus is its scanner (``ser.data.corpora``) plus a few lines here: the arguments that locate
it, its default classes and split; the split strategy and the ``loader`` group are shared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ser.data.corpora import iemocap, manifest, shemo
from ser.data.datamodule import SERDataModule
from ser.data.loader import LoaderSettings
from ser.data.splits import BySession, FromColumn, SplitStrategy, Stratified
from ser.data.utterance import Utterance
from ser.labels import EMOTIONS, IEMOCAP_4_CLASSES, IEMOCAP_4_MERGE, SHEMO_CLASSES, LabelSet


class ShEMODataModule(SERDataModule):
    """ShEMO (Persian): ``root/female/*.wav`` and ``root/male/*.wav``, labels from file names.

    Args:
        root: the folder holding ``female/`` and ``male/`` (or all WAVs flat).
        shemo_json: optional ``shemo.json``; transcripts joined by file stem (never labels).
        classes: emotions used, in class-index order; the rest are left out.
        split: how to split (``ser.data.splits``); the paper's stratified random 80/10/10.
        loader: batch size, workers, crop lengths, cache folder and seed.
    """

    def __init__(
        self,
        root: str,
        shemo_json: str | None = None,
        classes: Sequence[str] = SHEMO_CLASSES,
        split: SplitStrategy = Stratified(),
        loader: LoaderSettings = LoaderSettings(),
    ) -> None:
        super().__init__(LabelSet(tuple(classes)), split, loader)
        self.root = root
        self.shemo_json = shemo_json

    def scan(self) -> list[Utterance]:
        return shemo.scan(self.root, self.shemo_json)


class IEMOCAPDataModule(SERDataModule):
    """IEMOCAP (English), ``Session1..5``; by default the standard 4-class protocol.

    Args:
        root: the folder holding ``Session1`` ... ``Session5``.
        classes: emotions used, in class-index order (default: anger, happiness, neutral, sadness).
        merge: emotion -> class it counts as (default: excitement counts as happiness).
        split: how to split; default leave-one-session-out with ``Session5`` held out.
        loader: batch size, workers, crop lengths, cache folder and seed.
    """

    def __init__(
        self,
        root: str,
        classes: Sequence[str] = IEMOCAP_4_CLASSES,
        merge: Mapping[str, str] = IEMOCAP_4_MERGE,
        split: SplitStrategy = BySession(),
        loader: LoaderSettings = LoaderSettings(),
    ) -> None:
        super().__init__(LabelSet(tuple(classes), merge), split, loader)
        self.root = root

    def scan(self) -> list[Utterance]:
        return iemocap.scan(self.root)


class ManifestDataModule(SERDataModule):
    """Any corpus listed in a CSV or JSONL manifest (path, label, optional speaker and split).

    Args:
        path: the manifest file (.csv or .jsonl); relative audio paths are relative to it.
        classes: emotions used, in class-index order; None uses every emotion in the manifest.
        merge: emotion -> class it counts as.
        split: how to split; default the manifest's own split column, as is.
        loader: batch size, workers, crop lengths, cache folder and seed.
    """

    def __init__(
        self,
        path: str,
        classes: Sequence[str] | None = None,
        merge: Mapping[str, str] | None = None,
        split: SplitStrategy = FromColumn(),
        loader: LoaderSettings = LoaderSettings(),
    ) -> None:
        self.path = path
        if classes is None:
            # The class list must exist before the model is built (it sizes the head), so the
            # manifest is read here; canonical order keeps indices stable across manifests.
            found = {row.label for row in manifest.scan(path)}
            classes = [name for name in EMOTIONS if name in found]
        super().__init__(LabelSet(tuple(classes), merge or {}), split, loader)

    def scan(self) -> list[Utterance]:
        return manifest.scan(self.path)
