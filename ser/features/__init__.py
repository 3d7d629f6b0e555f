"""Stored encoder features: a frozen encoder runs once per utterance, probes train on the result."""

from ser.features.extract import AugmentedView, open_feature_store, store_key
from ser.features.store import FeatureStore, StoreKind, read_views

__all__ = [
    "AugmentedView",
    "FeatureStore",
    "StoreKind",
    "open_feature_store",
    "read_views",
    "store_key",
]
