"""The datamodules of each corpus: ShEMO, IEMOCAP, and any corpus described by a manifest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from ser.data import splits
from ser.data.corpora import iemocap, manifest, shemo
from ser.data.datamodule import SERDataModule, SplitMethod, check_fractions, split_by_method
from ser.data.utterance import Utterance
from ser.labels import EMOTIONS, IEMOCAP_4_CLASSES, IEMOCAP_4_MERGE, SHEMO_CLASSES, LabelSet


class ShEMODataModule(SERDataModule):
    """ShEMO (Persian): ``root/female/*.wav`` and ``root/male/*.wav``, labels from file names.

    Args:
        root: the folder holding ``female/`` and ``male/`` (or all WAVs flat).
        shemo_json: optional ``shemo.json``; transcripts joined by file stem (never labels).
        classes: emotions used, in class-index order; the rest are left out.
        split: stratified random (the paper), speaker-independent, or (speaker) k-fold.
        val_fraction: share of utterances in validation.
        test_fraction: share of utterances in test (stratified and speaker splits).
        num_folds: folds of the k-fold splits.
        fold: which fold is the test part (k-fold splits).
        batch_size: utterances per training batch (per device).
        eval_batch_size: utterances per validation/test batch; defaults to ``batch_size``.
        num_workers: DataLoader worker processes.
        max_seconds: training crop length in seconds (the paper's 5 s segments).
        eval_max_seconds: evaluation uses the whole utterance up to this cap (None: no cap).
        min_seconds: shorter files are reported as bad.
        on_bad_file: "skip" bad files with one summary warning, or "fail" listing them.
        cache_dir: where the 16 kHz cache lives (default ``~/.cache/ser``).
        seed: seed of the split and of the batch order.
    """

    def __init__(
        self,
        root: str,
        shemo_json: str | None = None,
        classes: Sequence[str] = SHEMO_CLASSES,
        split: Literal["stratified", "speaker", "kfold", "speaker_kfold"] = "stratified",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        num_folds: int = 5,
        fold: int = 0,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        max_seconds: float = 5.0,
        eval_max_seconds: float | None = 30.0,
        min_seconds: float = 0.1,
        on_bad_file: Literal["skip", "fail"] = "skip",
        cache_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            LabelSet(tuple(classes)),
            batch_size,
            eval_batch_size,
            num_workers,
            max_seconds,
            eval_max_seconds,
            min_seconds,
            on_bad_file,
            cache_dir,
            seed,
        )
        check_fractions(val_fraction, test_fraction)
        self.save_hyperparameters()
        self.root = root
        self.shemo_json = shemo_json

    def scan(self) -> list[Utterance]:
        return shemo.scan(self.root, self.shemo_json)

    def split(self, rows: list[Utterance]) -> dict[str, list[Utterance]]:
        h = self.hparams
        return split_by_method(
            rows, h.split, h.val_fraction, h.test_fraction, h.num_folds, h.fold, self.seed
        )


class IEMOCAPDataModule(SERDataModule):
    """IEMOCAP (English), ``Session1..5``; by default the standard 4-class protocol.

    Args:
        root: the folder holding ``Session1`` ... ``Session5``.
        classes: emotions used, in class-index order (default: anger, happiness, neutral, sadness).
        merge: emotion -> class it counts as (default: excitement counts as happiness).
        test_session: the held-out session of leave-one-session-out (1..5).
        val_session: a session for validation; None takes ``val_fraction`` of the rest.
        val_fraction: share of the training sessions used for validation.
        batch_size: utterances per training batch (per device).
        eval_batch_size: utterances per validation/test batch; defaults to ``batch_size``.
        num_workers: DataLoader worker processes.
        max_seconds: training crop length in seconds.
        eval_max_seconds: evaluation uses the whole utterance up to this cap (None: no cap).
        min_seconds: shorter files are reported as bad.
        on_bad_file: "skip" bad files with one summary warning, or "fail" listing them.
        cache_dir: where the 16 kHz cache lives (default ``~/.cache/ser``).
        seed: seed of the split and of the batch order.
    """

    def __init__(
        self,
        root: str,
        classes: Sequence[str] = IEMOCAP_4_CLASSES,
        merge: Mapping[str, str] = IEMOCAP_4_MERGE,
        test_session: int = 5,
        val_session: int | None = None,
        val_fraction: float = 0.1,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        max_seconds: float = 5.0,
        eval_max_seconds: float | None = 30.0,
        min_seconds: float = 0.1,
        on_bad_file: Literal["skip", "fail"] = "skip",
        cache_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            LabelSet(tuple(classes), merge),
            batch_size,
            eval_batch_size,
            num_workers,
            max_seconds,
            eval_max_seconds,
            min_seconds,
            on_bad_file,
            cache_dir,
            seed,
        )
        for name, session in (("test_session", test_session), ("val_session", val_session)):
            if session is not None and session not in range(1, 6):
                raise ValueError(f"{name}={session}: IEMOCAP sessions are 1..5")
        self.save_hyperparameters()
        self.root = root

    def scan(self) -> list[Utterance]:
        return iemocap.scan(self.root)

    def split(self, rows: list[Utterance]) -> dict[str, list[Utterance]]:
        h = self.hparams
        val_session = None if h.val_session is None else f"Session{h.val_session}"
        return splits.by_session(
            rows, f"Session{h.test_session}", val_session, h.val_fraction, self.seed
        )


class ManifestDataModule(SERDataModule):
    """Any corpus listed in a CSV or JSONL manifest (path, label, optional speaker and split).

    Args:
        path: the manifest file (.csv or .jsonl); relative audio paths are relative to it.
        classes: emotions used, in class-index order; None uses every emotion in the manifest.
        merge: emotion -> class it counts as.
        split: "column" uses the manifest's split column as is; otherwise as for ShEMO.
        val_fraction: share of utterances in validation (not for "column").
        test_fraction: share of utterances in test (not for "column").
        num_folds: folds of the k-fold splits.
        fold: which fold is the test part (k-fold splits).
        batch_size: utterances per training batch (per device).
        eval_batch_size: utterances per validation/test batch; defaults to ``batch_size``.
        num_workers: DataLoader worker processes.
        max_seconds: training crop length in seconds.
        eval_max_seconds: evaluation uses the whole utterance up to this cap (None: no cap).
        min_seconds: shorter files are reported as bad.
        on_bad_file: "skip" bad files with one summary warning, or "fail" listing them.
        cache_dir: where the 16 kHz cache lives (default ``~/.cache/ser``).
        seed: seed of the split and of the batch order.
    """

    def __init__(
        self,
        path: str,
        classes: Sequence[str] | None = None,
        merge: Mapping[str, str] | None = None,
        split: SplitMethod = "column",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        num_folds: int = 5,
        fold: int = 0,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        max_seconds: float = 5.0,
        eval_max_seconds: float | None = 30.0,
        min_seconds: float = 0.1,
        on_bad_file: Literal["skip", "fail"] = "skip",
        cache_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        self.path = path
        if classes is None:
            # The class list must exist before the model is built (it sizes the head), so the
            # manifest is read here; canonical order keeps indices stable across manifests.
            found = {row.label for row in manifest.scan(path)}
            classes = [name for name in EMOTIONS if name in found]
        super().__init__(
            LabelSet(tuple(classes), merge or {}),
            batch_size,
            eval_batch_size,
            num_workers,
            max_seconds,
            eval_max_seconds,
            min_seconds,
            on_bad_file,
            cache_dir,
            seed,
        )
        self.save_hyperparameters()

    def scan(self) -> list[Utterance]:
        return manifest.scan(self.path)

    def split(self, rows: list[Utterance]) -> dict[str, list[Utterance]]:
        h = self.hparams
        return split_by_method(
            rows, h.split, h.val_fraction, h.test_fraction, h.num_folds, h.fold, self.seed
        )
