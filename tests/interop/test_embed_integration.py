"""Imported checkpoints work through the embedding API (audiossl.load + Embedder) unchanged."""

from __future__ import annotations

import pytest
import torch
from interop_helpers import TOLERANCE, waveforms
from test_torchaudio import save_peer as save_torchaudio
from test_transformers import save_peer as save_transformers

import audiossl.embed as embed
from audiossl.interop import import_model


@pytest.mark.parametrize("source", ["transformers", "torchaudio"])
def test_embedder_on_imported_models(tmp_path, source):
    path = tmp_path / "model"
    if source == "transformers":
        save_transformers("wav2vec2-base", path)
    else:
        save_torchaudio("wavlm-base", path)
    model = embed.load(path, device="cpu")
    assert model.source == source
    audio = [waveforms(1, n, seed=n)[0] for n in (4000, 2600, 1500)]
    result = embed.Embedder(model, device="cpu").embed(audio, sample_rate=16000, layers=[0, 1])
    direct = import_model(path)
    for item, samples in zip(result.features, audio, strict=True):
        with torch.no_grad():
            alone = direct(samples[None], torch.tensor([len(samples)]))
        expected = torch.stack([layer[0] for layer in alone.layers])  # (L, S, D)
        assert item.shape == expected.shape
        assert (item - expected).abs().max().item() <= TOLERANCE
