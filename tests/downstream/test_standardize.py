"""Feature standardisation: the statistics equal numpy's over valid frames, and the upstream applies them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiossl.data.dataset import AudioDataset
from audiossl.downstream.standardize import RunningMoments, feature_statistics
from audiossl.downstream.upstream import Upstream, load_upstream


def test_running_moments_equal_numpy_over_valid_frames():
    generator = torch.Generator().manual_seed(0)
    moments, frames = RunningMoments(), []
    for lengths in ([5, 3, 1], [7, 7], [2]):
        width = max(lengths)
        layers = [torch.randn(len(lengths), width, 4, generator=generator) * 3 + 10 for _ in range(2)]
        for layer in layers:  # padding holds garbage that must not count
            for row, length in enumerate(lengths):
                layer[row, length:] = 1e6
        moments.add(layers, torch.tensor(lengths))
        frames.append(
            np.stack([np.concatenate([layer[i, :n].numpy() for i, n in enumerate(lengths)]) for layer in layers])
        )  # (L, F, D)
    everything = np.concatenate(frames, axis=1).astype(np.float64)
    mean, std = moments.result()
    np.testing.assert_allclose(mean.numpy(), everything.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(std.numpy(), everything.std(axis=1), rtol=1e-4)
    assert moments.count == everything.shape[1]


def test_statistics_of_an_upstream_equal_numpy_per_utterance(corpus):
    upstream = load_upstream("fbank-raw")
    mean, std = feature_statistics(upstream, corpus, batch_seconds=6.0)
    # independent reference: the encoder run on each utterance alone, frames concatenated, numpy moments
    dataset = AudioDataset(corpus, sample_rate=upstream.sample_rate)
    frames = []
    with torch.no_grad():
        for index in range(len(dataset)):
            wave = dataset[index].waveform
            output = upstream.encoder(wave[None], torch.tensor([wave.shape[0]]))
            frames.append(output.last[0, : int(output.lengths[0])].double().numpy())
    stacked = np.concatenate(frames)
    np.testing.assert_allclose(mean[0].numpy(), stacked.mean(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(std[0].numpy(), stacked.std(axis=0), rtol=1e-3, atol=1e-4)
    # once set, the training frames come out with zero mean and unit variance per dimension
    upstream.set_standardization(mean, std)
    out = []
    with torch.no_grad():
        for index in range(len(dataset)):
            wave = dataset[index].waveform
            layers, lengths = upstream.layers(wave[None], torch.tensor([wave.shape[0]]))
            out.append(layers[0][0, : int(lengths[0])].double().numpy())
    standardised = np.concatenate(out)
    np.testing.assert_allclose(standardised.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(standardised.std(axis=0), 1.0, atol=1e-3)


def test_statistics_travel_in_the_checkpoint_state_and_old_states_load(pretrained):
    upstream = load_upstream(str(pretrained))
    shape = upstream.feature_mean.shape
    assert shape == (upstream.num_layers, upstream.dim)  # one row per layer the mix reads
    upstream.set_standardization(torch.full(shape, 2.0), torch.full(shape, 3.0))
    state = upstream.checkpoint_state()
    assert torch.equal(state["feature_mean"], torch.full(shape, 2.0))
    fresh = load_upstream(str(pretrained))
    fresh.load_checkpoint_state(state)
    assert torch.equal(fresh.feature_std, torch.full(shape, 3.0))
    old = {k: v for k, v in state.items() if not k.startswith("feature_")}  # a run from before standardisation
    other = load_upstream(str(pretrained))
    other.load_checkpoint_state(old)
    assert torch.equal(other.feature_mean, torch.zeros(shape)) and torch.equal(other.feature_std, torch.ones(shape))
    with pytest.raises(Exception, match="do not fit"):
        fresh.set_standardization(torch.zeros(1, 1), torch.ones(1, 1))
    assert isinstance(fresh, Upstream)
