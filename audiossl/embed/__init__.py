"""Embedding API: load a pretrained model, embed audio, extract features of a data dir to disk.

``audiossl.load(path)`` gives a model; :class:`Embedder` turns audio into frame features or
utterance embeddings; :func:`extract` writes them for a whole data dir (npy, Kaldi ark/scp,
safetensors or HDF5), resumably. See docs/embedding.md.
"""

from __future__ import annotations

from audiossl.embed.embedder import Embedder, Embeddings, length_batches, pool
from audiossl.embed.extract import ExtractResult
from audiossl.embed.extract_shards import extract  # the one-process extract, plus shard= and num_jobs=
from audiossl.embed.loading import load, resolve_device
from audiossl.embed.writers import FORMATS, read_features

__all__ = [
    "FORMATS",
    "Embedder",
    "Embeddings",
    "ExtractResult",
    "extract",
    "length_batches",
    "load",
    "pool",
    "read_features",
    "resolve_device",
]
