"""VC plugin test set-up: one thread (the suite shares a small machine), a tiny corpus and checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Run every test on one thread and restore the caller's setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def vc_corpus(tmp_path_factory) -> Path:
    """Two synthetic speakers with four utterances each (16 kHz, text and utt2spk)."""
    from audiossl.testing.downstream import tiny_corpus

    return tiny_corpus(tmp_path_factory.mktemp("vc-corpus"), speakers=2, utts_per_speaker=4)


@pytest.fixture(scope="session")
def vc_checkpoint(tmp_path_factory, vc_corpus) -> Path:
    """A tiny pretrained AST run dir (two blocks of width 32 on stacked fbank frames, hop 320)."""
    from audiossl.testing.downstream import tiny_pretrained

    return tiny_pretrained(tmp_path_factory.mktemp("vc-upstream") / "run", vc_corpus, steps=1)
