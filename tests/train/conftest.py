"""Fixtures of the trainer tests: the stand-in objective registered per test, small data dirs."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import standin_registered, write_data_dir


@pytest.fixture(autouse=True)
def standin():
    """Register the stand-in objective for the duration of one test."""
    with standin_registered():
        yield


@pytest.fixture(scope="session")
def varied_dir(tmp_path_factory) -> Path:
    """Four utterances of 0.6-1.5 s (longer than the tiny config's 1 s crop, so crops move every epoch)."""
    return write_data_dir(tmp_path_factory.mktemp("varied"), [0.6, 1.5, 1.2, 0.9])


@pytest.fixture(scope="session")
def equal_dir(tmp_path_factory) -> Path:
    """Eight utterances of exactly 0.5 s: every batch of two has the same size."""
    return write_data_dir(tmp_path_factory.mktemp("equal"), [0.5] * 8, seed=1)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """Four utterances of the embedded synthetic corpus."""
    from audiossl.data.synth import SynthConfig, synthesize_corpus

    out = tmp_path_factory.mktemp("synth")
    synthesize_corpus(out, SynthConfig(speakers=2, utts_per_speaker=2))
    return out
