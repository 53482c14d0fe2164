"""Fixtures of the emotion plugin tests: a tiny synthetic corpus (3 speakers, 4 emotions) and a tiny pretrained run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audiossl.testing.downstream import tiny_corpus, tiny_pretrained

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """Three speakers x four utterances; emotions cycle per speaker, so every class has three utterances."""
    return tiny_corpus(tmp_path_factory.mktemp("er_corpus"), speakers=3, utts_per_speaker=4)


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory, corpus) -> Path:
    """A two-step mspm pretraining run of a tiny AST on the corpus."""
    return tiny_pretrained(tmp_path_factory.mktemp("er_pretrained") / "run", corpus)
