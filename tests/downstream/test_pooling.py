"""Utterance poolings against slow per-item loops; padding never changes a valid item's result."""

from __future__ import annotations

import pytest
import torch

from audiossl.downstream import POOLINGS, AttentiveStatsPool, PooledNorm, create_pooling

LENGTHS = torch.tensor([7, 3, 1])


def _hidden(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(3, 7, 5, generator=generator)  # (B, S, D)
    for row, length in enumerate(LENGTHS.tolist()):
        hidden[row, length:] = 1e4  # loud padding
    return hidden


@pytest.mark.parametrize("name", POOLINGS.names())
def test_padding_never_matters(name):
    torch.manual_seed(0)
    pool = create_pooling(name, 5).eval()
    hidden = _hidden()
    batch = pool(hidden, LENGTHS)
    assert batch.shape == (3, pool.out_dim)
    for row, length in enumerate(LENGTHS.tolist()):
        alone = pool(hidden[row : row + 1, :length], LENGTHS[row : row + 1])
        torch.testing.assert_close(batch[row : row + 1], alone, rtol=1e-5, atol=1e-5)


def test_stats_pool_is_mean_and_population_std():
    hidden = _hidden()
    out = create_pooling("stats", 5)(hidden, LENGTHS)
    for row, length in enumerate(LENGTHS.tolist()):
        frames = hidden[row, :length]
        expected = torch.cat([frames.mean(0), frames.std(0, unbiased=False).clamp_min(1e-5**0.5)])
        torch.testing.assert_close(out[row], expected, rtol=1e-4, atol=1e-4)


def test_attentive_pool_matches_a_loop_with_softmax_weights():
    torch.manual_seed(1)
    pool = AttentiveStatsPool(5, attention_dim=4)
    hidden = _hidden()
    out = pool(hidden, LENGTHS)
    first, tanh, second = pool.attention
    for row, length in enumerate(LENGTHS.tolist()):
        frames = hidden[row, :length].double()  # (S, D)
        scores = torch.tanh(frames @ first.weight.double().T + first.bias.double()) @ second.weight.double().T
        weights = torch.exp(scores - scores.max()) / torch.exp(scores - scores.max()).sum()  # (S, 1)
        mean = (weights * frames).sum(0)
        std = ((weights * frames**2).sum(0) - mean**2).clamp_min(1e-5).sqrt()
        torch.testing.assert_close(out[row].double(), torch.cat([mean, std]), rtol=1e-4, atol=1e-4)
    out.sum().backward()
    assert first.weight.grad is not None and bool(first.weight.grad.abs().sum() > 0)


def test_pooled_norm_standardises_batches_and_survives_a_batch_of_one():
    torch.manual_seed(2)
    norm = PooledNorm(4)
    pooled = torch.randn(6, 4) * torch.tensor([1.0, 10.0, 0.1, 3.0]) + torch.tensor([-8.0, 0.0, 5.0, 1.0])
    out = norm(pooled)
    expected = (pooled - pooled.mean(0)) / (pooled.var(0, unbiased=False) + 1e-5).sqrt()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    running = norm.running_mean.clone(), norm.running_var.clone()
    single = norm(pooled[:1])  # training mode, one item: running statistics, not updated
    torch.testing.assert_close(single, (pooled[:1] - running[0]) / (running[1] + 1e-5).sqrt())
    assert torch.equal(norm.running_mean, running[0]) and not list(norm.parameters())
    norm.eval()
    torch.testing.assert_close(norm(pooled[:2]), (pooled[:2] - running[0]) / (running[1] + 1e-5).sqrt())
