"""A HiFi-GAN-style vocoder from SSL frames: generator, multi-period and multi-scale discriminators, losses.

After Kong, Kim and Bae, "HiFi-GAN: Generative Adversarial Networks for Efficient and High
Fidelity Speech Synthesis" (NeurIPS 2020), written from the paper's description:

* Generator: a 7-wide input convolution, then transposed convolutions that upsample by factors
  whose product is the feature hop, each followed by a multi-receptive-field fusion (MRF): the
  average of residual blocks of different kernel sizes, each a stack of dilated convolutions.
  kNN-VC (Baas et al. 2023) uses the same generator on WavLM features instead of mels.
* Multi-period discriminator (MPD): the waveform folded into (T / p, p) for periods 2, 3, 5, 7,
  11 and read by 2-D convolutions with kernels (k, 1), so each sub-discriminator sees every p-th
  sample. Multi-scale discriminator (MSD): 1-D convolutional stacks on the raw, 2x and 4x
  average-pooled waveform (the first with spectral norm).
* Losses: least-squares GAN (Mao et al. 2017), feature matching (L1 between discriminator
  activations on real and generated audio) and mel-spectrogram L1; weights 1, 2 and 45.

Padded batches: the generator zeroes every activation past each item's length, so a valid
sample never depends on padding or on the other items.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from audiossl.errors import ConfigError
from audiossl.nn.masking import lengths_to_mask

LEAKY_SLOPE = 0.1


@dataclass(kw_only=True)
class HifiGanConfig:
    """Sizes of the generator and the discriminators."""

    channels: int = 512
    """Channels after the input convolution; halved at every upsampling stage (HiFi-GAN V1: 512)."""
    resblock_kernels: tuple[int, ...] = (3, 7, 11)
    """Kernel sizes of the MRF's residual blocks."""
    resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    """Dilations of each residual block's convolutions."""
    max_upsample: int = 8
    """Largest upsampling factor of one stage; the hop is split into factors no larger where it can."""
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    """Periods of the multi-period discriminator."""
    disc_channels: tuple[int, ...] = (32, 128, 512, 1024)
    """Channels of the MPD's 2-D convolutions (the MSD scales the paper's 128..1024 by the last / 1024)."""
    msd_scales: int = 3
    """Number of MSD sub-discriminators (raw, 2x, 4x pooled ...)."""

    @staticmethod
    def preset(name: str) -> HifiGanConfig:
        """``v1`` (paper), ``small`` (128 channels), ``tiny`` (a CPU test size that trains in minutes)."""
        if name == "v1":
            return HifiGanConfig()
        if name == "small":
            return HifiGanConfig(channels=128, resblock_kernels=(3, 7), resblock_dilations=((1, 3, 5), (1, 3, 5)))
        if name == "tiny":
            return HifiGanConfig(
                channels=32,
                resblock_kernels=(3, 5),
                resblock_dilations=((1, 3), (1, 3)),
                disc_channels=(8, 16, 32, 32),
                periods=(2, 3, 5),
                msd_scales=2,
            )

        raise ConfigError(f"unknown HiFi-GAN preset {name!r}; known: v1, small, tiny")


def upsample_factors(hop: int, max_factor: int = 8) -> list[int]:
    """Split ``hop`` into factors (largest first) whose product is ``hop``, each <= ``max_factor`` when possible."""
    primes, rest, p = [], hop, 2
    while rest > 1:
        while rest % p == 0:
            primes.append(p)
            rest //= p
        p += 1
    factors: list[int] = []
    for prime in sorted(primes, reverse=True):
        # first-fit decreasing: put the prime into the first factor that stays within bounds
        for i, factor in enumerate(factors):
            if factor * prime <= max_factor:
                factors[i] = factor * prime
                break
        else:
            factors.append(prime)
    return sorted(factors, reverse=True) or [1]


