"""Deprecated: moved to :mod:`audiossl.models.pretrained`; kept for one release."""

from __future__ import annotations

from audiossl.models.pretrained import PretrainedEncoder, load_pretrained

__all__ = ["PretrainedEncoder", "load_pretrained"]
