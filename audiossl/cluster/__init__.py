"""Clustering targets: streaming k-means, feature streams from data dirs, frame labels, quality reports."""

from __future__ import annotations

from audiossl.cluster.kmeans import KMeans, KMeansConfig

__all__ = ["KMeans", "KMeansConfig"]
