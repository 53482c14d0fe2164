"""Tiny peer models with random weights (no downloads) and comparisons for the interop tests."""

from __future__ import annotations

import torch
from torch import nn

from audiossl.encoders import EncoderOutput

TOLERANCE = 1e-4


def perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    """Move every parameter and float buffer off its initial value (ones, zeros), so a
    weight loaded into the wrong place (a swapped norm, a dropped bias) changes the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            tensor.add_(0.1 * torch.randn(tensor.shape, generator=generator))
    return model.eval()


def waveforms(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    """Speech-scale noise (B, T)."""
    return 0.1 * torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


def assert_valid_close(ours: torch.Tensor, reference: torch.Tensor, lengths: torch.Tensor) -> None:
    """Equal (<= TOLERANCE) at every valid frame of every item."""
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    for b, length in enumerate(lengths.tolist()):
        difference = (ours[b, :length] - reference[b, :length]).abs().max().item()
        assert difference <= TOLERANCE, f"item {b}: max difference {difference}"


def assert_batch_equals_alone(model: nn.Module, batch: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
    """Every item of a padded batch gets what it gets alone (last and every layer)."""
    with torch.no_grad():
        together = model(batch, lengths)
        for b, length in enumerate(lengths.tolist()):
            alone = model(batch[b : b + 1, :length], lengths[b : b + 1])
            frames = int(alone.lengths[0])
            assert int(together.lengths[b]) == frames
            pairs = [(together.last, alone.last)] + list(zip(together.layers, alone.layers, strict=True))
            for mixed, single in pairs:
                difference = (mixed[b, :frames] - single[0, :frames]).abs().max().item()
                assert difference <= TOLERANCE, f"item {b}: batch vs alone differ by {difference}"
    return together
