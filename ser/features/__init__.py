"""Stored encoder features: a frozen encoder runs once per utterance, probes train on the result."""

from ser.features.extract import open_feature_store, store_key
from ser.features.store import FeatureStore, StoreKind

__all__ = ["FeatureStore", "StoreKind", "open_feature_store", "store_key"]
