"""Front-ends by name: ``create_frontend("fbank", num_mel_bins=80)``.

The registry :data:`FRONTENDS` holds every front-end with its config class; importing this
module registers the built-in ones:

==============  ========================  =====================================================
name            config                    what
==============  ========================  =====================================================
fbank           :class:`FbankConfig`      Kaldi log-mel filterbank (AST/SSAST input)
log_mel         :class:`LogMelConfig`     librosa log-mel spectrogram in dB
mfcc            :class:`MfccConfig`       Kaldi MFCC, optional deltas (HuBERT iteration-1 targets)
wav2vec2_cnn    :class:`ConvFeatureConfig` learnable wav2vec 2.0 waveform CNN
==============  ========================  =====================================================

Every front-end maps ``(waveforms (B, T), lengths (B,))`` to ``(features (B, F, C),
frame_lengths (B,))`` and has ``output_lengths(lengths)``, the exact frame count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audiossl.audio import cnn, kaldi_fbank, kaldi_mfcc, melspec  # noqa: F401  (register the built-ins)
from audiossl.audio.base import FRONTENDS, Frontend, FrontendSpec, register_frontend
from audiossl.audio.cnn import ConvFeatureConfig, ConvFeatureExtractor
from audiossl.audio.kaldi_fbank import Fbank, FbankConfig
from audiossl.audio.kaldi_mfcc import Mfcc, MfccConfig
from audiossl.audio.melspec import LogMel, LogMelConfig
from audiossl.audio.options import resolve_config

__all__ = [
    "FRONTENDS",
    "ConvFeatureConfig",
    "ConvFeatureExtractor",
    "Fbank",
    "FbankConfig",
    "Frontend",
    "FrontendSpec",
    "LogMel",
    "LogMelConfig",
    "Mfcc",
    "MfccConfig",
    "create_frontend",
    "frontend_config",
    "register_frontend",
]


def frontend_config(name: str, config: object | Mapping[str, Any] | None = None, **overrides: Any) -> Any:
    """The config of front-end ``name``: defaults, a config instance or a YAML mapping, then ``overrides``.

    Unknown keys and wrong types raise :class:`~audiossl.errors.ConfigError`.
    """
    return resolve_config(FRONTENDS.get(name).config_class, config, overrides)


def create_frontend(name: str, config: object | Mapping[str, Any] | None = None, **overrides: Any) -> Frontend:
    """Build front-end ``name`` from its config (instance, mapping or defaults) with keyword overrides."""
    return FRONTENDS.get(name).factory(frontend_config(name, config, **overrides))
