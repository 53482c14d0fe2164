"""speecht5 plugin tests: one thread (a shared machine), a tiny corpus and a tiny pretrained upstream per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # a shared machine: two threads fight other jobs (istft 40x slower)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """Two synthetic speakers, four utterances each (text, text.qaa, utt2spk)."""
    from audiossl.testing.downstream import tiny_corpus

    return tiny_corpus(tmp_path_factory.mktemp("t5-corpus"), speakers=2, utts_per_speaker=4)


@pytest.fixture(scope="session")
def pretrained(corpus, tmp_path_factory) -> Path:
    """A tiny AST pretrained for one step: a real upstream checkpoint."""
    from audiossl.testing.downstream import tiny_pretrained

    return tiny_pretrained(tmp_path_factory.mktemp("t5-upstream") / "run", corpus, steps=1)
