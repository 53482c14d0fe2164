"""Features -> tokens: 2-D patches (AST, SSAST patch variant) or stacked frames (SSAST frame variant).

Gong et al., "AST" (Interspeech 2021) and "SSAST" (AAAI 2022): a (time x frequency)
spectrogram is cut into ``patch_time x patch_freq`` patches (16 x 16, possibly overlapping
with smaller strides), or into whole frames stacked in time (``frame_tokens``).

Token order is **time-major**: token ``s = t * freq_patches + f`` for time patch ``t`` and
frequency patch ``f``, so an item's valid tokens are a prefix of length
``time_patches * freq_patches`` and padding tokens (zero) come last, like padding frames.
A patch is flattened as ``(patch_time, patch_freq)`` in row-major order. Time patches only
cover valid frames, so tokens never depend on the padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask


@dataclass(kw_only=True)
class PatchConfig:
    """Patch size and stride in frames (time) and channels (frequency)."""

    patch_time: int = 16
    """Patch height in frames."""
    patch_freq: int = 16
    """Patch width in feature channels (mel bins)."""
    stride_time: int | None = None
    """Hop between patches in time; None means patch_time (no overlap)."""
    stride_freq: int | None = None
    """Hop between patches in frequency; None means patch_freq (no overlap)."""

    def __post_init__(self) -> None:
        if min(self.patch_time, self.patch_freq, self.time_stride, self.freq_stride) < 1:
            raise ConfigError("patch sizes and strides must be positive")

    @property
    def time_stride(self) -> int:
        return self.patch_time if self.stride_time is None else self.stride_time

    @property
    def freq_stride(self) -> int:
        return self.patch_freq if self.stride_freq is None else self.stride_freq


def patch_counts(frame_lengths: torch.Tensor, num_bins: int, config: PatchConfig) -> tuple[torch.Tensor, int]:
    """(time patches (B,), frequency patches) for items of ``frame_lengths`` frames and ``num_bins`` channels.

    ``time = max(0, (frames - patch_time) // stride_time + 1)``;
    ``freq = (num_bins - patch_freq) // stride_freq + 1`` (< 1 when num_bins < patch_freq:
    callers check; :func:`patchify` raises).
    """
    frame_lengths = frame_lengths.long()
    time = torch.where(
        frame_lengths >= config.patch_time, (frame_lengths - config.patch_time) // config.time_stride + 1, 0
    )
    return time, (num_bins - config.patch_freq) // config.freq_stride + 1


def patchify(
    features: torch.Tensor, frame_lengths: torch.Tensor, config: PatchConfig
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Cut (B, F, C) features into time-major patches.

    Returns ``patches`` (B, S, patch_time * patch_freq) with S = max token count, zero past
    each item's ``token_lengths`` (B,) = time patches x ``freq_patches``, and ``freq_patches``.
    """
    batch, frames, bins = features.shape
    time_patches, freq_patches = patch_counts(frame_lengths.to(features.device), bins, config)
    if freq_patches < 1:
        raise ConfigError(f"{bins} feature channels cannot hold a patch of {config.patch_freq}")
    size = config.patch_time * config.patch_freq
    token_lengths = time_patches * freq_patches  # (B,)
    tracing = torch.jit.is_tracing()
    if not tracing:
        max_time = int(time_patches.max()) if batch else 0
        if max_time == 0:
            return features.new_zeros(batch, 0, size), token_lengths, freq_patches
    pt, pf = config.patch_time, config.patch_freq
    if config.time_stride == pt and config.freq_stride == pf:
        # Non-overlapping patches by reshape (what ONNX can export; unfold it cannot). A trace must not
        # freeze the example's token count: it takes it from the input's shape, the longest item's when
        # the features are trimmed to it (as the export wrapper feeds them).
        if tracing:
            max_time = features.shape[1] // pt
        grid = features[:, : max_time * pt, : freq_patches * pf].reshape(batch, max_time, pt, freq_patches, pf)
        windows = grid.permute(0, 1, 3, 2, 4)  # (B, Tmax, Fp, pt, pf)
    else:
        windows = features.unfold(1, pt, config.time_stride)  # (B, T', C, pt)
        windows = windows.unfold(2, pf, config.freq_stride)  # (B, T', Fp, pt, pf)
        if tracing:
            max_time = windows.shape[1]
    windows = windows[:, :max_time, :freq_patches]  # (B, Tmax, Fp, pt, pf)
    patches = windows.reshape(batch, max_time * freq_patches, size)  # (B, S, pt * pf), time-major
    valid = lengths_to_mask(token_lengths, max_time * freq_patches).unsqueeze(-1)  # (B, S, 1)
    return torch.where(valid, patches, 0.0), token_lengths, freq_patches


def unpatchify(patches: torch.Tensor, frame_lengths: torch.Tensor, num_bins: int, config: PatchConfig) -> torch.Tensor:
    """Inverse of :func:`patchify` for non-overlapping patches: (B, S, pt * pf) -> (B, F, C).

    F is ``max(frame_lengths)``; cells not covered by a valid patch (frames past the last whole
    time patch, channels past the last whole frequency patch, padding) are zero.
    """
    if config.time_stride != config.patch_time or config.freq_stride != config.patch_freq:
        raise ConfigError("unpatchify needs non-overlapping patches (strides equal to patch sizes)")
    batch = patches.shape[0]
    time_patches, freq_patches = patch_counts(frame_lengths.to(patches.device), num_bins, config)
    if freq_patches < 1:
        raise ConfigError(f"{num_bins} feature channels cannot hold a patch of {config.patch_freq}")
    frames = int(frame_lengths.max()) if batch else 0
    features = patches.new_zeros(batch, frames, num_bins)  # (B, F, C)
    max_time = int(time_patches.max()) if batch else 0
    if max_time == 0:
        return features
    pt, pf = config.patch_time, config.patch_freq
    valid = lengths_to_mask(time_patches * freq_patches, max_time * freq_patches).unsqueeze(-1)  # (B, S, 1)
    grid = torch.where(valid, patches[:, : max_time * freq_patches], 0.0).reshape(batch, max_time, freq_patches, pt, pf)
    grid = grid.permute(0, 1, 3, 2, 4).reshape(batch, max_time * pt, freq_patches * pf)  # (B, Tmax*pt, Fp*pf)
    features[:, : max_time * pt, : freq_patches * pf] = grid
    return features


def frame_tokens(
    features: torch.Tensor, frame_lengths: torch.Tensor, stack: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``stack`` consecutive frames into one token (SSAST frame variant): (B, F, C) -> (B, F // stack, C * stack).

    Token ``s`` is frames ``s * stack .. s * stack + stack - 1`` concatenated;
    ``token_lengths = frame_lengths // stack`` (an incomplete last group is dropped), and
    tokens past it are zero.
    """
    if stack < 1:
        raise ConfigError(f"stack must be positive, got {stack}")
    batch, frames, channels = features.shape
    count = frames // stack
    tokens = features[:, : count * stack].reshape(batch, count, stack * channels)  # (B, S, C * stack)
    token_lengths = frame_lengths.to(features.device).long() // stack  # (B,)
    return torch.where(lengths_to_mask(token_lengths, count).unsqueeze(-1), tokens, 0.0), token_lengths
