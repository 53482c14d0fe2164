"""Fixtures of the diarization tests: a tiny synthetic source corpus, a mixed corpus, a tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diarization_helpers import RECORDINGS

from audiossl.testing.downstream import tiny_corpus, tiny_pretrained


@pytest.fixture(scope="session")
def source_dir(tmp_path_factory) -> Path:
    """Six synthetic speakers with three utterances each (enough for disjoint subsets of two speakers)."""
    torch.set_num_threads(2)
    return tiny_corpus(tmp_path_factory.mktemp("synth") / "data", speakers=6, utts_per_speaker=3)


@pytest.fixture(scope="session")
def corpus_dir(source_dir, tmp_path_factory) -> Path:
    """Two-speaker recordings mixed from ``source_dir``."""
    from audiossl_diarization.corpus import CorpusConfig, make_corpus

    out = tmp_path_factory.mktemp("mix") / "corpus"
    return make_corpus(source_dir, out, CorpusConfig(recordings=RECORDINGS, turns=(3, 5), seed=3))


@pytest.fixture(scope="session")
def checkpoint(source_dir, tmp_path_factory) -> Path:
    """A tiny AST pretrained for one step (a real audiossl checkpoint)."""
    return tiny_pretrained(tmp_path_factory.mktemp("ssl") / "run", source_dir, steps=1)


@pytest.fixture(scope="session")
def segmentation(corpus_dir, tmp_path_factory) -> Path:
    """A very small PyanNet trained for one epoch on the corpus."""
    from audiossl_diarization.segmentation import SegmentationConfig, train_segmentation

    out = tmp_path_factory.mktemp("seg") / "seg.pt"
    config = SegmentationConfig(epochs=1, lstm_hidden=8, linear_hidden=8, batch_size=8)
    train_segmentation(corpus_dir, out, config)
    return out
