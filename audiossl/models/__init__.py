"""Trained encoders as users load them: the bundle, its input pipeline and checkpoint reading.

This package sits below ``objectives``, ``train``, ``downstream``, ``embed`` and ``cluster``:
loading a model never imports training code. :class:`SpeechEncoder` is the one interface of
"waveforms + lengths -> EncoderOutput" (audiossl checkpoints, imported checkpoints, fbank
baselines); :func:`load_pretrained` rebuilds an audiossl checkpoint's encoder with its
front-end and normalisation statistics.
"""

from __future__ import annotations

from audiossl.models.baselines import FbankBaseline
from audiossl.models.checkpoint import (
    CHECKPOINT_FORMAT,
    checkpoint_path,
    init_from_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
)
from audiossl.models.config import EncoderSection, ModelConfig, encoder_config, frontend_settings
from audiossl.models.inputs import InputPipeline, normalize_waveforms
from audiossl.models.pretrained import PretrainedEncoder, load_pretrained
from audiossl.models.protocol import SpeechEncoder

__all__ = [
    "CHECKPOINT_FORMAT",
    "EncoderSection",
    "FbankBaseline",
    "InputPipeline",
    "ModelConfig",
    "PretrainedEncoder",
    "SpeechEncoder",
    "checkpoint_path",
    "encoder_config",
    "frontend_settings",
    "init_from_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_pretrained",
    "normalize_waveforms",
    "read_checkpoint",
    "resolve_checkpoint",
]
