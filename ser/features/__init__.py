"""Stored encoder features: a frozen encoder runs once per utterance, probes train on the result."""

from ser.features.store import FeatureStore, store_key

__all__ = ["FeatureStore", "store_key"]
