"""The frozen-feature cache: training with it reaches the same weights as recomputing every batch."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from audiossl.downstream import DownstreamConfig, train_downstream
from audiossl.downstream.cache import FeatureCache
from audiossl.fileio import latest_checkpoint, load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent / "thirdparty"))
from audiossl_spkid import make_task  # noqa: E402  (the third-party example task)


def test_cached_training_equals_recomputing(pretrained, corpus, tmp_path):
    heads = {}
    for cache_gb in (0.0, 1.0):
        config = DownstreamConfig(
            max_steps=6, batch_seconds=4.0, log_every=1, checkpoint_every=6, device="cpu", lr=1e-2, cache_gb=cache_gb
        )
        run = tmp_path / f"run{cache_gb}"
        train_downstream(make_task(), str(pretrained), corpus, run, config)
        saved = load_checkpoint(latest_checkpoint(run))
        assert saved["sampler"]["epoch"] >= 1  # later epochs read the cache
        heads[cache_gb] = {**saved["head"], **saved["upstream"]}
    for name, value in heads[0.0].items():
        torch.testing.assert_close(heads[1.0][name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_cache_pads_items_and_respects_its_budget():
    cache = FeatureCache(max_bytes=2 * 3 * 4 * 4 + 1)  # room for one item of 3 frames, 2 layers, width 4
    layers = [torch.arange(24.0).view(2, 3, 4), -torch.arange(24.0).view(2, 3, 4)]
    cache.put(["a", "b"], layers, torch.tensor([3, 1]))
    assert len(cache) == 1 and cache.get(["a", "b"], torch.device("cpu")) is None
    cache.max_bytes *= 2
    cache.put(["b"], [layer[1:] for layer in layers], torch.tensor([1]))
    padded, lengths = cache.get(["b", "a"], torch.device("cpu"))
    assert lengths.tolist() == [1, 3] and padded[0].shape == (2, 3, 4)
    assert torch.equal(padded[1][1], layers[1][0]) and torch.equal(padded[0][0, 0], layers[0][1, 0])
    assert torch.equal(padded[0][0, 1:], torch.zeros(2, 4))


def test_probe_features_from_the_cache_equal_a_fresh_pass(corpus):
    from audiossl.data.dataset import AudioDataset, collate
    from audiossl.downstream.probe import pooled_layers
    from audiossl.downstream.upstream import load_upstream

    upstream = load_upstream("fbank-raw")
    upstream.set_standardization(torch.full((1, 80), 3.0), torch.full((1, 80), 2.0))
    ids, fresh, labels = pooled_layers(upstream, corpus, "emo")
    cache = FeatureCache(2**30)
    dataset = AudioDataset(corpus, sample_rate=upstream.sample_rate)
    for start in range(0, len(dataset), 3):  # batches of three, padded
        batch = collate(dataset[list(range(start, min(start + 3, len(dataset))))])
        with torch.no_grad():
            layers, lengths = upstream.layers(batch.waveforms, batch.lengths)
        cache.put(batch.ids, layers, lengths)
    upstream.feature_cache = cache

    def no_encoder(*args):
        raise AssertionError("the encoder ran although every utterance was cached")

    upstream.layers = no_encoder
    cached_ids, cached, cached_labels = pooled_layers(upstream, corpus, "emo")
    assert cached_ids == ids and cached_labels == labels
    torch.testing.assert_close(torch.from_numpy(cached), torch.from_numpy(fresh), rtol=1e-5, atol=1e-5)
