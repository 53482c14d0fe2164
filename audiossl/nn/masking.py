"""Conversions between lengths and masks. Lengths travel with padded tensors."""

from __future__ import annotations

import torch


def lengths_to_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """Valid-position mask (B, T): True where ``t < lengths[b]``."""
    if max_length is None:
        max_length = int(lengths.max()) if lengths.numel() else 0
    positions = torch.arange(max_length, device=lengths.device)  # (T,)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)


def lengths_to_padding_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """Padding mask (B, T): True where the position is padding (torchaudio/PyTorch convention)."""
    return ~lengths_to_mask(lengths, max_length)


def mask_to_lengths(mask: torch.Tensor) -> torch.Tensor:
    """Number of valid positions per row of a (B, T) valid mask."""
    return mask.long().sum(dim=1)
