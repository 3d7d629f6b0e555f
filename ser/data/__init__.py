"""The data layer: corpora on disk -> labelled rows -> splits -> cached audio -> batches."""

from ser.data.corpus_datamodules import (
    CREMADDataModule,
    EmoDBDataModule,
    IEMOCAPDataModule,
    ManifestDataModule,
    RAVDESSDataModule,
    ShEMODataModule,
)
from ser.data.curriculum import CurriculumDataModule
from ser.data.datamodule import SERDataModule

__all__ = [
    "CREMADDataModule",
    "CurriculumDataModule",
    "EmoDBDataModule",
    "IEMOCAPDataModule",
    "ManifestDataModule",
    "RAVDESSDataModule",
    "SERDataModule",
    "ShEMODataModule",
]
