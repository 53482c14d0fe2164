"""Kaldi-compatible MFCCs (``compute-mfcc-feats``) with optional deltas, on padded batches.

These are the targets of HuBERT's first clustering iteration: fairseq's HuBERT recipe takes
``torchaudio.compliance.kaldi.mfcc`` (13 cepstra from 23 mel bins, no energy) and appends
first and second deltas from ``torchaudio.functional.compute_deltas`` (39 dimensions). The
cepstra here match ``torchaudio.compliance.kaldi.mfcc`` per utterance and the deltas match
``compute_deltas`` applied per utterance; both are computed on the whole batch at once, and
the deltas replicate each utterance's own last frame (never the padding).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from audiossl.audio.base import Frontend, register_frontend
from audiossl.audio.kaldi_fbank import FbankConfig, fbank, frame_geometry, kaldi_num_frames
from audiossl.audio.options import resolve_config
from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask


@dataclass(kw_only=True)
class MfccConfig(FbankConfig):
    """Kaldi MFCC options: the fbank options plus the cepstral ones (defaults as HuBERT's recipe)."""

    num_mel_bins: int = 23
    """Number of mel filters the cepstra are computed from (Kaldi's MFCC default)."""
    num_ceps: int = 13
    """Number of cepstral coefficients kept, C0 included."""
    cepstral_lifter: float = 22.0
    """Liftering constant L: coefficient i is scaled by 1 + L/2 sin(pi i / L); 0 disables it."""
    deltas: int = 0
    """0: cepstra only; 1: append deltas; 2: append deltas and delta-deltas (HuBERT's 39 dims)."""
    delta_window: int = 2
    """Half-width N of the regression window of each delta (compute_deltas win_length = 2N + 1)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.use_log_fbank or not self.use_power:
            raise ConfigError("MFCCs are computed from log power mel energies: keep use_log_fbank and use_power true")
        if not 1 <= self.num_ceps <= self.num_mel_bins:
            raise ConfigError(f"num_ceps must be in [1, num_mel_bins={self.num_mel_bins}], got {self.num_ceps}")
        if self.deltas not in (0, 1, 2):
            raise ConfigError(f"deltas must be 0, 1 or 2, got {self.deltas}")
        if self.delta_window < 1:
            raise ConfigError(f"delta_window must be >= 1, got {self.delta_window}")


@functools.lru_cache(maxsize=16)
def _cepstral_matrix(num_mel_bins: int, num_ceps: int, lifter: float) -> torch.Tensor:
    """Orthonormal DCT-II (Kaldi's) times the lifter, (num_mel_bins, num_ceps), float64."""
    import torchaudio.functional

    dct = torchaudio.functional.create_dct(num_ceps, num_mel_bins, "ortho").double()  # (M, K)
    if lifter != 0.0:
        i = torch.arange(num_ceps, dtype=torch.float64)
        dct = dct * (1.0 + 0.5 * lifter * torch.sin(math.pi * i / lifter))
    return dct


def compute_deltas(features: torch.Tensor, frame_lengths: torch.Tensor, window: int = 2) -> torch.Tensor:
    """Regression deltas over time of a padded batch (B, F, C) -> (B, F, C).

    ``delta[t] = sum_n n (x[t + n] - x[t - n]) / (2 sum_n n^2)`` for n = 1..window, with
    frames beyond either end of an utterance replaced by its first or last valid frame
    (``torchaudio.functional.compute_deltas`` with ``win_length = 2 window + 1`` per item).
    Padding frames are zero.
    """
    batch, frames, channels = features.shape
    if frames == 0:
        return features.clone()
    last = (frame_lengths.to(features.device).long() - 1).clamp_min(0).view(batch, 1)  # (B, 1)
    positions = torch.arange(frames, device=features.device).unsqueeze(0)  # (1, F)
    deltas = torch.zeros_like(features)
    for n in range(1, window + 1):
        ahead = torch.minimum(positions + n, last).unsqueeze(-1).expand(batch, frames, channels)  # (B, F, C)
        behind = torch.minimum((positions - n).clamp_min(0), last).unsqueeze(-1).expand(batch, frames, channels)
        deltas += n * (features.gather(1, ahead) - features.gather(1, behind))
    deltas /= window * (window + 1) * (2 * window + 1) / 3
    valid = lengths_to_mask(frame_lengths.to(features.device), frames).unsqueeze(-1)  # (B, F, 1)
    return deltas.masked_fill_(~valid, 0.0)


def mfcc(
    waveforms: torch.Tensor,
    lengths: torch.Tensor,
    config: MfccConfig | None = None,
    **options: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kaldi MFCCs of a padded batch: ``(waveforms (B, T), lengths (B,)) -> (features (B, F, C), frame_lengths)``.

    Options are the fields of :class:`MfccConfig` (the fbank options with ``num_mel_bins=23``,
    plus ``num_ceps=13, cepstral_lifter=22.0, deltas=0, delta_window=2``). C is
    ``num_ceps * (1 + deltas)``: cepstra, then deltas, then delta-deltas.
    """
    config = resolve_config(MfccConfig, config, options)
    mel, frame_lengths = fbank(waveforms, lengths, config)  # (B, F, M [+ 1])
    bins = config.num_mel_bins
    if config.use_energy:
        energy = mel[..., bins] if config.htk_compat else mel[..., 0]  # (B, F)
        mel = mel[..., :bins] if config.htk_compat else mel[..., 1:]
    matrix = _cepstral_matrix(bins, config.num_ceps, config.cepstral_lifter)
    ceps = mel @ matrix.to(device=mel.device, dtype=mel.dtype)  # (B, F, K)
    if config.use_energy:
        ceps[..., 0] = energy
    if config.htk_compat:
        c0 = ceps[..., :1] if config.use_energy else ceps[..., :1] * math.sqrt(2.0)
        ceps = torch.cat((ceps[..., 1:], c0), dim=-1)  # C0 last, as HTK
    parts = [ceps]
    for _ in range(config.deltas):
        parts.append(compute_deltas(parts[-1], frame_lengths, config.delta_window))
    return torch.cat(parts, dim=-1), frame_lengths  # (B, F, K * (1 + deltas))


@register_frontend("mfcc", MfccConfig)
class Mfcc(Frontend):
    """Kaldi MFCC front-end (no parameters), optionally with deltas."""

    def __init__(self, config: MfccConfig | None = None):
        super().__init__()
        self.config = config or MfccConfig()
        self.num_channels = self.config.num_ceps * (1 + self.config.deltas)
        self.frame_length, self.frame_shift, _ = frame_geometry(self.config)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return mfcc(waveforms, lengths, self.config)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return kaldi_num_frames(lengths, self.frame_length, self.frame_shift, self.config.snip_edges)
