"""audiossl.nn.pooling, the one pooling implementation, against slow per-item loops (empty, length-1 items)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audiossl.nn.pooling import (
    AttentiveStatsPool,
    MeanPool,
    StatsPool,
    attentive_mean_std,
    masked_mean,
    masked_mean_std,
)

LENGTHS = torch.tensor([6, 0, 1, 3])  # a full item, an empty one, a single frame, a partial one
EPS = 1e-5


def _hidden(*leading: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(*leading, 4, 6, 5, generator=generator, dtype=torch.float64)  # (..., B, S, D)
    for row, length in enumerate(LENGTHS.tolist()):
        hidden[..., row, length:, :] = float("inf")  # padding that would poison any sum it entered
    return hidden


def _loop_mean_std(frames: torch.Tensor, weights: torch.Tensor, eps: float) -> torch.Tensor:
    """One item: frames (S, D), weights (S,) summing to 1 -> (2D,); an empty item -> zeros."""
    if frames.shape[0] == 0:
        return torch.zeros(2 * frames.shape[1], dtype=frames.dtype)
    mean = sum(w * frame for w, frame in zip(weights, frames, strict=True))
    variance = sum(w * (frame - mean) ** 2 for w, frame in zip(weights, frames, strict=True))
    return torch.cat([mean, variance.clamp_min(eps).sqrt()])


@pytest.mark.parametrize("leading", [(), (3,)])
def test_masked_mean_matches_a_loop(leading):
    hidden = _hidden(*leading)
    pooled = masked_mean(hidden, LENGTHS)
    assert pooled.shape == (*leading, 4, 5)
    for row, length in enumerate(LENGTHS.tolist()):
        frames = hidden[..., row, :length, :]  # (..., S, D)
        expected = frames.mean(dim=-2) if length else torch.zeros(*leading, 5, dtype=hidden.dtype)
        torch.testing.assert_close(pooled[..., row, :], expected)
    assert torch.equal(pooled[..., 1, :], torch.zeros_like(pooled[..., 1, :]))  # empty -> zeros, not NaN


@pytest.mark.parametrize("eps", [0.0, EPS])
@pytest.mark.parametrize("leading", [(), (2,)])
def test_masked_mean_std_matches_a_loop(eps, leading):
    hidden = _hidden(*leading)
    pooled = masked_mean_std(hidden, LENGTHS, eps)
    assert pooled.shape == (*leading, 4, 10) and bool(torch.isfinite(pooled).all())
    flat = pooled.reshape(-1, 4, 10)
    for lead, items in enumerate(hidden.reshape(-1, 4, 6, 5)):
        for row, length in enumerate(LENGTHS.tolist()):
            frames = items[row, :length]
            weights = torch.full((length,), 1.0 / max(length, 1), dtype=hidden.dtype)
            torch.testing.assert_close(flat[lead, row], _loop_mean_std(frames, weights, eps))
    single = pooled[..., 2, :]  # length 1: the frame itself and the variance floor
    torch.testing.assert_close(single[..., :5], hidden[..., 2, 0, :])
    torch.testing.assert_close(single[..., 5:], torch.full_like(single[..., 5:], eps**0.5))


def test_attentive_mean_std_matches_a_loop_and_keeps_gradients_finite():
    torch.manual_seed(0)
    attention = nn.Sequential(nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    hidden = _hidden().requires_grad_(True)
    pooled = attentive_mean_std(hidden, LENGTHS, attention, EPS)
    for row, length in enumerate(LENGTHS.tolist()):
        frames = hidden[row, :length].detach()
        weights = attention(frames).squeeze(-1).softmax(dim=0) if length else frames.new_zeros(0)
        torch.testing.assert_close(pooled[row].detach(), _loop_mean_std(frames, weights, EPS))
    pooled.sum().backward()
    assert bool(torch.isfinite(hidden.grad).all()) and bool(torch.isfinite(attention[0].weight.grad).all())


@pytest.mark.parametrize("module", [MeanPool(5), StatsPool(5), AttentiveStatsPool(5, attention_dim=3)])
def test_modules_give_each_item_alone_and_zeros_for_empty_items(module):
    hidden = _hidden().float()
    batch = module(hidden, LENGTHS)
    assert batch.shape == (4, module.out_dim) and bool(torch.isfinite(batch).all())
    for row, length in enumerate(LENGTHS.tolist()):
        alone = module(hidden[row : row + 1, :length], LENGTHS[row : row + 1])
        torch.testing.assert_close(batch[row : row + 1], alone, rtol=1e-5, atol=1e-5)
    assert torch.equal(batch[1], torch.zeros_like(batch[1]))


def test_low_precision_statistics_are_computed_in_float32():
    hidden = 1000.0 + torch.randn(2, 50, 4, generator=torch.Generator().manual_seed(1))  # large offset, small spread
    lengths = torch.tensor([50, 20])
    low = hidden.bfloat16()
    reference = masked_mean_std(low.double(), lengths, EPS)
    half = masked_mean_std(low, lengths, EPS)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half[:, 4:].double(), reference[:, 4:], rtol=0.05, atol=0.05)
