"""WeightedLayerSum and mean_pool against slow references; padding never matters."""

from __future__ import annotations

import pytest
import torch

from audiossl.downstream import WeightedLayerSum, mean_pool


def test_weighted_sum_matches_a_loop_over_layers():
    torch.manual_seed(0)
    layers = [torch.randn(2, 5, 8) * (i + 1) for i in range(3)]  # (B, S, D), different scales
    module = WeightedLayerSum(3)
    with torch.no_grad():
        module.logits.copy_(torch.tensor([0.5, -1.0, 2.0]))
    logits = module.logits.detach()
    weights = torch.exp(logits) / torch.exp(logits).sum()
    expected = torch.zeros(2, 5, 8)
    for weight, layer in zip(weights, layers, strict=True):
        mean = layer.mean(dim=-1, keepdim=True)
        std = (layer - mean).pow(2).mean(dim=-1, keepdim=True).add(1e-5).sqrt()
        expected += weight * (layer - mean) / std
    torch.testing.assert_close(module(layers), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(module(torch.stack(layers)), expected, rtol=1e-5, atol=1e-5)
    assert float(module.weights.detach().sum()) == pytest.approx(1.0)


def test_weights_start_equal_and_learn():
    module = WeightedLayerSum(4, normalize=False)
    layers = torch.stack([torch.full((1, 2, 3), float(i)) for i in range(4)])  # layer i holds i
    torch.testing.assert_close(module(layers), torch.full((1, 2, 3), 1.5))  # plain average at start
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    for _ in range(50):
        loss = (module(layers) - 3.0).pow(2).mean()  # the target is the last layer
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert int(module.weights.argmax()) == 3
    with pytest.raises(ValueError, match="expected 4 layers"):
        module(layers[:2])


def test_mean_pool_ignores_padding():
    hidden = torch.randn(2, 6, 4)
    lengths = torch.tensor([6, 3])
    pooled = mean_pool(hidden, lengths)
    torch.testing.assert_close(pooled[0], hidden[0].mean(dim=0))
    torch.testing.assert_close(pooled[1], hidden[1, :3].mean(dim=0))
    hidden[1, 3:] = 1e6  # padding changes nothing
    torch.testing.assert_close(mean_pool(hidden, lengths)[1], pooled[1])
