"""Log-mel spectrograms on the feature grid, the feature-to-mel regressor and Griffin-Lim.

The quick vocoder: a small convolutional network predicts a log-mel spectrogram from SSL
frames and Griffin-Lim (Griffin and Lim, 1984; torchaudio's implementation) recovers a phase.
It trains in a minute on a CPU and makes intelligible but buzzy speech. The mel hop divides the
feature hop, so every feature frame maps to a whole number ``upsample`` of mel frames and the
output has exactly ``frames x hop`` samples. The same log-mel is the reconstruction loss of the
HiFi-GAN vocoder (Kong et al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio
from torch import nn

from audiossl.nn.masking import lengths_to_mask

#: Floor of the magnitudes before the log.
LOG_FLOOR = 1e-5


@dataclass(kw_only=True)
class MelConfig:
    """Log-mel analysis on the feature grid."""

    sample_rate: int
    """Audio rate (Hz): the encoder's."""
    feature_hop: int
    """Samples per feature frame."""
    upsample: int
    """Mel frames per feature frame; divides ``feature_hop``."""
    n_fft: int
    """FFT size (and window length)."""
    n_mels: int = 80
    """Mel bands."""

    @property
    def hop_length(self) -> int:
        """Samples per mel frame."""
        return self.feature_hop // self.upsample

    @staticmethod
    def for_features(sample_rate: int, feature_hop: int, n_mels: int = 80, max_hop_ms: float = 12.5) -> MelConfig:
        """A mel grid of at most ``max_hop_ms`` per frame dividing ``feature_hop``; FFT of ~4 hops (power of two)."""
        max_hop = max(1, int(sample_rate * max_hop_ms / 1000))
        upsample = next(r for r in range(1, feature_hop + 1) if feature_hop % r == 0 and feature_hop // r <= max_hop)
        hop = feature_hop // upsample
        n_fft = 1 << max(6, (4 * hop - 1).bit_length())
        n_mels = min(n_mels, n_fft // 4)
        return MelConfig(
            sample_rate=sample_rate, feature_hop=feature_hop, upsample=upsample, n_fft=n_fft, n_mels=n_mels
        )


class LogMel(nn.Module):
    """Waveforms (B, T) -> log-mel (B, T // hop, n_mels): magnitude mel (Slaney), centred frames, natural log."""

    def __init__(self, config: MelConfig):
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
            power=1.0,
            norm="slaney",
            mel_scale="slaney",
            center=True,
        )

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        frames = waveforms.shape[-1] // self.config.hop_length
        spec = self.mel(waveforms.float())[..., :frames]  # (B, n_mels, T // hop)
        return spec.clamp_min(LOG_FLOOR).log().transpose(-1, -2)  # (B, F, n_mels)


class MaskedConvBlock(nn.Module):
    """Residual ``conv -> GELU -> conv`` over time with padding zeroed, so batches equal items alone."""

    def __init__(self, channels: int, kernel: int = 5):
        super().__init__()
        self.first = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.second = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        hidden = torch.nn.functional.gelu(self.first(x)) * valid
        return (x + self.second(hidden)) * valid


class MelRegressor(nn.Module):
    """SSL frames (B, N, D) + lengths -> log-mel (B, N x upsample, n_mels) + mel lengths."""

    def __init__(self, in_dim: int, n_mels: int, upsample: int, channels: int = 256, blocks: int = 3):
        super().__init__()
        self.upsample = upsample
        self.input = nn.Conv1d(in_dim, channels, 3, padding=1)
        self.before = nn.ModuleList(MaskedConvBlock(channels) for _ in range(blocks))
        self.after = MaskedConvBlock(channels)
        self.output = nn.Conv1d(channels, n_mels, 3, padding=1)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        valid = lengths_to_mask(lengths.to(features.device), features.shape[1]).unsqueeze(1).to(features.dtype)
        x = self.input(features.transpose(1, 2) * valid) * valid  # (B, C, N)
        for block in self.before:
            x = block(x, valid)
        x = x.repeat_interleave(self.upsample, dim=2)  # (B, C, N * r)
        valid = valid.repeat_interleave(self.upsample, dim=2)
        x = self.after(x, valid)
        mel = self.output(x) * valid  # (B, n_mels, N * r)
        return mel.transpose(1, 2), lengths * self.upsample


class GriffinLimSynth(nn.Module):
    """Log-mel (F, n_mels) -> waveform (F x hop,): least-squares mel inversion, then Griffin-Lim phase."""

    def __init__(self, config: MelConfig, iterations: int = 32):
        super().__init__()
        self.config = config
        self.inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=config.n_fft // 2 + 1,
            n_mels=config.n_mels,
            sample_rate=config.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.iterations = iterations
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        frames = log_mel.shape[0]
        magnitudes = log_mel.float().exp().T.unsqueeze(0)  # (1, n_mels, F)
        spec = self.inverse_mel(magnitudes).clamp_min(0.0)  # (1, n_fft // 2 + 1, F)
        # A centred STFT of F x hop samples has F + 1 frames: repeat the last so the length comes out exact.
        spec = torch.cat([spec, spec[..., -1:]], dim=-1)
        config = self.config
        return torchaudio.functional.griffinlim(
            spec,
            self.window,
            config.n_fft,
            config.hop_length,
            config.n_fft,
            1.0,
            self.iterations,
            0.99,
            frames * config.hop_length,
            False,
        )[0]  # (F * hop,)
