"""Session fixtures of the engine tests: a tiny synthetic corpus and a tiny pretrained AST on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiossl.testing.downstream import tiny_corpus, tiny_pretrained


@pytest.fixture(scope="session")
def engine_corpus(tmp_path_factory) -> Path:
    """Two speakers x four utterances (0.8-3.0 s) of the synthetic corpus."""
    return tiny_corpus(tmp_path_factory.mktemp("engine-corpus"), speakers=2, utts_per_speaker=4)


@pytest.fixture(scope="session")
def engine_pretrained(tmp_path_factory, engine_corpus) -> Path:
    """A two-step mspm pretraining run of a tiny AST on the corpus."""
    return tiny_pretrained(tmp_path_factory.mktemp("engine-pretrained") / "run", engine_corpus)
