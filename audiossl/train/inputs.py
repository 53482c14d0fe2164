"""Deprecated: moved to :mod:`audiossl.models.inputs`; kept for one release."""

from __future__ import annotations

from audiossl.models.inputs import InputPipeline, normalize_waveforms

__all__ = ["InputPipeline", "normalize_waveforms"]
