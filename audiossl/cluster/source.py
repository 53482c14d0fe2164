"""A k-means dir's fit config and the feature source it names (shared by fitting, sampling and labelling).

:class:`FitConfig` is what ``audiossl kmeans fit`` records in ``config.yaml``;
:func:`feature_source` builds the features it names (a front-end, or a layer of a checkpoint);
:func:`load_kmeans_dir` reads a k-means dir back. :mod:`audiossl.cluster.pipeline` re-exports them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from audiossl.audio.frontends import FRONTENDS
from audiossl.cluster.features import EncoderFeatures, resolve_source
from audiossl.cluster.kmeans import KMeans, KMeansConfig
from audiossl.config import load_yaml
from audiossl.errors import ConfigError, DataError
from audiossl.models import load_pretrained, resolve_checkpoint

MODEL = "kmeans.safetensors"
CONFIG = "config.yaml"


@dataclass(kw_only=True)
class FitConfig:
    """What ``audiossl kmeans fit`` does: which features, how many of them, and the k-means options."""

    features: str = "mfcc"
    """Front-end name the features come from (``mfcc`` = 13 MFCCs + deltas + delta-deltas, HuBERT iteration 1),
    or a checkpoint / run dir of ``audiossl pretrain`` whose block ``layer`` is clustered (HuBERT iteration >= 2)."""
    layer: int | None = None
    """Block (1-based; negative counts from the last) of the checkpoint's encoder to cluster; set exactly when
    ``features`` is a checkpoint (HuBERT BASE clusters block 6 of its first iteration)."""
    feature_options: dict[str, Any] = field(default_factory=dict)
    """Front-end config fields that differ from its defaults (after the source defaults, e.g. mfcc deltas=2)."""
    sample_rate: int = 16000
    """Audio is resampled to this rate before the front-end."""
    sample_fraction: float = 1.0
    """Fraction of each data dir's utterances used for fitting (drawn once from the seed)."""
    max_hours: float | None = None
    """Cap of the feature dump's sample in hours of audio (utterances in hash order until the cap; None: no cap).
    Bounds a dump's size on any corpus; see audiossl.cluster.sample for the sample contract."""
    sample_chunk: int = 64
    """Sampled utterances per dump file; features are batched within a chunk, shards split on chunks."""
    batch_seconds: float = 200.0
    """Padded seconds of audio per feature batch."""
    cache_gb: float = 4.0
    """Keep the first pass's features in memory if they fit in this many GB, so later passes skip the
    audio (a full pass of feature extraction per epoch otherwise); 0 streams every pass from the audio."""
    kmeans: KMeansConfig = field(default_factory=KMeansConfig)
    """The k-means options."""


def feature_source(config: FitConfig) -> tuple[torch.nn.Module, FitConfig]:
    """The feature module of ``config`` and the config as it must be recorded.

    A front-end name resolves to the front-end. A checkpoint (or a run dir: its newest
    checkpoint) gives :class:`EncoderFeatures` of block ``config.layer`` fed by the checkpoint's
    own input pipeline; the recorded config then names the checkpoint file and its sample rate,
    so labelling later reads exactly the same features.
    """
    if config.layer is None:
        if config.features not in FRONTENDS and Path(config.features).exists():
            raise ConfigError(f"features {config.features!r} is a path: set layer=N to cluster block N of a checkpoint")
        return resolve_source(config.features, config.sample_rate, config.feature_options), config
    if config.feature_options:
        raise ConfigError("feature_options apply to a front-end, not to the layer of a checkpoint")
    path = resolve_checkpoint(config.features)
    if not path.is_file():
        raise ConfigError(f"features {config.features!r} is neither a front-end name nor a checkpoint")
    model = load_pretrained(path)
    source = EncoderFeatures(model.inputs, model.encoder, config.layer)
    recorded = dataclasses.replace(config, features=str(path.resolve()), sample_rate=model.sample_rate)
    return source.eval(), recorded


def load_kmeans_dir(path: str | Path, device: str | None = None) -> tuple[KMeans, FitConfig]:
    """The model and fit config of a k-means dir."""
    path = Path(path)
    if not (path / MODEL).is_file():
        raise DataError(f"not a k-means dir (no {MODEL})", path)
    config = load_yaml(FitConfig, path / CONFIG)
    return KMeans.load(path / MODEL, device=device), config
