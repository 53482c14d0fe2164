"""The k-means workflow behind ``audiossl kmeans fit`` and ``audiossl kmeans label``.

A k-means dir holds everything needed to label new data the same way:

* ``kmeans.safetensors``: centroids and counts (:meth:`KMeans.save`);
* ``config.yaml``: the :class:`FitConfig` (features, their options, sample rate, k-means
  options), readable with ``audiossl.config.load_yaml(FitConfig, path)``;
* ``quality.json`` / ``quality.txt`` / ``quality_usage.png``: the report on the fitted data.

Each HuBERT iteration keeps its own k-means dir and label dir, so no earlier one is lost.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from audiossl.audio.frontends import FRONTENDS
from audiossl.cluster.features import (
    EncoderFeatures,
    FeatureDump,
    frame_rate,
    resolve_source,
)
from audiossl.cluster.kmeans import KMeans, KMeansConfig
from audiossl.cluster.label_shards import LABEL_CHUNK, label_parts, quality_report, write_ark
from audiossl.cluster.quality import QualityAccumulator, QualityReport, write_report
from audiossl.cluster.sample import check_dump_settings, sample_features, sample_settings, stream_sample
from audiossl.config import load_yaml, to_dict
from audiossl.data.shards import Shard
from audiossl.errors import ConfigError, DataError
from audiossl.fileio import atomic_write
from audiossl.models import load_pretrained, resolve_checkpoint

logger = logging.getLogger(__name__)

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


def fit_kmeans_dir(
    data_dirs: Sequence[str | Path],
    out_dir: str | Path,
    config: FitConfig,
    *,
    dump_dir: str | Path | None = None,
    progress: bool = True,
    num_jobs: int = 1,
) -> tuple[KMeans, QualityReport]:
    """Fit k-means on features of ``data_dirs`` and write a k-means dir (see the module doc).

    Features are streamed from the audio, in bounded memory: the first pass is kept in memory
    when it fits ``config.cache_gb`` (:class:`FeatureCache`), else every pass reads the audio
    again. With ``dump_dir`` the sampled features are written there once (or reused when a
    complete dump exists) and every pass reads them back instead. The quality report is
    computed over the same features. The dump is the sample of :mod:`audiossl.cluster.sample`
    (hash-ordered utterances, capped by ``config.max_hours``), computed by ``num_jobs``
    processes, or by shards (``audiossl kmeans sample --shard``) and merged beforehand: the
    fit is the same. ``num_jobs > 1`` or ``max_hours`` without ``dump_dir`` dump to ``OUT/sample``.
    """
    out_dir = Path(out_dir)
    source, config = feature_source(config)
    seed = config.kmeans.seed
    if dump_dir is None and (num_jobs > 1 or config.max_hours is not None):
        dump_dir = out_dir / "sample"

    if dump_dir is not None:
        if not FeatureDump.exists(dump_dir):
            sample_features(data_dirs, config, dump_dir, num_jobs=num_jobs, progress=progress)
        dump = FeatureDump(dump_dir)
        check_dump_settings(dump, sample_settings(data_dirs, config))
        logger.info("fitting on the dump %s (%d frames x %d)", dump_dir, dump.num_frames, dump.dim)

        def points(epoch: int):
            return dump.batches(epoch, seed)

        n_samples = dump.num_frames
    else:
        points = FeatureCache(
            lambda epoch: stream_sample(data_dirs, config, epoch, progress=progress), config.cache_gb, seed
        )
        n_samples = None
    kmeans = KMeans(config.kmeans).fit_stream(points, n_samples=n_samples)
    logger.info(
        "k-means: %d steps over %d pass(es), stopped by %s", kmeans.n_steps, kmeans.n_epochs, kmeans.stop_reason
    )
    accumulator = QualityAccumulator(kmeans.n_clusters)
    for batch in points(0):
        accumulator.update(*kmeans.nearest(batch))
    report = accumulator.report(
        frame_rate=frame_rate(source, config.sample_rate),
        steps=kmeans.n_steps,
        epochs=kmeans.n_epochs,
        stop_reason=kmeans.stop_reason,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    kmeans.save(out_dir / MODEL)
    with atomic_write(out_dir / CONFIG) as handle:
        yaml.safe_dump(to_dict(config), handle, sort_keys=False)
    write_report(report, out_dir)
    return kmeans, report


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


class FeatureCache:
    """``epoch -> point batches`` that keeps the first pass in memory when it fits ``budget_gb``.

    ``produce(epoch)`` yields the same batches every epoch, permuted from ``(seed, epoch)``
    (:func:`~audiossl.cluster.sample.stream_sample`); later passes replay the cached batches in
    that order instead of extracting features again, so caching changes nothing in the fit.
    Beyond the budget the cache is dropped and every pass streams from ``produce``, so memory
    stays bounded either way.
    """

    def __init__(self, produce: Callable[[int], Iterable[torch.Tensor]], budget_gb: float, seed: int):
        self.produce = produce
        self.budget = int(budget_gb * 2**30)
        self.seed = seed
        self.cached: list[torch.Tensor] | None = None

    def __call__(self, epoch: int) -> Iterator[torch.Tensor]:
        if self.cached is not None:  # produce(0) gave the chunks in order(0); replay them in order(epoch)
            first = self._order(0, len(self.cached))
            by_chunk = {chunk: batch for chunk, batch in zip(first, self.cached, strict=True)}
            return (by_chunk[chunk] for chunk in self._order(epoch, len(self.cached)))
        return self._fill(epoch)

    def _order(self, epoch: int, count: int) -> list[int]:
        return np.random.default_rng([self.seed, epoch]).permutation(count).tolist()

    def _fill(self, epoch: int) -> Iterator[torch.Tensor]:
        kept: list[torch.Tensor] | None = [] if self.budget > 0 else None
        size = 0
        for batch in self.produce(epoch):
            if kept is not None:
                size += batch.numel() * batch.element_size()
                if size <= self.budget:
                    kept.append(batch)
                else:
                    logger.info("features exceed the cache budget: every pass reads the audio again")
                    kept = None
            yield batch
        if kept is not None:
            self.cached = kept


def load_kmeans_dir(path: str | Path, device: str | None = None) -> tuple[KMeans, FitConfig]:
    """The model and fit config of a k-means dir."""
    path = Path(path)
    if not (path / MODEL).is_file():
        raise DataError(f"not a k-means dir (no {MODEL})", path)
    config = load_yaml(FitConfig, path / CONFIG)
    return KMeans.load(path / MODEL, device=device), config


def label_with_kmeans_dir(
    model_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    reference: str | None = None,
    ark: bool = False,
    device: str | None = None,
    progress: bool = True,
    shard: Shard | str | None = None,
    num_jobs: int = 1,
    chunk_size: int = LABEL_CHUNK,
) -> QualityReport | None:
    """Label ``data_dir`` with the k-means dir ``model_dir`` (same features), write the label dir and its report.

    ``num_jobs`` processes share the utterances; ``shard="I/N"`` labels shard I only into
    ``OUT/shard-I-of-N`` (returns None; :func:`~audiossl.cluster.label_shards.merge_label_parts`
    merges the shards into ``OUT``). Either way the label store and the report equal the
    one-process run's exactly (see :mod:`audiossl.cluster.label_shards`).
    """
    shard = Shard.parse(shard)
    if ark and not shard.whole:
        raise ConfigError("Kaldi ark labels are written by the merge: give ark to merge-labels, not to a shard")
    _, config = load_kmeans_dir(model_dir, device)
    info = {"kmeans": str(Path(model_dir).resolve()), "features": config.features, "layer": config.layer}
    written = label_parts(
        model_dir,
        data_dir,
        out_dir,
        shard=shard,
        num_jobs=num_jobs,
        chunk_size=chunk_size,
        reference=reference,
        device=device,
        info=info,
        progress=progress,
    )
    if not shard.whole:
        return None
    report = quality_report(written)
    if ark:
        write_ark(out_dir)
    write_report(report, out_dir)
    return report


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"
