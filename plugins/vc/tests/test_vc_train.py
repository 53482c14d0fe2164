"""Training helpers: prematching against the same speaker, segment draws reproducible by step."""

from __future__ import annotations

import pytest
import torch

from audiossl.errors import ConfigError
from audiossl_vc.features import LayerSpec
from audiossl_vc.train import FeatureCache, VocoderTrainConfig, draw_batch, prematch


def small_cache() -> FeatureCache:
    generator = torch.Generator().manual_seed(0)
    layers = [torch.randn(2, n, 4, generator=generator) for n in (5, 6, 4, 3)]  # (K, N, D)
    waves = [torch.randn(n * 10, generator=generator) for n in (5, 6, 4, 3)]
    return FeatureCache(layers, waves, ["a1", "a2", "b1", "c1"], ["0:a", "0:a", "0:b", "0:c"])


def test_prematch_k1_takes_frames_of_the_same_speakers_other_utterances():
    cache = small_cache()
    original = [layers.mean(dim=0) for layers in cache.layers]  # the 'mean' spec's features (N, D)
    assert prematch(cache, LayerSpec((0, 1), "mean"), k=1) == 2  # b and c have no other utterance
    for index, other in ((0, 1), (1, 0)):
        matched = cache.layers[index].mean(dim=0)  # K equal copies
        assert matched.shape == original[index].shape
        for frame in matched:  # every frame is one of the other utterance's frames
            assert torch.isclose(original[other], frame).all(dim=1).any()
    torch.testing.assert_close(cache.layers[2].mean(dim=0), original[2])  # alone: unchanged


def test_prematch_refuses_a_learned_mix():
    with pytest.raises(ConfigError, match="fixed layer"):
        prematch(small_cache(), LayerSpec((0, 1), "mix"), k=2)


def test_segments_depend_only_on_seed_and_step():
    cache = small_cache()
    config = VocoderTrainConfig(batch_size=3, segment_frames=3, seed=5)
    first_layers, first_waves = draw_batch(cache, config, 10, step=7)
    again_layers, again_waves = draw_batch(cache, config, 10, step=7)
    assert first_layers.shape == (2, 3, 3, 4) and first_waves.shape == (3, 30)
    assert torch.equal(first_layers, again_layers) and torch.equal(first_waves, again_waves)
    other_layers, _ = draw_batch(cache, config, 10, step=8)
    assert not torch.equal(first_layers, other_layers)


def test_segment_audio_lines_up_with_segment_frames():
    hop = 10
    layers = [
        torch.arange(n, dtype=torch.float32).view(1, n, 1).expand(1, n, 2) + 100 * i for i, n in enumerate((9, 7))
    ]
    waves = [layer[0, :, 0].repeat_interleave(hop) for layer in layers]  # sample value = its frame's index
    cache = FeatureCache(layers, waves, ["x", "y"], ["0:s", "0:s"])
    batch_layers, batch_waves = draw_batch(cache, VocoderTrainConfig(batch_size=6, segment_frames=4), hop, step=3)
    torch.testing.assert_close(batch_waves[:, ::hop], batch_layers[0, :, :, 0])
