"""The data layer: corpora on disk -> labelled rows -> splits -> cached audio -> batches."""

from ser.data.corpus_datamodules import IEMOCAPDataModule, ManifestDataModule, ShEMODataModule
from ser.data.curriculum import CurriculumDataModule
from ser.data.datamodule import SERDataModule
from ser.data.predict import AudioFilesDataModule

__all__ = [
    "AudioFilesDataModule",
    "CurriculumDataModule",
    "IEMOCAPDataModule",
    "ManifestDataModule",
    "SERDataModule",
    "ShEMODataModule",
]
