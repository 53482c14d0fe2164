"""The registry of training-data backends (``data.backend``), like the front-end and encoder registries.

A backend turns data dirs and a :class:`~audiossl.data.config.DataConfig` into the stream of
batches pretraining reads (the interface of :class:`~audiossl.data.backends.default.TrainData`).
The built-in ``default`` and ``fairseq2`` backends register themselves when
:mod:`audiossl.data.backends` is imported; a third party registers another with
:func:`register_data_backend`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from audiossl.registry import Registry


@dataclass(frozen=True)
class DataBackend:
    """One way of loading training data."""

    name: str
    """The ``data.backend`` value that selects it."""

    create: Callable[..., Any]
    """``create(data_dirs, config, *, seed, rank, world_size, shuffle, pin_memory)`` -> the batch stream."""

    check: Callable[[Any, Any | None], None] | None = None
    """``check(data_config, frontend_config)``: raise a ConfigError for settings the backend cannot serve,
    before any data is read (None = nothing to check)."""

    description: str = ""
    """One line for listings."""


#: Every registered data backend, by name.
DATA_BACKENDS: Registry[DataBackend] = Registry("data backend")


def register_data_backend(backend: DataBackend) -> DataBackend:
    """Register ``backend`` under its name (a name may be used once)."""
    return DATA_BACKENDS.register(backend.name)(backend)
