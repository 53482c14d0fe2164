"""NeuCoSVC's waveform synthesizer: SSL frames + loudness + harmonic signals -> audio.

After Sha, Li, Tong and Dong, "Neural Concatenative Singing Voice Conversion: Rethinking
Concatenation-Based Approach for One-Shot Singing Voice Conversion" (2023), written from the
paper's description, sized for audiossl's small encoders:

* the neural harmonic signal (:mod:`audiossl_vc.harmonic`): raw harmonics of the F0 and the same
  harmonics through a linear time-varying FIR filter predicted from the SSL features;
* an upsampling generator (HiFi-GAN's transposed convolutions and multi-receptive-field blocks,
  :mod:`audiossl_vc.hifigan`) reads the SSL features and the frame loudness; at every upsampling
  stage the two harmonic signals, brought to that stage's rate by strided convolutions, modulate
  the activations (FiLM: ``x (1 + scale) + shift``), as the excitation conditions FastSVC's and
  NeuCoSVC's upsampling blocks;
* training (:mod:`audiossl_vc.trainer`): multi-resolution STFT loss (spectral convergence + log
  magnitude, Yamamoto et al., Parallel WaveGAN, 2020) and the LSGAN + feature-matching losses of
  HiFi-GAN's multi-period and multi-scale discriminators.

At conversion the features are the target's (kNN matched) while F0 and loudness are the source's,
so the pitch is the source's melody and the timbre the target's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask
from audiossl_vc.harmonic import LTVFilter, harmonic_source
from audiossl_vc.hifigan import LEAKY_SLOPE, HifiGanConfig, ResBlock, upsample_factors

#: Loudness (dB) is fed to the network as ``(loudness - LOUDNESS_CENTRE_DB) / LOUDNESS_SCALE_DB``.
LOUDNESS_CENTRE_DB, LOUDNESS_SCALE_DB = -40.0, 20.0


@dataclass(kw_only=True)
class NeuCoSVCConfig:
    """Sizes of the synthesizer, its discriminators and its STFT loss."""

    channels: int = 256
    """Channels after the input convolution; halved at every upsampling stage."""
    resblock_kernels: tuple[int, ...] = (3, 7, 11)
    """Kernel sizes of each stage's residual blocks."""
    resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    """Dilations of each residual block."""
    max_upsample: int = 8
    """Largest upsampling factor of one stage."""
    filter_taps: int = 64
    """FIR length of the linear time-varying filter (samples)."""
    filter_channels: int = 128
    """Width of the network predicting the filter coefficients."""
    max_harmonics: int = 200
    """Most harmonics summed (fewer when Nyquist comes first)."""
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    """Periods of the multi-period discriminator."""
    disc_channels: tuple[int, ...] = (32, 128, 512, 1024)
    """Channels of the discriminators (as HifiGanConfig.disc_channels)."""
    msd_scales: int = 3
    """Multi-scale discriminator scales."""
    stft_resolutions: tuple[tuple[int, int, int], ...] = ((1024, 256, 1024), (512, 128, 512), (256, 64, 256))
    """(FFT size, hop, window) of each STFT loss resolution, at 16 kHz (scaled with the rate)."""

    @staticmethod
    def preset(name: str) -> NeuCoSVCConfig:
        """``tiny`` (a CPU size that trains in minutes) or ``base`` (a GPU size, close to HiFi-GAN V2/V1's mix)."""
        if name == "base":
            return NeuCoSVCConfig()
        if name == "tiny":
            return NeuCoSVCConfig(
                channels=32,
                resblock_kernels=(3, 5),
                resblock_dilations=((1, 3), (1, 3)),
                filter_taps=32,
                filter_channels=32,
                disc_channels=(8, 16, 32, 32),
                periods=(2, 3, 5),
                msd_scales=2,
            )
        raise ConfigError(f"unknown NeuCoSVC preset {name!r}; known: tiny, base")

    def discriminators(self) -> HifiGanConfig:
        """The discriminator sizes as the HiFi-GAN config the shared discriminators read."""
        return HifiGanConfig(periods=self.periods, disc_channels=self.disc_channels, msd_scales=self.msd_scales)


