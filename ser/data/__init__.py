"""The data layer: corpora on disk -> labelled rows -> splits -> cached audio -> batches.

The datamodules are imported on first use, so the light tools of this package (``synth``,
``cache``) start without Lightning.
"""

from importlib import import_module

_EXPORTS = {
    "CREMADDataModule": "ser.data.corpus_datamodules",
    "CurriculumDataModule": "ser.data.curriculum",
    "EmoDBDataModule": "ser.data.corpus_datamodules",
    "IEMOCAPDataModule": "ser.data.corpus_datamodules",
    "MSPPodcastDataModule": "ser.data.corpus_datamodules",
    "ManifestDataModule": "ser.data.corpus_datamodules",
    "RAVDESSDataModule": "ser.data.corpus_datamodules",
    "SERDataModule": "ser.data.datamodule",
    "ShEMODataModule": "ser.data.corpus_datamodules",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ser.data' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
