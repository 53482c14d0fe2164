"""SpecAugment time and frequency masking on padded batches.

Park et al., "SpecAugment" (Interspeech 2019): replace ``time_masks`` runs of consecutive
frames and ``freq_masks`` runs of consecutive channels by ``mask_value``. Widths are drawn
uniformly from ``[0, max width]`` and positions uniformly among those that keep the whole
mask inside the item: time masks only cover each item's own valid frames (never placed
from, or reaching into, padding) and their maximum width is also capped by
``max_time_ratio`` of that item's frames. Drawing is vectorised over the batch and
reproducible with a ``torch.Generator`` (draws are made on the CPU, so a seed gives the same
masks on any device). Time warping is not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from audiossl.audio.options import resolve_config
from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask


@dataclass(kw_only=True)
class SpecAugmentConfig:
    """How many masks, how wide."""

    time_masks: int = 2
    """Number of time masks per item."""
    time_width: int = 40
    """Maximum width of a time mask in frames."""
    max_time_ratio: float = 1.0
    """Cap each time mask at this fraction of the item's valid frames (SpecAugment's p; 1 = no cap)."""
    freq_masks: int = 2
    """Number of frequency masks per item."""
    freq_width: int = 27
    """Maximum width of a frequency mask in channels."""
    mask_value: float = 0.0
    """Value written into masked cells (0 is the mean of normalised features)."""

    def __post_init__(self) -> None:
        if min(self.time_masks, self.time_width, self.freq_masks, self.freq_width) < 0:
            raise ConfigError("mask counts and widths must be non-negative")
        if not 0.0 <= self.max_time_ratio <= 1.0:
            raise ConfigError(f"max_time_ratio must be in [0, 1], got {self.max_time_ratio}")


def _spans(
    extents: torch.Tensor, max_widths: torch.Tensor, count: int, size: int, generator: torch.Generator | None
) -> torch.Tensor:
    """Union of ``count`` random spans per row inside ``[0, extents[b])`` as a (B, size) bool mask.

    Width ~ U{0..max_widths[b]}, start ~ U{0..extents[b] - width}; all draws on the CPU.
    """
    batch = extents.shape[0]
    if count == 0 or size == 0:
        return torch.zeros(batch, size, dtype=torch.bool)
    max_widths = torch.minimum(max_widths, extents).unsqueeze(1)  # (B, 1)
    widths = (torch.rand(batch, count, generator=generator, dtype=torch.float64) * (max_widths + 1)).long()
    widths = torch.minimum(widths, max_widths)  # (B, K)
    room = extents.unsqueeze(1) - widths + 1  # (B, K): number of valid starts
    starts = (torch.rand(batch, count, generator=generator, dtype=torch.float64) * room).long()
    starts = torch.minimum(starts, room - 1).clamp_min(0)  # (B, K)
    positions = torch.arange(size).view(1, 1, size)  # (1, 1, size)
    inside = (positions >= starts.unsqueeze(-1)) & (positions < (starts + widths).unsqueeze(-1))  # (B, K, size)
    return inside.any(dim=1)  # (B, size)


class SpecAugment(nn.Module):
    """Mask features (B, F, C) in training mode; identity in eval mode."""

    def __init__(self, config: SpecAugmentConfig | None = None, **overrides: object):
        super().__init__()
        self.config = resolve_config(SpecAugmentConfig, config, overrides)

    def masks(
        self, frame_lengths: torch.Tensor, num_frames: int, num_channels: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw (time mask (B, F), frequency mask (B, C)), True where masked, on the CPU."""
        config = self.config
        lengths = frame_lengths.detach().long().cpu().clamp(0, num_frames)  # (B,)
        time_cap = torch.minimum(
            torch.full_like(lengths, config.time_width), (lengths.double() * config.max_time_ratio).floor().long()
        )
        time = _spans(lengths, time_cap, config.time_masks, num_frames, generator)
        time &= lengths_to_mask(lengths, num_frames)
        channels = torch.full_like(lengths, num_channels)
        freq = _spans(channels, torch.full_like(lengths, config.freq_width), config.freq_masks, num_channels, generator)
        return time, freq

    def forward(
        self, features: torch.Tensor, frame_lengths: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Masked copy of ``features`` (B, F, C) when training; padding frames are never touched."""
        if not self.training:
            return features
        batch, frames, channels = features.shape
        time, freq = self.masks(frame_lengths, frames, channels, generator)
        time, freq = time.to(features.device), freq.to(features.device)
        valid = lengths_to_mask(frame_lengths.to(features.device), frames)  # (B, F)
        masked = (time.unsqueeze(-1) | freq.unsqueeze(1)) & valid.unsqueeze(-1)  # (B, F, C)
        return features.masked_fill(masked, self.config.mask_value)
