"""Deprecated: moved to :mod:`audiossl.data.backends` (the ``default`` backend); kept for one release."""

from __future__ import annotations

from audiossl.data.backends import TrainData, create_train_data

__all__ = ["TrainData", "create_train_data"]
