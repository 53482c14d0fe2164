"""The k-means workflow behind ``audiossl kmeans fit`` and ``audiossl kmeans label``.

A k-means dir holds everything needed to label new data the same way:

* ``kmeans.safetensors``: centroids and counts (:meth:`KMeans.save`);
* ``config.yaml``: the :class:`FitConfig` (features, their options, sample rate, k-means
  options), readable with ``audiossl.config.load_yaml(FitConfig, path)``;
* ``quality.json`` / ``quality.txt`` / ``quality_usage.png``: the report on the fitted data.

Each HuBERT iteration keeps its own k-means dir and label dir, so no earlier one is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import yaml

from audiossl.cluster.features import (
    FeatureDump,
    frame_rate,
)
from audiossl.cluster.kmeans import KMeans
from audiossl.cluster.label_shards import LABEL_CHUNK, label_parts, quality_report, write_ark
from audiossl.cluster.quality import QualityAccumulator, QualityReport, write_report
from audiossl.cluster.sample import check_dump_settings, sample_features, sample_settings, stream_sample
from audiossl.cluster.source import CONFIG, MODEL, FitConfig, feature_source, load_kmeans_dir
from audiossl.config import to_dict
from audiossl.data.shards import Shard
from audiossl.errors import ConfigError
from audiossl.fileio import atomic_write

logger = logging.getLogger(__name__)

__all__ = [  # FitConfig, feature_source, load_kmeans_dir live in audiossl.cluster.source; importable from here
    "CONFIG",
    "MODEL",
    "FeatureCache",
    "FitConfig",
    "default_device",
    "feature_source",
    "fit_kmeans_dir",
    "label_with_kmeans_dir",
    "load_kmeans_dir",
]


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
