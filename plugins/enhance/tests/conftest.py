"""Fixtures of the enhancement plugin tests: a tiny synthetic corpus, its noisy pairs and its mixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audiossl.data.synth import SynthConfig, synthesize_corpus

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """Three speakers x three short utterances (one to two words) at 16 kHz."""
    out = tmp_path_factory.mktemp("enhance_corpus")
    synthesize_corpus(out, SynthConfig(speakers=3, utts_per_speaker=3, words_per_utt=(1, 2), seed=3))
    return out


@pytest.fixture(scope="session")
def pairs(tmp_path_factory, corpus) -> Path:
    """White noise at 0 dB: the easy case a mask learns in a few steps."""
    from audiossl_enhance.mixtures import NoiseSettings, make_noisy_pairs

    out = tmp_path_factory.mktemp("enhance_pairs") / "pairs"
    make_noisy_pairs(corpus, out, NoiseSettings(snrs_db=(0.0,), noise_kinds=("white",), seed=1))
    return out


@pytest.fixture(scope="session")
def mixtures(tmp_path_factory, corpus) -> Path:
    """One mixture per utterance, partners of other speakers, levels within +-5 dB."""
    from audiossl_enhance.mixtures import MixSettings, make_mixtures

    out = tmp_path_factory.mktemp("enhance_mix") / "mix"
    make_mixtures(corpus, out, MixSettings(seed=2))
    return out
