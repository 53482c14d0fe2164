"""Deprecated: moved to :mod:`audiossl.data.backends.fairseq2`; kept for one release."""

from __future__ import annotations

from audiossl.data.backends.fairseq2 import Fairseq2TrainData, check_data_dir, check_fairseq2_fbank, import_fairseq2

__all__ = ["Fairseq2TrainData", "check_data_dir", "check_fairseq2_fbank", "import_fairseq2"]
