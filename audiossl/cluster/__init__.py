"""Clustering targets: streaming k-means, feature streams from data dirs, frame labels, quality reports.

* :mod:`~audiossl.cluster.kmeans`: mini-batch k-means in torch (k-means++ init, streaming fit).
* :mod:`~audiossl.cluster.features`: frame features of data dirs (front-end or encoder layer).
* :mod:`~audiossl.cluster.labels`: label dirs (labels + frame rate), alignment with encoder frames.
* :mod:`~audiossl.cluster.quality`: cluster usage, inertia, PNMI and purity.
* :mod:`~audiossl.cluster.pipeline`: the ``audiossl kmeans fit`` / ``label`` workflow.
"""

from __future__ import annotations

from audiossl.cluster.features import EncoderFeatures, FeatureDump, dump_features, stream_features
from audiossl.cluster.kmeans import KMeans, KMeansConfig
from audiossl.cluster.labels import (
    check_label_alignment,
    convert_label_rate,
    label_data_dir,
    read_labels,
    write_labels,
)
from audiossl.cluster.quality import QualityAccumulator, QualityReport

__all__ = [
    "EncoderFeatures",
    "FeatureDump",
    "KMeans",
    "KMeansConfig",
    "QualityAccumulator",
    "QualityReport",
    "check_label_alignment",
    "convert_label_rate",
    "dump_features",
    "label_data_dir",
    "read_labels",
    "stream_features",
    "write_labels",
]
