"""Session fixtures of the downstream tests: a tiny synthetic corpus and a tiny pretrained run on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiossl.testing.downstream import tiny_corpus, tiny_pretrained


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """Two speakers x four utterances of the synthetic corpus (utt2spk, text, utt2emo with four emotions)."""
    return tiny_corpus(tmp_path_factory.mktemp("corpus"), speakers=2, utts_per_speaker=4)


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory, corpus) -> Path:
    """A two-step mspm pretraining run of a tiny AST (2 blocks, width 32, 2 cls tokens) on the corpus."""
    return tiny_pretrained(tmp_path_factory.mktemp("pretrained") / "run", corpus)


@pytest.fixture(scope="session")
def corpus24(tmp_path_factory) -> Path:
    """Three speakers x eight utterances (24: enough for a held-out part of 10)."""
    return tiny_corpus(tmp_path_factory.mktemp("corpus24"), speakers=3, utts_per_speaker=8)
