"""STFT analysis / resynthesis of padded batches, and upstream frames aligned to STFT frames.

Every function works item by item on the valid samples only, so an utterance's spectrum,
features and mask are the same alone as in any padded batch (padding frames are zero).
Defaults are SUPERB's enhancement front-end at 16 kHz (s3prl ``enhancement_stft2``: 512-point
FFT, 400-sample Hann window, 160-sample hop, i.e. 25 ms / 10 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from audiossl.errors import ConfigError, DataError


@dataclass(frozen=True, kw_only=True)
class StftConfig:
    """Short-time Fourier transform settings, in samples at the upstream's sample rate."""

    n_fft: int = 512
    """FFT size; the mask has ``n_fft // 2 + 1`` frequency bins."""
    win_length: int = 400
    """Hann window length (<= n_fft)."""
    hop_length: int = 160
    """Samples between frames."""

    def __post_init__(self) -> None:
        if not 0 < self.hop_length <= self.win_length <= self.n_fft:
            raise ConfigError(
                f"need 0 < hop_length <= win_length <= n_fft, got {self.hop_length}, {self.win_length}, {self.n_fft}"
            )

    @property
    def bins(self) -> int:
        """Frequency bins of a frame."""
        return self.n_fft // 2 + 1

    def frames(self, samples: int) -> int:
        """Frames of a ``samples``-long signal (centred frames, as ``torch.stft(center=True)``)."""
        return samples // self.hop_length + 1


def stft(wave: torch.Tensor, config: StftConfig) -> torch.Tensor:
    """Complex spectrum (N, F) of one waveform (T,), centred frames (reflect padding needs T > n_fft // 2)."""
    window = torch.hann_window(config.win_length, device=wave.device, dtype=torch.float32)
    pad = "reflect" if wave.numel() > config.n_fft // 2 else "constant"
    spec = torch.stft(
        wave.float(),
        config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        window=window,
        center=True,
        pad_mode=pad,
        return_complex=True,
    )  # (F, N)
    return spec.transpose(0, 1)


def istft(spec: torch.Tensor, config: StftConfig, length: int) -> torch.Tensor:
    """Waveform (T,) of ``length`` samples from a complex spectrum (N, F) (overlap-add, Hann window)."""
    window = torch.hann_window(config.win_length, device=spec.device, dtype=torch.float32)
    return torch.istft(
        spec.transpose(0, 1),
        config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        window=window,
        center=True,
        length=length,
    )


def batch_spectra(
    waveforms: torch.Tensor, lengths: torch.Tensor, config: StftConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Complex spectra (B, N, F) of a padded batch (B, T) and each item's frame count (B,); zeros past it."""
    specs = [stft(waveforms[b, : int(n)], config) for b, n in enumerate(lengths.tolist())]
    frames = torch.tensor([spec.shape[0] for spec in specs], dtype=torch.long, device=waveforms.device)
    out = waveforms.new_zeros((len(specs), int(frames.max()), config.bins), dtype=torch.complex64)
    for b, spec in enumerate(specs):
        out[b, : spec.shape[0]] = spec
    return out, frames


def align_frames(hidden: torch.Tensor, lengths: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Upstream features (B, S, D) with ``lengths`` (B,) resampled in time to ``frames`` (B,): (B, N, D).

    Each item's valid frames are linearly interpolated onto its STFT frames (both span the
    utterance), so an upstream at any frame rate (20 ms transformers, 10 ms fbank) drives a
    10 ms mask. An item with no upstream frame is a :class:`DataError` (input shorter than
    the upstream needs).
    """
    out = hidden.new_zeros((hidden.shape[0], int(frames.max()), hidden.shape[2]))
    for b, (length, count) in enumerate(zip(lengths.tolist(), frames.tolist(), strict=True)):
        if length < 1:
            raise DataError(
                f"item {b} of the batch gave no upstream frame: the audio is shorter than the upstream needs"
            )
        item = hidden[b, :length].transpose(0, 1).unsqueeze(0)  # (1, D, S_b)
        out[b, :count] = F.interpolate(item, size=count, mode="linear", align_corners=False)[0].transpose(0, 1)
    return out


def frame_mask(frames: torch.Tensor, max_frames: int) -> torch.Tensor:
    """(B, N) bool: True on each item's valid frames."""
    return torch.arange(max_frames, device=frames.device)[None, :] < frames[:, None]
