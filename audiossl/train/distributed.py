"""Deprecated: moved to :mod:`audiossl.engine.distributed`; kept for one release."""

from __future__ import annotations

from audiossl.engine.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce,
    barrier,
    broadcast_object,
    cleanup,
    pick_device,
    setup,
)

__all__ = [
    "DistInfo",
    "all_gather_objects",
    "all_reduce",
    "barrier",
    "broadcast_object",
    "cleanup",
    "pick_device",
    "setup",
]