class Synthesizer(nn.Module):
    """SSL frames (B, N, D), F0 (B, N) Hz, loudness (B, N) dB, lengths (B,) -> waveforms (B, N x hop)."""

    def __init__(self, in_dim: int, hop: int, sample_rate: int, config: NeuCoSVCConfig):
        super().__init__()
        self.hop, self.sample_rate, self.config = hop, sample_rate, config
        self.factors = upsample_factors(hop, config.max_upsample)
        self.filter = LTVFilter(in_dim, config.filter_taps, config.filter_channels)
        self.input = weight_norm(nn.Conv1d(in_dim + 1, config.channels, 7, padding=3))
        self.upsamplers, self.fusions, self.films = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        widths, channels = [], config.channels
        for factor in self.factors:
            out = max(channels // 2, 1)
            self.upsamplers.append(
                weight_norm(
                    nn.ConvTranspose1d(
                        channels, out, 2 * factor, stride=factor, padding=(factor + 1) // 2, output_padding=factor % 2
                    )
                )
            )
            self.fusions.append(
                nn.ModuleList(
                    ResBlock(out, kernel, dilations)
                    for kernel, dilations in zip(config.resblock_kernels, config.resblock_dilations, strict=True)
                )
            )
            self.films.append(nn.Conv1d(out, 2 * out, 3, padding=1))
            widths.append(out)
            channels = out
        # the excitation path: 2 channels at the sample rate, down to each stage's rate (last stage first)
        self.excitation_input = nn.Conv1d(2, widths[-1], 7, padding=3)
        self.downsamplers = nn.ModuleList()
        for stage in range(len(self.factors) - 1, 0, -1):
            factor = self.factors[stage]
            self.downsamplers.append(
                nn.Conv1d(widths[stage], widths[stage - 1], 2 * factor, stride=factor, padding=(factor + 1) // 2)
            )
        self.output = weight_norm(nn.Conv1d(channels, 1, 7, padding=3))

    def excitation(
        self, features: torch.Tensor, lengths: torch.Tensor, f0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw and LTV-filtered harmonic signals (B, N x hop) each."""
        with torch.no_grad():
            raw = harmonic_source(f0.float(), self.hop, self.sample_rate, self.config.max_harmonics)
        valid = lengths_to_mask(lengths * self.hop, raw.shape[1]).to(raw.dtype)
        raw = raw * valid
        return raw, self.filter(raw, features, lengths, self.hop) * valid

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, f0: torch.Tensor, loudness: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.to(features.device)
        frames = features.shape[1]
        if f0.shape != features.shape[:2] or loudness.shape != features.shape[:2]:
            raise ValueError(f"f0 {tuple(f0.shape)} and loudness {tuple(loudness.shape)} must be (B, N) of features")
        raw, filtered = self.excitation(features, lengths, f0)
        # excitation at every stage's rate, from the sample rate down
        stage_valid = lengths_to_mask(lengths * self.hop, frames * self.hop).unsqueeze(1).to(features.dtype)
        excitation = F.leaky_relu(self.excitation_input(torch.stack([raw, filtered], dim=1)), LEAKY_SLOPE)
        pyramid = [excitation * stage_valid]  # last stage first
        scale = self.hop
        for stage, down in zip(range(len(self.factors) - 1, 0, -1), self.downsamplers, strict=True):
            scale //= self.factors[stage]
            x = F.leaky_relu(down(pyramid[-1]), LEAKY_SLOPE)[..., : frames * scale]
            pyramid.append(x * lengths_to_mask(lengths * scale, x.shape[-1]).unsqueeze(1).to(x.dtype))
        pyramid.reverse()  # first stage first

        valid = lengths_to_mask(lengths, frames).unsqueeze(1).to(features.dtype)  # (B, 1, N)
        level = ((loudness - LOUDNESS_CENTRE_DB) / LOUDNESS_SCALE_DB).unsqueeze(1)  # (B, 1, N)
        x = self.input(torch.cat([features.transpose(1, 2), level], dim=1) * valid) * valid  # (B, C, N)
        scale = 1
        for upsampler, fusion, film, drive in zip(self.upsamplers, self.fusions, self.films, pyramid, strict=True):
            scale *= upsampler.stride[0]
            x = upsampler(F.leaky_relu(x, LEAKY_SLOPE))  # (B, C / 2, N * scale)
            valid = lengths_to_mask(lengths * scale, x.shape[-1]).unsqueeze(1).to(x.dtype)
            gain, shift = film(drive).chunk(2, dim=1)
            x = (x * (1 + gain) + shift) * valid
            x = sum(block(x, valid) for block in fusion) / len(fusion)
        waveforms = torch.tanh(self.output(F.leaky_relu(x)) * valid)  # (B, 1, N * hop)
        return waveforms.squeeze(1), lengths * self.hop


class MultiResolutionSTFTLoss(nn.Module):
    """Mean over resolutions of spectral convergence + L1 of log magnitudes (Yamamoto et al. 2020)."""

    def __init__(self, resolutions: tuple[tuple[int, int, int], ...], sample_rate: int):
        super().__init__()
        factor = sample_rate / 16000
        self.resolutions = [
            (max(16, int(round(n * factor))), max(4, int(round(h * factor))), max(16, int(round(w * factor))))
            for n, h, w in resolutions
        ]
        for index, (_, _, window) in enumerate(self.resolutions):
            self.register_buffer(f"window{index}", torch.hann_window(window), persistent=False)

    def forward(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = predicted.new_zeros(())
        for index, (n_fft, hop, window) in enumerate(self.resolutions):
            win = getattr(self, f"window{index}")
            # |z| as sqrt(re^2 + im^2 + eps): abs() of a complex zero has a NaN gradient
            spectra = [
                torch.view_as_real(torch.stft(x.float(), n_fft, hop, window, win, return_complex=True))
                .square()
                .sum(dim=-1)
                .add(1e-12)
                .sqrt()
                .clamp_min(1e-7)
                for x in (predicted, target)
            ]  # (B, F, frames) each
            convergence = torch.linalg.norm(spectra[1] - spectra[0]) / torch.linalg.norm(spectra[1]).clamp_min(1e-7)
            magnitude = (spectra[1].log() - spectra[0].log()).abs().mean()
            total = total + convergence + magnitude
        return total / len(self.resolutions)
