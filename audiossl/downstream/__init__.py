"""Downstream use of pretrained encoders: the layer-weighted featurizer (tasks and plugins build on it)."""

from __future__ import annotations

from audiossl.downstream.featurizer import WeightedLayerSum, mean_pool

__all__ = ["WeightedLayerSum", "mean_pool"]
