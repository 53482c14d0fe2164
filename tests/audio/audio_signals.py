"""Test signals for the front-end tests: speech-like noise, real FSDD digits, noisy padding."""

from __future__ import annotations

import math
from pathlib import Path

import soundfile
import torch
import torchaudio.functional


def speech_like(samples: int, seed: int, sample_rate: int = 16000) -> torch.Tensor:
    """Harmonics of a wandering F0 under a syllable-rate envelope, plus a little noise (T,) float32."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(samples, dtype=torch.float64) / sample_rate
    f0 = 110 + 40 * torch.rand(1, generator=generator, dtype=torch.float64)
    phase = 2 * math.pi * torch.cumsum(f0 * (1 + 0.1 * torch.sin(2 * math.pi * 3 * t)), 0) / sample_rate
    voiced = sum(torch.sin(k * phase) / k for k in range(1, 20))
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t + float(torch.rand(1, generator=generator)) * 6)
    noise = torch.randn(samples, generator=generator, dtype=torch.float64)
    return (0.1 * envelope * voiced + 0.01 * noise).float()


def fsdd_signals(recordings: Path, count: int = 4, sample_rate: int = 16000) -> list[torch.Tensor]:
    """The first ``count`` FSDD recordings (8 kHz), read with soundfile, resampled to ``sample_rate``."""
    signals = []
    for path in sorted(recordings.glob("*.wav"))[:count]:
        samples, rate = soundfile.read(path, dtype="float32")
        signals.append(torchaudio.functional.resample(torch.from_numpy(samples), rate, sample_rate))
    return signals


def pad_batch(
    signals: list[torch.Tensor], extra: int = 123, seed: int = 99, nan: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad into (B, T) with loud random noise (or NaN) past each length, so padding leaks would show."""
    lengths = torch.tensor([signal.shape[0] for signal in signals])
    total = int(lengths.max()) + extra if signals else 0
    generator = torch.Generator().manual_seed(seed)
    batch = torch.randn(len(signals), total, generator=generator)  # (B, T)
    if nan:
        batch.fill_(float("nan"))
    for row, signal in enumerate(signals):
        batch[row, : signal.shape[0]] = signal
    return batch, lengths
