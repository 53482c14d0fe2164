"""NeuCoSVC's neural harmonic signal: harmonics from F0, shaped by a linear time-varying filter.

* :func:`harmonic_source`: the frame F0 is interpolated to the sample rate and integrated into a
  phase, so the sum ``sum_k sin(k phase) / sqrt(K)`` stays continuous through every F0 change;
  each harmonic is kept only while it is below Nyquist and the signal is zero where unvoiced.
  This is the sine excitation of neural source-filter models (Wang et al., NSF, 2019) and of
  NeuCoSVC (Sha et al. 2023).
* :class:`LTVFilter`: a causal FIR filter whose ``taps`` coefficients change every frame,
  ``y[t] = sum_j h_{frame(t)}[j] x[t - j]``, with the coefficients predicted from the SSL
  features by a small convolutional network (Hann-windowed, so each frame's response is smooth).
  The filtered harmonics carry the target's spectral envelope; the raw ones carry the pitch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from audiossl.nn.masking import lengths_to_mask


def upsample_f0(f0: torch.Tensor, hop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame F0 (B, N) in Hz (0 = unvoiced) -> sample F0 (B, N x hop) and voicing (B, N x hop).

    Inside voiced runs F0 is interpolated linearly between frame centres; at the edges of a run it
    holds the edge frame's value. Voicing is the frame's, held over its ``hop`` samples.
    """
    batch, frames = f0.shape
    voiced = f0 > 0
    # fill unvoiced frames with the nearest voiced value so interpolation never dives to 0 Hz
    index = torch.arange(frames, device=f0.device).expand(batch, frames)
    last = torch.where(voiced, index, torch.full_like(index, -1)).cummax(dim=1).values  # previous voiced frame
    reversed_next = torch.where(voiced, index, torch.full_like(index, frames)).flip(1).cummin(dim=1).values.flip(1)
    take = torch.where(last >= 0, last, reversed_next).clamp(0, frames - 1)
    filled = f0.gather(1, take)  # (B, N)
    # sample s sits at frame position (s + 0.5) / hop - 0.5 (frame i's centre is i x hop + hop / 2)
    positions = ((torch.arange(frames * hop, device=f0.device, dtype=f0.dtype) + 0.5) / hop - 0.5).clamp(0, frames - 1)
    low = positions.floor().long()
    high = (low + 1).clamp(max=frames - 1)
    weight = positions - low.to(f0.dtype)  # (T,)
    sample_f0 = filled[:, low] * (1 - weight) + filled[:, high] * weight  # (B, T)
    sample_voiced = voiced.repeat_interleave(hop, dim=1)  # (B, T)
    return sample_f0, sample_voiced


def harmonic_source(
    f0: torch.Tensor, hop: int, sample_rate: int, max_harmonics: int = 200, initial_phase: torch.Tensor | None = None
) -> torch.Tensor:
    """Frame F0 (B, N) -> the sum of harmonics below Nyquist (B, N x hop), zero where unvoiced.

    Each harmonic has amplitude ``1 / sqrt(K)`` with ``K`` the harmonics of 100 Hz below Nyquist,
    so the level does not depend on the F0. ``initial_phase`` (B,) in radians (default 0).
    """
    sample_f0, voiced = upsample_f0(f0.float(), hop)  # (B, T) each
    increments = 2 * math.pi * sample_f0.double() / sample_rate
    phase = torch.cumsum(increments, dim=1) - increments  # phase at sample t: sum of the increments before it
    if initial_phase is not None:
        phase = phase + initial_phase.double().unsqueeze(1)
    phase = torch.remainder(phase, 2 * math.pi)
    count = max(1, min(max_harmonics, int(sample_rate / 2 // max(float(sample_f0[voiced].min()), 1.0))
                       if bool(voiced.any()) else 1))  # fmt: skip
    orders = torch.arange(1, count + 1, device=f0.device, dtype=torch.float64)  # (K,)
    below_nyquist = orders[None, None, :] * sample_f0.double().unsqueeze(-1) < sample_rate / 2  # (B, T, K)
    level = 1.0 / math.sqrt(max(1.0, sample_rate / 2 / 100.0))
    waves = torch.sin(torch.remainder(phase.unsqueeze(-1) * orders, 2 * math.pi)) * below_nyquist  # (B, T, K)
    return (waves.sum(dim=-1) * level * voiced).to(f0.dtype if f0.is_floating_point() else torch.float32)


def ltv_filter(signal: torch.Tensor, coefficients: torch.Tensor, hop: int) -> torch.Tensor:
    """Causal time-varying FIR: ``y[t] = sum_j c[b, t // hop, j] x[b, t - j]`` -> (B, T).

    ``signal`` (B, N x hop), ``coefficients`` (B, N, L); samples before the start count as zero.
    """
    batch, length = signal.shape
    taps = coefficients.shape[-1]
    past = F.pad(signal, (taps - 1, 0)).unfold(1, taps, 1).flip(-1)  # (B, T, L): x[t], x[t-1], ... x[t-L+1]
    per_sample = coefficients.repeat_interleave(hop, dim=1)[:, :length]  # (B, T, L)
    return (past * per_sample).sum(dim=-1)


class LTVFilter(nn.Module):
    """SSL features (B, N, D) -> per-frame FIR coefficients (B, N, taps), and the filtered harmonics."""

    def __init__(self, in_dim: int, taps: int, channels: int = 64):
        super().__init__()
        self.taps = taps
        self.convs = nn.ModuleList(
            [nn.Conv1d(in_dim, channels, 3, padding=1), nn.Conv1d(channels, channels, 3, padding=1)]
        )
        self.output = nn.Conv1d(channels, taps, 1)
        # a window that decays over the taps: short, smooth responses (Hann's falling half)
        self.register_buffer("window", torch.hann_window(2 * taps)[taps:].clone(), persistent=False)

    def coefficients(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Coefficients (B, N, taps), zero past each item's length."""
        valid = lengths_to_mask(lengths.to(features.device), features.shape[1]).unsqueeze(1).to(features.dtype)
        x = features.transpose(1, 2) * valid  # (B, D, N)
        for conv in self.convs:  # padding zeroed after every layer, so a padded batch equals its items alone
            x = torch.nn.functional.leaky_relu(conv(x), 0.1) * valid
        raw = self.output(x) * valid  # (B, taps, N)
        return raw.transpose(1, 2) * self.window  # (B, N, taps)

    def forward(self, harmonics: torch.Tensor, features: torch.Tensor, lengths: torch.Tensor, hop: int) -> torch.Tensor:
        """Harmonics (B, N x hop) filtered by the coefficients of ``features`` -> (B, N x hop)."""
        return ltv_filter(harmonics, self.coefficients(features, lengths), hop)
