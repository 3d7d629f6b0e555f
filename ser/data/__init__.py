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
from ser.data.predict import AudioFilesDataModule

__all__ = [
    "AudioFilesDataModule",
    "CREMADDataModule",
    "CurriculumDataModule",
    "EmoDBDataModule",
    "IEMOCAPDataModule",
    "ManifestDataModule",
    "RAVDESSDataModule",
    "SERDataModule",
    "ShEMODataModule",
]
