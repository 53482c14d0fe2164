"""Pretraining: config, trainer loop, checkpoints, DDP and logs (``audiossl pretrain``).

:func:`pretrain` runs one (encoder, objective) pair from a :class:`PretrainConfig`;
:func:`resolve_config` reads a shipped preset or a YAML file; :func:`load_pretrained` gives the
trained encoder back with its input pipeline.
"""

from __future__ import annotations

from audiossl.models import PretrainedEncoder, load_pretrained  # moved to the model package; kept here for one release
from audiossl.train.config import PretrainConfig, list_presets, resolve_config
from audiossl.train.trainer import NonFiniteLossError, PretrainResult, Trainer, pretrain

__all__ = [
    "NonFiniteLossError",
    "PretrainConfig",
    "PretrainResult",
    "PretrainedEncoder",
    "Trainer",
    "list_presets",
    "load_pretrained",
    "pretrain",
    "resolve_config",
]
