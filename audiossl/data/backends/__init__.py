"""Training-data backends: one or more data dirs -> a length-bucketed, sharded, resumable stream of batches.

``data.backend`` picks one from :data:`DATA_BACKENDS`: ``default`` (torch DataLoader over
:class:`~audiossl.data.dataset.AudioDataset`) or ``fairseq2`` (fairseq2's C++ data pipeline,
the same batches). :func:`create_train_data` builds the one a config names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audiossl.data.backends import default as default  # noqa: F401  (registers "default")
from audiossl.data.backends import fairseq2 as fairseq2  # noqa: F401  (registers "fairseq2"; fairseq2 itself loads lazily)
from audiossl.data.backends import shar as shar  # noqa: F401  (registers "shar"; lhotse loads lazily)
from audiossl.data.backends.base import DATA_BACKENDS, DataBackend, register_data_backend
from audiossl.data.backends.default import TrainData
from audiossl.data.config import DataConfig
from audiossl.errors import ConfigError

__all__ = [
    "DATA_BACKENDS",
    "DataBackend",
    "TrainData",
    "check_data_backend",
    "create_train_data",
    "data_backend",
    "register_data_backend",
]


def data_backend(name: str) -> DataBackend:
    """The backend registered as ``name``; an unknown name is a ConfigError listing the known ones."""
    try:
        return DATA_BACKENDS.get(name)
    except ConfigError as error:
        raise ConfigError(f"data.backend: {error.message}") from None


def check_data_backend(config: DataConfig, frontend_config: Any | None) -> None:
    """Fail early (before any data is read) when ``config.backend`` is unknown or cannot serve ``config``."""
    backend = data_backend(config.backend)
    if backend.check is not None:
        backend.check(config, frontend_config)


def create_train_data(data_dirs: Sequence[str | Path], config: DataConfig, **options: Any) -> TrainData:
    """The loader ``config.backend`` names (every backend has :class:`TrainData`'s interface).

    ``options`` are :class:`TrainData`'s keyword arguments (seed, rank, world_size, shuffle, pin_memory).
    """
    return data_backend(config.backend).create(data_dirs, config, **options)