class ResBlock(nn.Module):
    """Residual stack: for each dilation, ``x + conv_1(lrelu(conv_d(lrelu(x))))`` with same-length padding."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]):
        super().__init__()
        self.dilated = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2))
            for d in dilations
        )
        self.plain = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2)) for _ in dilations
        )

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        for dilated, plain in zip(self.dilated, self.plain, strict=True):
            hidden = dilated(F.leaky_relu(x, LEAKY_SLOPE)) * valid
            x = x + plain(F.leaky_relu(hidden, LEAKY_SLOPE)) * valid
        return x


class Generator(nn.Module):
    """SSL frames (B, N, D) + lengths (B,) -> waveforms (B, N x hop) in [-1, 1] + sample lengths."""

    def __init__(self, in_dim: int, hop: int, config: HifiGanConfig):
        super().__init__()
        self.hop = hop
        self.factors = upsample_factors(hop, config.max_upsample)
        self.input = weight_norm(nn.Conv1d(in_dim, config.channels, 7, padding=3))
        self.upsamplers = nn.ModuleList()
        self.fusions = nn.ModuleList()
        channels = config.channels
        for factor in self.factors:
            out = max(channels // 2, 1)
            # kernel 2u, stride u: padding and output_padding chosen so that L frames give exactly L * u samples
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
            channels = out
        self.output = weight_norm(nn.Conv1d(channels, 1, 7, padding=3))

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.to(features.device)
        valid = lengths_to_mask(lengths, features.shape[1]).unsqueeze(1).to(features.dtype)  # (B, 1, N)
        x = self.input(features.transpose(1, 2) * valid) * valid  # (B, C, N)
        scale = 1
        for upsampler, fusion in zip(self.upsamplers, self.fusions, strict=True):
            scale *= upsampler.stride[0]
            x = upsampler(F.leaky_relu(x, LEAKY_SLOPE))  # (B, C / 2, N * scale)
            valid = lengths_to_mask(lengths * scale, x.shape[-1]).unsqueeze(1).to(x.dtype)
            x = x * valid
            x = sum(block(x, valid) for block in fusion) / len(fusion)
        waveforms = torch.tanh(self.output(F.leaky_relu(x)) * valid)  # (B, 1, N * hop)
        return waveforms.squeeze(1), lengths * self.hop


class PeriodDiscriminator(nn.Module):
    """One MPD sub-discriminator: waveform folded by ``period`` and read by (5, 1) convolutions, stride 3."""

    def __init__(self, period: int, channels: tuple[int, ...]):
        super().__init__()
        self.period = period
        layers, previous = [], 1
        for i, width in enumerate(channels):
            stride = 3 if i < len(channels) - 1 else 1
            layers.append(weight_norm(nn.Conv2d(previous, width, (5, 1), (stride, 1), padding=(2, 0))))
            previous = width
        self.convs = nn.ModuleList(layers)
        self.output = weight_norm(nn.Conv2d(previous, 1, (3, 1), padding=(1, 0)))

    def forward(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, length = waveforms.shape
        pad = (-length) % self.period
        x = F.pad(waveforms, (0, pad), mode="reflect" if pad < length else "constant")
        x = x.view(batch, 1, (length + pad) // self.period, self.period)  # (B, 1, T / p, p)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
            features.append(x)
        x = self.output(x)
        features.append(x)
        return x.flatten(1), features


class ScaleDiscriminator(nn.Module):
    """One MSD sub-discriminator: grouped strided 1-D convolutions (MelGAN's layout) on a waveform."""

    def __init__(self, width: int, spectral: bool):
        super().__init__()
        norm = spectral_norm if spectral else weight_norm
        w = max(width, 4)
        specs = [  # (in, out, kernel, stride, groups)
            (1, w, 15, 1, 1),
            (w, w, 41, 2, 4),
            (w, 2 * w, 41, 2, 16),
            (2 * w, 4 * w, 41, 4, 16),
            (4 * w, 8 * w, 41, 4, 16),
            (8 * w, 8 * w, 5, 1, 1),
        ]
        self.convs = nn.ModuleList(
            norm(nn.Conv1d(i, o, k, s, padding=k // 2, groups=min(g, i, o) if i % min(g, i, o) == 0 else 1))
            for i, o, k, s, g in specs
        )
        self.output = norm(nn.Conv1d(8 * w, 1, 3, padding=1))

    def forward(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = waveforms.unsqueeze(1)  # (B, 1, T)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)
            features.append(x)
        x = self.output(x)
        features.append(x)
        return x.flatten(1), features


class Discriminators(nn.Module):
    """MPD + MSD: waveforms (B, T) -> per sub-discriminator scores (B, *) and feature maps."""

    def __init__(self, config: HifiGanConfig):
        super().__init__()
        self.periods = nn.ModuleList(PeriodDiscriminator(p, config.disc_channels) for p in config.periods)
        width = max(config.disc_channels[-1] // 8, 4)  # the paper's MSD starts at 128 = 1024 / 8
        self.scales = nn.ModuleList(ScaleDiscriminator(width, spectral=i == 0) for i in range(config.msd_scales))

    def forward(self, waveforms: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        scores, features = [], []
        for disc in self.periods:
            score, maps = disc(waveforms)
            scores.append(score)
            features.append(maps)
        x = waveforms
        for i, disc in enumerate(self.scales):
            if i > 0:
                x = F.avg_pool1d(x.unsqueeze(1), 4, 2, padding=2).squeeze(1)  # (B, T / 2)
            score, maps = disc(x)
            scores.append(score)
            features.append(maps)
        return scores, features


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: ``sum_k mean((1 - D_k(y))^2) + mean(D_k(G(s))^2)``."""
    return sum(((1 - r) ** 2).mean() + (f**2).mean() for r, f in zip(real, fake, strict=True))


def generator_adversarial_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: ``sum_k mean((1 - D_k(G(s)))^2)``."""
    return sum(((1 - f) ** 2).mean() for f in fake)


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """``sum_k sum_i mean|D_k^i(y) - D_k^i(G(s))|`` over every sub-discriminator's activations."""
    pairs = [(r, f) for maps_r, maps_f in zip(real, fake, strict=True) for r, f in zip(maps_r, maps_f, strict=True)]
    return sum((r.detach() - f).abs().mean() for r, f in pairs)
