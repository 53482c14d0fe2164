"""Audio front-ends, augmentation and tokenisation on padded batches.

Every function here takes a padded batch with its lengths and returns lengths with its
output; valid positions never depend on the padding.
"""

from __future__ import annotations

from audiossl.audio.augment import SpecAugment, SpecAugmentConfig
from audiossl.audio.frontends import (
    FRONTENDS,
    ConvFeatureConfig,
    ConvFeatureExtractor,
    FbankConfig,
    Frontend,
    LogMelConfig,
    MfccConfig,
    create_frontend,
    frontend_config,
)
from audiossl.audio.io import load_audio
from audiossl.audio.kaldi_fbank import fbank
from audiossl.audio.kaldi_mfcc import compute_deltas, mfcc
from audiossl.audio.melspec import log_mel
from audiossl.audio.moved import moved_attribute
from audiossl.audio.normalize import GlobalStats, cmvn
from audiossl.audio.tokens import PatchConfig, frame_tokens, patch_counts, patchify, unpatchify

__all__ = [
    "FRONTENDS",
    "ConvFeatureConfig",
    "ConvFeatureExtractor",
    "FbankConfig",
    "Frontend",
    "GlobalStats",
    "LogMelConfig",
    "MfccConfig",
    "PatchConfig",
    "SpecAugment",
    "SpecAugmentConfig",
    "cmvn",
    "compute_deltas",
    "create_frontend",
    "fbank",
    "load_audio",
    "frame_tokens",
    "frontend_config",
    "log_mel",
    "mfcc",
    "patch_counts",
    "patchify",
    "unpatchify",
]

#: Deprecated: compute_global_stats (it walks a data dir) moved up to audiossl.data.features.
_MOVED = {"compute_global_stats": "audiossl.data.features"}


def __getattr__(name: str) -> object:
    return moved_attribute(__name__, _MOVED, name)
