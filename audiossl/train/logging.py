"""Deprecated: moved to :mod:`audiossl.engine.logging`; kept for one release."""

from __future__ import annotations

import logging

from audiossl.engine.logging import (
    LENGTH_DRIFT_METRIC,
    PERPLEXITY_METRIC,
    LossEMA,
    RunLogger,
    WindowMeter,
    flatten,
    format_eta,
    health_warnings,
    plot_loss_curve,
    read_records,
    truncate_records,
)

#: The pretraining log's logger (tests and users filter on this name).
logger = logging.getLogger("audiossl.train")

__all__ = [
    "LENGTH_DRIFT_METRIC",
    "PERPLEXITY_METRIC",
    "LossEMA",
    "RunLogger",
    "WindowMeter",
    "flatten",
    "format_eta",
    "health_warnings",
    "logger",
    "plot_loss_curve",
    "read_records",
    "truncate_records",
]
